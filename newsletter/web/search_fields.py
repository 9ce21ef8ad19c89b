"""The search fields of the public forms (keywords, location, radius, remote, employment
type) as they come in: a query string from the job board's "subscribe to this search"
link, a posted form, a JSON body. The rules themselves are newsletter/validation.py's;
this module only gets the values to them in one shape.

A query string only pre-fills a form, so each of its fields is cleaned on its own and a
bad one is dropped (the reader still gets the form, with the good ones). A post is a
request to store: there a bad field is refused with its reason (validation.InvalidInput).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol
from urllib.parse import unquote_to_bytes

from werkzeug.datastructures import MultiDict

from newsletter.listings import criteria
from newsletter.validation import (
    MAX_KEYWORDS,
    MAX_LOCATION,
    InvalidInput,
    clean_employment_type,
    clean_radius,
    clean_remote,
    clean_text,
)

SEARCH_FIELDS = ("keywords", "location", "radius", "remote", "employment_type")
# A link of the board's has a handful of pairs; only so many are read of any query string.
MAX_PAIRS = 100


class _Multi(Protocol):
    def getlist(self, key: str) -> list[str]: ...


def query_values(query_string: bytes) -> MultiDict[str, str]:
    """The query string's pairs that are UTF-8 text. Werkzeug keeps an escape that is no
    UTF-8 ("M%FCnchen", from a Latin-1 page) as the literal "%FC", which would then read
    as typed; such a pair is dropped here, the others are kept."""
    pairs: list[tuple[str, str]] = []
    for chunk in query_string.split(b"&", MAX_PAIRS)[:MAX_PAIRS]:
        name, _, value = chunk.partition(b"=")
        try:
            pairs.append((_unquote(name), _unquote(value)))
        except UnicodeDecodeError:
            continue
    return MultiDict(pairs)


def _unquote(raw: bytes) -> str:
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", errors="strict")


def joined_types(values: Iterable[object]) -> object:
    """Repeated `employment_type` fields (checkboxes, `?employment_type=a&employment_type=b`)
    and a JSON list as the one comma-separated text the cleaner reads; anything that is not
    a list of texts is left for the cleaner to refuse."""
    items = list(values)
    texts = [item for item in items if isinstance(item, str)]
    if len(texts) == len(items):
        return ",".join(text for text in texts if text.strip())
    return items


def search_data(source: _Multi) -> dict[str, object]:
    """The five search fields of a form or query string, repeated job types joined; an
    absent field stays absent (the preferences form tells "left out" from "emptied")."""
    data: dict[str, object] = {}
    for name in SEARCH_FIELDS:
        values = source.getlist(name)
        if values:
            data[name] = joined_types(values) if name == "employment_type" else values[0]
    return data


def _kept(clean: Callable[[], object]) -> object | None:
    try:
        return clean()
    except InvalidInput:
        return None


def prefill(data: dict[str, object]) -> dict[str, object]:
    """The form's values from a query string (or a refused post, to show it again): each
    field cleaned on its own, a bad one left out. The radius is kept even without a place,
    as the choice the form shows until one is typed."""
    values: dict[str, object] = {}
    keywords = _kept(lambda: clean_text("keywords", data.get("keywords"), MAX_KEYWORDS))
    location = _kept(lambda: clean_text("location", data.get("location"), MAX_LOCATION))
    for name, text in (("keywords", keywords), ("location", location)):
        # U+FFFD: what a decoder put for bytes that were no text; shown, it would read as typed.
        if isinstance(text, str) and text and "\ufffd" not in text:
            values[name] = text
    if data.get("radius") not in (None, ""):
        radius = _kept(lambda: clean_radius(data.get("radius"), location="(any place)"))
        if radius is not None:
            values["radius"] = radius
    if data.get("remote") not in (None, ""):
        remote = _kept(lambda: clean_remote(data.get("remote")))
        if remote is not None:
            values["remote"] = remote
    if "employment_type" in data:  # even when empty: a form that ticked none means "any"
        types = _kept(lambda: clean_employment_type(data.get("employment_type")))
        if types is not None:
            values["employment_type"] = types
    return values


def types_of(stored: object) -> frozenset[str]:
    """The job types a form shows ticked."""
    return criteria.split_types(stored) if isinstance(stored, str) else frozenset()
