"""The `newsletter` command group (a Flask CLI group). Exit 0 on success; otherwise a
non-zero status and one line on stderr saying why."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup
from redis import Redis

from newsletter.cli.errors import fail
from newsletter.config import Settings


def settings() -> Settings:
    value: Settings = current_app.extensions["newsletter_settings"]
    return value


def _create_app() -> Flask:
    from newsletter import create_app

    return create_app(_SETTINGS)


_SETTINGS: Settings | None = None


def _redis() -> Redis:
    """A Redis client for one command's queueing (a `with` block closes it)."""
    from newsletter.job_context import redis_from_settings

    return redis_from_settings(settings())


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
    from newsletter.migrate import upgrade

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
    from newsletter.subscribers import subscriptions
    from newsletter.db import get_session

    for key, value in subscriptions.stats(get_session()).items():
        click.echo(f"{key}: {value}")


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def subscribers_import(file: Path) -> None:
    """Import a CSV (email, language, keywords, location, confirmed_at, consent_ip,
    consent_text). Rows with confirmed_at become confirmed; the others get a
    double-opt-in mail. Exit status 1 if any row was rejected."""
    from newsletter import queueing
    from newsletter.db import get_session
    from newsletter.listings.formats import FeedError, decode
    from newsletter.subscribers.csv_import import CsvError, import_csv

    try:
        text = decode(file.read_bytes())  # the listings import's reading: same BOM and error
    except OSError as exc:
        fail(f"{file}: cannot read: {exc.strerror or exc}")
    except FeedError as exc:
        fail(f"{file}: cannot import: {exc}")
    session = get_session()
    try:
        report = import_csv(session, text, source=file.name)
    except CsvError as exc:
        session.rollback()
        fail(f"{file}: cannot import, nothing written: {exc}")
    session.commit()
    with _redis() as redis:
        queueing.queue_outbox_after_commit(session, redis, report.outbox_ids)
    click.echo(f"confirmed: {report.confirmed}")
    click.echo(f"pending: {report.pending}")
    click.echo(f"skipped: {len(report.skipped)}")
    click.echo(f"rejected: {len(report.rejected)}")
    for reason in report.skipped + report.rejected:
        click.echo(f"{file}: {reason}", err=True)
    if report.rejected:
        sys.exit(1)


@subscribers.command("purge")
def subscribers_purge() -> None:
    """Delete unconfirmed signups past NEWSLETTER_UNCONFIRMED_RETENTION_DAYS, former readers
    past NEWSLETTER_FORMER_READER_RETENTION_DAYS, consent proof past
    NEWSLETTER_CONSENT_RETENTION_DAYS (to the end of that year), and the records of
    confirmation mails (30 days) and link mails (24 hours) that limit nothing any more."""
    from newsletter.subscribers import subscriptions
    from newsletter.db import get_session

    session = get_session()
    s = settings()
    unconfirmed = subscriptions.purge_unconfirmed(session, s.unconfirmed_retention_days)
    former = subscriptions.purge_former_readers(session, s.former_reader_retention_days)
    records = subscriptions.purge_consent_records(session, s.consent_retention_days)
    budget = subscriptions.purge_confirmation_mails(session)
    link_budget = subscriptions.purge_link_mails(session)
    session.commit()
    click.echo(f"unconfirmed: {unconfirmed}")
    click.echo(f"former_readers: {former}")
    click.echo(f"consent_records: {records}")
    click.echo(f"confirmation_mails: {budget}")
    click.echo(f"link_mails: {link_budget}")


# -- digests ----------------------------------------------------------------------------

@cli.group()
def digest() -> None:
    """Editions of the digest: send, tick, status, pause, resume, cancel."""


def _queue_edition(edition_id: int) -> None:
    from redis.exceptions import RedisError

    from newsletter import queueing
    from newsletter.db import get_session

    try:
        with _redis() as redis:
            queueing.queue_edition(get_session(), redis, edition_id, settings().send_chunk_size)
    except RedisError as exc:
        click.echo(f"warning: Redis unavailable ({exc}); the reconciler queues the edition when it is back", err=True)


@digest.command("send")
@click.option("--dry-run", is_flag=True, help="Show who and what an edition made now would cover; send nothing.")
def digest_send(dry_run: bool) -> None:
    """Create an edition now (cut-off: now) and queue its delivery; prints `edition: ID`."""
    from newsletter.editions import planning
    from newsletter.db import get_session

    session = get_session()
    if dry_run:
        preview = planning.preview(session, settings())
        click.echo(f"recipients: {preview.recipients}")
        click.echo(f"listings: {len(preview.listings)}")
        tz = settings().tz
        from datetime import UTC

        for item in preview.listings:
            published = item.published_at.replace(tzinfo=UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M")
            where = " · ".join(part for part in (item.company, item.location) if part)
            click.echo(f"{published}  {item.title}" + (f"  ({where})" if where else "") + f"  {item.url}")
        return
    try:
        edition = planning.create_edition(session, settings(), "cli")
    except planning.EditionError as exc:
        session.rollback()
        fail(str(exc))
    session.commit()
    click.echo(f"edition: {edition.id}")
    click.echo(f"recipients: {edition.planned}")
    click.echo(f"listings: {edition.listing_count}")
    if edition.planned:
        _queue_edition(edition.id)


@digest.command("tick")
def digest_tick() -> None:
    """One scheduler check: create the current period's edition if due and missing."""
    from newsletter.editions import planning
    from newsletter.db import get_session

    session = get_session()
    edition = planning.tick(session, settings())
    session.commit()
    if edition is None:
        click.echo("edition: none due")
        return
    click.echo(f"edition: {edition.id}")
    if edition.planned:
        _queue_edition(edition.id)


def _print_status(edition_id: int | None) -> None:
    from newsletter.editions import planning
    from newsletter.db import get_session
    from newsletter.models import Edition

    session = get_session()
    edition = planning.get_edition(session, edition_id) if edition_id is not None else planning.latest(session)
    if edition is None:
        fail(f"no edition {edition_id}" if edition_id is not None else "no edition yet")
    click.echo(f"edition: {edition.id}")
    click.echo(f"state: {edition.state}")
    for key, value in planning.counts(session, edition.id).items():
        click.echo(f"{key}: {value}")
    click.echo(f"recipients: {edition.planned}")
    click.echo(f"listings: {edition.listing_count}")
    click.echo(f"created_at: {edition.created_at.isoformat()}Z")
    click.echo(f"trigger: {edition.trigger}")
    count, last_error = planning.retrying(session, edition.id)
    click.echo(f"retrying: {count}")
    if last_error:
        click.echo(f"last_error: {last_error}")
    from sqlalchemy import func, select

    from newsletter.models import OperatorAlarm

    since = select(OperatorAlarm).where(OperatorAlarm.at >= edition.created_at)
    alarms = session.scalar(select(func.count()).select_from(since.subquery())) or 0
    click.echo(f"alarms: {alarms}")
    if alarms:
        last = session.scalars(since.order_by(OperatorAlarm.id.desc()).limit(1)).one()
        click.echo(f"last_alarm: {last.at.isoformat()}Z {last.kind}: {last.message}")


@digest.command("status")
@click.argument("edition_id", required=False, type=int)
def digest_status(edition_id: int | None) -> None:
    """The latest (or the named) edition as `key: value` lines."""
    _print_status(edition_id)


def _change_state(edition_id: int, action: str) -> None:
    from newsletter.editions import planning
    from newsletter.db import get_session

    session = get_session()
    try:
        planning.set_state(session, edition_id, action)
    except planning.EditionError as exc:
        fail(str(exc))
    session.commit()
    if action == "resume":
        _queue_edition(edition_id)
    _print_status(edition_id)


@digest.command("pause")
@click.argument("edition_id", type=int)
def digest_pause(edition_id: int) -> None:
    """Stop sending an edition; `resume` carries on where it stopped."""
    _change_state(edition_id, "pause")


@digest.command("resume")
@click.argument("edition_id", type=int)
def digest_resume(edition_id: int) -> None:
    """Carry on sending a paused edition."""
    _change_state(edition_id, "resume")


@digest.command("cancel")
@click.argument("edition_id", type=int)
def digest_cancel(edition_id: int) -> None:
    """Send nothing more of an edition; its listings go into the next one."""
    _change_state(edition_id, "cancel")


# -- listings ------------------------------------------------------------------------------

@cli.group()
def listings() -> None:
    """The job board's listings."""


@listings.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def listings_import(files: tuple[Path, ...]) -> None:
    """Import listing feeds: JSON array, JSON Lines, CSV with a header row, or schema.org
    JobPosting JSON-LD. Upserts on `id`; each file is written in one transaction after all
    its rows were checked. Exit status 1 if any row (or file) was rejected."""
    from sqlalchemy.exc import IntegrityError, SQLAlchemyError

    from newsletter.listings import store as listings_domain
    from newsletter.db import get_session
    from newsletter.listings.formats import FeedError

    session = get_session()
    totals = listings_domain.ImportResult()
    failed_files = 0
    for file in files:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            click.echo(f"{file}: cannot read: {exc.strerror or exc}", err=True)
            failed_files += 1
            continue
        # A concurrent import may insert the same new id first; the second try updates it.
        result: listings_domain.ImportResult | None = None
        for attempt in (1, 2):
            try:
                result = listings_domain.import_feed(session, raw, file.name)
                session.commit()
                break
            except FeedError as exc:
                session.rollback()
                click.echo(f"{file}: cannot import: {exc}", err=True)
                break
            except IntegrityError:
                session.rollback()
                if attempt == 2:
                    fail(f"{file}: a concurrent import collided twice; nothing of this file written")
            except SQLAlchemyError as exc:
                session.rollback()
                from newsletter.cli.errors import infrastructure_error

                reason = infrastructure_error(exc, settings()) or type(exc).__name__
                fail(f"{file}: nothing of this file written: {reason}")
        if result is None:
            failed_files += 1
            continue
        totals.added += result.added
        totals.updated += result.updated
        totals.unchanged += result.unchanged
        totals.rejected += result.rejected
        for rejection in result.rejected:
            click.echo(f"{file}: {rejection.where}: {rejection.reason}", err=True)
    click.echo(f"added: {totals.added}")
    click.echo(f"updated: {totals.updated}")
    click.echo(f"unchanged: {totals.unchanged}")
    click.echo(f"rejected: {len(totals.rejected)}")
    if totals.rejected or failed_files:
        sys.exit(1)


# -- API tokens ----------------------------------------------------------------------------

@cli.group("api-token")
def api_token() -> None:
    """Bearer tokens for the HTTP API (/api/v1/)."""


@api_token.command("create")
@click.argument("name")
# Checked by api_tokens.create, not click.Choice: an unknown scope is then one line.
@click.option("--scope", "scopes", multiple=True, metavar="listings|editions",
              help="What the token may do; repeat for both. Default: both.")
def api_token_create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a token called NAME and print it on the last line; it is shown only once."""
    from newsletter.operators import api_tokens
    from newsletter.db import get_session
    from newsletter.validation import InvalidInput

    session = get_session()
    try:
        new = api_tokens.create(session, name, scopes)
    except InvalidInput as exc:
        fail(str(exc))
    session.commit()
    click.echo(f"api token {new.row.name!r} created (scopes: {new.row.scopes}); it is shown only this once:")
    click.echo(new.secret)


@api_token.command("list")
def api_token_list() -> None:
    """Every token: name, scopes, created, last used, revoked (never the token itself)."""
    from datetime import datetime

    from newsletter.operators import api_tokens
    from newsletter.db import get_session

    def when(value: datetime | None) -> str:
        return value.isoformat(timespec="seconds") + "Z" if value is not None else "-"

    for row in api_tokens.list_tokens(get_session()):
        state = f"revoked {when(row.revoked_at)}" if row.revoked_at else "active"
        click.echo(f"{row.name}\tscopes {row.scopes}\tcreated {when(row.created_at)}"
                   f"\tlast used {when(row.last_used_at)}\t{state}")


@api_token.command("revoke")
@click.argument("name")
def api_token_revoke(name: str) -> None:
    """Revoke the active token called NAME; the API refuses it from then on."""
    from newsletter.operators import api_tokens
    from newsletter.db import get_session

    session = get_session()
    count = api_tokens.revoke(session, name)
    if not count:
        fail(f"no active api token named {name!r}")
    session.commit()
    click.echo(f"revoked: {count}")


# -- processes ----------------------------------------------------------------------------

@cli.command("worker")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
def worker_command(burst: bool) -> None:
    """An RQ worker for all queues; re-queues unfinished work from the database at start."""
    from newsletter.cli.processes import run_worker_command

    run_worker_command(settings(), burst)


@cli.command("scheduler")
def scheduler_command() -> None:
    """The long-running periodic trigger: reconciler every minute, purge every hour."""
    from newsletter.cli.processes import run_scheduler_command

    run_scheduler_command(settings())


@cli.command("demo")
@click.option("--port", default=5000, show_default=True)
def demo_command(port: int) -> None:
    """Start web, worker, scheduler and a local mail inbox for a first look (make demo)."""
    from newsletter.demo.run import run_demo

    run_demo(settings(), port)


def run(validated: Settings, args: list[str]) -> None:
    """Run the command group on validated settings (newsletter.cli.console.main calls this)."""
    from newsletter.cli.errors import run_group

    global _SETTINGS
    _SETTINGS = validated
    run_group(cli, args)


if __name__ == "__main__":  # `python -m newsletter.cli.commands`, as the console script
    from newsletter.cli.console import main

    main()
