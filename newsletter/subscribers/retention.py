"""The retention purge: everything about subscribers kept no longer than its time, in one
transaction. The scheduler runs it every hour (worker/jobs.py) and an operator with
`newsletter subscribers purge`; both report the same counts."""

from __future__ import annotations

from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.subscribers import subscriptions


def purge(session: Session, settings: Settings) -> dict[str, int]:
    """Delete unconfirmed signups past NEWSLETTER_UNCONFIRMED_RETENTION_DAYS, former
    readers' personal fields past NEWSLETTER_FORMER_READER_RETENTION_DAYS, consent proof
    past NEWSLETTER_CONSENT_RETENTION_DAYS (to the end of that year), and the records of
    confirmation mails (30 days) and link mails (24 hours) that limit nothing any more.
    Returns how many of each went, in this order; the caller commits."""
    return {
        "unconfirmed": subscriptions.purge_unconfirmed(session, settings.unconfirmed_retention_days),
        "former_readers": subscriptions.purge_former_readers(session, settings.former_reader_retention_days),
        "consent_records": subscriptions.purge_consent_records(session, settings.consent_retention_days),
        "confirmation_mails": subscriptions.purge_confirmation_mails(session),
        "link_mails": subscriptions.purge_link_mails(session),
    }
