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
    """Queue the send job of each outbox id (after `delay_seconds`, via RQ's scheduler).
    Immediate jobs go out in one pipeline: one round trip on the signup's hot path."""
    queue = Queue(MAIL, connection=redis)
    ids = list(ids)
    if delay_seconds > 0:
        for message_id in ids:
            queue.enqueue_in(
                timedelta(seconds=delay_seconds), "worker.jobs.send_outbox", message_id,
                job_timeout=JOB_TIMEOUT, result_ttl=RESULT_TTL,
            )
        return len(ids)
    with redis.pipeline() as pipe:
        for message_id in ids:
            queue.enqueue("worker.jobs.send_outbox", message_id, job_timeout=JOB_TIMEOUT,
                          result_ttl=RESULT_TTL, pipeline=pipe)
        pipe.execute()
    return len(ids)


def chunk_job_id(edition_id: int, lo: int) -> str:
    return f"chunk-{edition_id}-{lo}"


def enqueue_chunk(
    redis: Redis, edition_id: int, lo: int, hi: int, delay_seconds: float = 0, job_id: str | None = None
) -> None:
    """Queue the send job of one chunk (deliveries lo..hi of an edition)."""
    queue = Queue(DIGEST, connection=redis)
    options = {"job_timeout": JOB_TIMEOUT, "result_ttl": 0, "failure_ttl": RESULT_TTL,
               "job_id": job_id or chunk_job_id(edition_id, lo)}
    if delay_seconds > 0:
        queue.enqueue_in(timedelta(seconds=delay_seconds), "worker.jobs.send_chunk", edition_id, lo, hi, **options)
    else:
        queue.enqueue("worker.jobs.send_chunk", edition_id, lo, hi, **options)


def chunk_job_alive(redis: Redis, edition_id: int, lo: int, lease_seconds: float = 300) -> bool:
    """Whether the chunk's job is still waiting, or started less than a lease ago. A job
    whose worker was killed stays "started" in Redis until RQ notices, many minutes later
    (PITFALLS); by then its rows are the reconciler's to hand on. A worker killed between
    taking the job off the queue (BLPOP) and marking it started leaves it "queued" on no
    queue at all, so "queued" counts only while the queue holds it."""
    from datetime import UTC, datetime

    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    job_id = chunk_job_id(edition_id, lo)
    try:
        job = Job.fetch(job_id, connection=redis)
        if job.get_status(refresh=False) == JobStatus.QUEUED:
            if redis.lpos(Queue(DIGEST, connection=redis).key, job_id) is not None:
                return True
            job = Job.fetch(job_id, connection=redis)  # a worker may have taken it since
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status == JobStatus.STARTED:
        started = job.started_at
        if started is None:
            return True
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        return (datetime.now(UTC) - started).total_seconds() < lease_seconds
    return status in (JobStatus.SCHEDULED, JobStatus.DEFERRED)
