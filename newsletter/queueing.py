"""Queues, the two send jobs on them, and queueing those jobs. The web, the CLI, the demo
and the worker's periodic jobs (worker/jobs.py) all queue through these functions, giving
them the Session and the Redis connection they use.

Jobs get ids only; the database says what to do with them. RQ is given the job function
itself, not its dotted name, so a renamed job fails at import instead of in the worker.
The send jobs live here, next to the functions that queue them, because each re-queues
itself for a retry: in two modules, jobs and queueing would import each other."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import timedelta

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy import update
from sqlalchemy.orm import Session

from newsletter import job_context
from newsletter.editions import state
from newsletter.editions.sending import SCHEDULE_MARGIN_SECONDS, ChunkSender
from newsletter.mail import outbox
from newsletter.models import OutboxMessage

log = logging.getLogger(__name__)

MAIL = "mail"  # transactional mail first: a reader is waiting for it
DIGEST = "digest"
MAINTENANCE = "maintenance"
ALL = (MAIL, DIGEST, MAINTENANCE)

JOB_TIMEOUT = 600
RESULT_TTL = 3600


# -- the send jobs (run by the worker) --------------------------------------------------

def send_outbox(message_id: int) -> str:
    """Deliver one transactional mail if it is still due; queue its retry if one is due."""
    ctx = job_context.get()
    outcome = outbox.deliver(ctx.database, ctx.settings, message_id, renderer=ctx.renderer)
    if outcome.retry_in is not None:
        queue_outbox(ctx.redis, [message_id], delay_seconds=outcome.retry_in + SCHEDULE_MARGIN_SECONDS)
    return outcome.status


def send_chunk(edition_id: int, lo: int, hi: int) -> dict[str, object]:
    """Send the due deliveries lo..hi of an edition over one SMTP connection."""
    ctx = job_context.get()
    result = ChunkSender(ctx.database, ctx.settings, ctx.redis, ctx.renderer).run(edition_id, lo, hi)
    if result.retry_in is not None:
        # Not the chunk's own job id: RQ deletes this running job's hash when it finishes
        # (result_ttl=0), which would take a retry scheduled under the same id with it.
        queue_chunk(ctx.redis, edition_id, lo, hi, delay_seconds=result.retry_in,
                    job_id=f"{chunk_job_id(edition_id, lo)}-retry-{time.time_ns()}")
    return {"sent": result.sent, "retry": result.retry, "failed": result.failed,
            "bounced": result.bounced, "cancelled": result.cancelled, "stopped": result.stopped}


# -- queueing ---------------------------------------------------------------------------

def queue_outbox(redis: Redis, ids: Iterable[int], delay_seconds: float = 0) -> int:
    """Queue the send job of each outbox id (after `delay_seconds`, via RQ's scheduler);
    returns how many. Immediate jobs go out in one pipeline: one round trip on the signup's
    hot path. Raises RedisError when Redis does not answer."""
    queue = Queue(MAIL, connection=redis)
    ids = list(ids)
    if delay_seconds > 0:
        for message_id in ids:
            queue.enqueue_in(
                timedelta(seconds=delay_seconds), send_outbox, message_id,
                job_timeout=JOB_TIMEOUT, result_ttl=RESULT_TTL,
            )
        return len(ids)
    with redis.pipeline() as pipe:
        for message_id in ids:
            queue.enqueue(send_outbox, message_id, job_timeout=JOB_TIMEOUT,
                          result_ttl=RESULT_TTL, pipeline=pipe)
        pipe.execute()
    return len(ids)


def queue_outbox_after_commit(session: Session, redis: Redis, ids: Iterable[int]) -> bool:
    """Queue outbox rows the caller has committed. With Redis down the change that wrote
    them still stands (a signup succeeds): the rows are marked never-queued, committed, and
    the reconciler sends them once Redis is back; returns False then."""
    ids = list(ids)
    if not ids:
        return True
    try:
        queue_outbox(redis, ids)
    except RedisError as exc:
        log.warning("Redis unavailable, %d mail(s) left to the reconciler: %s", len(ids), exc)
        session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(queued_at=None))
        session.commit()
        return False
    return True


def chunk_job_id(edition_id: int, lo: int) -> str:
    """The job id of an edition's chunk starting at delivery `lo`: one job per chunk."""
    return f"chunk-{edition_id}-{lo}"


def queue_chunk(
    redis: Redis, edition_id: int, lo: int, hi: int, delay_seconds: float = 0, job_id: str | None = None
) -> None:
    """Queue the send job of one chunk (deliveries lo..hi of an edition)."""
    queue = Queue(DIGEST, connection=redis)
    options = {"job_timeout": JOB_TIMEOUT, "result_ttl": 0, "failure_ttl": RESULT_TTL,
               "job_id": job_id or chunk_job_id(edition_id, lo)}
    if delay_seconds > 0:
        queue.enqueue_in(timedelta(seconds=delay_seconds), send_chunk, edition_id, lo, hi, **options)
    else:
        queue.enqueue(send_chunk, edition_id, lo, hi, **options)


def queue_edition(session: Session, redis: Redis, edition_id: int, chunk_size: int) -> int:
    """Queue a send job for every chunk of a committed edition's unfinished deliveries;
    returns how many. Raises RedisError when Redis does not answer: nothing is lost, the
    reconciler queues the chunks of every sending edition once it is back."""
    chunks = state.open_chunks(session, edition_id, chunk_size)
    for lo, hi, _ in chunks:
        queue_chunk(redis, edition_id, lo, hi)
    return len(chunks)
