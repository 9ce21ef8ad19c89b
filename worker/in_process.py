"""An RQ worker that runs everything in its own process: jobs in the main thread
(SimpleWorker) and RQ's scheduler, which moves retries whose time has come onto their
queue, in a thread.

RQ's default forks a work horse per job and the scheduler as a child process. Each fork
holds the parent's pages, and every page the parent or child writes afterwards (CPython
writes reference counts on reading) becomes a private copy: bench/digest.py measured
about 85 MB for worker, horse and scheduler together where one process needs about 65.
Our jobs need no fork for safety: they take ids, commit each outcome and are re-queued
from the database after a crash, and one process also keeps its database connections and
compiled templates from job to job. Written against rq 3.0.0 (pinned)."""

from __future__ import annotations

import threading
from typing import Any

from rq import SimpleWorker
from rq.scheduler import RQScheduler


class ThreadScheduler(RQScheduler):
    """RQ's scheduler loop (locks, heartbeat, enqueue what is due) in a daemon thread."""

    def start(self) -> threading.Thread:  # type: ignore[override]
        self._status = self.Status.STARTED
        self._stop_requested = False
        thread = threading.Thread(target=self.work, name="rq-scheduler", daemon=True)
        self._process = thread  # RQ's worker asks it is_alive() before starting another
        thread.start()
        return thread

    def _install_signal_handlers(self) -> None:
        # Signals belong to the main thread: the worker stops this thread (stop_scheduler).
        pass


class InProcessWorker(SimpleWorker):
    """SimpleWorker whose scheduler is a ThreadScheduler."""

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO", *args: Any, **kwargs: Any) -> None:
        # The same steps as rq's Worker._start_scheduler, with the thread instead of a fork.
        self.scheduler = ThreadScheduler(
            self.queues, connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()

    def stop_scheduler(self) -> None:
        """Ask the thread to stop (it releases its locks, so another worker's scheduler can
        take over at once) and wait for it a little."""
        scheduler = self.scheduler
        thread = scheduler._process if scheduler is not None else None
        if isinstance(thread, threading.Thread):
            scheduler.request_stop()  # type: ignore[union-attr]
            thread.join(timeout=(scheduler.interval or 1) + 5)  # type: ignore[union-attr]
