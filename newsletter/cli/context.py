"""What a command works with: the validated settings, the database, a Redis client.

Each is found through click's context object. The worker and the scheduler run without
Flask (console.py), in a group whose object is the settings themselves; every other
command runs in the Flask command group (commands.py), whose object is Flask's ScriptInfo:
there they come from the app it builds once (as under Flask's test runner too)."""

from __future__ import annotations

from typing import Any

import click
from redis import Redis

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.job_context import redis_from_settings


def _app_extension(name: str) -> Any:
    # ScriptInfo.load_app builds the app on first use and keeps it.
    return click.get_current_context().obj.load_app().extensions[name]


def settings() -> Settings:
    """The settings this command runs on (checked by console.main before it started)."""
    obj = click.get_current_context().obj
    if isinstance(obj, Settings):
        return obj
    found: Settings = _app_extension("newsletter_settings")
    return found


def database() -> Database:
    """The app's database (engine and sessions): a command's unit of work is one
    `database().session_scope()`. Commands of the Flask command group only."""
    found: Database = _app_extension("newsletter_db")
    return found


def redis() -> Redis:
    """A Redis client for one command's queueing (a `with` block closes it)."""
    return redis_from_settings(settings())
