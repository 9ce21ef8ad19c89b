"""What a mail returned to the bounce mailbox does to its reader: a DSN bounces them (at
once for 5.x.x; soft bounces and policy refusals only when they repeat on editions in a
row), an ARF report suppresses them as a complaint, a mail to their List-Unsubscribe
mailto: address unsubscribes them, anything else (auto-replies among them) is ignored.

The reader is found by our VERP address first (bounces+TAG@domain: where the DSN was
delivered, or the returned original's envelope sender), then by the original's Message-ID
(transactional mails keep theirs), then by the failed address the report names. A message
is acted on once: its SHA-256 is recorded with the verdict in the same transaction.
"""

from __future__ import annotations

import hashlib
import logging
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.bounces.reports import Report, ReportKind, read_report
from newsletter.config import Settings
from newsletter.db import Database
from newsletter.mail.compose import tag_of
from newsletter.models import (
    BounceEvent,
    BounceKind,
    Delivery,
    DeliveryStatus,
    Edition,
    OutboxMessage,
    ReturnedMail,
    Subscriber,
    SubscriberStatus,
    email_hash,
)
from newsletter.subscribers import subscriptions
from newsletter.tokens import MAX_ROW_ID, Tokens, tokens_for

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    """What came of one returned message (the `bounces process` counts)."""

    BOUNCED = "bounced"
    SOFT_BOUNCED = "soft_bounced"
    POLICY_BOUNCED = "policy_bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    IGNORED = "ignored"
    ALREADY = "already"  # processed before: nothing changes


_BOUNCE_KINDS = {
    ReportKind.HARD: (BounceKind.HARD, Verdict.BOUNCED),
    ReportKind.SOFT: (BounceKind.SOFT, Verdict.SOFT_BOUNCED),
    ReportKind.POLICY: (BounceKind.POLICY, Verdict.POLICY_BOUNCED),
    ReportKind.COMPLAINT: (BounceKind.COMPLAINT, Verdict.COMPLAINED),
}


def process_message(database: Database, settings: Settings, raw: bytes) -> Verdict:
    """Act on one returned message and record that it was. Raises only the database's errors."""
    digest = hashlib.sha256(raw).hexdigest()
    with database.session_scope() as session:
        if session.get(ReturnedMail, digest) is not None:
            return Verdict.ALREADY
    report = read_report(raw)
    try:
        with database.session_scope() as session:
            verdict = _act(session, settings, tokens_for(settings), report)
            session.add(ReturnedMail(digest=digest, verdict=verdict))
    except IntegrityError:
        with database.session_scope() as session:
            if session.get(ReturnedMail, digest) is None:
                raise
        # Another process recorded the same message meanwhile; its transaction acted on it.
        return Verdict.ALREADY
    return verdict


def _act(session: Session, settings: Settings, tokens: Tokens, report: Report) -> Verdict:
    tags = [tag for tag in (tag_of(settings, a) for a in report.addressed_to) if tag]
    if report.kind not in _BOUNCE_KINDS:
        # Whatever arrives at a reader's mailto: address asks to leave (RFC 2369): a DSN
        # arrives at the VERP address, never there, and auto-replies answer the sender.
        for tag in tags:
            public_id = tokens.mailto_public_id(tag)
            if public_id is None:
                continue
            reader = _by_public_id(session, public_id)
            if reader is None or not tokens.mailto_valid(reader.public_id, tag):
                log.warning("a mail to an unsubscribe address with a tag that is not ours: ignored")
                return Verdict.IGNORED
            changed = subscriptions.unsubscribe(
                session, reader, subscriptions.Origin(channel="email"), reason="mailto")
            if changed:
                session.add(BounceEvent(subscriber_id=reader.id, kind=BounceKind.UNSUBSCRIBE))
            return Verdict.UNSUBSCRIBED
        return Verdict.IGNORED
    if report.original_envelope_from:
        tags.append(tag_of(settings, report.original_envelope_from) or "")
    reader, edition_id = _reader_of(session, tokens, tags, report)
    if reader is None:
        log.info("a %s report for no reader of ours: ignored", report.kind)
        return Verdict.IGNORED
    kind, verdict = _BOUNCE_KINDS[report.kind]
    detail = report.detail[:300]
    session.add(BounceEvent(subscriber_id=reader.id, edition_id=edition_id, kind=kind,
                            status=report.status[:16], detail=detail))
    session.flush()
    if kind is BounceKind.COMPLAINT:
        subscriptions.mark_complained(session, reader, edition_id)
    elif kind is BounceKind.HARD:
        _bounced(session, reader, edition_id, report.status, detail, "dsn")
    else:
        limit = settings.soft_bounce_limit if kind is BounceKind.SOFT else settings.policy_bounce_limit
        subscriptions.record_repeated_bounce(session, reader, kind, edition_id, limit, report.status, detail)
    return verdict


def _bounced(session: Session, reader: Subscriber, edition_id: int | None, status: str, detail: str,
             source: str) -> None:
    if edition_id is not None:
        # The digest counted as sent went nowhere: the edition's figures say so.
        session.execute(
            update(Delivery)
            .where(Delivery.edition_id == edition_id, Delivery.subscriber_id == reader.id,
                   Delivery.status == DeliveryStatus.SENT)
            .values(status=DeliveryStatus.BOUNCED, last_error=f"{status} {detail}".strip()[:500])
        )
    if reader.status != SubscriberStatus.BOUNCED:
        subscriptions.mark_bounced(session, reader.public_id, f"{status} {detail}".strip(), source=source,
                                   edition_id=edition_id)


def _reader_of(session: Session, tokens: Tokens, tags: list[str], report: Report) -> tuple[Subscriber | None, int | None]:
    """The reader a report is about and the edition, when it names one."""
    for tag in tags:
        if not tag or tokens.mailto_public_id(tag) is not None:
            continue
        public_id, _, edition = tag.partition(".")
        reader = _by_public_id(session, public_id)
        if reader is not None:
            return reader, _edition_id(session, edition)
    if report.original_message_id:
        subscriber_id = session.scalar(
            select(OutboxMessage.subscriber_id).where(OutboxMessage.message_id == report.original_message_id[:200]))
        if subscriber_id is not None:
            return session.get(Subscriber, subscriber_id), None
    for address in report.recipients:
        reader = session.scalar(select(Subscriber).where(Subscriber.email_hash == email_hash(address)))
        if reader is not None:
            return reader, None
    return None, None


def _by_public_id(session: Session, public_id: str) -> Subscriber | None:
    if not public_id or len(public_id) > 32:
        return None
    reader = subscriptions.find(session, public_id)
    if reader is None:
        # Some hops lower-case the local part; 128 random bits stay unique without case.
        matches = session.scalars(
            select(Subscriber).where(func.lower(Subscriber.public_id) == public_id.lower()).limit(2)).all()
        reader = matches[0] if len(matches) == 1 else None
    return reader


def _edition_id(session: Session, text: str) -> int | None:
    """The edition a VERP tag names, if it exists (a made-up tag may name any number)."""
    if not (text.isdigit() and 0 < int(text) <= MAX_ROW_ID):
        return None
    return session.scalar(select(Edition.id).where(Edition.id == int(text)))
