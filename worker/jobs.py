"""The jobs: thin, idempotent, taking ids. Each opens what it needs through the context
and calls the domain."""

from __future__ import annotations

import logging

from newsletter import outbox, subscriptions

from . import context, queues

log = logging.getLogger(__name__)


def send_outbox(message_id: int) -> str:
    """Deliver one transactional mail if it is still due."""
    ctx = context.get()
    outcome = outbox.deliver(ctx.database, ctx.settings, message_id)
    if outcome.retry_in is not None:
        queues.enqueue_outbox(ctx.redis, [message_id], delay_seconds=outcome.retry_in)
    return outcome.status


def reconcile() -> int:
    """Re-queue whatever the database holds as unfinished and Redis may have forgotten."""
    ctx = context.get()
    with ctx.database.session_scope() as session:
        ids = outbox.due_for_requeue(session, ctx.settings.requeue_after_seconds)
        # Enqueue before the commit: if Redis fails, queued_at rolls back and the next
        # reconcile tries again.
        queues.enqueue_outbox(ctx.redis, ids)
    if ids:
        log.info("reconciler re-queued %d outbox message(s)", len(ids))
    return len(ids)


def purge() -> dict[str, int]:
    """Delete stale unconfirmed signups and consent proof past its retention time."""
    ctx = context.get()
    with ctx.database.session_scope() as session:
        unconfirmed = subscriptions.purge_unconfirmed(session, ctx.settings.unconfirmed_retention_days)
        records = subscriptions.purge_consent_records(session, ctx.settings.consent_retention_days)
    return {"unconfirmed": unconfirmed, "consent_records": records}
