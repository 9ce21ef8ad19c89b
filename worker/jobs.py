"""The jobs: thin, idempotent, taking ids. Each opens what it needs through the context
and calls the domain."""

from __future__ import annotations

import logging

import time

from sqlalchemy import select

from newsletter.editions import planning
from newsletter.mail import outbox
from newsletter.subscribers import subscriptions
from newsletter.editions.sending import SCHEDULE_MARGIN_SECONDS, ChunkSender
from newsletter.models import Edition, EditionState

from . import context, queues

log = logging.getLogger(__name__)


def send_outbox(message_id: int) -> str:
    """Deliver one transactional mail if it is still due."""
    ctx = context.get()
    outcome = outbox.deliver(ctx.database, ctx.settings, message_id, renderer=ctx.renderer)
    if outcome.retry_in is not None:
        queues.enqueue_outbox(ctx.redis, [message_id], delay_seconds=outcome.retry_in + SCHEDULE_MARGIN_SECONDS)
    return outcome.status


def reconcile() -> int:
    """Re-queue whatever the database holds as unfinished and Redis may have forgotten:
    outbox mail, and chunks of sending editions with due deliveries."""
    ctx = context.get()
    with ctx.database.session_scope() as session:
        ids = outbox.due_for_requeue(session, ctx.settings.requeue_after_seconds)
        # Enqueue before the commit: if Redis fails, queued_at rolls back and the next
        # reconcile tries again.
        queues.enqueue_outbox(ctx.redis, ids)
    chunks = 0
    with ctx.database.session_scope() as session:
        editions = list(session.scalars(select(Edition.id).where(Edition.state == EditionState.SENDING)))
        for edition_id in editions:
            for lo, hi, lease_expired in planning.open_chunks(session, edition_id, ctx.settings.send_chunk_size, due_only=True):
                if lease_expired:
                    # Its worker died; RQ may not notice for many minutes (PITFALLS), so a
                    # new job under a new id takes the chunk over now.
                    queues.enqueue_chunk(ctx.redis, edition_id, lo, hi, job_id=f"{queues.chunk_job_id(edition_id, lo)}-{time.time_ns()}")
                elif not queues.chunk_job_alive(ctx.redis, edition_id, lo, ctx.settings.send_lease_seconds):
                    queues.enqueue_chunk(ctx.redis, edition_id, lo, hi)
                else:
                    continue
                chunks += 1
            planning.finish_if_done(session, edition_id)
    if ids or chunks:
        log.info("reconciler re-queued %d outbox message(s) and %d chunk(s)", len(ids), chunks)
    return len(ids) + chunks


def queue_edition(edition_id: int) -> int:
    """Queue a send job for every chunk of an edition's unfinished deliveries."""
    ctx = context.get()
    with ctx.database.session_scope() as session:
        chunks = planning.open_chunks(session, edition_id, ctx.settings.send_chunk_size)
    for lo, hi, _ in chunks:
        queues.enqueue_chunk(ctx.redis, edition_id, lo, hi)
    return len(chunks)


def send_chunk(edition_id: int, lo: int, hi: int) -> dict[str, object]:
    """Send the due deliveries lo..hi of an edition over one SMTP connection."""
    ctx = context.get()
    result = ChunkSender(ctx.database, ctx.settings, ctx.redis, ctx.renderer).run(edition_id, lo, hi)
    if result.retry_in is not None:
        # Not the chunk's own job id: RQ deletes this running job's hash when it finishes
        # (result_ttl=0), which would take a retry scheduled under the same id with it.
        queues.enqueue_chunk(ctx.redis, edition_id, lo, hi, delay_seconds=result.retry_in,
                             job_id=f"{queues.chunk_job_id(edition_id, lo)}-retry-{time.time_ns()}")
    return {"sent": result.sent, "retry": result.retry, "failed": result.failed,
            "bounced": result.bounced, "cancelled": result.cancelled, "stopped": result.stopped}


def digest_tick() -> int | None:
    """The scheduler's check: make the current period's edition if due, then queue it."""
    ctx = context.get()
    with ctx.database.session_scope() as session:
        edition = planning.tick(session, ctx.settings)
        edition_id = edition.id if edition is not None else None
    if edition_id is not None:
        log.info("scheduled edition %s created", edition_id)
        queue_edition(edition_id)
    return edition_id


def purge() -> dict[str, int]:
    """Delete stale unconfirmed signups, former readers' personal fields past their
    retention, consent proof past its retention time, and the confirmation-mail and
    link-mail budgets past their windows."""
    ctx = context.get()
    with ctx.database.session_scope() as session:
        unconfirmed = subscriptions.purge_unconfirmed(session, ctx.settings.unconfirmed_retention_days)
        former = subscriptions.purge_former_readers(session, ctx.settings.former_reader_retention_days)
        records = subscriptions.purge_consent_records(session, ctx.settings.consent_retention_days)
        budget = subscriptions.purge_confirmation_mails(session)
        link_budget = subscriptions.purge_link_mails(session)
    counts = {"unconfirmed": unconfirmed, "former_readers": former, "consent_records": records,
              "confirmation_mails": budget, "link_mails": link_budget}
    if any(counts.values()):
        log.info("purge: %s", ", ".join(f"{key} {value}" for key, value in counts.items()))
    return counts
