"""The `newsletter` console script. `worker` and `scheduler` start without Flask: they are
long-lived, one per host or more, and what they import they hold for good (bench/digest.py
measures the worker's memory). Every other command runs in the Flask command group.

Whatever stops a command reaches the operator as one line on stderr: a bad setting (exit
2), a usage error (exit 2), a database, Redis or folder that fails (exit 1). Only a bug
keeps its traceback."""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import click

from newsletter.config import ConfigError, Settings, load_settings, mask_url

LIGHT_COMMANDS = ("worker", "scheduler")
ENV_FILE_OPTIONS = ("-e", "--env-file")


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and a non-zero exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_worker_command(settings: Settings, burst: bool) -> None:
    from worker.runner import run_worker

    _log_to_stderr()
    run_worker(settings, burst=burst)


def run_scheduler_command(settings: Settings) -> None:
    from worker.runner import run_scheduler

    _log_to_stderr()
    run_scheduler(settings)


def light_group(settings: Settings) -> click.Group:
    """The two process commands as a click group of their own (same options and help as
    in the full group)."""
    group = click.Group(name="newsletter")

    @group.command("worker")
    @click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
    def worker_command(burst: bool) -> None:
        """An RQ worker for all queues; re-queues unfinished work from the database at start."""
        run_worker_command(settings, burst)

    @group.command("scheduler")
    def scheduler_command() -> None:
        """The long-running periodic trigger: reconciler every minute, purge every hour."""
        run_scheduler_command(settings)

    return group


def _one_line(text: str) -> str:
    return " ".join(text.split())


# SQLite's and PostgreSQL's words for a table that is not there: a database never migrated.
_NO_SCHEMA = re.compile(r"no such table|relation \S+ does not exist")


def infrastructure_error(exc: BaseException, settings: Settings | None = None) -> str | None:
    """One line naming the database, Redis or file that failed us; None for anything else
    (a bug, which keeps its traceback)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError

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


def run_group(group: click.Group, args: list[str]) -> None:
    """Run `group` with click's errors as one line. Click's own (standalone) handling prints
    a usage error as four lines: usage, hint, blank, error."""
    try:
        code = group.main(args=args, prog_name="newsletter", standalone_mode=False)
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


def _leading_env_file(args: list[str]) -> tuple[str | None, int]:
    """The group's -e/--env-file FILE, when it comes first, and where the command starts.

    The settings are loaded and checked before click parses anything, so FlaskGroup's
    option would come too late for them: it is read here."""
    env_file: str | None = None
    at = 0
    while at < len(args):
        arg = args[at]
        if arg in ENV_FILE_OPTIONS and at + 1 < len(args):
            env_file, at = args[at + 1], at + 2
        elif arg.startswith("--env-file="):
            env_file, at = arg.partition("=")[2], at + 1
        elif arg.startswith("-e") and not arg.startswith("--") and len(arg) > 2:
            env_file, at = arg[2:], at + 1
        else:
            break
    return env_file, at


def _load_env_file(path: str) -> None:
    """Flask's precedence: the environment over this file, this file over `.env`. Its
    values go into os.environ where the environment has none; load_settings then reads
    `.env` under them."""
    from dotenv import dotenv_values

    if not Path(path).is_file():
        fail(f"-e/--env-file: no such file {path!r}", code=2)
    for key, value in dotenv_values(path, encoding="utf-8").items():
        if value is not None:
            os.environ.setdefault(key, value)


def main(argv: Sequence[str] | None = None) -> None:
    """Validate the configuration first (exit 2 naming the variable), then run the command."""
    args = list(sys.argv[1:] if argv is None else argv)
    env_file, at = _leading_env_file(args)
    settings: Settings | None = None
    try:
        if env_file is not None:
            _load_env_file(env_file)
        try:
            settings = load_settings()
        except ConfigError as exc:
            fail(str(exc), code=2)
        if args[at : at + 1] and args[at] in LIGHT_COMMANDS:
            run_group(light_group(settings), args[at:])
            return
        from newsletter.cli import commands

        commands.run(settings, args)
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
            # Whoever read our output went away (`| head`): end quietly, as click does.
            sys.stdout = click.utils.PacifyFlushWrapper(sys.stdout)
            sys.stderr = click.utils.PacifyFlushWrapper(sys.stderr)
            sys.exit(1)
        message = infrastructure_error(exc, settings)
        if message is None:
            raise
        fail(message)


if __name__ == "__main__":
    main()
