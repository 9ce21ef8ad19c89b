"""The figures of the admin's dashboard: the list by state, signups, confirmations and
unsubscribes per day, the last editions, the next scheduled one, open alarms, and what RQ
knows of its queues, workers and scheduler. Reads only (but marking an alarm seen)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.editions import planning, schedule, state
from newsletter.models import ConsentEvent, Edition, OperatorAlarm, utcnow

DAYS = 90
# The consent record's events behind the daily series (subscribers come and go; it stays).
SERIES = {"signups": "signup", "confirmations": "confirmed", "unsubscribes": "unsubscribed"}
# A worker or scheduler not heard from for this long is taken for gone. RQ's workers beat
# about every ten seconds while idle and the scheduler every loop (at most a minute).
SILENCE = timedelta(minutes=3)


def daily_series(session: Session, days: int = DAYS, today: date | None = None) -> tuple[list[date], dict[str, list[int]]]:
    """The last `days` days (UTC) up to `today`, and per series the number of distinct
    readers with that consent event on each day (a form sent twice is one signup)."""
    today = today or utcnow().date()
    first = today - timedelta(days=days - 1)
    day = func.date(ConsentEvent.at)
    rows = session.execute(
        select(ConsentEvent.event, day, func.count(func.distinct(ConsentEvent.subscriber_public_id)))
        .where(ConsentEvent.at >= datetime.combine(first, datetime.min.time()),
               ConsentEvent.event.in_(SERIES.values()))
        .group_by(ConsentEvent.event, day)
    ).all()
    found = {(event, str(when)[:10]): int(count) for event, when, count in rows}
    dates = [first + timedelta(days=n) for n in range(days)]
    return dates, {name: [found.get((event, d.isoformat()), 0) for d in dates] for name, event in SERIES.items()}


@dataclass(frozen=True)
class EditionFigures:
    """One edition and how far its mail got."""

    edition: Edition
    counts: dict[str, int]
    retrying: int
    last_error: str | None


def edition_figures(session: Session, edition: Edition) -> EditionFigures:
    """An edition's delivery counts (queued, sent, failed, bounced, cancelled), what came
    back (soft_bounced, policy_bounced, complained) and how many wait for a retry."""
    retrying, last_error = state.retrying(session, edition.id)
    return EditionFigures(edition, state.counts(session, edition.id) | state.returned(session, edition.id),
                          retrying, last_error)


def editions(session: Session, limit: int = 10, before: int | None = None) -> list[Edition]:
    """The latest editions, newest first (older than id `before`, when given)."""
    query = select(Edition).order_by(Edition.id.desc()).limit(limit)
    if before is not None:
        query = query.where(Edition.id < before)
    return list(session.scalars(query))


def next_slot(settings: Settings, now: datetime) -> datetime:
    """The next scheduled moment after `now` (naive UTC), at the schedule's wall-clock time."""
    tz = settings.tz
    first = datetime.fromisoformat(settings.digest_first)
    latest = schedule.latest_slot(settings, now)
    if latest is None:
        return first.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)
    local = latest.replace(tzinfo=UTC).astimezone(tz).replace(tzinfo=None)
    following = local + timedelta(days=settings.digest_interval_days)
    return following.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Upcoming:
    """The schedule as it stands: the next slot, whether the current one still waits for
    its edition (an open one holds it back), and what an edition made now would cover."""

    next_at: datetime
    due_waiting: datetime | None
    recipients: int
    listings: int
    open_edition: Edition | None


def upcoming(session: Session, settings: Settings, now: datetime | None = None) -> Upcoming:
    now = now or utcnow()
    slot = schedule.latest_slot(settings, now)
    # The scheduler's next tick makes the edition of a slot that has none (schedule.tick).
    waiting = slot if slot is not None and session.scalar(select(Edition.id).where(Edition.period == slot)) is None else None
    preview = planning.preview(session, settings, now)
    return Upcoming(next_slot(settings, now), waiting, preview.recipients, len(preview.listings),
                    state.open_edition(session))


def open_alarms(session: Session, limit: int = 50) -> list[OperatorAlarm]:
    """Alarms nobody has marked seen yet, newest first."""
    return list(session.scalars(select(OperatorAlarm).where(OperatorAlarm.seen_at.is_(None))
                                .order_by(OperatorAlarm.id.desc()).limit(limit)))


def mark_alarms_seen(session: Session, alarm_ids: list[int] | None = None, now: datetime | None = None) -> int:
    """Mark the open alarms with these ids (all open ones when None) seen; how many."""
    query = update(OperatorAlarm).where(OperatorAlarm.seen_at.is_(None))
    if alarm_ids is not None:
        query = query.where(OperatorAlarm.id.in_(alarm_ids))
    return int(session.execute(query.values(seen_at=now or utcnow())).rowcount or 0)


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    state: str
    queues: list[str]
    last_seen: datetime | None


@dataclass
class QueueStatus:
    """What RQ knows: jobs waiting per queue, the workers and schedulers that beat lately.
    `error` says why nothing is known (Redis does not answer)."""

    depths: dict[str, int] = field(default_factory=dict)
    workers: list[WorkerInfo] = field(default_factory=list)
    scheduler_seen: datetime | None = None
    error: str | None = None

    @property
    def workers_alive(self) -> int:
        cutoff = utcnow() - SILENCE
        return sum(1 for w in self.workers if w.last_seen is not None and w.last_seen >= cutoff)

    @property
    def scheduler_alive(self) -> bool:
        return self.scheduler_seen is not None and self.scheduler_seen >= utcnow() - SILENCE


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def queue_status(redis: Redis, queue_names: tuple[str, ...]) -> QueueStatus:
    """Queue depths, workers and the cron scheduler's last heartbeat, as RQ records them
    (rq 3.0: Worker.all, CronScheduler.all, both with a heartbeat)."""
    from rq import Queue, Worker
    from rq.cron import CronScheduler

    status = QueueStatus()
    try:
        status.depths = {name: Queue(name, connection=redis).count for name in queue_names}
        for worker in Worker.all(connection=redis):
            status.workers.append(WorkerInfo(worker.name, str(worker.get_state()), worker.queue_names(),
                                             _naive_utc(worker.last_heartbeat)))
        beats = [_naive_utc(s.last_heartbeat) for s in CronScheduler.all(connection=redis)]
        status.scheduler_seen = max((b for b in beats if b is not None), default=None)
    except RedisError as exc:
        status.error = f"Redis does not answer: {' '.join(str(exc).split())[:200]}"
    return status
