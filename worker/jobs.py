"""The worker's own jobs: the reconciler, the digest tick, the purge and the bounce poll, run at worker
start and by the scheduler. Thin: each opens what it needs through the job context and
calls the domain. The send jobs that the web and the CLI queue are in newsletter/queueing.py."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select

from newsletter import job_context, queueing
from newsletter.editions import schedule, state
from newsletter.mail import outbox
from newsletter.models import Edition, EditionState

# Jobs queued before the send jobs moved there are stored as worker.jobs.send_*: RQ finds them here.
from newsletter.queueing import send_chunk, send_outbox  # noqa: F401
from newsletter.subscribers import retention

log = logging.getLogger(__name__)


def reconcile() -> int:
    """Re-queue whatever the database holds as unfinished and Redis may have forgotten:
    outbox mail, and chunks of sending editions with due deliveries."""
    ctx = job_context.get()
    with ctx.database.session_scope() as session:
        ids = outbox.due_for_requeue(session, ctx.settings.requeue_after_seconds)
        # Queue before the commit: if Redis fails, queued_at rolls back and the next
        # reconcile tries again.
        queueing.queue_outbox(ctx.redis, ids)
    chunks = 0
    with ctx.database.session_scope() as session:
        editions = list(session.scalars(select(Edition.id).where(Edition.state == EditionState.SENDING)))
        for edition_id in editions:
            for lo, hi, lease_expired in state.open_chunks(session, edition_id, ctx.settings.send_chunk_size, due_only=True):
                if lease_expired:
                    # Its worker died; RQ may not notice for many minutes (PITFALLS), so a
                    # new job under a new id takes the chunk over now.
                    queueing.queue_chunk(ctx.redis, edition_id, lo, hi,
                                         job_id=f"{queueing.chunk_job_id(edition_id, lo)}-{time.time_ns()}")
                elif not chunk_job_alive(ctx.redis, edition_id, lo, ctx.settings.send_lease_seconds):
                    queueing.queue_chunk(ctx.redis, edition_id, lo, hi)
                else:
                    continue
                chunks += 1
            state.finish_if_done(session, edition_id)
    if ids or chunks:
        log.info("reconciler re-queued %d outbox message(s) and %d chunk(s)", len(ids), chunks)
    return len(ids) + chunks


def chunk_job_alive(redis: Redis, edition_id: int, lo: int, lease_seconds: float = 300) -> bool:
    """Whether the chunk's job is still waiting, or started less than a lease ago. A job
    whose worker was killed stays "started" in Redis until RQ notices, many minutes later
    (PITFALLS); by then its rows are the reconciler's to hand on. A worker killed between
    taking the job off the queue (BLPOP) and marking it started leaves it "queued" on no
    queue at all, so "queued" counts only while the queue holds it."""
    job_id = queueing.chunk_job_id(edition_id, lo)
    try:
        job = Job.fetch(job_id, connection=redis)
        if job.get_status(refresh=False) == JobStatus.QUEUED:
            if redis.lpos(Queue(queueing.DIGEST, connection=redis).key, job_id) is not None:
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


def digest_tick() -> int | None:
    """The scheduler's check: make the current period's edition if due, then queue it."""
    ctx = job_context.get()
    with ctx.database.session_scope() as session:
        edition = schedule.tick(session, ctx.settings)
        edition_id = edition.id if edition is not None else None
    if edition_id is not None:
        log.info("scheduled edition %s created", edition_id)
        with ctx.database.session_scope() as session:
            queueing.queue_edition(session, ctx.redis, edition_id, ctx.settings.send_chunk_size)
    return edition_id


def purge() -> dict[str, int]:
    """The retention purge (newsletter/subscribers/retention.py), logged when it deleted
    anything."""
    ctx = job_context.get()
    with ctx.database.session_scope() as session:
        counts = retention.purge(session, ctx.settings)
    if any(counts.values()):
        log.info("purge: %s", ", ".join(f"{key} {value}" for key, value in counts.items()))
    return counts


def poll_bounces() -> dict[str, int]:
    """Fetch what came back to the bounce mailbox over IMAP (newsletter/bounces/imap.py),
    when NEWSLETTER_BOUNCE_IMAP_URL is set; logged when anything came."""
    from newsletter.bounces import imap  # only where a bounce mailbox is configured

    ctx = job_context.get()
    return dict(imap.poll(ctx.settings, ctx.database))
