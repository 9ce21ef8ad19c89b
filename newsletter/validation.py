"""Validation of what people type: addresses and the short preference fields.

Anything with control characters (CR/LF header tricks, STANDARDS 27) is refused outright
rather than cleaned, so that a hostile submission changes nothing and mails nothing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from newsletter.listings import criteria
from newsletter.subscribers.consent import LANGUAGES

# Control characters, line and paragraph separators, and the invisible direction overrides
# and isolates (and U+FEFF), which would turn the text around wherever it is shown again.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
# RFC 2047 encoded-words in user text would be decoded by some mail clients into headers.
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?", re.ASCII)
# Lone surrogates arrive only through JSON "\ud800" escapes; no database or mail can hold them.
_SURROGATE = re.compile(r"[\ud800-\udfff]")

MAX_KEYWORDS = 200
MAX_LOCATION = 100


class InvalidInput(ValueError):
    """A field is not acceptable; `field` names it, str() says why in one line."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Preferences:
    """A reader's search and language, as the subscriber row holds them."""

    keywords: str
    location: str
    language: str
    radius: int = 0  # km around `location`; 0 without a place
    remote: str = criteria.DEFAULT_REMOTE
    employment_type: str = ""  # criteria.join_types form

    def search(self) -> dict[str, object]:
        """The columns of the search (the subscriber's and a digest variant's)."""
        return {"keywords": self.keywords, "location": self.location, "radius": self.radius,
                "remote": self.remote, "employment_type": self.employment_type}

    def columns(self) -> dict[str, object]:
        return {**self.search(), "language": self.language}

    @classmethod
    def of(cls, row: object) -> Preferences:
        """The preferences a subscriber row (or anything with its column names) holds."""
        return cls(**{name: getattr(row, name) for name in FIELDS})


FIELDS = ("keywords", "location", "language", "radius", "remote", "employment_type")


def clean_text(field: str, value: object, max_length: int) -> str:
    """A single line of text: stripped, NFC, no control characters, at most max_length."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(field, f"{field}: expected text")
    if _CONTROL.search(value):
        raise InvalidInput(field, f"{field}: line breaks and control characters are not allowed")
    if _ENCODED_WORD.search(value):
        raise InvalidInput(field, f"{field}: '=?' encoded words are not allowed")
    if _SURROGATE.search(value):
        raise InvalidInput(field, f"{field}: not valid Unicode text")
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if len(text) > max_length:
        raise InvalidInput(field, f"{field}: at most {max_length} characters")
    return text


def clean_email(value: object) -> str:
    """The normalised address (domain lower-cased, Unicode kept) or InvalidInput."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("email", "email: an email address is required")
    if _CONTROL.search(value) or _ENCODED_WORD.search(value):
        raise InvalidInput("email", "email: line breaks and control characters are not allowed")
    if _SURROGATE.search(value):
        raise InvalidInput("email", "email: not valid Unicode text")
    raw = value.strip()
    if len(raw) > 254:
        raise InvalidInput("email", "email: the address is too long")
    try:
        result = validate_email(raw, check_deliverability=False, allow_quoted_local=False)
    except EmailNotValidError as exc:
        raise InvalidInput("email", f"email: {exc}") from None
    if "," in result.normalized or "<" in result.normalized or '"' in result.normalized:
        raise InvalidInput("email", "email: only a plain address is allowed")
    return result.normalized


def clean_language(value: object, default: str = "de") -> str:
    if value in (None, ""):
        return default
    if value not in LANGUAGES:
        raise InvalidInput("language", f"language: expected one of {', '.join(LANGUAGES)}")
    return str(value)


def clean_radius(value: object, location: str) -> int:
    """km around the place: one of criteria.RADII, the default when a place is given
    without one; 0 without a place (a radius around nothing means nothing). A value no form
    offers is refused with or without a place (0 stands for "none", as stored)."""
    if value in (None, ""):
        return criteria.DEFAULT_RADIUS if location else 0
    radius = _radius(value)
    if radius is None and not location and _whole(value) == 0:
        return 0
    if radius is None:
        raise InvalidInput("radius", _RADIUS_ERROR)
    return radius if location else 0


def _whole(value: object) -> int | None:
    """An int from a form's text or a JSON number (25.0 is 25); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) <= 4:
        return int(value.strip())
    return None


_RADIUS_ERROR = "radius: expected one of " + ", ".join(str(km) for km in criteria.RADII) + " (km)"


def _radius(value: object) -> int | None:
    number = _whole(value)
    return number if number in criteria.RADII else None


def clean_remote(value: object) -> str:
    if value in (None, ""):
        return criteria.DEFAULT_REMOTE
    if not isinstance(value, str) or value not in criteria.REMOTE_CHOICES:
        raise InvalidInput("remote", "remote: expected one of " + ", ".join(criteria.REMOTE_CHOICES))
    return value


def clean_employment_type(value: object) -> str:
    if isinstance(value, str) and len(value) > 200:
        raise InvalidInput("employment_type", "employment_type: at most 200 characters")
    if isinstance(value, list) and len(value) > len(criteria.EMPLOYMENT_TYPES) * 2:
        raise InvalidInput("employment_type", "employment_type: too many values")
    try:
        return criteria.parse_types(value)
    except ValueError as exc:
        raise InvalidInput("employment_type", f"employment_type: {exc}") from None


def clean_preferences(data: dict[str, object], default_language: str = "de") -> Preferences:
    """A reader's search and language from a form, a query string or a JSON body."""
    location = clean_text("location", data.get("location"), MAX_LOCATION)
    return Preferences(
        keywords=clean_text("keywords", data.get("keywords"), MAX_KEYWORDS),
        location=location,
        language=clean_language(data.get("language"), default_language),
        radius=clean_radius(data.get("radius"), location),
        remote=clean_remote(data.get("remote")),
        employment_type=clean_employment_type(data.get("employment_type")),
    )
