"""`newsletter digest`: the operator's side of editions: send one now (or see what it
would hold, or wait until it is sent), one scheduler check, an edition's status (once or
watched), pause, resume and cancel."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC

import click
from flask.cli import AppGroup
from redis.exceptions import RedisError

from newsletter import queueing
from newsletter.cli import output
from newsletter.cli.context import database, redis, settings
from newsletter.cli.errors import fail
from newsletter.editions import planning, schedule, state
from newsletter.models import EditionState

WAIT_POLL_SECONDS = 0.5
# Ctrl-C: the shell's status for a process stopped by SIGINT (128 + 2).
INTERRUPTED = 130


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
@click.option("--wait", is_flag=True,
              help="Then wait until the workers have sent it (a progress bar on a terminal) and print its status. "
                   "Exit 1 if it ends paused or cancelled or a delivery failed; Ctrl-C stops waiting (exit 130), "
                   "not the edition.")
def send(dry_run: bool, wait: bool) -> None:
    """Create an edition now (cut-off: now) and queue its delivery; prints `edition: ID`."""
    if dry_run and wait:
        raise click.UsageError("--wait and --dry-run exclude each other (a dry run sends nothing)")
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
    if wait:
        _wait_until_sent(edition.id, edition.planned)


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


def _status(edition_id: int | None) -> list[tuple[str, object]]:
    """The latest (or the named) edition's status: (key, value) in the order printed."""
    with database().session_scope() as session:
        edition = state.get_edition(session, edition_id) if edition_id is not None else state.latest(session)
        if edition is None:
            fail(f"no edition {edition_id}" if edition_id is not None else "no edition yet")
        pairs: list[tuple[str, object]] = [("edition", edition.id), ("state", edition.state)]
        pairs += (state.counts(session, edition.id) | state.returned(session, edition.id)).items()
        pairs += [
            ("recipients", edition.planned),
            ("listings", edition.listing_count),
            ("created_at", f"{edition.created_at.isoformat()}Z"),
            ("trigger", edition.trigger),
        ]
        count, last_error = state.retrying(session, edition.id)
        pairs.append(("retrying", count))
        if last_error:
            pairs.append(("last_error", last_error))
        alarms, last = state.alarms_since(session, edition)
        pairs.append(("alarms", alarms))
        if last is not None:
            pairs.append(("last_alarm", f"{last.at.isoformat()}Z {last.kind}: {last.message}"))
    return pairs


def _print_status(edition_id: int | None) -> list[tuple[str, object]]:
    pairs = _status(edition_id)
    output.key_values(pairs, title=f"edition {pairs[0][1]}")
    return pairs


def _value(pairs: list[tuple[str, object]], key: str) -> object:
    return dict(pairs)[key]


def _finished(pairs: list[tuple[str, object]]) -> bool:
    return _value(pairs, "state") in (EditionState.DONE, EditionState.CANCELLED)


@group.command("status")
@click.argument("edition_id", required=False, type=int)
@click.option("--watch", is_flag=True,
              help="Print it again every --interval seconds until the edition is done or cancelled (Ctrl-C stops).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=None, metavar="SECONDS",
              help="Seconds between two looks with --watch (default 2).")
def status(edition_id: int | None, watch: bool, interval: float | None) -> None:
    """The latest (or the named) edition as `key: value` lines (a table on a terminal).
    With --watch, again and again: redrawn in place on a terminal, otherwise one block of
    lines per look, blocks separated by a blank line."""
    if interval is not None and not watch:
        raise click.UsageError("--interval needs --watch")
    if not watch:
        _print_status(edition_id)
        return
    pairs = _status(edition_id)
    edition_id = int(_value(pairs, "edition"))  # "the latest" stays this one while watched
    try:
        _watch(edition_id, pairs, 2.0 if interval is None else interval)
    except KeyboardInterrupt:
        fail(f"interrupted: stopped watching edition {edition_id}, which is left as it is", code=INTERRUPTED)


def _watch(edition_id: int, pairs: list[tuple[str, object]], interval: float) -> None:
    if not output.interactive():
        while True:
            output.key_values(pairs)
            if _finished(pairs):
                return
            time.sleep(interval)
            click.echo("")
            pairs = _status(edition_id)
    title = f"edition {edition_id}"
    with output.live(output.key_value_table(pairs, title)) as show:
        while not _finished(pairs):
            time.sleep(interval)
            pairs = _status(edition_id)
            show(output.key_value_table(pairs, title))


def _handled(counts: dict[str, int]) -> int:
    """Deliveries that are finished, one way or another: the progress of a send."""
    return counts["sent"] + counts["failed"] + counts["bounced"] + counts["cancelled"]


def _wait_until_sent(edition_id: int, planned: int) -> None:
    """Poll the database until the edition is no longer sending, then print its status
    and end: exit 0 when done with no failed delivery, 1 otherwise. Ctrl-C leaves the
    edition as it is (exit 130)."""
    try:
        with output.progress_bar(f"edition {edition_id}", planned) as (_advance, update):
            current = _poll(edition_id, update)
    except KeyboardInterrupt:
        fail(f"interrupted: stopped waiting; edition {edition_id} is left as it is "
             f"(see `newsletter digest status {edition_id}`)", code=INTERRUPTED)
    click.echo("")  # the status block after the send's lines, as --watch separates its blocks
    pairs = _print_status(edition_id)
    failed = _value(pairs, "failed")
    if current == EditionState.PAUSED:
        fail(f"edition {edition_id} is paused; `newsletter digest resume {edition_id}` carries on")
    if current == EditionState.CANCELLED:
        fail(f"edition {edition_id} was cancelled")
    if failed:
        fail(f"edition {edition_id} is done, but {failed} of its deliveries failed")


def _poll(edition_id: int, update: Callable[..., None]) -> str:
    """The edition's state once it is no longer sending (done, paused or cancelled)."""
    while True:
        with database().session_scope() as session:
            edition = state.get_edition(session, edition_id)
            if edition is None:  # made by this command a moment ago; nothing deletes editions
                fail(f"edition {edition_id} is gone")
            current = edition.state
            update(completed=_handled(state.counts(session, edition_id)))
        if current != EditionState.SENDING:
            return str(current)
        time.sleep(WAIT_POLL_SECONDS)


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
