"""The suppression list as operators see and steer it: the entries (hashes only: an entry
outlives the address it stands for), finding one by address or hash prefix, and lifting one
where the law allows.

What a lift may do depends on why the address is suppressed:
- `complained`: never. The reader called our mail spam; mailing them again is what the
  complaint forbids (and what gets a sender blocked), whatever an operator believes.
- `bounced`: only with the operator's explicit word that the mailbox accepts mail again (a
  misread bounce, a mailbox that was full). The reader never withdrew consent, so a reader
  who had confirmed is confirmed again; one whose confirmation mail bounced is pending
  again and gets nothing unless they sign up once more (double opt-in, STANDARDS 9).
- `unsubscribed`, `erased`: the entry only keeps an import from adding the address back by
  accident (a signup of the person is never blocked by it). Lifting it changes no reader.

Every lift is in the audit log (by hash, STANDARDS 33) and, when a reader's row is still
here, in their consent log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.models import (
    ConsentEvent,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
    email_hash,
    utcnow,
)
from newsletter.operators import audit

PAGE_SIZE = 50
PREFIX_LENGTH = 12  # what the admin shows of a hash: enough to tell entries apart
_HEX = re.compile(r"[0-9a-f]{4,64}")


class LiftRefused(ValueError):
    """The entry may not be lifted (a complaint), or not without a confirmation that was
    not given (a bounce). str() says why in one sentence."""

    def __init__(self, message: str, *, needs_confirmation: bool = False) -> None:
        super().__init__(message)
        self.needs_confirmation = needs_confirmation


@dataclass(frozen=True)
class Page:
    """One page of the list, newest entry first."""

    entries: list[Suppression]
    page: int
    pages: int
    total: int


@dataclass(frozen=True)
class Lifted:
    """What a lift did: the entry's reason, and the state a reader's row went back to
    (None when there was no row, or it did not change)."""

    reason: str
    restored: str | None


def search_key(query: str) -> tuple[str, str] | None:
    """("hash", full hash) for an address, ("prefix", hex) for a hash or its beginning,
    None for anything else. An address is hashed as every stored hash is (case-insensitive)."""
    query = query.strip()
    if "@" in query:
        return "hash", email_hash(query)
    lowered = query.lower()
    if _HEX.fullmatch(lowered):
        return ("hash", lowered) if len(lowered) == 64 else ("prefix", lowered)
    return None


def page(session: Session, number: int = 1, query: str = "", size: int = PAGE_SIZE) -> Page:
    """The `number`th page (from 1) of the list, newest first, limited to the entries
    matching `query` (an address or a hash prefix; nothing matches anything else)."""
    statement = select(Suppression)
    if query.strip():
        key = search_key(query)
        if key is None:
            return Page([], 1, 1, 0)
        kind, value = key
        statement = statement.where(
            Suppression.email_hash == value if kind == "hash" else Suppression.email_hash.startswith(value))
    total = int(session.scalar(select(func.count()).select_from(statement.subquery())) or 0)
    pages = max(1, -(-total // size))
    number = min(max(1, number), pages)
    entries = list(session.scalars(
        statement.order_by(Suppression.created_at.desc(), Suppression.email_hash).offset((number - 1) * size).limit(size)))
    return Page(entries, number, pages, total)


def get(session: Session, hashed: str) -> Suppression | None:
    """The entry of this full hash, or None."""
    hashed = hashed.strip().lower()
    if not _HEX.fullmatch(hashed) or len(hashed) != 64:
        return None
    return session.get(Suppression, hashed)


def check_liftable(entry: Suppression, bounce_confirmed: bool) -> None:
    """LiftRefused unless the law and the operator's confirmation allow lifting `entry`."""
    if entry.reason == SuppressionReason.COMPLAINED:
        raise LiftRefused("This address complained about our mail (marked it as spam); its suppression is "
                          "never lifted.")
    if entry.reason == SuppressionReason.BOUNCED and not bounce_confirmed:
        raise LiftRefused("This address bounced: confirm that its mailbox accepts mail again before lifting.",
                          needs_confirmation=True)


def lift(session: Session, hashed: str, *, actor: str, ip: str | None, bounce_confirmed: bool = False,
         now: datetime | None = None) -> Lifted:
    """Delete the suppression entry of `hashed` where allowed (see the module's rules), put
    a bounced reader back, and record it: an audit event for `actor`, and a consent event
    when the reader's row is here. LookupError when there is no such entry; LiftRefused
    when it may not be lifted. The caller commits."""
    entry = get(session, hashed)
    if entry is None:
        raise LookupError("no suppression entry with this hash")
    check_liftable(entry, bounce_confirmed)
    now = now or utcnow()
    reason = entry.reason
    sub = session.scalar(select(Subscriber).where(Subscriber.email_hash == entry.email_hash))
    restored = None
    if sub is not None and reason == SuppressionReason.BOUNCED and sub.status == SubscriberStatus.BOUNCED:
        restored = SubscriberStatus.CONFIRMED if sub.confirmed_at is not None else SubscriberStatus.PENDING
        sub.status = restored
        if restored == SubscriberStatus.PENDING:
            sub.pending_since = now  # the purge of unconfirmed signups counts from here
    if sub is not None:
        detail: dict[str, object] = {"reason": reason}
        if restored is not None:
            detail["status"] = restored
        session.add(ConsentEvent(subscriber_public_id=sub.public_id, email_hash=sub.email_hash,
                                 event="suppression_lifted", at=now, channel="admin", detail=detail))
    session.delete(entry)
    audit.record(session, actor, "suppression.lift", ip=ip,
                 detail={"hash": entry.email_hash, "reason": reason, "restored": restored})
    session.flush()
    return Lifted(reason, restored)
