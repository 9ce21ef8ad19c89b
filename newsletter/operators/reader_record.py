"""What the admin shows of readers: the newest ones, finding one by address, and one
reader's record (consent log, digests, bounces). Reading only: what changes a reader is
subscribers/subscriptions.py's, the same steps the reader's own links take."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.models import BounceEvent, ConsentEvent, Delivery, Edition, Subscriber, SubscriberStatus, Suppression
from newsletter.subscribers import subscriptions
from newsletter.validation import InvalidInput, clean_email

LATEST = 50


@dataclass(frozen=True)
class DigestMail:
    """One digest of an edition to the reader: the edition, when it was made, and how the
    mail fared."""

    edition_id: int
    edition_created_at: datetime
    status: str
    attempts: int
    sent_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class Record:
    """One reader as the admin shows them."""

    subscriber: Subscriber
    consent_log: list[ConsentEvent]
    digests: list[DigestMail]
    bounces: list[BounceEvent]
    suppression: str | None  # the reason the address is suppressed, if it is


def latest(session: Session, limit: int = LATEST, status: str | None = None) -> list[Subscriber]:
    """The `limit` newest readers (by sign-up), of one state when `status` names one."""
    query = select(Subscriber)
    if status in set(SubscriberStatus):
        query = query.where(Subscriber.status == status)
    return list(session.scalars(query.order_by(Subscriber.id.desc()).limit(limit)))


def find(session: Session, address: str) -> Subscriber | None:
    """The reader of this address, whatever its capitals (the lookup is by the address's
    hash, as every other one is); None for no reader or no address."""
    try:
        clean = clean_email(address)
    except InvalidInput:
        clean = address.strip()
        if "@" not in clean or len(clean) > 320:
            return None
    return subscriptions.find_by_email(session, clean)


def get(session: Session, subscriber_id: int) -> Subscriber | None:
    return session.get(Subscriber, subscriber_id)


def record(session: Session, sub: Subscriber) -> Record:
    """Everything the admin shows about `sub`: the address's whole consent log (earlier,
    erased subscriptions of it included, as the export has it), oldest first; the
    digests of every edition, newest first; the bounces, newest first."""
    log = list(session.scalars(
        select(ConsentEvent).where(ConsentEvent.email_hash == sub.email_hash).order_by(ConsentEvent.at, ConsentEvent.id)))
    digests = [
        DigestMail(row.edition_id, row.created_at, row.status, row.attempts, row.sent_at, row.last_error)
        for row in session.execute(
            select(Delivery.edition_id, Edition.created_at, Delivery.status, Delivery.attempts, Delivery.sent_at,
                   Delivery.last_error)
            .join(Edition, Edition.id == Delivery.edition_id)
            .where(Delivery.subscriber_id == sub.id)
            .order_by(Delivery.edition_id.desc()))
    ]
    bounces = list(session.scalars(
        select(BounceEvent).where(BounceEvent.subscriber_id == sub.id).order_by(BounceEvent.at.desc(), BounceEvent.id.desc())))
    entry = session.get(Suppression, sub.email_hash)
    return Record(sub, log, digests, bounces, entry.reason if entry is not None else None)
