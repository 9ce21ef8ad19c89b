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
    OperatorAlarm,
    OutboxMessage,
    ReturnedMail,
    Subscriber,
    SubscriberStatus,
    email_hash,
)
from newsletter.mail.delivery import POLICY_ALARM
from newsletter.mail.transport import redact_addresses
from newsletter.subscribers import subscriptions
from newsletter.tokens import Tokens, tokens_for

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


# Enhanced status codes by which a receiver refuses the sender, not the recipient: SPF,
# DKIM, DMARC, reverse DNS, message integrity (RFC 7372), and Microsoft's block lists.
SENDER_POLICY_CODES = frozenset({"5.7.7", "5.7.23", "5.7.24", "5.7.25", "5.7.26", "5.7.27"} | {
    f"5.7.{n}" for n in range(500, 800)})


def alarm(session: Session, report: Report) -> None:
    """The operator's alarm for a receiver refusing our mail (named by status, no reader)."""
    message = redact_addresses(f"a receiver refuses our mail: {report.status} {report.detail}")[:1000]
    log.error("bounce intake: %s (operator action needed)", message)
    session.add(OperatorAlarm(kind=POLICY_ALARM, message=message))


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
    tags = _tags(settings, report.addressed_to)
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
        tags += _tags(settings, (report.original_envelope_from,))
    if report.kind is ReportKind.POLICY and report.status in SENDER_POLICY_CODES:
        # The receiver refuses *us* (authentication, reputation): the operator's problem,
        # whichever reader's mail it returns; counting it against them would suppress a
        # whole provider's readers.
        alarm(session, report)
        return Verdict.IGNORED
    reader, edition_id, proven = _reader_of(session, tokens, tags, report)
    if reader is None:
        log.info("a %s report for no reader of ours: ignored", report.kind)
        return Verdict.IGNORED
    kind, verdict = _BOUNCE_KINDS[report.kind]
    detail = report.detail[:300]
    session.add(BounceEvent(subscriber_id=reader.id, edition_id=edition_id, kind=kind,
                            status=report.status[:16], detail=detail))
    session.flush()
    if not proven:
        # Named only by an address the report itself states: anyone can write such a mail,
        # so it stops the mail the way the reader could undo (an unsubscribe), never by a
        # suppression for good.
        if kind is BounceKind.SOFT:
            return verdict
        changed = subscriptions.unsubscribe(
            session, reader, subscriptions.Origin(channel="feedback_loop" if kind is BounceKind.COMPLAINT else "dsn"),
            reason=f"unverified_{kind}")
        return Verdict.UNSUBSCRIBED if changed else Verdict.IGNORED
    if kind is BounceKind.COMPLAINT:
        subscriptions.mark_complained(session, reader, edition_id)
    elif kind is BounceKind.HARD:
        _bounced(session, reader, edition_id, report.status, detail, "dsn")
    else:
        limit = settings.soft_bounce_limit if kind is BounceKind.SOFT else settings.policy_bounce_limit
        subscriptions.record_repeated_bounce(session, reader, kind, edition_id, limit, report.status, detail)
    return verdict


# A report names a few addresses of its own (Delivered-To, X-Original-To, To); a mail with
# thousands is nobody's bounce, and each tag costs a lookup.
MAX_TAGS = 5


def _tags(settings: Settings, addresses: tuple[str, ...] | list[str]) -> list[str]:
    tags: list[str] = []
    for address in addresses:
        tag = tag_of(settings, address)
        if tag and tag not in tags:
            tags.append(tag)
            if len(tags) == MAX_TAGS:
                break
    return tags


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


def _reader_of(
    session: Session, tokens: Tokens, tags: list[str], report: Report,
) -> tuple[Subscriber | None, int | None, bool]:
    """The reader a report is about, the edition when it names one, and whether it is
    proven to be theirs (a VERP tag we signed, or a Message-ID only their mail had)."""
    for tag in tags:
        parts = tokens.verp_parts(tag)
        if parts is None:
            continue
        public_id, edition_id = parts
        reader = _by_public_id(session, public_id)
        if reader is not None and tokens.verp_valid(reader.public_id, edition_id, tag):
            exists = edition_id is not None and session.get(Edition, edition_id) is not None
            return reader, edition_id if exists else None, True
        log.warning("a report to a VERP address with a tag that is not ours: not matched by it")
    if report.original_message_id:
        subscriber_id = session.scalar(
            select(OutboxMessage.subscriber_id).where(OutboxMessage.message_id == report.original_message_id[:200]))
        if subscriber_id is not None:
            return session.get(Subscriber, subscriber_id), None, True
    for address in report.recipients[:MAX_TAGS]:
        reader = session.scalar(select(Subscriber).where(Subscriber.email_hash == email_hash(address)))
        if reader is not None:
            return reader, None, False
    return None, None, False


def _by_public_id(session: Session, public_id: str) -> Subscriber | None:
    if not public_id or len(public_id) > 32:
        return None
    reader = subscriptions.find(session, public_id)
    if reader is None and public_id == public_id.lower():
        # Some hops lower-case the local part; 128 random bits stay unique without case.
        # (A scan of the readers: only for an id that has been lower-cased.)
        matches = session.scalars(
            select(Subscriber).where(func.lower(Subscriber.public_id) == public_id.lower()).limit(2)).all()
        reader = matches[0] if len(matches) == 1 else None
    return reader
