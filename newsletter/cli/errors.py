"""How a command ends when something stops it: one line on stderr and a non-zero status.
A bad setting or a usage error exits 2; a database, Redis or folder that fails exits 1; only
a bug keeps its traceback. Used by the console script, the command group and wsgi.py."""

from __future__ import annotations

import re
import sys
from typing import NoReturn

import click
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError

from newsletter.config import Settings, mask_url


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and a non-zero exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# SQLite's and PostgreSQL's words for a table that is not there: a database never migrated.
_NO_SCHEMA = re.compile(r"no such table|relation \S+ does not exist")


def infrastructure_error(exc: BaseException, settings: Settings | None = None) -> str | None:
    """One line naming the database, Redis or file that failed us; None for anything else
    (a bug, which keeps its traceback)."""
    if isinstance(exc, DBAPIError):
        where = f" {mask_url(settings.database_url)}" if settings else ""
        reason = str(exc.orig) if exc.orig is not None else str(exc)
        hint = "; run `newsletter db upgrade` first" if _NO_SCHEMA.search(reason) else ""
        return f"the database{where} failed: {_one_line(reason)}{hint}"
    if isinstance(exc, RedisError):
        where = f" at {mask_url(settings.redis_url)}" if settings else ""
        verb = "does not answer" if isinstance(exc, (RedisConnectionError, RedisTimeoutError)) else "failed"
        return f"Redis{where} {verb}: {_one_line(str(exc))}"
    if isinstance(exc, OSError):
        if exc.filename is not None:
            return f"cannot use {exc.filename}: {exc.strerror}"
        return _one_line(str(exc))
    return None


def run_group(group: click.Group, args: list[str], obj: object = None) -> None:
    """Run `group` with click's errors as one line, `obj` as its context object (when
    given). Click's own (standalone) handling prints a usage error as four lines: usage,
    hint, blank, error."""
    extra = {"obj": obj} if obj is not None else {}  # a FlaskGroup makes its own without one
    try:
        code = group.main(args=args, prog_name="newsletter", standalone_mode=False, **extra)
    except click.exceptions.NoArgsIsHelpError as exc:  # a group without its command: its help
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "newsletter"
        message = _one_line(exc.format_message())
        if not message.endswith((".", "?", "!")):
            message += "."
        fail(f"{message} See '{where} --help'.", code=exc.exit_code)
    except click.ClickException as exc:
        fail(_one_line(exc.format_message()), code=exc.exit_code)
    except click.Abort:  # Ctrl-C outside the worker and scheduler (they stop cleanly)
        fail("aborted", code=1)
    # Not standalone, click returns the status of --help, --version or ctx.exit() instead
    # of exiting; a command's own return value is None.
    if isinstance(code, int):
        sys.exit(code)
