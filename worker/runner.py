"""Starting a worker and the scheduler (called by `newsletter worker` and `newsletter scheduler`)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from rq import Queue

from newsletter.config import Settings

from . import context, jobs, queues
from .in_process import InProcessWorker

if TYPE_CHECKING:
    from rq.cron import CronScheduler

log = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 3600


def run_worker(settings: Settings, burst: bool = False) -> bool:
    """Reconcile, then work all queues in this process (with RQ's scheduler in a thread,
    for retries at a time)."""
    ctx = context.configure(settings)
    jobs.reconcile()
    ctx.renderer.warm()  # templates compiled once, not on the first mail
    worker = InProcessWorker([Queue(name, connection=ctx.redis) for name in queues.ALL], connection=ctx.redis)
    return bool(worker.work(burst=burst, with_scheduler=True, logging_level="INFO"))


def build_scheduler(settings: Settings) -> CronScheduler:
    """The periodic jobs. They only enqueue: workers run them, and each asks the database
    what is due, so two schedulers or a restart neither skip nor double anything."""
    from rq.cron import CronScheduler  # not needed by workers, which import this module too

    ctx = context.configure(settings)
    cron = CronScheduler(connection=ctx.redis, logging_level="INFO")
    cron.register(jobs.reconcile, queue_name=queues.MAINTENANCE, interval=settings.reconcile_interval_seconds)
    cron.register(jobs.purge, queue_name=queues.MAINTENANCE, interval=PURGE_EVERY_SECONDS)
    cron.register(jobs.digest_tick, queue_name=queues.MAINTENANCE, interval=settings.tick_interval_seconds)
    return cron


def run_scheduler(settings: Settings) -> None:
    """Run the scheduler until stopped; survive Redis going away and coming back."""
    while True:
        try:
            build_scheduler(settings).start()
            return
        except RedisError as exc:
            log.warning("scheduler: Redis unavailable (%s); retrying in 5 s", exc)
            time.sleep(5)
