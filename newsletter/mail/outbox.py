"""Transactional mail through the outbox: a row written with the change that causes it,
then delivered by id, exactly once per success, with retries and a give-up time.

A delivery is claimed with a lease before anything is sent, and marked sent only after the
relay accepted it: a crash in between leaves the row claimed until the lease expires, when
the reconciler queues it again (at most that one in-flight message is doubled).

The mail itself goes through the delivery step every mail takes (mail/delivery.py); this
module composes it, keeps the row's bookkeeping (claim, retry, finish) and hands what the
outcome means for the reader to the subscriber lifecycle. The rows are written by the
lifecycle (subscriptions.add_outbox_message), their kinds are models.OutboxKind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.subscribers import subscriptions
from newsletter.subscribers.consent import LANGUAGES
from newsletter.subscribers.subscriptions import DATA_STATES
from newsletter.db import Database
from newsletter.mail import delivery
from newsletter.mail.delivery import Kind
from newsletter.mail.dkim import signer_for
from newsletter.mail.compose import Renderer, build_message, list_headers, mailto_address, verp_sender
from newsletter.models import (
    HARD_SUPPRESSIONS,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from newsletter.tokens import tokens_for
from newsletter.mail.transport import SmtpTransport

log = logging.getLogger(__name__)

CONFIRM = OutboxKind.CONFIRM
WELCOME = OutboxKind.WELCOME
MANAGE = OutboxKind.MANAGE
DATA = OutboxKind.DATA
# A mail_build alarm is raised at most once in this long (see _send).
ALARM_QUIET = timedelta(minutes=10)

# Which subscriber states each kind of mail may still go to when its turn comes.
_ALLOWED = {
    CONFIRM: {SubscriberStatus.PENDING},
    WELCOME: {SubscriberStatus.CONFIRMED},
    MANAGE: {SubscriberStatus.CONFIRMED, SubscriberStatus.UNSUBSCRIBED},
    DATA: DATA_STATES,
}


@dataclass(frozen=True)
class SendResult:
    """What `deliver` did with a message: its row's status (or skipped, retry), why, and
    for a retry the seconds until it is due."""

    status: str
    detail: str = ""
    retry_in: float | None = None


def claim(session: Session, message_id: int, lease_seconds: float) -> bool:
    """Take the message for this worker if it is due or its previous lease expired."""
    now = utcnow()
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            or_(
                and_(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.next_attempt_at <= now),
                and_(OutboxMessage.status == OutboxStatus.SENDING, OutboxMessage.lease_until < now),
            ),
        )
        .values(
            status=OutboxStatus.SENDING,
            lease_until=now + timedelta(seconds=lease_seconds),
            attempts=OutboxMessage.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def deliver(
    database: Database,
    settings: Settings,
    message_id: int,
    transport: SmtpTransport | None = None,
    renderer: Renderer | None = None,
) -> SendResult:
    """Send outbox message `message_id` if it is due. Safe to call any number of times."""
    with database.session_scope() as session:
        if not claim(session, message_id, settings.send_lease_seconds):
            return SendResult("skipped", "not due or already taken")

    renderer = renderer or Renderer(settings)
    own_transport = transport is None
    transport = transport or SmtpTransport(settings)
    try:
        result = _send(database, settings, message_id, transport, renderer)
    finally:
        if own_transport:
            transport.close()
    return result


def _send(
    database: Database, settings: Settings, message_id: int, transport: SmtpTransport, renderer: Renderer
) -> SendResult:
    with database.session_scope() as session:
        message = session.get(OutboxMessage, message_id)
        if message is None:
            return SendResult("skipped", "gone")
        subscriber = session.get(Subscriber, message.subscriber_id)
        if subscriber is None or subscriber.status not in _ALLOWED.get(message.kind, set()):
            state = subscriber.status if subscriber else "erased"
            _finish(session, message_id, OutboxStatus.CANCELLED, f"not needed any more: subscriber {state}")
            return SendResult(OutboxStatus.CANCELLED)
        suppressed = session.get(Suppression, subscriber.email_hash)
        if suppressed is not None and suppressed.reason in HARD_SUPPRESSIONS:
            _finish(session, message_id, OutboxStatus.CANCELLED, f"suppressed: {suppressed.reason}")
            return SendResult(OutboxStatus.CANCELLED)
        kind, attempts, created_at = message.kind, message.attempts, message.created_at
        email, language, public_id = subscriber.email, subscriber.language, subscriber.public_id
        status, generation = subscriber.status, subscriber.link_generation
        if kind == CONFIRM:
            language = _requested_language(message.payload, language)

    def build(recipient: str, utf8: bool) -> tuple[bytes, str]:
        composed, headers = _compose(settings, renderer, kind, language, public_id, status, message_id, generation)
        data, rfc_message_id = build_message(settings, composed, to=recipient, headers=headers, utf8=utf8)
        signer = signer_for(settings)
        if signer is not None:
            data = signer.sign(data)  # the welcome mail carries the List-* headers too (STANDARDS 7)
        return data, rfc_message_id

    outcome = delivery.send(transport, verp_sender(settings, tokens_for(settings).verp_tag(public_id)), email, build,
                            what=f"{kind} mail {message_id}")
    if outcome.kind == Kind.SENT:
        with database.session_scope() as session:
            _finish(session, message_id, OutboxStatus.SENT, None, outcome.message_id)
            if kind == CONFIRM:
                subscriptions.confirmation_sent(session, public_id, outcome.message_id)
        return SendResult(OutboxStatus.SENT)
    if outcome.kind == Kind.BUILD:
        log.error("could not build a mail (operator action needed)", exc_info=outcome.error)
        with database.session_scope() as session:
            # One alarm for a burst: a missing DKIM key fails every mail, each on every try.
            delivery.build_alarm(session.connection(), outcome, quiet=ALARM_QUIET)
    elif outcome.kind == Kind.POLICY:
        with database.session_scope() as session:
            # Named by its outbox id, never by the reader (the reply is redacted by the transport).
            delivery.policy_alarm(session.connection(), f"outbox {message_id} ({kind} mail)", outcome)
    elif outcome.kind == Kind.BOUNCED:
        with database.session_scope() as session:
            _finish(session, message_id, OutboxStatus.BOUNCED, outcome.detail)
            subscriptions.mark_bounced(session, public_id, outcome.detail)
        return SendResult(OutboxStatus.BOUNCED, outcome.detail)
    elif outcome.kind == Kind.UNSENDABLE:
        with database.session_scope() as session:
            _finish(session, message_id, OutboxStatus.FAILED, outcome.detail)
        return SendResult(OutboxStatus.FAILED, outcome.detail)
    return _retry_or_give_up(database, settings, message_id, attempts, created_at, outcome.detail)


def _requested_language(payload: object, default: str) -> str:
    # A signup for a known address asks in its own language: its confirmation mail is
    # read by whoever asked, before anything on the row changes.
    requested = payload.get("language") if isinstance(payload, dict) else None
    return requested if requested in LANGUAGES else default


def _compose(
    settings: Settings, renderer: Renderer, kind: str, language: str, public_id: str, status: str,
    message_id: int | None = None, generation: int = 0,
) -> tuple[object, dict[str, str]]:
    """A mail of `kind` for the subscriber `public_id`; its preferences and data links name
    the row's link `generation`, its unsubscribe link none (every one ever mailed works)."""
    tokens = tokens_for(settings)
    # Gmail's feedback loop reports complaints per Feedback-ID: one per kind of mail.
    headers = {"Feedback-ID": f"{kind}:transactional:newsletter:{settings.mail_domain}"}
    if kind == CONFIRM:
        # The link names this mail: clicking it confirms what was asked for with it.
        confirm_url = settings.url(f"/confirm/{tokens.confirm(public_id, message_id)}")
        composed = renderer.render(
            "confirm", language, confirm_url=confirm_url,
            max_age_hours=int(settings.confirm_max_age_hours),
        )
        return composed, headers
    # Timed from when the mail is built, so it works as long as it says from its arrival.
    data = {"data_url": settings.url(f"/data/{tokens.data(public_id, generation)}"),
            "max_age_minutes": int(settings.data_link_max_age_minutes)} if kind in (DATA, MANAGE) else {}
    if kind == DATA:
        # Only the data link, and no list headers: it goes to pending and former readers too.
        return renderer.render(DATA, language, **data), headers
    unsubscribe_url = settings.url(f"/unsubscribe/{tokens.unsubscribe(public_id)}")
    preferences_url = settings.url(f"/preferences/{tokens.preferences(public_id, generation)}")
    if status == SubscriberStatus.CONFIRMED:
        mailto = mailto_address(settings, tokens.mailto_unsubscribe(public_id))
        headers.update(list_headers(settings, unsubscribe_url, mailto))
    composed = renderer.render(
        kind, language, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url,
        subscribed=status == SubscriberStatus.CONFIRMED, **data,
    )
    return composed, headers


def _finish(
    session: Session, message_id: int, status: str, error: str | None, rfc_message_id: str | None = None
) -> None:
    values: dict[str, object] = {"status": status, "lease_until": None, "last_error": error and error[:500]}
    if status == OutboxStatus.SENT:
        values.update(sent_at=utcnow(), message_id=rfc_message_id)
    session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id).values(**values))


def _retry_or_give_up(
    database: Database, settings: Settings, message_id: int, attempts: int, created_at: datetime, error: str
) -> SendResult:
    now = utcnow()
    delay = delivery.retry_delay(settings, attempts, created_at, now)
    with database.session_scope() as session:
        if delay is None:
            _finish(session, message_id, OutboxStatus.FAILED, f"gave up after {attempts} tries: {error}")
            return SendResult(OutboxStatus.FAILED, error)
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id)
            .values(
                status=OutboxStatus.PENDING,
                lease_until=None,
                next_attempt_at=now + timedelta(seconds=delay),
                queued_at=now,
                last_error=error[:500],
            )
        )
    log.warning("outbox %s: temporary failure, retry in %.0f s: %s", message_id, delay, error)
    return SendResult("retry", error, retry_in=delay)


def due_for_requeue(session: Session, grace_seconds: float) -> list[int]:
    """Ids of messages the queue may have lost: due and not queued recently, or whose lease
    ran out. Marks them queued now so the next reconcile does not repeat them at once."""
    now = utcnow()
    stale = now - timedelta(seconds=grace_seconds)
    ids = list(
        session.scalars(
            select(OutboxMessage.id).where(
                or_(
                    and_(
                        OutboxMessage.status == OutboxStatus.PENDING,
                        OutboxMessage.next_attempt_at <= now,
                        or_(OutboxMessage.queued_at.is_(None), OutboxMessage.queued_at <= stale),
                    ),
                    and_(OutboxMessage.status == OutboxStatus.SENDING, OutboxMessage.lease_until < now),
                )
            ).order_by(OutboxMessage.id).limit(10_000)
        )
    )
    if ids:
        session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(queued_at=now))
    return ids
