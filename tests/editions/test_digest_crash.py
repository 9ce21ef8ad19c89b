"""Crash safety of digest delivery, each against real processes: three workers sharing an
edition, SIGKILL mid-send, Redis flushed mid-send, a relay answering 451 for a while."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.editions import planning
from newsletter.editions import state as edition_state
from newsletter.models import Edition, Listing, Subscriber, email_hash, utcnow
from tests.helpers import queue_edition
from tests.processes import kill_tree, start, stop

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
READERS = 240


@pytest.fixture
def edition(database, settings):  # type: ignore[no-untyped-def]
    """An edition of READERS deliveries, planned and not yet queued."""
    with database.session_scope() as session:
        session.add(Listing(external_id="job-1", title="Machine Learning Engineer (m/w/d)",
                            url="https://jobs.example.org/stellen/1", company="KI Werk GmbH", location="München",
                            published_at=utcnow()))
        session.add_all(
            Subscriber(email=f"r{n}@example.org", email_hash=email_hash(f"r{n}@example.org"), status="confirmed")
            for n in range(READERS)
        )
    with database.session_scope() as session:
        return planning.create_edition(session, settings, "test").id


def slow_sink(smtp, seconds: float) -> None:  # type: ignore[no-untyped-def]
    original = smtp.handler.handle_DATA

    async def handle(server, session, envelope):  # type: ignore[no-untyped-def]
        await asyncio.sleep(seconds)
        return await original(server, session, envelope)

    smtp.handler.handle_DATA = handle  # type: ignore[method-assign]








def wait_for_state(database, edition_id: int, state: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.session_scope() as session:
            if session.get(Edition, edition_id).state == state:
                return
        time.sleep(0.2)
    with database.session_scope() as session:
        raise AssertionError(f"edition still {session.get(Edition, edition_id).state}: {edition_state.counts(session, edition_id)}")


def received(smtp) -> Counter[str]:  # type: ignore[no-untyped-def]
    return Counter(m.rcpt_tos[0] for m in smtp.messages)


def test_three_workers_share_an_edition_and_a_sigkill_loses_nobody(settings, database, smtp, edition, redis_conn):
    own = replace(settings, send_lease_seconds=5, send_chunk_size=20, reconcile_interval_seconds=1)
    slow_sink(smtp, 0.01)
    queue_edition(own, edition)
    workers = [start(own, "worker") for _ in range(3)]
    scheduler = start(own, "scheduler")  # its reconciler takes over the killed worker's chunk
    try:
        deadline = time.monotonic() + 60
        while len(smtp.messages) < READERS // 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        kill_tree(workers[0])
        wait_for_state(database, edition, "done")
    finally:
        for process in [*workers[1:], scheduler]:
            stop(process)
    counts = received(smtp)
    assert set(counts) == {f"r{n}@example.org" for n in range(READERS)}  # nobody lost
    doubled = [address for address, n in counts.items() if n > 1]
    assert len(doubled) <= 1 and all(n <= 2 for n in counts.values())  # at most the one in flight
    with database.session_scope() as session:
        assert edition_state.counts(session, edition)["sent"] == READERS


def test_redis_flushed_mid_send_the_reconciler_finishes_the_edition(settings, database, smtp, edition, redis_conn):
    own = replace(settings, send_chunk_size=20, reconcile_interval_seconds=1, requeue_after_seconds=1)
    slow_sink(smtp, 0.01)
    queue_edition(own, edition)
    worker = start(own, "worker")
    try:
        deadline = time.monotonic() + 60
        while len(smtp.messages) < READERS // 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        redis_conn.flushdb()  # every queued chunk job is gone
        assert len(smtp.messages) < READERS
        scheduler = start(own, "scheduler")
        try:
            wait_for_state(database, edition, "done")
        finally:
            stop(scheduler)
    finally:
        stop(worker)
    counts = received(smtp)
    assert len(counts) == READERS and max(counts.values()) == 1


def test_a_worker_killed_between_taking_a_chunk_and_starting_it_loses_nobody(settings, database, smtp, edition, redis_conn):
    """RQ takes a job off its queue with BLPOP and marks it started a moment later; a worker
    killed in between leaves the job's hash saying "queued" while no queue holds it."""
    from rq import SimpleWorker

    from newsletter import job_context, queueing
    from worker import jobs

    own = replace(settings, send_chunk_size=20)
    queue_edition(own, edition)
    # What the killed worker's BLPOP did: the first chunk's job is off the queue, unstarted.
    taken = redis_conn.lpop(f"rq:queue:{queueing.DIGEST}")
    assert taken == queueing.chunk_job_id(edition, 1).encode()
    ctx = job_context.configure(own)
    try:
        jobs.reconcile()
        SimpleWorker(list(queueing.ALL), connection=ctx.redis).work(burst=True, with_scheduler=False)
    finally:
        ctx.database.dispose()
    counts = received(smtp)
    assert len(counts) == READERS and max(counts.values()) == 1
    with database.session_scope() as session:
        assert session.get(Edition, edition).state == "done"


def test_relay_answering_451_for_a_while_then_everything_arrives_once(settings, database, smtp, edition, redis_conn):
    own = replace(settings, retry_base_seconds=0.5, send_chunk_size=40)
    until = time.monotonic() + 3
    smtp.handler.rcpt_reply = lambda address: "451 4.7.1 try again later" if time.monotonic() < until else None
    queue_edition(own, edition)
    worker = start(own, "worker")  # RQ's scheduler in the worker runs the delayed retries
    try:
        wait_for_state(database, edition, "done", timeout=180)
    finally:
        stop(worker)
    counts = received(smtp)
    assert len(counts) == READERS and max(counts.values()) == 1
    with database.session_scope() as session:
        retried = session.scalars(select(Edition)).one()
        assert retried.state == "done"
