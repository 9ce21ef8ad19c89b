"""Queue names and enqueueing. Jobs get ids only; the database says what to do with them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from redis import Redis
from rq import Queue

MAIL = "mail"  # transactional mail first: a reader is waiting for it
DIGEST = "digest"
MAINTENANCE = "maintenance"
ALL = (MAIL, DIGEST, MAINTENANCE)

JOB_TIMEOUT = 600
RESULT_TTL = 3600


def enqueue_outbox(redis: Redis, ids: Iterable[int], delay_seconds: float = 0) -> int:
    """Queue the send job of each outbox id (after `delay_seconds`, via RQ's scheduler)."""
    queue = Queue(MAIL, connection=redis)
    count = 0
    for message_id in ids:
        if delay_seconds > 0:
            queue.enqueue_in(
                timedelta(seconds=delay_seconds), "worker.jobs.send_outbox", message_id,
                job_timeout=JOB_TIMEOUT, result_ttl=RESULT_TTL,
            )
        else:
            queue.enqueue(
                "worker.jobs.send_outbox", message_id, job_timeout=JOB_TIMEOUT, result_ttl=RESULT_TTL
            )
        count += 1
    return count
