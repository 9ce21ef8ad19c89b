"""`newsletter bounces process PATH...`: read bounces, complaints and mailto unsubscribes
from a Maildir, an mbox file or single .eml files, and act on each message once."""

from __future__ import annotations

import logging
from collections import Counter
from functools import partial
from pathlib import Path

import click
from sqlalchemy.exc import InterfaceError, OperationalError

from newsletter.bounces import intake, mailboxes
from newsletter.cli.context import database, settings
from newsletter.cli.errors import fail
from newsletter.config import Settings
from newsletter.db import Database

# The counts always printed (CONTRACT), then the finer ones.
CONTRACT_KEYS = ("bounced", "complained", "unsubscribed", "ignored")
MORE_KEYS = ("soft_bounced", "policy_bounced", "already_processed", "skipped")


log = logging.getLogger(__name__)


def _process_one(db: Database, config: Settings, raw: bytes) -> str:
    """One message's verdict. The database away stops the run (the message stays, unread);
    any other failure is that message's alone: it is left where it is, named in the log
    by its kind of error only (a database error quotes the statement's values), and the
    run goes on to the others."""
    try:
        return intake.process_message(db, config, raw)
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:  # noqa: BLE001 - one message must not stop all the others
        log.error("a returned message could not be processed (%s): left in place", type(exc).__name__)
        return mailboxes.SKIPPED


@click.group("bounces")
def group() -> None:
    """Bounces, complaints and mailto unsubscribes that came back to the bounce address."""


@group.command("process")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def process(paths: tuple[Path, ...]) -> None:
    """Act on every message in PATHS (Maildirs, mbox files, .eml files); a message already
    processed changes nothing. A Maildir's processed messages move to cur/ as Seen."""
    for path in paths:  # every path checked before the first message is acted on
        try:
            mailboxes.kind_of(path)
        except mailboxes.SourceError as exc:
            fail(str(exc), 2)
    handle = partial(_process_one, database(), settings())
    counts: Counter[str] = Counter()
    for path in paths:
        counts.update(mailboxes.process(path, handle))
    counts["already_processed"] = counts.pop(intake.Verdict.ALREADY, 0)
    for key in CONTRACT_KEYS + MORE_KEYS:
        click.echo(f"{key}: {counts.get(key, 0)}")
