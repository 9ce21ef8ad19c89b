"""`newsletter worker` and `newsletter scheduler`: the one place the CLI reaches into
worker/. Both start without Flask (console.py runs them in this group of their own): they
are long-lived, one per host or more, and what they import they hold for good
(bench/digest.py measures the worker's memory)."""

from __future__ import annotations

import logging

import click

from newsletter.config import Settings


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_worker_command(settings: Settings, burst: bool) -> None:
    """`newsletter worker [--burst]`: reconcile, then work every queue in this process."""
    from worker.runner import run_worker

    _log_to_stderr()
    run_worker(settings, burst=burst)


def run_scheduler_command(settings: Settings) -> None:
    """`newsletter scheduler`: the periodic jobs until SIGTERM or SIGINT."""
    from worker.runner import run_scheduler

    _log_to_stderr()
    run_scheduler(settings)


def light_group(settings: Settings) -> click.Group:
    """The two process commands as a click group of their own (same options and help as
    in the full group)."""
    group = click.Group(name="newsletter")

    @group.command("worker")
    @click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
    def worker_command(burst: bool) -> None:
        """An RQ worker for all queues; re-queues unfinished work from the database at start."""
        run_worker_command(settings, burst)

    @group.command("scheduler")
    def scheduler_command() -> None:
        """The long-running periodic trigger: reconciler every minute, purge every hour."""
        run_scheduler_command(settings)

    return group
