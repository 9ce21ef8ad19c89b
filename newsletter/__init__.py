"""The newsletter service: create_app() builds the Flask app; nothing connects at import.

Flask is imported only when an app is built: the worker and the scheduler never build one,
and their memory is a target of its own (bench/digest.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from newsletter.config import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app from `settings` (default: the environment and `.env`)."""
    from newsletter.app import create_app as build

    return build(settings)
