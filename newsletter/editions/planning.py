"""Editions: the schedule (is one due?), creation with its listing window, per-reader
selection grouped by distinct preferences, and set-based planning of deliveries.

Schedules are data: a frequent tick asks the database whether the current period has its
edition, and a unique period column makes a second one impossible, however many
schedulers tick at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import DateTime, Integer, String, and_, case, func, insert, literal, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.listings import matching
from newsletter.config import Settings
from newsletter.models import (
    OPEN_DELIVERIES,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionState,
    EditionVariant,
    Listing,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)


def latest_slot(settings: Settings, now: datetime) -> datetime | None:
    """The most recent scheduled moment at or before `now` (naive UTC), or None before the
    first. Slots are wall-clock times in NEWSLETTER_TIMEZONE, so 08:00 stays 08:00 across
    daylight saving time."""
    tz = settings.tz
    first = datetime.fromisoformat(settings.digest_first)
    interval = settings.digest_interval_days
    local_now = now.replace(tzinfo=UTC).astimezone(tz)
    n = (local_now.date() - first.date()).days // interval
    for step in (n, n - 1):
        if step < 0:
            return None
        slot = (first + timedelta(days=step * interval)).replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)
        if slot <= now:
            return slot
    return None


@dataclass(frozen=True)
class WindowListing:
    id: int
    text: str
    location: str


def previous_cutoff(session: Session, before: datetime | None = None) -> datetime | None:
    query = select(func.max(Edition.cutoff)).where(Edition.state != EditionState.CANCELLED)
    if before is not None:
        query = query.where(Edition.cutoff < before)
    return session.scalar(query)


def window_listings(session: Session, start: datetime, cutoff: datetime) -> list[Listing]:
    """Listings published in (start, cutoff], still valid at the cut-off, newest first."""
    return list(
        session.scalars(
            select(Listing)
            .where(
                Listing.published_at > start,
                Listing.published_at <= cutoff,
                Listing.withdrawn_at.is_(None),
                or_(Listing.valid_through.is_(None), Listing.valid_through > cutoff),
            )
            .order_by(Listing.published_at.desc(), Listing.id.desc())
        )
    )


def _searchable(listings: list[Listing]) -> list[tuple[int, str, str]]:
    return [
        (item.id, matching.searchable(item.title, item.company, item.category, item.description),
         matching.fold(item.location))
        for item in listings
    ]


def preference_sets(session: Session) -> list[tuple[str, str, int]]:
    """Distinct (keywords, location) of confirmed, unsuppressed readers, with their count."""
    return [
        (keywords, location, count)
        for keywords, location, count in session.execute(
            select(Subscriber.keywords, Subscriber.location, func.count())
            .where(Subscriber.status == SubscriberStatus.CONFIRMED, ~_suppressed())
            .group_by(Subscriber.keywords, Subscriber.location)
        )
    ]


def _suppressed():  # type: ignore[no-untyped-def]
    return select(Suppression.email_hash).where(Suppression.email_hash == Subscriber.email_hash).exists()


@dataclass(frozen=True)
class Preview:
    """What an edition made now would hold (`digest send --dry-run`)."""

    recipients: int
    listings: list[Listing]


def preview(session: Session, settings: Settings, now: datetime | None = None) -> Preview:
    now = now or utcnow()
    start = previous_cutoff(session) or now - timedelta(days=settings.digest_interval_days)
    listings = window_listings(session, start, now)
    searchable = _searchable(listings)
    recipients = sum(
        count
        for keywords, location, count in preference_sets(session)
        if matching.select(matching.parse(keywords, location), searchable)
    )
    return Preview(recipients, listings)


def _lock_editions(session: Session) -> None:
    # Two editions made at the same moment would share a window; serialise their creation.
    # (SQLite already serialises writers: BEGIN IMMEDIATE in db.py.)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(727274)"))


def create_edition(
    session: Session, settings: Settings, trigger: str, period: datetime | None = None, now: datetime | None = None
) -> Edition:
    """Make an edition with the cut-off `now` and plan one delivery per reader who gets at
    least one listing. The caller commits, then queues its chunks. Raises IntegrityError
    when `period` already has its edition."""
    _lock_editions(session)
    still_open = open_edition(session)
    if still_open is not None:
        # One edition at a time: a second one would start its window at the open one's
        # cut-off, so cancelling the open one would lose its listings instead of handing
        # them on, and readers would get two digests at once.
        raise EditionError(f"edition {still_open.id} is still {still_open.state}: resume it and let it finish, or cancel it first")
    now = now or utcnow()
    start = previous_cutoff(session) or now - timedelta(days=settings.digest_interval_days)
    edition = Edition(period=period, trigger=trigger, cutoff=now, window_start=start, state=EditionState.SENDING)
    session.add(edition)
    session.flush()

    listings = window_listings(session, start, now)
    searchable = _searchable(listings)
    variants = []
    for keywords, location, _count in preference_sets(session):
        selected = matching.select(matching.parse(keywords, location), searchable)
        if selected:
            variants.append(
                {
                    "edition_id": edition.id, "keywords": keywords, "location": location,
                    "listing_ids": selected[: settings.digest_max_listings], "total_matches": len(selected),
                }
            )
    if variants:
        session.execute(insert(EditionVariant), variants)
    edition.listing_count = len(listings)
    edition.planned = plan(session, edition.id, now)
    if edition.planned == 0:
        edition.state = EditionState.DONE
        edition.finished_at = now
    return edition


# Planning 1M deliveries on PostgreSQL: 19 s in reader-id order, 25 s grouped by language
# and variant over all readers, 20 s grouped within blocks of this many reader ids.
PLAN_BLOCK = 10_000


def plan(session: Session, edition_id: int, now: datetime) -> int:
    """One delivery row per confirmed, unsuppressed reader with a non-empty variant: a
    single INSERT ... SELECT, no loop over readers."""
    source = (
        select(
            literal(edition_id, Integer),
            Subscriber.id,
            EditionVariant.id,
            literal(DeliveryStatus.PENDING, String),
            literal(0, Integer),
            literal(now, DateTime),
        )
        .select_from(Subscriber)
        .join(
            EditionVariant,
            and_(
                EditionVariant.edition_id == edition_id,
                EditionVariant.keywords == Subscriber.keywords,
                EditionVariant.location == Subscriber.location,
            ),
        )
        .where(Subscriber.status == SubscriberStatus.CONFIRMED, ~_suppressed())
        # Within each block of PLAN_BLOCK readers, readers of one language and variant get
        # neighbouring delivery ids, so a send job (an id range) compiles one language's
        # templates and renders one or two digest bodies, instead of both languages and a
        # body for almost every reader. Blocks, not the whole list: in reader-id order
        # the index inserts and foreign-key checks of a million rows stay cache-friendly.
        .order_by(Subscriber.id // PLAN_BLOCK, Subscriber.language, EditionVariant.id, Subscriber.id)
    )
    session.execute(
        insert(Delivery).from_select(
            ["edition_id", "subscriber_id", "variant_id", "status", "attempts", "next_attempt_at"], source
        )
    )
    # rowcount of INSERT ... SELECT is -1 with some drivers: count what is there instead.
    return int(session.scalar(select(func.count()).select_from(Delivery).where(Delivery.edition_id == edition_id)) or 0)


def open_edition(session: Session) -> Edition | None:
    """The edition still sending or paused, if any."""
    return session.scalar(
        select(Edition).where(Edition.state.in_((EditionState.SENDING, EditionState.PAUSED))).order_by(Edition.id).limit(1)
    )


def tick(session: Session, settings: Settings, now: datetime | None = None) -> Edition | None:
    """Create the current period's edition if it is due and missing. A scheduler that was
    down for several periods makes one catch-up edition: only the latest slot counts.
    While an edition is still sending or paused, the due one waits for it (a later tick
    makes it: the slot stays the latest)."""
    now = now or utcnow()
    slot = latest_slot(settings, now)
    if slot is None:
        return None
    if session.scalar(select(Edition.id).where(Edition.period == slot)) is not None:
        return None
    if open_edition(session) is not None:
        return None
    savepoint = session.begin_nested()
    try:
        edition = create_edition(session, settings, "schedule", period=slot, now=now)
        savepoint.commit()
    except (IntegrityError, EditionError):  # another host made it, or one is open
        savepoint.rollback()
        return None
    return edition


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


def retrying(session: Session, edition_id: int) -> tuple[int, str | None]:
    """How many unfinished deliveries wait for a retry after a failed try, and the latest
    reason (a relay that cannot be reached shows here, not as an alarm)."""
    waiting = and_(Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.PENDING,
                   Delivery.last_error.is_not(None))
    count = session.scalar(select(func.count()).select_from(Delivery).where(waiting)) or 0
    last = session.scalar(select(Delivery.last_error).where(waiting).order_by(Delivery.next_attempt_at.desc()).limit(1))
    return int(count), last


def latest(session: Session) -> Edition | None:
    return session.scalar(select(Edition).order_by(Edition.id.desc()).limit(1))


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


# Edition ids are 32-bit on PostgreSQL: a larger one is no edition (not a database error).
MAX_EDITION_ID = 2**31 - 1


def get_edition(session: Session, edition_id: int) -> Edition | None:
    return session.get(Edition, edition_id) if 1 <= edition_id <= MAX_EDITION_ID else None


class EditionError(ValueError):
    """An operator asked for something the edition's state does not allow."""


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
