"""The `newsletter` console script, the command line's one entry point: checks the
configuration first, then runs `worker` and `scheduler` without Flask (processes.FLASK_FREE)
and every other command in the Flask command group (commands.py), which holds those two as
well. Whatever stops a command ends as one line on stderr (errors.py)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import click
from dotenv import dotenv_values

from newsletter.cli.errors import fail, infrastructure_error, run_group
from newsletter.cli.processes import FLASK_FREE
from newsletter.config import ConfigError, Settings, load_settings

ENV_FILE_OPTIONS = ("-e", "--env-file")


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
            if args[at : at + 1] == ["doctor"]:
                from newsletter.cli.deliverability import report_bad_settings

                report_bad_settings(exc)  # the doctor's first check: a fail line, exit 1
            fail(str(exc), code=2)
        if args[at : at + 1] and args[at] in FLASK_FREE.commands:
            run_group(FLASK_FREE, args[at:], obj=settings)
            return
        # Imported only here: it imports Flask, which the worker and the scheduler never load.
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
