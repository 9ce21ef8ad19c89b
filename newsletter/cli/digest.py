"""`newsletter digest`: the operator's side of editions: send one now (or see what it
would hold), one scheduler check, an edition's status, pause, resume and cancel."""

from __future__ import annotations

from datetime import UTC

import click
from flask.cli import AppGroup
from redis.exceptions import RedisError

from newsletter import queueing
from newsletter.cli.context import database, redis, settings
from newsletter.cli.errors import fail
from newsletter.editions import planning, schedule, state


@click.group("digest", cls=AppGroup)
def group() -> None:
    """Editions of the digest: send, tick, status, pause, resume, cancel."""


def _queue_edition(edition_id: int) -> None:
    """Queue a committed edition's chunks; with Redis down the reconciler does it later."""
    try:
        with database().session_scope() as session, redis() as client:
            queueing.queue_edition(session, client, edition_id, settings().send_chunk_size)
    except RedisError as exc:
        click.echo(f"warning: Redis unavailable ({exc}); the reconciler queues the edition when it is back", err=True)


@group.command("send")
@click.option("--dry-run", is_flag=True, help="Show who and what an edition made now would cover; send nothing.")
def send(dry_run: bool) -> None:
    """Create an edition now (cut-off: now) and queue its delivery; prints `edition: ID`."""
    if dry_run:
        _print_preview()
        return
    try:
        with database().session_scope() as session:
            edition = planning.create_edition(session, settings(), "cli")
    except state.EditionError as exc:
        fail(str(exc))
    click.echo(f"edition: {edition.id}")
    click.echo(f"recipients: {edition.planned}")
    click.echo(f"listings: {edition.listing_count}")
    if edition.planned:
        _queue_edition(edition.id)


def _print_preview() -> None:
    tz = settings().tz
    with database().session_scope() as session:
        preview = planning.preview(session, settings())
        click.echo(f"recipients: {preview.recipients}")
        click.echo(f"listings: {len(preview.listings)}")
        for item in preview.listings:
            published = item.published_at.replace(tzinfo=UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M")
            where = " · ".join(part for part in (item.company, item.location) if part)
            click.echo(f"{published}  {item.title}" + (f"  ({where})" if where else "") + f"  {item.url}")


@group.command("tick")
def tick() -> None:
    """One scheduler check: create the current period's edition if due and missing."""
    with database().session_scope() as session:
        edition = schedule.tick(session, settings())
    if edition is None:
        click.echo("edition: none due")
        return
    click.echo(f"edition: {edition.id}")
    if edition.planned:
        _queue_edition(edition.id)


def _print_status(edition_id: int | None) -> None:
    with database().session_scope() as session:
        edition = state.get_edition(session, edition_id) if edition_id is not None else state.latest(session)
        if edition is None:
            fail(f"no edition {edition_id}" if edition_id is not None else "no edition yet")
        click.echo(f"edition: {edition.id}")
        click.echo(f"state: {edition.state}")
        for key, value in (state.counts(session, edition.id) | state.returned(session, edition.id)).items():
            click.echo(f"{key}: {value}")
        click.echo(f"recipients: {edition.planned}")
        click.echo(f"listings: {edition.listing_count}")
        click.echo(f"created_at: {edition.created_at.isoformat()}Z")
        click.echo(f"trigger: {edition.trigger}")
        count, last_error = state.retrying(session, edition.id)
        click.echo(f"retrying: {count}")
        if last_error:
            click.echo(f"last_error: {last_error}")
        alarms, last = state.alarms_since(session, edition)
        click.echo(f"alarms: {alarms}")
        if last is not None:
            click.echo(f"last_alarm: {last.at.isoformat()}Z {last.kind}: {last.message}")


@group.command("status")
@click.argument("edition_id", required=False, type=int)
def status(edition_id: int | None) -> None:
    """The latest (or the named) edition as `key: value` lines."""
    _print_status(edition_id)


def _change_state(edition_id: int, action: str) -> None:
    try:
        with database().session_scope() as session:
            state.set_state(session, edition_id, action)
    except state.EditionError as exc:
        fail(str(exc))
    if action == "resume":
        _queue_edition(edition_id)
    _print_status(edition_id)


@group.command("pause")
@click.argument("edition_id", type=int)
def pause(edition_id: int) -> None:
    """Stop sending an edition; `resume` carries on where it stopped."""
    _change_state(edition_id, "pause")


@group.command("resume")
@click.argument("edition_id", type=int)
def resume(edition_id: int) -> None:
    """Carry on sending a paused edition."""
    _change_state(edition_id, "resume")


@group.command("cancel")
@click.argument("edition_id", type=int)
def cancel(edition_id: int) -> None:
    """Send nothing more of an edition; its listings go into the next one."""
    _change_state(edition_id, "cancel")
