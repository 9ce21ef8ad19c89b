"""The search fields a reader keeps beside keywords and a place, and a listing's matching
facts: their allowed values (CONTRACT field names) and how each is written down.

A set of job types is stored as one comma-separated string in a fixed order, so that two
readers who picked the same types share one digest variant however they listed them.
"""

from __future__ import annotations

from collections.abc import Iterable

EMPLOYMENT_TYPES = ("full_time", "part_time", "student", "internship", "apprenticeship", "freelance")
REMOTE_CHOICES = ("no", "also", "only")
DEFAULT_REMOTE = "also"
RADII = (10, 25, 50, 100)
DEFAULT_RADIUS = 25
SALARY_UNITS = ("year", "month", "hour")


def join_types(types: Iterable[str]) -> str:
    """The stored form of a set of known types: comma-separated, in EMPLOYMENT_TYPES order."""
    chosen = set(types)
    return ",".join(kind for kind in EMPLOYMENT_TYPES if kind in chosen)


def split_types(stored: str) -> frozenset[str]:
    return frozenset(kind for kind in (stored or "").split(",") if kind)


def parse_types(value: object) -> str:
    """A reader's or feed's employment types (a comma-separated string or a list of
    strings) in stored form, or ValueError naming the first unknown one."""
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        items = list(value)
    else:
        raise ValueError("expected a comma-separated text of " + ", ".join(EMPLOYMENT_TYPES))
    words = [item.strip().lower() for item in items if item.strip()]
    unknown = [word for word in words if word not in EMPLOYMENT_TYPES]
    if unknown:
        raise ValueError(f"unknown type {unknown[0][:40]!r}; expected any of " + ", ".join(EMPLOYMENT_TYPES))
    return join_types(words)
