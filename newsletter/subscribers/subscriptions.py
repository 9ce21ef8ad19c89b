"""The subscriber lifecycle as explicit steps: signup, confirm, unsubscribe, preferences,
export, erase, purge. Each takes a Session, leaves committing to its caller, and returns
the outbox ids to queue once the caller has committed. What a mail's delivery means for
its reader (a bounce, a confirmation mail that left) is recorded here too, called by the
senders with the outcome."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, delete, func, literal_column, or_, select, update
from sqlalchemy.orm import Session

from newsletter.subscribers import consent
from newsletter.subscribers.mailbox import lock_mailbox, mailbox_hash
from newsletter.models import (
    HARD_SUPPRESSIONS,
    BounceEvent,
    ConfirmationMail,
    ConfirmResult,
    ConsentEvent,
    Delivery,
    DeliveryStatus,
    LinkMail,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
    email_hash,
    new_public_id,
    utcnow,
)
from newsletter.validation import FIELDS, InvalidInput, Preferences, clean_preferences

# STANDARDS 28: confirmation mails per mailbox (every +tag and dot spelling of one inbox),
# however often the form is sent: one a day, and three in a month.
CONFIRMATION_INTERVAL = timedelta(hours=24)
CONFIRMATION_WINDOW = timedelta(days=30)
CONFIRMATIONS_PER_WINDOW = 3
# Link mails asked for by whoever types an address into /manage or holds a preferences link
# (a forwarded digest opens the page with the data-link button), per mailbox like the
# confirmation mails: three a day in all, one per ten minutes, and from /manage one a day.
LINK_MAIL_WINDOW = timedelta(hours=24)
LINK_MAILS_PER_WINDOW = 3
LINK_MAIL_INTERVAL = timedelta(minutes=10)
# The settings link for a confirmed address (/manage, a signup of it) once a day per row.
MANAGE_LINK_INTERVAL = timedelta(hours=24)
# The consent proof (STANDARDS 11, 15): what shows consent given and withdrawn, kept after
# an erasure for its retention time. The rest of the log (preference changes, link
# requests, bounce replies) is about the person, not the consent, and goes with them.
PROOF_EVENTS = ("signup", "imported", "confirmation_sent", "confirmed", "unsubscribed", "complained", "erased")
# The unsubscribe page's optional question offers these; free text is not kept, so that
# the withdrawal record holds nothing a person typed about themselves.
UNSUBSCRIBE_REASONS = ("found_job", "too_many", "not_relevant", "other")
# Everyone we hold data about and may mail may ask for it (Art. 15 DSGVO); bounced and
# complained addresses are not mailed at all.
DATA_STATES = frozenset({SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED, SubscriberStatus.UNSUBSCRIBED})


@dataclass(frozen=True)
class Origin:
    """Where a request came from, for the consent record."""

    ip: str | None = None
    user_agent: str | None = None
    form_url: str | None = None
    channel: str = "web"


def find(session: Session, public_id: str) -> Subscriber | None:
    """The subscriber a token names, or None (erased, purged, never existed)."""
    return session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))


def find_by_email(session: Session, email: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.email_hash == email_hash(email)))


def _event(session: Session, sub: Subscriber, event: str, origin: Origin | None = None, **extra: Any) -> None:
    origin = origin or Origin()
    session.add(
        ConsentEvent(
            subscriber_public_id=sub.public_id,
            email_hash=sub.email_hash,
            event=event,
            at=extra.pop("at", None) or utcnow(),
            ip=origin.ip,
            user_agent=(origin.user_agent or "")[:500] or None,
            form_url=(origin.form_url or "")[:500] or None,
            channel=origin.channel,
            consent_version=extra.pop("consent_version", None),
            consent_text=extra.pop("consent_text", None),
            detail=extra or None,
        )
    )


def add_outbox_message(session: Session, sub: Subscriber, kind: OutboxKind) -> OutboxMessage:
    """Add an outbox row for `sub` to the session; queue its id after the commit."""
    message = OutboxMessage(kind=kind, subscriber_id=sub.id, queued_at=utcnow())
    session.add(message)
    session.flush()
    return message


def _hard_suppressed(session: Session, hashed: str) -> bool:
    entry = session.get(Suppression, hashed)
    return entry is not None and entry.reason in HARD_SUPPRESSIONS


def _due(last: datetime | None, interval: timedelta, now: datetime) -> bool:
    return last is None or last <= now - interval


# The signup's statements, built once: constructing a statement costs more than running
# it on this hot path (bench/signup.py); executions only bind parameters.
_SUBSCRIBERS, _EVENTS, _OUTBOX = Subscriber.__table__, ConsentEvent.__table__, OutboxMessage.__table__
_SUPPRESSIONS, _MAILS = Suppression.__table__, ConfirmationMail.__table__
# One row whatever exists: the address's suppression reason (or NULL), its mailbox's
# confirmation budget (the last mail, the mails of the window), and its subscriber's
# columns (NULLs when there is none): one statement for the lookup, not three.
_ONE_ROW = select(literal_column("1").label("one")).subquery("one_row")
_OF_MAILBOX = _MAILS.c.mailbox_hash == bindparam("mailbox")
_LOOKUP = (
    select(
        select(_SUPPRESSIONS.c.reason).where(_SUPPRESSIONS.c.email_hash == bindparam("hashed")).scalar_subquery().label("reason"),
        select(func.max(_MAILS.c.sent_at)).where(_OF_MAILBOX).scalar_subquery().label("last_mail"),
        select(func.count(_MAILS.c.id)).where(_OF_MAILBOX, _MAILS.c.sent_at > bindparam("window_start"))
        .scalar_subquery().label("mails_in_window"),
        _SUBSCRIBERS.c.id, _SUBSCRIBERS.c.status, _SUBSCRIBERS.c.manage_link_sent_at, _SUBSCRIBERS.c.public_id,
    )
    .select_from(_ONE_ROW.outerjoin(_SUBSCRIBERS, _SUBSCRIBERS.c.email_hash == bindparam("hashed")))
)
_INSERT_SUBSCRIBER = _SUBSCRIBERS.insert().returning(_SUBSCRIBERS.c.id)
_INSERT_EVENT = _EVENTS.insert()
_INSERT_OUTBOX = _OUTBOX.insert().returning(_OUTBOX.c.id)
_INSERT_MAIL = _MAILS.insert()


def signup(
    session: Session, email: str, prefs: Preferences, origin: Origin,
    consent_version: str = consent.CURRENT_VERSION, consent_language: str | None = None,
    list_name: str = consent.LIST_NAME, interval_days: int = consent.INTERVAL_DAYS,
) -> list[int]:
    """Record a signup request. What happens depends on the address's state; what the
    caller shows must not (STANDARDS 29). Returns outbox ids to queue after commit.
    The consent record holds the wording shown: `consent_version` in `consent_language`
    (default: the newsletter's language).

    The hot path of the signup form: one lookup, then four inserts for a new address.
    Preferences typed into an anonymous form change an existing row only through the
    confirmation mail they were sent with: they ride in its outbox row until its link is
    clicked (see `confirm`).
    """
    conn = session.connection()
    now = utcnow()
    hashed, mailbox = email_hash(email), mailbox_hash(email)
    window_start = now - CONFIRMATION_WINDOW
    lock_mailbox(conn, mailbox)  # the budget read here is written below: one signup at a time
    row = conn.execute(_LOOKUP, {"hashed": hashed, "mailbox": mailbox, "window_start": window_start}).one()
    if row.reason in HARD_SUPPRESSIONS or row.status in HARD_SUPPRESSIONS:
        return []
    if row.status == SubscriberStatus.CONFIRMED:
        return _remind(conn, row, now)
    # The budget is the mailbox's, kept apart from the row: it holds across every spelling
    # of the inbox and across an erasure (STANDARDS 28).
    due = _due(row.last_mail, CONFIRMATION_INTERVAL, now) and row.mails_in_window < CONFIRMATIONS_PER_WINDOW
    event = {
        "event": "signup", "at": now, "ip": origin.ip, "user_agent": (origin.user_agent or "")[:500] or None,
        "form_url": (origin.form_url or "")[:500] or None, "channel": origin.channel,
        "consent_version": consent_version, "consent_text": consent.consent_text(
            consent_language or prefs.language, consent_version, list_name=list_name, interval_days=interval_days),
        "email_hash": hashed, "detail": _mailed(due),
    }
    if row.id is None:
        public_id = new_public_id()
        subscriber_id = conn.execute(_INSERT_SUBSCRIBER, {
            "public_id": public_id, "email": email, "email_hash": hashed, **prefs.columns(),
            "status": SubscriberStatus.PENDING,
            "created_at": now, "pending_since": now, "confirmation_sent_at": now if due else None,
        }).scalar_one()
        conn.execute(_INSERT_EVENT, {**event, "subscriber_public_id": public_id})
        return [_queue_confirmation(conn, subscriber_id, mailbox, now)] if due else []
    # Pending, or unsubscribed and signing up again: double opt-in once more.
    changes = _back_to_pending(row.status, now)
    public_id = row.public_id
    if due:
        changes["confirmation_sent_at"] = now
    if changes:
        conn.execute(update(Subscriber).where(Subscriber.id == row.id).values(**changes))
    conn.execute(_INSERT_EVENT, {**event, "subscriber_public_id": public_id})
    return [_queue_confirmation(conn, row.id, mailbox, now, _requested(prefs))] if due else []


def _remind(conn: Connection, row: Any, now: datetime) -> list[int]:
    # Already subscribed: a reminder with the preferences link, not a second opt-in,
    # and no change to the preferences from an unauthenticated form.
    if not _due(row.manage_link_sent_at, CONFIRMATION_INTERVAL, now):
        return []
    conn.execute(update(Subscriber).where(Subscriber.id == row.id).values(manage_link_sent_at=now))
    return [_insert_outbox(conn, row.id, OutboxKind.MANAGE, now)]


def _back_to_pending(status: str, now: datetime) -> dict[str, object]:
    """The changes that start a new pending period; none for a row already pending (a
    repeat must neither keep it from the purge nor touch what its owner chose)."""
    if status == SubscriberStatus.PENDING:
        return {}
    # A new link generation: the preferences and data links mailed to the former
    # subscription must open nothing of this one, which nobody has confirmed yet. The
    # public_id stays: its unsubscribe links must still stop the mail (RFC 8058,
    # STANDARDS 2, 6), and the consent log stays under one id.
    return {"status": SubscriberStatus.PENDING, "pending_since": now,
            "link_generation": Subscriber.link_generation + 1}


def _requested(prefs: Preferences) -> dict[str, object]:
    return prefs.columns()


# Whether a signup asked for a confirmation mail: the ones that did are the proof of the
# double opt-in; a repeat within the day mailed nothing, proves nothing and goes with an
# erasure (with the IP and browser of whoever sent it).
_MAILED, _NOT_MAILED = {"confirmation_mail": True}, {"confirmation_mail": False}


def _mailed(due: bool) -> dict[str, bool]:
    return _MAILED if due else _NOT_MAILED


def _queue_confirmation(
    conn: Connection, subscriber_id: int, mailbox: str, now: datetime, requested: dict[str, str] | None = None
) -> int:
    conn.execute(_INSERT_MAIL, {"mailbox_hash": mailbox, "sent_at": now})
    return _insert_outbox(conn, subscriber_id, OutboxKind.CONFIRM, now, requested)


def _insert_outbox(
    conn: Connection, subscriber_id: int, kind: str, now: datetime, payload: dict[str, str] | None = None
) -> int:
    values: dict[str, object] = {
        "kind": kind, "subscriber_id": subscriber_id, "status": "pending", "attempts": 0, "created_at": now,
        "next_attempt_at": now, "queued_at": now,
    }
    if payload is not None:  # left out, not None: the JSON column would store a JSON null
        values["payload"] = payload
    return int(conn.execute(_INSERT_OUTBOX, values).scalar_one())


def confirm(
    session: Session, sub: Subscriber, origin: Origin, message_id: int | None = None
) -> tuple[ConfirmResult, list[int]]:
    """Confirm a pending subscriber: ('confirmed', ids), ('already', []) or ('invalid', []).
    `message_id` is the confirmation mail whose link was clicked: the preferences asked for
    with it take effect now, the owner of the address having confirmed them."""
    if sub.status == SubscriberStatus.CONFIRMED:
        return ConfirmResult.ALREADY, []
    if sub.status != SubscriberStatus.PENDING:
        return ConfirmResult.INVALID, []
    if _hard_suppressed(session, sub.email_hash):
        return ConfirmResult.INVALID, []
    requested = requested_preferences(session, sub, message_id)
    if requested is not None:
        update_preferences(session, sub, requested, origin)
    sub.status = SubscriberStatus.CONFIRMED
    sub.confirmed_at = utcnow()
    sub.unsubscribed_at = None
    session.execute(delete(Suppression).where(Suppression.email_hash == sub.email_hash))
    _event(session, sub, "confirmed", origin)
    return ConfirmResult.CONFIRMED, [add_outbox_message(session, sub, OutboxKind.WELCOME).id]


def requested_preferences(session: Session, sub: Subscriber, message_id: int | None) -> Preferences | None:
    """The preferences a signup asked for, carried by its confirmation mail `message_id`;
    None when that is no confirmation mail of `sub` or carries none (the first signup's
    are on the row already; a link mailed before links named their mail names none)."""
    if message_id is None:
        return None
    message = session.get(OutboxMessage, message_id)
    if message is None or message.kind != OutboxKind.CONFIRM or message.subscriber_id != sub.id:
        return None
    payload = message.payload
    if not isinstance(payload, dict):
        return None
    # Written by _requested from cleaned preferences; a mail queued before a field existed
    # lacks it and gets its default.
    try:
        return clean_preferences({name: payload.get(name) for name in FIELDS}, sub.language)
    except InvalidInput:
        return None


def unsubscribe(session: Session, sub: Subscriber, origin: Origin, reason: str | None = None) -> bool:
    """Stop all list mail to `sub`. True when this call changed something."""
    if sub.status not in (SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING):
        return False
    sub.status = SubscriberStatus.UNSUBSCRIBED
    sub.unsubscribed_at = utcnow()
    # Mail queued while subscribed (a welcome, a settings link with list headers) must not
    # arrive after the click (STANDARDS 6); a link asked for later is queued anew. A data
    # link asked for is no list mail: leaving the list must not take it away.
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.subscriber_id == sub.id, OutboxMessage.status == OutboxStatus.PENDING,
               OutboxMessage.kind != OutboxKind.DATA)
        .values(status=OutboxStatus.CANCELLED, last_error="not needed any more: subscriber unsubscribed")
    )
    if session.get(Suppression, sub.email_hash) is None:
        session.add(Suppression(email_hash=sub.email_hash, reason="unsubscribed"))
    extra = {"reason": reason} if reason else {}
    _event(session, sub, "unsubscribed", origin, **extra)
    return True


def update_preferences(session: Session, sub: Subscriber, prefs: Preferences, origin: Origin) -> bool:
    """Change the search and the language. True when anything changed."""
    old, new = Preferences.of(sub).columns(), prefs.columns()
    if old == new:
        return False
    for name, value in new.items():
        setattr(sub, name, value)
    _event(session, sub, "preferences_changed", origin, before=old, after=new)
    return True


# What /manage mails: a reader gets the settings and a data link; anyone else we hold data
# about only the data link (Art. 15 DSGVO). Bounced and complained addresses get nothing.
_LINK_MAIL = {
    SubscriberStatus.CONFIRMED: OutboxKind.MANAGE,
    SubscriberStatus.PENDING: OutboxKind.DATA,
    SubscriberStatus.UNSUBSCRIBED: OutboxKind.DATA,
}


_LINKS = LinkMail.__table__
_LINK_BUDGET = select(func.count(_LINKS.c.id), func.max(_LINKS.c.sent_at)).where(
    _LINKS.c.mailbox_hash == bindparam("mailbox"), _LINKS.c.sent_at > bindparam("window_start"))
_INSERT_LINK_MAIL = _LINKS.insert()


def _link_mail(conn: Connection, mailbox: str, now: datetime, from_manage: bool) -> bool:
    """Whether the mailbox may get one more link mail now, recorded as sent when it may.
    The caller holds the mailbox's lock. The records do not say how a mail was asked for,
    so /manage mails only into a day without any: one a day from /manage; the button adds
    the rest of the three, ten minutes apart."""
    count, last = conn.execute(_LINK_BUDGET, {"mailbox": mailbox, "window_start": now - LINK_MAIL_WINDOW}).one()
    if from_manage:
        due = count == 0
    else:
        due = count < LINK_MAILS_PER_WINDOW and _due(last, LINK_MAIL_INTERVAL, now)
    if due:
        conn.execute(_INSERT_LINK_MAIL, {"mailbox_hash": mailbox, "sent_at": now})
    return due


def request_manage_link(session: Session, email: str, origin: Origin) -> list[int]:
    """Mail `email` its links if we hold data about it, within its mailbox's link-mail
    budget (one a day from /manage, whatever the spelling); the caller answers the same
    either way (STANDARDS 14, 29)."""
    now = utcnow()
    conn, mailbox = session.connection(), mailbox_hash(email)
    lock_mailbox(conn, mailbox)
    sub = find_by_email(session, email)
    kind = _LINK_MAIL.get(sub.status) if sub is not None else None
    # The row's own date as well: a signup of a confirmed address mails the settings link
    # too (_remind), and the two together stay at one a day.
    if sub is None or kind is None or not _due(sub.manage_link_sent_at, MANAGE_LINK_INTERVAL, now):
        return []
    if not _link_mail(conn, mailbox, now, from_manage=True):
        return []
    sub.manage_link_sent_at = now
    _event(session, sub, "manage_link_requested", origin)
    return [add_outbox_message(session, sub, kind).id]


def request_data_link(session: Session, sub: Subscriber, origin: Origin) -> list[int]:
    """Mail `sub` a fresh link to its data export and erasure, within its mailbox's
    link-mail budget (three a day with /manage's, ten minutes apart). The caller answers
    the same either way. The request goes into the log (who asked: IP, browser), which the
    export shows; it is no consent proof and goes with an erasure."""
    if sub.status not in DATA_STATES:
        return []
    now = utcnow()
    conn, mailbox = session.connection(), mailbox_hash(sub.email)
    lock_mailbox(conn, mailbox)
    if not _link_mail(conn, mailbox, now, from_manage=False):
        return []
    _event(session, sub, "data_link_requested", origin, at=now)
    return [add_outbox_message(session, sub, OutboxKind.DATA).id]


def confirmation_sent(session: Session, public_id: str, message_id: str | None) -> None:
    """The relay accepted `public_id`'s confirmation mail `message_id`: part of the proof of
    the double opt-in (STANDARDS 11), timed when it left, not when it was asked for."""
    sub = find(session, public_id)
    if sub is None:
        return
    sent_at = utcnow()
    sub.confirmation_sent_at = sent_at
    _event(session, sub, "confirmation_sent", Origin(channel="email"), at=sent_at, message_id=message_id)


def mark_bounced(session: Session, public_id: str, detail: str, *, source: str = "smtp",
                 edition_id: int | None = None) -> None:
    """A permanent failure for this subscriber's address (`detail`: the relay's reply or the
    DSN's status and diagnostic, addresses redacted): stop mailing it for good. `source`:
    the SMTP conversation ("smtp") or a DSN read from the bounce mailbox ("dsn")."""
    sub = find(session, public_id)
    if sub is None:
        return
    sub.status = SubscriberStatus.BOUNCED
    _suppress(session, sub.email_hash, SuppressionReason.BOUNCED)
    extra: dict[str, Any] = {"reply": detail[:300]}
    if edition_id is not None:
        extra["edition"] = edition_id
    _event(session, sub, "bounced", Origin(channel=source), **extra)


def mark_complained(session: Session, sub: Subscriber, edition_id: int | None = None) -> None:
    """The reader reported our mail as spam (an ARF report): never mail them again, and
    the consent log says why (a complaint withdraws consent as an unsubscribe does)."""
    sub.status = SubscriberStatus.COMPLAINED
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.subscriber_id == sub.id, OutboxMessage.status == OutboxStatus.PENDING)
        .values(status=OutboxStatus.CANCELLED, last_error="not needed any more: subscriber complained")
    )
    _suppress(session, sub.email_hash, SuppressionReason.COMPLAINED)
    _event(session, sub, "complained", Origin(channel="feedback_loop"),
           **({"edition": edition_id} if edition_id is not None else {}))


def record_repeated_bounce(
    session: Session, sub: Subscriber, kind: str, edition_id: int | None, limit: int, status: str, detail: str,
) -> bool:
    """A soft bounce or a policy refusal of `sub` (its BounceEvent already added): logged,
    and when every one of the last `limit` editions mailed to the reader has one of this
    kind, the address is suppressed as bounced. True when it was."""
    _event(session, sub, f"{kind}_bounce", Origin(channel="smtp" if kind == "policy" else "dsn"),
           status=status, reply=detail[:300], **({"edition": edition_id} if edition_id is not None else {}))
    if edition_id is None or sub.status == SubscriberStatus.BOUNCED:
        return False
    mailed = session.scalars(
        select(Delivery.edition_id)
        .where(Delivery.subscriber_id == sub.id,
               Delivery.status.in_((DeliveryStatus.SENT, DeliveryStatus.BOUNCED, DeliveryStatus.FAILED)))
        .order_by(Delivery.edition_id.desc()).limit(limit)
    ).all()
    if len(mailed) < limit:
        return False
    bounced_on = set(session.scalars(
        select(BounceEvent.edition_id).where(BounceEvent.subscriber_id == sub.id, BounceEvent.kind == kind,
                                             BounceEvent.edition_id.in_(mailed))))
    if not set(mailed) <= bounced_on:
        return False
    mark_bounced(session, sub.public_id, f"{kind} bounces on {limit} editions in a row; last: {status} {detail}",
                 source="smtp" if kind == "policy" else "dsn", edition_id=edition_id)
    return True


def _suppress(session: Session, hashed: str, reason: SuppressionReason) -> None:
    """Suppress an address for `reason`; a bounce or complaint outranks an unsubscribe."""
    entry = session.get(Suppression, hashed)
    if entry is None:
        session.add(Suppression(email_hash=hashed, reason=reason))
    elif entry.reason not in HARD_SUPPRESSIONS:
        entry.reason = reason


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def export(session: Session, sub: Subscriber) -> dict[str, Any]:
    """Everything held about `sub`'s address (STANDARDS 14): the subscription, the whole
    consent log (earlier, erased subscriptions of the address included), the mails and
    digests sent, and the suppression entry, as JSON-ready data."""
    from newsletter.models import Delivery, Edition

    events = session.scalars(
        select(ConsentEvent).where(ConsentEvent.email_hash == sub.email_hash).order_by(ConsentEvent.at, ConsentEvent.id)
    )
    mails = session.scalars(select(OutboxMessage).where(OutboxMessage.subscriber_id == sub.id).order_by(OutboxMessage.id))
    digests = session.execute(
        select(Delivery.edition_id, Edition.created_at, Delivery.status, Delivery.sent_at, Delivery.last_error)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(Delivery.subscriber_id == sub.id)
        .order_by(Delivery.edition_id)
    )
    suppression = session.get(Suppression, sub.email_hash)
    return {
        "subscriber": {
            "email": sub.email,
            "status": sub.status,
            "language": sub.language,
            "keywords": sub.keywords,
            "location": sub.location,
            "radius": sub.radius,
            "remote": sub.remote,
            "employment_type": sub.employment_type,
            "created_at": _iso(sub.created_at),
            "confirmation_sent_at": _iso(sub.confirmation_sent_at),
            "confirmed_at": _iso(sub.confirmed_at),
            "unsubscribed_at": _iso(sub.unsubscribed_at),
        },
        "consent_log": [
            {
                "event": e.event,
                "at": _iso(e.at),
                "ip": e.ip,
                "user_agent": e.user_agent,
                "form_url": e.form_url,
                "channel": e.channel,
                "consent_version": e.consent_version,
                "consent_text": e.consent_text,
                "detail": e.detail,
            }
            for e in events
        ],
        "mails": [
            {"kind": m.kind, "status": m.status, "created_at": _iso(m.created_at), "sent_at": _iso(m.sent_at)}
            for m in mails
        ],
        "digests": [
            {"edition": d.edition_id, "edition_created_at": _iso(d.created_at), "status": d.status,
             "sent_at": _iso(d.sent_at), "error": d.last_error}
            for d in digests
        ],
        "suppression": (
            {"reason": suppression.reason, "since": _iso(suppression.created_at)} if suppression else None
        ),
    }


def erase(session: Session, sub: Subscriber, origin: Origin) -> None:
    """Delete the subscriber; keep a hashed suppression entry and the consent proof
    (STANDARDS 15), which purge_consent_records removes after its retention time."""
    entry = session.get(Suppression, sub.email_hash)
    if entry is None:
        session.add(Suppression(email_hash=sub.email_hash, reason="erased"))
    elif entry.reason not in HARD_SUPPRESSIONS:
        entry.reason = "erased"
    _event(session, sub, "erased", origin)
    _drop_personal_events(session, [sub.email_hash])
    session.execute(delete(OutboxMessage).where(OutboxMessage.subscriber_id == sub.id))
    session.delete(sub)


def _drop_personal_events(session: Session, hashes: list[str]) -> None:
    """Delete what the consent log holds about these addresses' people rather than their
    consent: every event but the proof, and the repeat signups that mailed nothing."""
    session.execute(
        delete(ConsentEvent).where(ConsentEvent.email_hash.in_(hashes), ConsentEvent.event.not_in(PROOF_EVENTS))
    )
    repeats = [
        event.id for event in session.scalars(
            select(ConsentEvent).where(ConsentEvent.email_hash.in_(hashes), ConsentEvent.event == "signup")
        )
        if event.detail == _NOT_MAILED
    ]
    if repeats:
        session.execute(delete(ConsentEvent).where(ConsentEvent.id.in_(repeats)))


FORMER_STATES = (SubscriberStatus.UNSUBSCRIBED, *HARD_SUPPRESSIONS)
_PURGE_BATCH = 500  # rows per statement: IN lists stay far below every backend's limit
# The events that show a consent given: a row without one never subscribed, and nothing in
# its log is proof of anything (a bounced confirmation mail included).
CONSENT_GIVEN = ("confirmed", "imported")


def _consent_given() -> Any:
    """Whether the subscriber of the enclosing query ever confirmed (or came with proof)."""
    return select(ConsentEvent.id).where(
        ConsentEvent.subscriber_public_id == Subscriber.public_id, ConsentEvent.event.in_(CONSENT_GIVEN),
    ).exists()


def _left_at() -> Any:
    """When a former reader left: the unsubscribe time; for a bounce or a complaint its
    last event of that kind, else when the address was suppressed; else the signup."""
    event_at = select(func.max(ConsentEvent.at)).where(
        ConsentEvent.subscriber_public_id == Subscriber.public_id, ConsentEvent.event == Subscriber.status,
    ).scalar_subquery()
    suppressed_at = select(Suppression.created_at).where(
        Suppression.email_hash == Subscriber.email_hash).scalar_subquery()
    unsubscribed_at = case((Subscriber.status == SubscriberStatus.UNSUBSCRIBED, Subscriber.unsubscribed_at))
    return func.coalesce(unsubscribed_at, event_at, suppressed_at, Subscriber.created_at)


def purge_former_readers(session: Session, retention_days: int, now: datetime | None = None) -> int:
    """Delete the personal fields (address, search, place) of readers gone for longer than
    `retention_days` (STANDARDS 34): their row, with its deliveries and mails (by foreign
    key), and their consent events but the proof. What erase keeps stays: the hashed
    suppression entry and the proof, until purge_consent_records. A signup whose
    confirmation mail bounced or was reported never confirmed: it keeps no events at all,
    as purge_unconfirmed, which usually takes it first, does. Returns how many went."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    gone = session.execute(
        select(Subscriber.id, Subscriber.email_hash, Subscriber.status, Subscriber.public_id,
               _consent_given().label("consented"))
        .where(Subscriber.status.in_(FORMER_STATES), _left_at() < cutoff)
        .order_by(Subscriber.id)
    ).all()
    for start in range(0, len(gone), _PURGE_BATCH):
        batch = gone[start:start + _PURGE_BATCH]
        _keep_suppressed(session, [(row.email_hash, row.status) for row in batch])
        never = [row.public_id for row in batch if not row.consented]
        if never:
            session.execute(delete(ConsentEvent).where(ConsentEvent.subscriber_public_id.in_(never)))
        _drop_personal_events(session, [row.email_hash for row in batch])
        session.execute(delete(Subscriber).where(Subscriber.id.in_([row.id for row in batch])))
    return len(gone)


def _keep_suppressed(session: Session, rows: list[tuple[str, str]]) -> None:
    """A suppression entry for every (hash, reason) lacking one: after the row is gone it is
    all that stops an import or a slip from mailing the address."""
    known = set(session.scalars(select(Suppression.email_hash).where(Suppression.email_hash.in_([h for h, _ in rows]))))
    session.add_all(Suppression(email_hash=hashed, reason=reason) for hashed, reason in rows if hashed not in known)


def purge_unconfirmed(session: Session, retention_days: int, now: datetime | None = None) -> int:
    """Delete signups left unconfirmed for `retention_days` (STANDARDS 12), those whose
    confirmation mail bounced or was reported as spam among them, with their records: all
    of them when they never confirmed anything (the hashed suppression entry of a bounce or
    complaint stays); for a former reader who signed up again, those of the unconfirmed
    signup and what is about the person, not the consent. Returns how many went."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    stale = list(
        session.scalars(
            select(Subscriber).where(
                or_(Subscriber.status == SubscriberStatus.PENDING,
                    and_(Subscriber.status.in_(HARD_SUPPRESSIONS), ~_consent_given())),
                # From the first signup of the pending period: a form sent again and again
                # must not keep an unconfirmed address on file for ever.
                func.coalesce(Subscriber.pending_since, Subscriber.created_at) < cutoff,
            )
        )
    )
    for sub in stale:
        ever_confirmed = session.scalar(
            select(func.count()).select_from(ConsentEvent).where(
                ConsentEvent.subscriber_public_id == sub.public_id,
                ConsentEvent.event.in_(CONSENT_GIVEN),
            )
        )
        if not ever_confirmed:
            session.execute(delete(ConsentEvent).where(ConsentEvent.subscriber_public_id == sub.public_id))
        else:
            # The log of the former subscription stays (one public id holds both); the
            # signup nobody confirmed proves nothing and goes, as it would on its own.
            if sub.pending_since is not None:
                session.execute(delete(ConsentEvent).where(
                    ConsentEvent.subscriber_public_id == sub.public_id, ConsentEvent.at >= sub.pending_since))
            _drop_personal_events(session, [sub.email_hash])
        if sub.status in HARD_SUPPRESSIONS:
            _keep_suppressed(session, [(sub.email_hash, sub.status)])
        session.execute(delete(OutboxMessage).where(OutboxMessage.subscriber_id == sub.id))
        session.delete(sub)
    return len(stale)


def purge_confirmation_mails(session: Session, now: datetime | None = None) -> int:
    """Delete the confirmation-mail budget rows older than its window: they limit nothing
    any more. Returns how many went."""
    cutoff = (now or utcnow()) - CONFIRMATION_WINDOW
    result = session.execute(delete(ConfirmationMail).where(ConfirmationMail.sent_at < cutoff))
    return int(result.rowcount or 0)


def purge_link_mails(session: Session, now: datetime | None = None) -> int:
    """Delete the link-mail budget rows older than its window: they limit nothing any
    more. Returns how many went."""
    cutoff = (now or utcnow()) - LINK_MAIL_WINDOW
    result = session.execute(delete(LinkMail).where(LinkMail.sent_at < cutoff))
    return int(result.rowcount or 0)


def purge_consent_records(session: Session, retention_days: int, now: datetime | None = None) -> int:
    """Delete the consent proof of subscribers gone for longer than its retention time,
    counted to the end of the year in which that time ends, as the limitation period it
    serves is (§199 BGB): proof whose time ends in March goes in the January after."""
    now = now or utcnow()
    cutoff = datetime(now.year, 1, 1) - timedelta(days=retention_days)
    gone = (
        select(ConsentEvent.subscriber_public_id)
        .where(~ConsentEvent.subscriber_public_id.in_(select(Subscriber.public_id)))
        .group_by(ConsentEvent.subscriber_public_id)
        .having(func.max(ConsentEvent.at) < cutoff)
    )
    result = session.execute(delete(ConsentEvent).where(ConsentEvent.subscriber_public_id.in_(gone)))
    return int(result.rowcount or 0)


def stats(session: Session) -> dict[str, int]:
    """Subscribers per state, every state present (zero when none)."""
    counts = dict.fromkeys(SubscriberStatus, 0)
    for status, count in session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)):
        counts[status] = count
    counts["suppressed"] = session.scalar(select(func.count()).select_from(Suppression)) or 0
    return counts
