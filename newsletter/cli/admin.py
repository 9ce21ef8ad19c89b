"""`newsletter admin`: accounts of the web admin (/admin/). Passwords are read from
standard input (`--password-stdin`), never from an argument, which `ps` and the shell's
history would show. Each change is written to the audit log, by "cli"."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from newsletter.cli.context import database
from newsletter.cli.errors import fail
from newsletter.operators import accounts, audit
from newsletter.validation import InvalidInput

ACTOR = "cli"


@click.group("admin", cls=AppGroup)
def group() -> None:
    """Accounts of the web admin: create-user, set-password, disable."""


def _password(from_stdin: bool) -> str:
    """The first line of standard input, without its line end."""
    if not from_stdin:
        fail("give the password on standard input with --password-stdin "
             "(e.g. `printf '%s' \"$PASSWORD\" | newsletter admin ...`)", code=2)
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


@group.command("create-user")
@click.argument("email")
@click.option("--password-stdin", "from_stdin", is_flag=True, help="Read the password from standard input.")
# Checked by accounts.create, not click.Choice: an unknown role is then one line, as a bad password is.
@click.option("--role", default="operator", metavar="viewer|operator", show_default=True,
              help="viewer sees everything and changes nothing; operator may act.")
def create_user(email: str, from_stdin: bool, role: str) -> None:
    """Create an account for EMAIL (at least 12 characters of password, not containing the address)."""
    password = _password(from_stdin)
    try:
        with database().session_scope() as session:
            user = accounts.create(session, email, password, role)
            audit.record(session, ACTOR, "account.create", detail={"account": user.email, "role": user.role})
    except InvalidInput as exc:
        fail(str(exc))
    click.echo(f"account: {user.email}")
    click.echo(f"role: {user.role}")


@group.command("set-password")
@click.argument("email")
@click.option("--password-stdin", "from_stdin", is_flag=True, help="Read the password from standard input.")
def set_password(email: str, from_stdin: bool) -> None:
    """Give the account EMAIL a new password; its open sessions end."""
    password = _password(from_stdin)
    try:
        with database().session_scope() as session:
            user = accounts.set_password(session, email, password)
            audit.record(session, ACTOR, "account.set_password", detail={"account": user.email})
    except InvalidInput as exc:
        fail(str(exc))
    click.echo(f"account: {user.email}")
    click.echo("password: changed")


@group.command("disable")
@click.argument("email")
def disable(email: str) -> None:
    """Disable the account EMAIL: it cannot log in any more, and its open sessions end."""
    try:
        with database().session_scope() as session:
            user = accounts.disable(session, email)
            audit.record(session, ACTOR, "account.disable", detail={"account": user.email})
    except InvalidInput as exc:
        fail(str(exc))
    click.echo(f"account: {user.email}")
    click.echo("state: disabled")


@group.command("list")
def list_() -> None:
    """Every account: address, role, state (never a password or its hash)."""
    with database().session_scope() as session:
        for user in accounts.list_users(session):
            state = "disabled" if user.disabled_at else "active"
            click.echo(f"{user.email}\t{user.role}\t{state}")
