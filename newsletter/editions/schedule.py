"""The schedule: is an edition due? Schedules are data: a frequent tick asks the database
whether the current period has its edition, and a unique period column makes a second one
impossible, however many schedulers tick at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.editions.planning import create_edition
from newsletter.editions.state import EditionError, open_edition
from newsletter.models import Edition, utcnow


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
