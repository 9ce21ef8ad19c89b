"""`newsletter subscribers`: import a confirmed list, count subscribers by state, purge
what is kept past its time."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import AppGroup

from newsletter import queueing
from newsletter.cli import output
from newsletter.cli.context import database, redis, settings
from newsletter.cli.errors import fail
from newsletter.listings.formats import FeedError, decode
from newsletter.subscribers import retention, subscriptions
from newsletter.subscribers.csv_import import CsvError, import_csv


@click.group("subscribers", cls=AppGroup)
def group() -> None:
    """Subscribers: import, statistics, purge."""


@group.command("stats")
def stats() -> None:
    """Print subscriber counts as `key: value` lines (a table on a terminal)."""
    with database().session_scope() as session:
        counts = subscriptions.stats(session)
    output.key_values(list(counts.items()), title="subscribers")


@group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def import_(file: Path) -> None:
    """Import a CSV (email, language, keywords, location, confirmed_at, consent_ip,
    consent_text). Rows with confirmed_at become confirmed; the others get a
    double-opt-in mail. Exit status 1 if any row was rejected."""
    try:
        text = decode(file.read_bytes())  # the listings import's reading: same BOM and error
    except OSError as exc:
        fail(f"{file}: cannot read: {exc.strerror or exc}")
    except FeedError as exc:
        fail(f"{file}: cannot import: {exc}")
    lines = text.count("\n") + (not text.endswith("\n"))
    try:
        with output.progress_bar(file.name, lines) as (advance, update), database().session_scope() as session:
            if advance is not None:
                advance(1)  # the header
            report = import_csv(session, text, source=file.name, progress=advance)
            update(completed=lines)  # blank lines at the end are read by no record
    except CsvError as exc:
        fail(f"{file}: cannot import, nothing written: {exc}")
    # The rows are committed; now their double-opt-in mails are queued.
    with database().session_scope() as session, redis() as client:
        queueing.queue_outbox_after_commit(session, client, report.outbox_ids)
    click.echo(f"confirmed: {report.confirmed}")
    click.echo(f"pending: {report.pending}")
    click.echo(f"skipped: {len(report.skipped)}")
    click.echo(f"rejected: {len(report.rejected)}")
    for reason in report.skipped + report.rejected:
        click.echo(f"{file}: {reason}", err=True)
    if report.rejected:
        sys.exit(1)


@group.command("purge")
def purge() -> None:
    """Delete unconfirmed signups past NEWSLETTER_UNCONFIRMED_RETENTION_DAYS, former readers
    past NEWSLETTER_FORMER_READER_RETENTION_DAYS, consent proof past
    NEWSLETTER_CONSENT_RETENTION_DAYS (to the end of that year), and the records of
    confirmation mails (30 days) and link mails (24 hours) that limit nothing any more."""
    with database().session_scope() as session:
        counts = retention.purge(session, settings())
    for key, value in counts.items():
        click.echo(f"{key}: {value}")
