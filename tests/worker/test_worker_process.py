"""`newsletter worker` as an operator runs it: one process that runs its jobs and RQ's
scheduler itself, so kill -9 leaves nothing behind, and a worker stopped with SIGTERM hands
the scheduling of retries to the next worker at once."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import psutil
from rq import Queue
from rq.job import Job, JobStatus
from rq.scheduler import SCHEDULER_LOCKING_KEY_TEMPLATE

from newsletter import queueing
from tests.processes import start, stop
from worker import jobs


def wait_until(condition, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.1)


def holds_scheduler_lock(redis_conn, queue: str = queueing.MAIL) -> bool:  # type: ignore[no-untyped-def]
    return bool(redis_conn.exists(SCHEDULER_LOCKING_KEY_TEMPLATE % queue))


def run_reconcile(redis_conn, delay: float = 0) -> Job:  # type: ignore[no-untyped-def]
    """A harmless real job (the reconciler) on the maintenance queue."""
    queue = Queue(queueing.MAINTENANCE, connection=redis_conn)
    if delay:
        return queue.enqueue_in(timedelta(seconds=delay), jobs.reconcile, result_ttl=600)
    return queue.enqueue(jobs.reconcile, result_ttl=600)


def finished(job: Job) -> bool:
    return job.get_status(refresh=True) == JobStatus.FINISHED


def session_members(session_id: int) -> list[int]:
    """Live processes in a session (zombies excluded)."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(process.pid) == session_id:
                members.append(process.pid)
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            continue
    return members


def test_sigkill_of_a_worker_leaves_no_process_of_it_running(settings, redis_conn):
    worker = start(settings, "worker")  # in a session of its own: its id is the worker's pid
    try:
        wait_until(lambda: holds_scheduler_lock(redis_conn), 30, "the worker's scheduler took its lock")
        job = run_reconcile(redis_conn)
        wait_until(lambda: finished(job), 30, "the worker ran a job")
        assert psutil.Process(worker.pid).children(recursive=True) == []
        worker.kill()  # SIGKILL to the worker alone, as the kernel's OOM killer would
        worker.wait(timeout=10)
        time.sleep(0.5)
        assert session_members(worker.pid) == []
    finally:
        stop(worker)


def test_a_stopped_worker_hands_delayed_jobs_to_the_next_worker_at_once(settings, redis_conn):
    first = start(settings, "worker")
    try:
        wait_until(lambda: holds_scheduler_lock(redis_conn), 30, "the first worker's scheduler took its lock")
    finally:
        stop(first)  # SIGTERM: a warm shutdown
    assert first.returncode == 0
    # RQ's lock would otherwise live on for a minute, and delayed jobs (retries) with it.
    assert not holds_scheduler_lock(redis_conn)
    second = start(settings, "worker")
    try:
        job = run_reconcile(redis_conn, delay=1)
        wait_until(lambda: finished(job), 20, "the second worker ran the delayed job")
    finally:
        stop(second)
