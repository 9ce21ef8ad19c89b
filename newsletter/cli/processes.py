"""Running the service: its schema (`newsletter db upgrade`), its long-running processes
(`newsletter worker`, `newsletter scheduler`) and the demo that starts them all. The one
place the CLI reaches into worker/.

The worker and the scheduler start without Flask: console.main runs them in FLASK_FREE, a
group of their own, and they are in the Flask command group too (for its help and Flask's
test runner). They are long-lived, one per host or more, and what this module imports they
hold for good (bench/digest.py measures the worker's memory): so nothing here imports
Flask, and what only `db` and `demo` need is imported in their functions."""

from __future__ import annotations

import logging

import click

from newsletter.cli.context import settings
from newsletter.cli.errors import fail
from worker.runner import run_scheduler, run_worker


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
def worker_command(burst: bool) -> None:
    """An RQ worker for all queues; re-queues unfinished work from the database at start."""
    _log_to_stderr()
    run_worker(settings(), burst=burst)


@click.command("scheduler")
def scheduler_command() -> None:
    """The long-running periodic trigger: reconciler every minute, purge every hour."""
    _log_to_stderr()
    run_scheduler(settings())


# console.main runs these commands here, without Flask.
FLASK_FREE = click.Group("newsletter", commands=[worker_command, scheduler_command])


@click.group("db")
def db_group() -> None:
    """The database schema."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest revision (idempotent)."""
    # Alembic: about 10 MB that the worker, which imports this module, would hold for good.
    from newsletter.migrate import upgrade

    try:
        revision = upgrade(settings().database_url)
    except Exception as exc:  # noqa: BLE001 - one line for the operator, whatever broke
        fail(f"database upgrade failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    click.echo(f"database at revision {revision}")


@click.command("demo")
@click.option("--port", default=5000, show_default=True)
def demo_command(port: int) -> None:
    """Start web, worker, scheduler and a local mail inbox for a first look (make demo)."""
    # The demo's SMTP inbox, embedded Redis and Alembic: about 11 MB the worker would hold.
    from newsletter.demo.run import run_demo

    run_demo(settings(), port)
