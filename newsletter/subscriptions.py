"""The subscriber lifecycle as explicit steps: signup, confirm, unsubscribe, preferences,
export, erase, purge. Each takes a Session, leaves committing to its caller, and returns
the outbox ids to queue once the caller has committed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, literal_column, select, update
from sqlalchemy.orm import Session

from . import consent, outbox
from .models import (
    ConsentEvent,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    email_hash,
    new_public_id,
    utcnow,
)
from .validation import Preferences

CONFIRMATION_INTERVAL = timedelta(hours=24)  # STANDARDS 28: one per address per day
MANAGE_LINK_INTERVAL = timedelta(hours=1)
HARD_SUPPRESSIONS = ("bounced", "complained")
# The consent proof (STANDARDS 11, 15): what shows consent given and withdrawn, kept after
# an erasure for its retention time. The rest of the log (preference changes, link
# requests, bounce replies) is about the person, not the consent, and goes with them.
PROOF_EVENTS = ("signup", "imported", "confirmation_sent", "confirmed", "unsubscribed", "erased")
# The unsubscribe page's optional question offers these; free text is not kept, so that
# the withdrawal record holds nothing a person typed about themselves.
UNSUBSCRIBE_REASONS = ("found_job", "too_many", "not_relevant", "other")


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


def _hard_suppressed(session: Session, hashed: str) -> bool:
    entry = session.get(Suppression, hashed)
    return entry is not None and entry.reason in HARD_SUPPRESSIONS


def _due(last: datetime | None, interval: timedelta, now: datetime) -> bool:
    return last is None or last <= now - interval


# The signup's statements, built once: constructing a statement costs more than running
# it on this hot path (bench/signup.py); executions only bind parameters.
_SUBSCRIBERS, _EVENTS, _OUTBOX = Subscriber.__table__, ConsentEvent.__table__, OutboxMessage.__table__
_SUPPRESSIONS = Suppression.__table__
# One row whatever exists: the address's suppression reason (or NULL), and its subscriber's
# columns (NULLs when there is none): one statement for the lookup, not two.
_ONE_ROW = select(literal_column("1").label("one")).subquery("one_row")
_LOOKUP = (
    select(
        select(_SUPPRESSIONS.c.reason).where(_SUPPRESSIONS.c.email_hash == bindparam("hashed")).scalar_subquery().label("reason"),
        _SUBSCRIBERS.c.id, _SUBSCRIBERS.c.status, _SUBSCRIBERS.c.confirmation_sent_at,
        _SUBSCRIBERS.c.manage_link_sent_at, _SUBSCRIBERS.c.public_id,
    )
    .select_from(_ONE_ROW.outerjoin(_SUBSCRIBERS, _SUBSCRIBERS.c.email_hash == bindparam("hashed")))
)
_INSERT_SUBSCRIBER = _SUBSCRIBERS.insert().returning(_SUBSCRIBERS.c.id)
_INSERT_EVENT = _EVENTS.insert()
_INSERT_OUTBOX = _OUTBOX.insert().returning(_OUTBOX.c.id)


def signup(
    session: Session, email: str, prefs: Preferences, origin: Origin,
    consent_version: str = consent.CURRENT_VERSION, consent_language: str | None = None,
    list_name: str = consent.LIST_NAME, interval_days: int = consent.INTERVAL_DAYS,
) -> list[int]:
    """Record a signup request. What happens depends on the address's state; what the
    caller shows must not (STANDARDS 29). Returns outbox ids to queue after commit.
    The consent record holds the wording shown: `consent_version` in `consent_language`
    (default: the newsletter's language).

    The hot path of the signup form: one lookup, then three inserts for a new address.
    """
    conn = session.connection()
    now = utcnow()
    hashed = email_hash(email)
    row = conn.execute(_LOOKUP, {"hashed": hashed}).one()
    if row.reason in HARD_SUPPRESSIONS or row.status in HARD_SUPPRESSIONS:
        return []
    found = row if row.id is not None else None
    version = consent_version
    event = {
        "event": "signup", "at": now, "ip": origin.ip, "user_agent": (origin.user_agent or "")[:500] or None,
        "form_url": (origin.form_url or "")[:500] or None, "channel": origin.channel,
        "consent_version": version, "consent_text": consent.consent_text(
            consent_language or prefs.language, version, list_name=list_name, interval_days=interval_days),
        "email_hash": hashed,
    }
    if found is None:
        # An erased address has no row to remember its last confirmation mail; the consent
        # proof kept for it does (STANDARDS 28 holds across an erasure).
        last_sent = _last_confirmation_sent(conn, hashed) if row.reason is not None else None
        due = _due(last_sent, CONFIRMATION_INTERVAL, now)
        public_id = new_public_id()
        subscriber_id = conn.execute(_INSERT_SUBSCRIBER, {
            "public_id": public_id, "email": email, "email_hash": hashed, "language": prefs.language,
            "keywords": prefs.keywords, "location": prefs.location, "status": SubscriberStatus.PENDING,
            "created_at": now, "confirmation_sent_at": now if due else last_sent,
        }).scalar_one()
        conn.execute(_INSERT_EVENT, {**event, "subscriber_public_id": public_id, "detail": _mailed(due)})
        return [_insert_outbox(conn, subscriber_id, outbox.CONFIRM, now)] if due else []
    if found.status == SubscriberStatus.CONFIRMED:
        # Already subscribed: a reminder with the preferences link, not a second opt-in,
        # and no change to the preferences from an unauthenticated form.
        if not _due(found.manage_link_sent_at, CONFIRMATION_INTERVAL, now):
            return []
        conn.execute(update(Subscriber).where(Subscriber.id == found.id).values(manage_link_sent_at=now))
        return [_insert_outbox(conn, found.id, outbox.MANAGE, now)]
    # Pending, or unsubscribed and signing up again: double opt-in once more.
    due = _due(found.confirmation_sent_at, CONFIRMATION_INTERVAL, now)
    changes: dict[str, object] = {"status": SubscriberStatus.PENDING, "language": prefs.language,
                                  "keywords": prefs.keywords, "location": prefs.location}
    if due:
        changes["confirmation_sent_at"] = now
    conn.execute(update(Subscriber).where(Subscriber.id == found.id).values(**changes))
    conn.execute(_INSERT_EVENT, {**event, "subscriber_public_id": found.public_id, "detail": _mailed(due)})
    return [_insert_outbox(conn, found.id, outbox.CONFIRM, now)] if due else []


# Whether a signup asked for a confirmation mail: the ones that did are the proof of the
# double opt-in; a repeat within the day mailed nothing, proves nothing and goes with an
# erasure (with the IP and browser of whoever sent it).
_MAILED, _NOT_MAILED = {"confirmation_mail": True}, {"confirmation_mail": False}


def _mailed(due: bool) -> dict[str, bool]:
    return _MAILED if due else _NOT_MAILED


def _last_confirmation_sent(conn: Connection, hashed: str) -> datetime | None:
    return conn.execute(
        select(func.max(_EVENTS.c.at)).where(_EVENTS.c.email_hash == hashed, _EVENTS.c.event == "confirmation_sent")
    ).scalar()


def _insert_outbox(conn: Connection, subscriber_id: int, kind: str, now: datetime) -> int:
    return int(conn.execute(_INSERT_OUTBOX, {
        "kind": kind, "subscriber_id": subscriber_id, "status": "pending", "attempts": 0, "created_at": now,
        "next_attempt_at": now, "queued_at": now,
    }).scalar_one())


def confirm(session: Session, sub: Subscriber, origin: Origin) -> tuple[str, list[int]]:
    """Confirm a pending subscriber: ('confirmed', ids), ('already', []) or ('invalid', [])."""
    if sub.status == SubscriberStatus.CONFIRMED:
        return "already", []
    if sub.status != SubscriberStatus.PENDING:
        return "invalid", []
    if _hard_suppressed(session, sub.email_hash):
        return "invalid", []
    sub.status = SubscriberStatus.CONFIRMED
    sub.confirmed_at = utcnow()
    sub.unsubscribed_at = None
    session.execute(delete(Suppression).where(Suppression.email_hash == sub.email_hash))
    _event(session, sub, "confirmed", origin)
    return "confirmed", [outbox.add_message(session, sub, outbox.WELCOME).id]


def unsubscribe(session: Session, sub: Subscriber, origin: Origin, reason: str | None = None) -> bool:
    """Stop all list mail to `sub`. True when this call changed something."""
    if sub.status not in (SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING):
        return False
    sub.status = SubscriberStatus.UNSUBSCRIBED
    sub.unsubscribed_at = utcnow()
    # Mail queued while subscribed (a welcome, a settings link with list headers) must not
    # arrive after the click (STANDARDS 6); a link asked for later is queued anew.
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.subscriber_id == sub.id, OutboxMessage.status == OutboxStatus.PENDING)
        .values(status=OutboxStatus.CANCELLED, last_error="not needed any more: subscriber unsubscribed")
    )
    if session.get(Suppression, sub.email_hash) is None:
        session.add(Suppression(email_hash=sub.email_hash, reason="unsubscribed"))
    extra = {"reason": reason} if reason else {}
    _event(session, sub, "unsubscribed", origin, **extra)
    return True


def update_preferences(session: Session, sub: Subscriber, prefs: Preferences, origin: Origin) -> bool:
    """Change keywords, location and language. True when anything changed."""
    old = {"keywords": sub.keywords, "location": sub.location, "language": sub.language}
    new = {"keywords": prefs.keywords, "location": prefs.location, "language": prefs.language}
    if old == new:
        return False
    sub.keywords, sub.location, sub.language = prefs.keywords, prefs.location, prefs.language
    _event(session, sub, "preferences_changed", origin, before=old, after=new)
    return True


def request_manage_link(session: Session, email: str, origin: Origin) -> list[int]:
    """Mail the preferences link to `email` if it is on the list; the caller answers the
    same either way (STANDARDS 14, 29)."""
    now = utcnow()
    sub = find_by_email(session, email)
    if sub is None:
        return []
    if sub.status == SubscriberStatus.PENDING:
        if not _due(sub.confirmation_sent_at, CONFIRMATION_INTERVAL, now):
            return []
        sub.confirmation_sent_at = now
        return [outbox.add_message(session, sub, outbox.CONFIRM).id]
    if sub.status not in (SubscriberStatus.CONFIRMED, SubscriberStatus.UNSUBSCRIBED):
        return []
    if not _due(sub.manage_link_sent_at, MANAGE_LINK_INTERVAL, now):
        return []
    sub.manage_link_sent_at = now
    _event(session, sub, "manage_link_requested", origin)
    return [outbox.add_message(session, sub, outbox.MANAGE).id]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def export(session: Session, sub: Subscriber) -> dict[str, Any]:
    """Everything held about `sub`'s address (STANDARDS 14): the subscription, the whole
    consent log (earlier, erased subscriptions of the address included), the mails and
    digests sent, and the suppression entry, as JSON-ready data."""
    from .models import Delivery, Edition

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
    session.execute(
        delete(ConsentEvent).where(ConsentEvent.email_hash == sub.email_hash, ConsentEvent.event.not_in(PROOF_EVENTS))
    )
    repeats = [
        event.id for event in session.scalars(
            select(ConsentEvent).where(ConsentEvent.email_hash == sub.email_hash, ConsentEvent.event == "signup")
        )
        if event.detail == _NOT_MAILED
    ]
    if repeats:
        session.execute(delete(ConsentEvent).where(ConsentEvent.id.in_(repeats)))
    session.execute(delete(OutboxMessage).where(OutboxMessage.subscriber_id == sub.id))
    session.delete(sub)


def purge_unconfirmed(session: Session, retention_days: int, now: datetime | None = None) -> int:
    """Delete signups left unconfirmed for `retention_days` (STANDARDS 12), with their
    signup records when they never confirmed anything. Returns how many went."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    stale = list(
        session.scalars(
            select(Subscriber).where(
                Subscriber.status == SubscriberStatus.PENDING,
                func.coalesce(Subscriber.confirmation_sent_at, Subscriber.created_at) < cutoff,
            )
        )
    )
    for sub in stale:
        ever_confirmed = session.scalar(
            select(func.count()).select_from(ConsentEvent).where(
                ConsentEvent.subscriber_public_id == sub.public_id,
                ConsentEvent.event.in_(("confirmed", "imported")),
            )
        )
        if not ever_confirmed:
            session.execute(delete(ConsentEvent).where(ConsentEvent.subscriber_public_id == sub.public_id))
        session.execute(delete(OutboxMessage).where(OutboxMessage.subscriber_id == sub.id))
        session.delete(sub)
    return len(stale)


def purge_consent_records(session: Session, retention_days: int, now: datetime | None = None) -> int:
    """Delete the consent proof of subscribers gone for longer than its retention time."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
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
    counts = dict.fromkeys(SubscriberStatus.ALL, 0)
    for status, count in session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)):
        counts[status] = count
    counts["suppressed"] = session.scalar(select(func.count()).select_from(Suppression)) or 0
    return counts
