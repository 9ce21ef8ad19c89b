"""The figures of GET /metrics, read from the database (and the queue depths from Redis) at
scrape time: every gunicorn worker, and every host, answers the same, because none of them
counts anything itself (DESIGN: the database is the source of truth).

Everything here is a gauge. The database cannot back a Prometheus counter: it deletes rows
by design (unconfirmed signups with their consent events after
NEWSLETTER_UNCONFIRMED_RETENTION_DAYS, an erased reader's mails and deliveries at once, former
readers after NEWSLETTER_FORMER_READER_RETENTION_DAYS, the consent proof after years), and a
counter that falls reads to Prometheus as a restart, so rate() and increase() would report
the whole remaining count as new. Activity is given as a sliding window instead (consent
events of the last 24 hours), and the send latency as a gauge histogram over a stated
window: read it with histogram_quantile() on the buckets as they are, without rate()."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.registry import ScheduledJobRegistry
from sqlalchemy import Float, and_, case, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

from newsletter.models import (
    ConsentEvent,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionState,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from newsletter.queueing import ALL as QUEUES

ACTIVITY_WINDOW = timedelta(hours=24)
# The consent events an operator follows: the rest of the log is about single readers.
ACTIVITY_EVENTS = ("signup", "confirmed", "unsubscribed")
# Transactional mail should leave within seconds; a digest edition takes minutes to hours.
MAIL_LATENCY_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600)
EDITION_LATENCY_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)
# Open editions are the only ones with pending deliveries: the join keeps the count on the
# (edition_id, status) index instead of reading every delivery ever made.
OPEN_EDITIONS = (EditionState.SENDING, EditionState.PAUSED)


class seconds_between(FunctionElement[float]):  # noqa: N801 - used like a SQL function
    """`end - start` in seconds, as SQLite and PostgreSQL each spell it."""

    type = Float()
    inherit_cache = True


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    end, start = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    end, start = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"EXTRACT(EPOCH FROM ({end} - {start}))"


def _bucket_columns(seconds: Any, bounds: Sequence[float]) -> list[Any]:
    """One SUM(CASE ...) per bound (cumulative by construction), then the count and the sum:
    the whole histogram in one statement."""
    return [func.sum(case((seconds <= bound, 1), else_=0)) for bound in bounds] + [func.count(), func.sum(seconds)]


def _histogram_values(row: Sequence[Any], bounds: Sequence[float]) -> tuple[list[tuple[str, float]], float]:
    counts = [int(value or 0) for value in row[: len(bounds) + 1]]
    buckets = [(_le(bound), float(n)) for bound, n in zip(bounds, counts)]
    buckets.append(("+Inf", float(counts[-1])))
    return buckets, float(row[len(bounds) + 1] or 0)


def _le(bound: float) -> str:
    return str(float(bound))


def subscriber_families(session: Session, now: datetime) -> Iterator[Metric]:
    """Subscribers by state, suppressed addresses, and the consent log's last 24 hours."""
    by_state = dict.fromkeys(SubscriberStatus, 0)
    by_state.update(session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all())
    family = GaugeMetricFamily("newsletter_subscribers", "Subscribers by state, as the database holds them now.",
                               labels=["state"])
    for state, count in sorted(by_state.items()):
        family.add_metric([state], count)
    yield family
    yield GaugeMetricFamily(
        "newsletter_suppressed_addresses",
        "Addresses on the suppression list (unsubscribed, erased, bounced, complained): never mailed by accident.",
        value=session.scalar(select(func.count()).select_from(Suppression)) or 0,
    )
    events = dict.fromkeys(ACTIVITY_EVENTS, 0)
    events.update(session.execute(
        select(ConsentEvent.event, func.count())
        .where(ConsentEvent.event.in_(ACTIVITY_EVENTS), ConsentEvent.at >= now - ACTIVITY_WINDOW)
        .group_by(ConsentEvent.event)
    ).all())
    family = GaugeMetricFamily(
        "newsletter_consent_events_last_24h",
        "Consent-log events of the last 24 hours by event: signup (every signup accepted, CSV imports "
        "and a repeat for a pending address included), confirmed, unsubscribed. A sliding window, not a counter: "
        "the log is purged (unconfirmed signups after NEWSLETTER_UNCONFIRMED_RETENTION_DAYS, the proof after "
        "years), so no lifetime total can be read from it.",
        labels=["event"],
    )
    for event, count in events.items():
        family.add_metric([event], count)
    yield family


def mail_families(session: Session, now: datetime) -> Iterator[Metric]:
    """Transactional mails by kind and status, mails waiting for a retry, and how long the
    transactional mails of the last 24 hours took to leave."""
    rows = session.execute(
        select(OutboxMessage.kind, OutboxMessage.status, func.count()).group_by(OutboxMessage.kind, OutboxMessage.status)
    ).all()
    by_kind_status = {(kind, status): 0 for kind in OutboxKind for status in OutboxStatus}
    by_kind_status.update({(kind, status): count for kind, status, count in rows})
    family = GaugeMetricFamily(
        "newsletter_transactional_mails",
        "Transactional mails (confirm, welcome, manage, data) on record by kind and status: pending and sending "
        "are on their way, sent, failed, bounced and cancelled are outcomes. Rows go with their reader "
        "(erasure, purges), so this can fall. Digest mails: newsletter_last_edition_deliveries.",
        labels=["kind", "status"],
    )
    for (kind, status), count in sorted(by_kind_status.items()):
        family.add_metric([kind, status], count)
    yield family

    waiting = {kind: 0 for kind in ("digest", *OutboxKind)}
    waiting.update(session.execute(
        select(OutboxMessage.kind, func.count())
        .where(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.last_error.is_not(None))
        .group_by(OutboxMessage.kind)
    ).all())
    waiting["digest"] = session.scalar(
        select(func.count()).select_from(Delivery).join(Edition, Edition.id == Delivery.edition_id).where(
            Edition.state.in_(OPEN_EDITIONS), Delivery.status == DeliveryStatus.PENDING,
            Delivery.last_error.is_not(None),
        )
    ) or 0
    family = GaugeMetricFamily(
        "newsletter_mails_waiting_for_retry",
        "Mails whose last try failed for a reason that may pass (a 4xx reply, a relay away) and that wait for "
        "their next try, by kind (digest: deliveries of open editions).",
        labels=["kind"],
    )
    for kind, count in waiting.items():
        family.add_metric([kind], count)
    yield family

    seconds = seconds_between(OutboxMessage.sent_at, OutboxMessage.created_at)
    histogram = GaugeHistogramMetricFamily(
        "newsletter_mail_send_latency_seconds",
        "Seconds from a transactional mail's creation (the reader's request) to the relay accepting it, over "
        "the mails sent in the last 24 hours, by kind. A window, not a counter: use histogram_quantile() on "
        "the buckets as they are, without rate().",
        labels=["kind"],
    )
    for kind, *values in session.execute(
        select(OutboxMessage.kind, *_bucket_columns(seconds, MAIL_LATENCY_BUCKETS))
        .where(OutboxMessage.status == OutboxStatus.SENT, OutboxMessage.sent_at >= now - ACTIVITY_WINDOW)
        .group_by(OutboxMessage.kind).order_by(OutboxMessage.kind)
    ).all():
        buckets, total = _histogram_values(values, MAIL_LATENCY_BUCKETS)
        histogram.add_metric([kind], buckets, total)
    yield histogram


def edition_families(session: Session) -> Iterator[Metric]:
    """The progress of the edition made last: its state, deliveries by status, and how long
    its sent deliveries took from the edition's creation. No samples before the first."""
    info = GaugeMetricFamily("newsletter_last_edition_info",
                             "The edition made last: its id, state (sending, paused, cancelled, done) and trigger; "
                             "always 1.", labels=["edition", "state", "trigger"])
    created = GaugeMetricFamily("newsletter_last_edition_created_timestamp_seconds",
                                "When the edition made last was created (its cut-off), as a Unix time.",
                                labels=["edition"])
    planned = GaugeMetricFamily("newsletter_last_edition_planned",
                                "Deliveries planned for the edition made last (its recipients when it was made).",
                                labels=["edition"])
    deliveries = GaugeMetricFamily(
        "newsletter_last_edition_deliveries",
        "Deliveries of the edition made last by status: pending and sending are still to go, sent, failed, "
        "bounced and cancelled are outcomes.", labels=["edition", "status"])
    histogram = GaugeHistogramMetricFamily(
        "newsletter_last_edition_send_latency_seconds",
        "Seconds from the creation of the edition made last to the relay accepting each of its digests, over "
        "its sent deliveries. Read it with histogram_quantile() on the buckets as they are, without rate().",
        labels=["edition"])
    edition = session.scalar(select(Edition).order_by(Edition.id.desc()).limit(1))
    if edition is not None:
        label = str(edition.id)
        info.add_metric([label, edition.state, edition.trigger], 1)
        created.add_metric([label], _unix(edition.created_at))
        planned.add_metric([label], edition.planned)
        by_status = dict.fromkeys(DeliveryStatus, 0)
        by_status.update(session.execute(
            select(Delivery.status, func.count()).where(Delivery.edition_id == edition.id).group_by(Delivery.status)
        ).all())
        for status, count in by_status.items():
            deliveries.add_metric([label, status], count)
        seconds = seconds_between(Delivery.sent_at, Edition.created_at)
        row = session.execute(
            select(*_bucket_columns(seconds, EDITION_LATENCY_BUCKETS))
            .select_from(Delivery).join(Edition, Edition.id == Delivery.edition_id)
            .where(and_(Delivery.edition_id == edition.id, Delivery.status == DeliveryStatus.SENT))
        ).one()
        buckets, total = _histogram_values(tuple(row), EDITION_LATENCY_BUCKETS)
        histogram.add_metric([label], buckets, total)
    yield from (info, created, planned, deliveries, histogram)


def queue_families(redis: Redis) -> Iterator[Metric]:
    """Whether Redis answers, and the depth of each queue: one round trip. Redis away gives
    `newsletter_redis_up 0` and no queue samples, not an error: the database, which the rest
    of the figures come from, may well be there."""
    queued = GaugeMetricFamily("newsletter_queue_jobs", "Jobs waiting in each RQ queue for a worker.",
                               labels=["queue"])
    scheduled = GaugeMetricFamily(
        "newsletter_queue_scheduled_jobs",
        "Jobs of each RQ queue waiting for their time (retries): they need a worker running the scheduler.",
        labels=["queue"])
    workers = GaugeMetricFamily("newsletter_workers", "RQ workers alive: registered in Redis, heartbeat not expired.")
    queues = [Queue(name, connection=redis) for name in QUEUES]
    try:
        with redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.llen(queue.key)
                pipe.zcard(ScheduledJobRegistry(queue=queue).key)
            pipe.smembers(Worker.redis_workers_keys)
            answers = pipe.execute()
        # A worker killed without warning stays in the set until RQ cleans it up; its own
        # key expires with its heartbeat, so count the keys that still exist.
        alive = redis.exists(*answers[-1]) if answers[-1] else 0
    except RedisError:
        up = 0
    else:
        up = 1
        for i, queue in enumerate(queues):
            queued.add_metric([queue.name], answers[2 * i])
            scheduled.add_metric([queue.name], answers[2 * i + 1])
        workers.add_metric([], alive)
    yield GaugeMetricFamily("newsletter_redis_up", "1 when Redis answered this scrape, 0 when it did not.", value=up)
    yield from (queued, scheduled, workers)


def _unix(moment: datetime) -> float:
    """A naive UTC time (what every column holds) as a Unix time."""
    return (moment - datetime(1970, 1, 1)).total_seconds()


class NewsletterCollector(Collector):
    """The service's figures, read anew at every scrape from a session and a Redis client
    that the callables hand out (the web gives its request's). A database that does not
    answer raises (the scrape fails visibly); Redis that does not answer is a figure."""

    def __init__(self, session: Callable[[], Session], redis: Callable[[], Redis],
                 now: Callable[[], datetime] = utcnow) -> None:
        self._session, self._redis, self._now = session, redis, now

    def collect(self) -> Iterable[Metric]:
        session, now = self._session(), self._now()
        # Read everything before handing anything out: a database error then fails the
        # scrape as a whole instead of cutting its text off halfway.
        families = [*subscriber_families(session, now), *mail_families(session, now), *edition_families(session)]
        session.rollback()  # end the read: on SQLite every transaction holds the write lock (db.py)
        return [*families, *queue_families(self._redis())]
