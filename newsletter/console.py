"""The `newsletter` console script. `worker` and `scheduler` start without Flask: they are
long-lived, one per host or more, and what they import they hold for good (bench/digest.py
measures the worker's memory). Every other command runs in the Flask command group."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

import click

from .config import ConfigError, Settings, load_settings

LIGHT_COMMANDS = ("worker", "scheduler")


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and a non-zero exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_worker_command(settings: Settings, burst: bool) -> None:
    from redis.exceptions import RedisError

    from worker.runner import run_worker

    _log_to_stderr()
    try:
        run_worker(settings, burst=burst)
    except RedisError as exc:
        fail(f"Redis at {settings.redis_url} does not answer: {exc}")


def run_scheduler_command(settings: Settings) -> None:
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


def main(argv: Sequence[str] | None = None) -> None:
    """Validate the configuration first (exit 2 naming the variable), then run the command."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc), code=2)
    if args[:1] and args[0] in LIGHT_COMMANDS:
        light_group(settings).main(args=args, prog_name="newsletter")
        return
    from . import cli

    cli.run(settings, args)


if __name__ == "__main__":
    main()
