"""An edition's state: which one is open, how far its deliveries got, its chunks of
unfinished work, and the operator's pause, resume and cancel. Planning (planning.py) and
the schedule (schedule.py) ask here whether an edition is still open; sending a chunk
(sending.py) marks the edition done here."""

from __future__ import annotations

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from newsletter.models import (
    OPEN_DELIVERIES,
    BounceEvent,
    BounceKind,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionState,
    OperatorAlarm,
    utcnow,
)

# Edition ids are 32-bit on PostgreSQL: a larger one is no edition (not a database error).
MAX_EDITION_ID = 2**31 - 1


class EditionError(ValueError):
    """An operator asked for something the edition's state does not allow."""


def get_edition(session: Session, edition_id: int) -> Edition | None:
    """The edition with this id, or None (also for an id no edition can have)."""
    return session.get(Edition, edition_id) if 1 <= edition_id <= MAX_EDITION_ID else None


def latest(session: Session) -> Edition | None:
    """The edition made last, or None before the first."""
    return session.scalar(select(Edition).order_by(Edition.id.desc()).limit(1))


def open_edition(session: Session) -> Edition | None:
    """The edition still sending or paused, if any."""
    return session.scalar(
        select(Edition).where(Edition.state.in_((EditionState.SENDING, EditionState.PAUSED))).order_by(Edition.id).limit(1)
    )


def counts(session: Session, edition_id: int) -> dict[str, int]:
    """Deliveries of an edition by outcome: queued (not yet finished), sent, failed, bounced."""
    by_status = dict(
        session.execute(
            select(Delivery.status, func.count()).where(Delivery.edition_id == edition_id).group_by(Delivery.status)
        ).all()
    )
    return {
        "queued": by_status.get(DeliveryStatus.PENDING, 0) + by_status.get(DeliveryStatus.SENDING, 0),
        "sent": by_status.get(DeliveryStatus.SENT, 0),
        "failed": by_status.get(DeliveryStatus.FAILED, 0),
        "bounced": by_status.get(DeliveryStatus.BOUNCED, 0),
        "cancelled": by_status.get(DeliveryStatus.CANCELLED, 0),
    }


def returned(session: Session, edition_id: int) -> dict[str, int]:
    """What came back about an edition's mails after they left (bounces/intake.py): soft
    and policy bounces and complaints (hard bounces show in `counts` as bounced)."""
    by_kind = dict(session.execute(
        select(BounceEvent.kind, func.count(func.distinct(BounceEvent.subscriber_id)))
        .where(BounceEvent.edition_id == edition_id).group_by(BounceEvent.kind)).all())
    return {
        "soft_bounced": by_kind.get(BounceKind.SOFT, 0),
        "policy_bounced": by_kind.get(BounceKind.POLICY, 0),
        "complained": by_kind.get(BounceKind.COMPLAINT, 0),
    }


def retrying(session: Session, edition_id: int) -> tuple[int, str | None]:
    """How many unfinished deliveries wait for a retry after a failed try, and the latest
    reason (a relay that cannot be reached shows here, not as an alarm)."""
    waiting = and_(Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.PENDING,
                   Delivery.last_error.is_not(None))
    count = session.scalar(select(func.count()).select_from(Delivery).where(waiting)) or 0
    last = session.scalar(select(Delivery.last_error).where(waiting).order_by(Delivery.next_attempt_at.desc()).limit(1))
    return int(count), last


def alarms_since(session: Session, edition: Edition) -> tuple[int, OperatorAlarm | None]:
    """How many operator alarms were raised since the edition was made, and the latest."""
    since = select(OperatorAlarm).where(OperatorAlarm.at >= edition.created_at)
    count = session.scalar(select(func.count()).select_from(since.subquery())) or 0
    last = session.scalars(since.order_by(OperatorAlarm.id.desc()).limit(1)).first() if count else None
    return int(count), last


def open_chunks(session: Session, edition_id: int, chunk_size: int, due_only: bool = False) -> list[tuple[int, int, bool]]:
    """(first id, last id, has an expired lease) of each chunk of unfinished deliveries.
    Chunks are id ranges aligned on multiples of `chunk_size`: the same every time."""
    now = utcnow()
    condition = Delivery.status.in_(OPEN_DELIVERIES)
    if due_only:
        condition = or_(
            and_(Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now),
            and_(Delivery.status == DeliveryStatus.SENDING, Delivery.lease_until < now),
        )
    bucket = Delivery.id // chunk_size
    expired = func.max(case((and_(Delivery.status == DeliveryStatus.SENDING, Delivery.lease_until < now), 1), else_=0))
    rows = session.execute(
        select(func.min(Delivery.id), func.max(Delivery.id), expired)
        .where(Delivery.edition_id == edition_id, condition)
        .group_by(bucket)
        .order_by(func.min(Delivery.id))
    ).all()
    return [(int(lo), int(hi), bool(stale)) for lo, hi, stale in rows]


def finish_if_done(session: Session, edition_id: int) -> bool:
    """Mark a sending edition done once nothing is left to send."""
    left = session.scalar(
        select(func.count()).select_from(Delivery).where(
            Delivery.edition_id == edition_id, Delivery.status.in_(OPEN_DELIVERIES)
        )
    )
    if left:
        return False
    result = session.execute(
        update(Edition)
        .where(Edition.id == edition_id, Edition.state == EditionState.SENDING)
        .values(state=EditionState.DONE, finished_at=utcnow())
    )
    return bool(result.rowcount)


def set_state(session: Session, edition_id: int, action: str) -> Edition:
    """pause, resume or cancel an edition; returns it. Raises EditionError when it cannot."""
    edition = get_edition(session, edition_id)
    if edition is None:
        raise EditionError(f"no edition {edition_id}")
    allowed = {
        "pause": ({EditionState.SENDING}, EditionState.PAUSED),
        "resume": ({EditionState.PAUSED}, EditionState.SENDING),
        "cancel": ({EditionState.SENDING, EditionState.PAUSED}, EditionState.CANCELLED),
    }
    sources, target = allowed[action]
    if edition.state not in sources:
        raise EditionError(f"edition {edition_id} is {edition.state}; cannot {action} it")
    edition.state = target
    if action == "cancel":
        session.execute(
            update(Delivery)
            .where(Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.PENDING)
            .values(status=DeliveryStatus.CANCELLED, last_error="edition cancelled")
        )
        edition.finished_at = utcnow()
    return edition
