"""Transactional mail through the outbox: a row written with the change that causes it,
then delivered by id, exactly once per success, with retries and a give-up time.

A delivery is claimed with a lease before anything is sent, and marked sent only after the
relay accepted it: a crash in between leaves the row claimed until the lease expires, when
the reconciler queues it again (at most that one in-flight message is doubled).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.subscribers.consent import LANGUAGES
from newsletter.db import Database
from newsletter.mail.dkim import signer_for
from newsletter.mail.compose import MailBuildError, Renderer, ascii_address, build_message, list_headers, verp_sender
from newsletter.models import (
    HARD_SUPPRESSIONS,
    ConsentEvent,
    OperatorAlarm,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from newsletter.tokens import tokens_for
from newsletter.mail.transport import (
    BounceError,
    PolicyError,
    SmtpTransport,
    TemporaryError,
    UnsendableError,
    redact_addresses,
)

log = logging.getLogger(__name__)

CONFIRM = "confirm"
WELCOME = "welcome"
MANAGE = "manage"
# A fresh, expiring link to a reader's data export and erasure (STANDARDS 14, 26).
DATA = "data"
# A mail_build alarm is raised at most once in this long (see _send).
ALARM_QUIET = timedelta(minutes=10)

# Everyone we hold data about and may mail may ask for it (Art. 15 DSGVO); bounced and
# complained addresses are not mailed at all.
DATA_STATES = frozenset({SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED, SubscriberStatus.UNSUBSCRIBED})

# Which subscriber states each kind of mail may still go to when its turn comes.
_ALLOWED = {
    CONFIRM: {SubscriberStatus.PENDING},
    WELCOME: {SubscriberStatus.CONFIRMED},
    MANAGE: {SubscriberStatus.CONFIRMED, SubscriberStatus.UNSUBSCRIBED},
    DATA: DATA_STATES,
}


def add_message(session: Session, subscriber: Subscriber, kind: str) -> OutboxMessage:
    """Add an outbox row for `subscriber` to the session; queue its id after the commit."""
    message = OutboxMessage(kind=kind, subscriber_id=subscriber.id, queued_at=utcnow())
    session.add(message)
    session.flush()
    return message


@dataclass(frozen=True)
class Outcome:
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
) -> Outcome:
    """Send outbox message `message_id` if it is due. Safe to call any number of times."""
    with database.session_scope() as session:
        if not claim(session, message_id, settings.send_lease_seconds):
            return Outcome("skipped", "not due or already taken")

    renderer = renderer or Renderer(settings)
    own_transport = transport is None
    transport = transport or SmtpTransport(settings)
    try:
        outcome = _send(database, settings, message_id, transport, renderer)
    finally:
        if own_transport:
            transport.close()
    return outcome


def _send(
    database: Database, settings: Settings, message_id: int, transport: SmtpTransport, renderer: Renderer
) -> Outcome:
    with database.session_scope() as session:
        message = session.get(OutboxMessage, message_id)
        if message is None:
            return Outcome("skipped", "gone")
        subscriber = session.get(Subscriber, message.subscriber_id)
        if subscriber is None or subscriber.status not in _ALLOWED.get(message.kind, set()):
            state = subscriber.status if subscriber else "erased"
            _finish(session, message_id, OutboxStatus.CANCELLED, f"not needed any more: subscriber {state}")
            return Outcome(OutboxStatus.CANCELLED)
        suppressed = session.get(Suppression, subscriber.email_hash)
        if suppressed is not None and suppressed.reason in HARD_SUPPRESSIONS:
            _finish(session, message_id, OutboxStatus.CANCELLED, f"suppressed: {suppressed.reason}")
            return Outcome(OutboxStatus.CANCELLED)
        kind, attempts, created_at = message.kind, message.attempts, message.created_at
        email, language, public_id = subscriber.email, subscriber.language, subscriber.public_id
        status, generation = subscriber.status, subscriber.link_generation
        if kind == CONFIRM:
            language = _requested_language(message.payload, language)

    try:
        utf8 = transport.smtputf8
        # The ASCII form wherever there is one (an IDN domain as A-labels): a later hop
        # may lack SMTPUTF8; only a local part that is not ASCII needs it.
        recipient = ascii_address(email) or (email if utf8 else None)
        if recipient is None:
            raise UnsendableError(0, "the address needs SMTPUTF8 and the relay does not offer it")
        # Raw UTF-8 headers only in an SMTPUTF8 transaction: every other mail keeps its
        # Subject as RFC 2047 encoded-words (STANDARDS 21), whatever the relay offers.
        needs_utf8 = utf8 and not recipient.isascii()
        try:
            composed, headers = _compose(settings, renderer, kind, language, public_id, status, message_id, generation)
            data, rfc_message_id = build_message(settings, composed, to=recipient, headers=headers, utf8=needs_utf8)
            signer = signer_for(settings)
            if signer is not None:
                data = signer.sign(data)  # the welcome mail carries the List-* headers too (STANDARDS 7)
        except Exception as exc:  # noqa: BLE001 - any fault of ours in building it: see MailBuildError
            raise MailBuildError(f"{kind} mail {message_id}: {type(exc).__name__}: {exc}") from exc
        transport.send(verp_sender(settings, public_id), recipient, data, utf8=needs_utf8)
    except MailBuildError as exc:
        log.exception("could not build a mail (operator action needed)")
        with database.session_scope() as session:
            # One alarm for a burst: a missing DKIM key fails every mail, each on every try.
            recent = session.scalar(select(OperatorAlarm.id).where(
                OperatorAlarm.kind == MailBuildError.ALARM, OperatorAlarm.at > utcnow() - ALARM_QUIET).limit(1))
            if recent is None:
                # Redacted: an exception of our own may quote the address (STANDARDS 33).
                session.add(OperatorAlarm(kind=MailBuildError.ALARM, message=redact_addresses(str(exc))[:1000]))
        return _retry_or_give_up(database, settings, message_id, attempts, created_at, str(exc))
    except TemporaryError as exc:
        return _retry_or_give_up(database, settings, message_id, attempts, created_at, str(exc))
    except PolicyError as exc:
        # Named by its outbox id, never by the reader (the reply is redacted by the transport).
        where = f"outbox {message_id} ({kind} mail)"
        log.error("%s: relay refuses our mail (operator action needed): %s", where, exc)
        with database.session_scope() as session:
            session.add(OperatorAlarm(kind="smtp_policy", message=f"{where}: {exc}"[:1000]))
        return _retry_or_give_up(database, settings, message_id, attempts, created_at, str(exc))
    except BounceError as exc:
        with database.session_scope() as session:
            _finish(session, message_id, OutboxStatus.BOUNCED, str(exc))
            mark_bounced(session, public_id, str(exc))
        return Outcome(OutboxStatus.BOUNCED, str(exc))
    except UnsendableError as exc:
        with database.session_scope() as session:
            _finish(session, message_id, OutboxStatus.FAILED, str(exc))
        return Outcome(OutboxStatus.FAILED, str(exc))

    with database.session_scope() as session:
        _finish(session, message_id, OutboxStatus.SENT, None, rfc_message_id)
        if kind == CONFIRM:
            sub = session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))
            if sub is not None:
                sent_at = utcnow()
                sub.confirmation_sent_at = sent_at  # when it left, not when it was asked for
                session.add(
                    ConsentEvent(
                        subscriber_public_id=public_id,
                        email_hash=sub.email_hash,
                        event="confirmation_sent",
                        at=sent_at,
                        channel="email",
                        detail={"message_id": rfc_message_id},
                    )
                )
    return Outcome(OutboxStatus.SENT)


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
        headers.update(list_headers(settings, unsubscribe_url))
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
    database: Database, settings: Settings, message_id: int, attempts: int, created_at: object, error: str
) -> Outcome:
    now = utcnow()
    delay = settings.retry_base_seconds * (2 ** max(attempts - 1, 0))
    give_up_at = created_at + timedelta(seconds=settings.retry_give_up_seconds)  # type: ignore[operator]
    with database.session_scope() as session:
        if now + timedelta(seconds=delay) > give_up_at:
            _finish(session, message_id, OutboxStatus.FAILED, f"gave up after {attempts} tries: {error}")
            return Outcome(OutboxStatus.FAILED, error)
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
    return Outcome("retry", error, retry_in=delay)


def mark_bounced(session: Session, public_id: str, detail: str) -> None:
    """A permanent failure for this subscriber's address: stop mailing it for good."""
    sub = session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))
    if sub is None:
        return
    sub.status = SubscriberStatus.BOUNCED
    if session.get(Suppression, sub.email_hash) is None:
        session.add(Suppression(email_hash=sub.email_hash, reason="bounced"))
    session.add(
        ConsentEvent(
            subscriber_public_id=public_id, email_hash=sub.email_hash, event="bounced",
            channel="smtp", detail={"reply": detail[:300]},
        )
    )


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
