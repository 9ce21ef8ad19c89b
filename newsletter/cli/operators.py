"""`newsletter api-token`: the bearer tokens operators' programs use for /api/v1/."""

from __future__ import annotations

from datetime import datetime

import click
from flask.cli import AppGroup

from newsletter.cli import output
from newsletter.cli.context import database
from newsletter.cli.errors import fail
from newsletter.operators import api_tokens
from newsletter.validation import InvalidInput


@click.group("api-token", cls=AppGroup)
def api_token() -> None:
    """Bearer tokens for the HTTP API (/api/v1/)."""


@api_token.command("create")
@click.argument("name")
# Checked by api_tokens.create, not click.Choice: an unknown scope is then one line.
@click.option("--scope", "scopes", multiple=True, metavar="listings|editions",
              help="What the token may do; repeat for both. Default: both.")
def create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a token called NAME and print it on the last line; it is shown only once."""
    try:
        with database().session_scope() as session:
            new = api_tokens.create(session, name, scopes)
    except InvalidInput as exc:
        fail(str(exc))
    click.echo(f"api token {new.row.name!r} created (scopes: {new.row.scopes}); it is shown only this once:")
    click.echo(new.secret)


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else "-"


@api_token.command("list")
def list_() -> None:
    """Every token: name, scopes, created, last used, revoked (never the token itself)."""
    with database().session_scope() as session:
        records = [
            (row.name, row.scopes, _when(row.created_at), _when(row.last_used_at),
             f"revoked {_when(row.revoked_at)}" if row.revoked_at else "active")
            for row in api_tokens.list_tokens(session)
        ]
    output.rows(("name", "scopes", "created", "last used", "state"), records,
                lambda r: f"{r[0]}\tscopes {r[1]}\tcreated {r[2]}\tlast used {r[3]}\t{r[4]}")


@api_token.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke the active token called NAME; the API refuses it from then on."""
    with database().session_scope() as session:
        count = api_tokens.revoke(session, name)
        if not count:
            fail(f"no active api token named {name!r}")
    click.echo(f"revoked: {count}")
