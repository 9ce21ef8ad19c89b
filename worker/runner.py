"""Starting a worker and the scheduler (called by `newsletter worker` and `newsletter scheduler`).

SIGTERM and SIGINT stop either cleanly (exit 0), also while Redis is gone: RQ says goodbye
to Redis on its way out, and with Redis gone that goodbye raises a RedisError which would
otherwise read as an outage (exit 1, or for the scheduler: wait and start again, the stop
forgotten)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import StopRequested

from newsletter import job_context, queueing
from newsletter.config import Settings

from . import jobs
from .in_process import InProcessWorker

if TYPE_CHECKING:
    from rq.cron import CronScheduler

log = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 3600
REDIS_RETRY_SECONDS = 5


class StopSignals:
    """SIGTERM and SIGINT raise StopRequested (as RQ's own handlers do) and are remembered,
    so that a RedisError on the way out can be told from an outage."""

    def __init__(self) -> None:
        self.requested = False
        self.install()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.requested = True
        log.info("%s: stopping", signal.Signals(signum).name)
        raise StopRequested()


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    # RQ's scheduler thread ends on the first RedisError (its heartbeat, or releasing its
    # locks on a stop); the worker's maintenance starts a new one once Redis answers again.
    # An outage is one line in the log, not a traceback; anything else keeps its traceback.
    if issubclass(args.exc_type, RedisError):
        name = args.thread.name if args.thread is not None else "a thread"
        log.warning("%s: ended, Redis unavailable (%s)", name, args.exc_value)
        return
    threading.__excepthook__(args)


def run_worker(settings: Settings, burst: bool = False) -> bool:
    """Reconcile, then work all queues in this process (with RQ's scheduler in a thread,
    for retries at a time)."""
    stop = StopSignals()  # until RQ installs its own (warm shutdown after the current job)
    threading.excepthook = _thread_excepthook
    worker: InProcessWorker | None = None
    try:
        ctx = job_context.configure(settings)
        jobs.reconcile()
        ctx.renderer.warm()  # templates compiled once, not on the first mail
        worker = InProcessWorker([Queue(name, connection=ctx.redis) for name in queueing.ALL], connection=ctx.redis)
        return bool(worker.work(burst=burst, with_scheduler=True, logging_level="INFO"))
    except StopRequested:
        return False
    except RedisError as exc:
        # rq 3.0.0 (pinned) notes a warm shutdown request in _shutdown_requested_date.
        if not (stop.requested or (worker is not None and worker._shutdown_requested_date is not None)):
            raise
        log.warning("worker: stopped; Redis did not answer on the way out (%s)", exc)
        return False


def build_scheduler(settings: Settings) -> CronScheduler:
    """The periodic jobs. They only enqueue: workers run them, and each asks the database
    what is due, so two schedulers or a restart neither skip nor double anything."""
    from rq.cron import CronScheduler  # not needed by workers, which import this module too

    ctx = job_context.configure(settings)
    cron = CronScheduler(connection=ctx.redis, logging_level="INFO")
    cron.register(jobs.reconcile, queue_name=queueing.MAINTENANCE, interval=settings.reconcile_interval_seconds)
    cron.register(jobs.purge, queue_name=queueing.MAINTENANCE, interval=PURGE_EVERY_SECONDS)
    cron.register(jobs.digest_tick, queue_name=queueing.MAINTENANCE, interval=settings.tick_interval_seconds)
    if settings.bounce_imap_url:
        cron.register(jobs.poll_bounces, queue_name=queueing.MAINTENANCE, interval=settings.bounce_poll_seconds)
    return cron


def run_scheduler(settings: Settings) -> None:
    """Run the scheduler until SIGTERM or SIGINT; survive Redis going away and coming back."""
    stop = StopSignals()
    try:
        while True:
            cron = build_scheduler(settings)
            # Keep our handlers: RQ's would raise the same StopRequested but not remember it
            # (rq 3.0.0, pinned: CronScheduler.start installs them through this method).
            setattr(cron, "_install_signal_handlers", stop.install)
            try:
                cron.start()  # returns after a stop it caught itself
                return
            except RedisError as exc:
                if stop.requested:
                    log.warning("scheduler: stopped; Redis did not answer on the way out (%s)", exc)
                    return
                log.warning("scheduler: Redis unavailable (%s); retrying in %d s", exc, REDIS_RETRY_SECONDS)
                time.sleep(REDIS_RETRY_SECONDS)
    except StopRequested:  # while building the scheduler or waiting for Redis
        log.info("scheduler: stopped")
