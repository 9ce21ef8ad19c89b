"""Where the top-level resource folders are, in a checkout and in an installed wheel."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _resource_dir(repo_relative: str, package: str) -> Path:
    in_checkout = REPO_ROOT / repo_relative
    if in_checkout.is_dir():
        return in_checkout
    return Path(str(resources.files(package)))


@cache
def email_templates_dir() -> Path:
    """templates/email/ of the checkout, or its copy inside an installed wheel."""
    return _resource_dir("templates/email", "newsletter.email_templates")


@cache
def migrations_dir() -> Path:
    """migrations/ of the checkout, or its copy inside an installed wheel."""
    return _resource_dir("migrations", "newsletter.migrations")
