"""The `newsletter` command group (a Flask CLI group). Exit 0 on success; otherwise a
non-zero status and one line on stderr saying why."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import NoReturn

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup

from .config import ConfigError, Settings, load_settings


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and a non-zero exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def settings() -> Settings:
    value: Settings = current_app.extensions["newsletter_settings"]
    return value


def _create_app() -> Flask:
    from . import create_app

    return create_app(_SETTINGS)


_SETTINGS: Settings | None = None

cli = FlaskGroup(
    name="newsletter",
    create_app=_create_app,
    add_default_commands=True,
    load_dotenv=False,
    set_debug_flag=False,
    help="The jobs newsletter: subscribers, listings, digests, workers.",
)


# -- database ----------------------------------------------------------------------------

@cli.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest revision (idempotent)."""
    from .migrate import upgrade

    try:
        revision = upgrade(settings().database_url)
    except Exception as exc:  # noqa: BLE001 - one line for the operator, whatever broke
        fail(f"database upgrade failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    click.echo(f"database at revision {revision}")


# -- subscribers -------------------------------------------------------------------------

@cli.group()
def subscribers() -> None:
    """Subscribers: import, statistics, purge."""


@subscribers.command("stats")
def subscribers_stats() -> None:
    """Print subscriber counts as `key: value` lines."""
    from . import subscriptions
    from .db import get_session

    for key, value in subscriptions.stats(get_session()).items():
        click.echo(f"{key}: {value}")


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def subscribers_import(file: Path) -> None:
    """Import a CSV (email, language, keywords, location, confirmed_at, consent_ip,
    consent_text). Rows with confirmed_at become confirmed; the others get a
    double-opt-in mail. Exit status 1 if any row was rejected."""
    from .db import get_session
    from .subscriber_import import import_csv
    from .web.extensions import enqueue_outbox_after_commit

    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{file}: cannot read: {exc}")
    session = get_session()
    report = import_csv(session, text, source=file.name)
    session.commit()
    enqueue_outbox_after_commit(report.outbox_ids)
    click.echo(f"confirmed: {report.confirmed}")
    click.echo(f"pending: {report.pending}")
    click.echo(f"skipped: {report.skipped}")
    click.echo(f"rejected: {len(report.rejected)}")
    for reason in report.rejected:
        click.echo(f"{file}: {reason}", err=True)
    if report.rejected:
        sys.exit(1)


@subscribers.command("purge")
def subscribers_purge() -> None:
    """Delete unconfirmed signups past NEWSLETTER_UNCONFIRMED_RETENTION_DAYS and consent
    proof past NEWSLETTER_CONSENT_RETENTION_DAYS."""
    from . import subscriptions
    from .db import get_session

    session = get_session()
    s = settings()
    unconfirmed = subscriptions.purge_unconfirmed(session, s.unconfirmed_retention_days)
    records = subscriptions.purge_consent_records(session, s.consent_retention_days)
    session.commit()
    click.echo(f"unconfirmed: {unconfirmed}")
    click.echo(f"consent_records: {records}")


# -- processes ----------------------------------------------------------------------------

@cli.command("worker")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
def worker_command(burst: bool) -> None:
    """An RQ worker for all queues; re-queues unfinished work from the database at start."""
    from redis.exceptions import RedisError

    from worker.runner import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_worker(settings(), burst=burst)
    except RedisError as exc:
        fail(f"Redis at {settings().redis_url} does not answer: {exc}")


@cli.command("scheduler")
def scheduler_command() -> None:
    """The long-running periodic trigger: reconciler every minute, purge every hour."""
    from worker.runner import run_scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_scheduler(settings())


@cli.command("demo")
@click.option("--port", default=5000, show_default=True)
def demo_command(port: int) -> None:
    """Start web, worker, scheduler and a local mail inbox for a first look (make demo)."""
    from .demo import run_demo

    run_demo(settings(), port)


def main() -> None:
    """Console-script entry point: validate the configuration first, then run the group."""
    global _SETTINGS
    try:
        _SETTINGS = load_settings()
    except ConfigError as exc:
        fail(str(exc), code=2)
    cli.main(prog_name="newsletter")


if __name__ == "__main__":
    main()
