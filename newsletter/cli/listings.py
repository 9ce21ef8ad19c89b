"""`newsletter listings import`: the job board's feeds into the listing store."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from newsletter.cli import output
from newsletter.cli.context import database, settings
from newsletter.cli.errors import fail, infrastructure_error
from newsletter.db import retry_once_on_conflict
from newsletter.listings import store
from newsletter.listings.formats import FeedError, parse_feed


@click.group("listings", cls=AppGroup)
def group() -> None:
    """The job board's listings."""


@group.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def import_(files: tuple[Path, ...]) -> None:
    """Import listing feeds: JSON array, JSON Lines, CSV with a header row, or schema.org
    JobPosting JSON-LD. Upserts on `id`; each file is written in one transaction after all
    its rows were checked. Exit status 1 if any row (or file) was rejected."""
    totals = store.ImportResult()
    failed_files = 0
    for file in files:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            click.echo(f"{file}: cannot read: {exc.strerror or exc}", err=True)
            failed_files += 1
            continue
        try:
            result = _import_file(file, raw)
        except FeedError as exc:
            click.echo(f"{file}: cannot import: {exc}", err=True)
            failed_files += 1
            continue
        except IntegrityError:
            fail(f"{file}: a concurrent import collided twice; nothing of this file written")
        except SQLAlchemyError as exc:
            reason = infrastructure_error(exc, settings()) or type(exc).__name__
            fail(f"{file}: nothing of this file written: {reason}")
        totals.added += result.added
        totals.updated += result.updated
        totals.unchanged += result.unchanged
        totals.rejected += result.rejected
        for rejection in result.rejected:
            click.echo(f"{file}: {rejection.where}: {rejection.reason}", err=True)
    _summary(totals)
    if totals.rejected or failed_files:
        sys.exit(1)


def _import_file(file: Path, raw: bytes) -> store.ImportResult:
    """One file in one transaction, with a progress bar on a terminal (each row is
    checked, then written: two steps)."""
    records = parse_feed(raw, file.name)
    with output.progress_bar(file.name, 2 * len(records), counts=False) as (advance, update), \
            database().session_scope() as session:
        def attempt() -> store.ImportResult:
            update(completed=0)  # the second try after a collision starts again
            return store.import_records(session, records, progress=advance)

        # A concurrent import may insert the same new id first; the second try updates it.
        return retry_once_on_conflict(session, attempt)


def _summary(totals: store.ImportResult) -> None:
    click.echo(f"added: {totals.added}")
    click.echo(f"updated: {totals.updated}")
    click.echo(f"unchanged: {totals.unchanged}")
    click.echo(f"rejected: {len(totals.rejected)}")
