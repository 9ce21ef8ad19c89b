"""Which listings match a reader's keywords and location.

Any term matches (terms are separated by commas or semicolons; the words of one term must
all occur). Matching is a substring match over title, company, category and description
that ignores case, umlaut spelling (München = Muenchen = Munchen) and common German and
English word endings (Entwickler finds Entwicklerin, Entwicklern; Ingenieure finds
Ingenieur). Location is the same kind of match over the listing's location.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "ø": "o", "œ": "oe"})
# After accents are stripped, ae/oe/ue spellings of umlauts collapse onto the same letter.
_UMLAUT_SPELLINGS = (("ae", "a"), ("oe", "o"), ("ue", "u"))
_SUFFIXES = ("innen", "ern", "en", "er", "in", "es", "e", "n", "s")
_MIN_STEM = 4
_SPLIT_TERMS = re.compile(r"[,;]+")


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Lower-case, without accents, with umlaut spellings collapsed: the form both sides of
    a match are compared in."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_FOLD))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    for spelled, letter in _UMLAUT_SPELLINGS:
        plain = plain.replace(spelled, letter)
    return " ".join(plain.split())


def stem(word: str) -> str:
    """Drop one common ending so that inflected forms still match as substrings."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            return word[: -len(suffix)]
    return word


@dataclass(frozen=True)
class Query:
    """A reader's preferences, folded once."""

    terms: tuple[tuple[str, ...], ...]  # any term; all words of a term
    location: str

    @property
    def everything(self) -> bool:
        return not self.terms and not self.location


@lru_cache(maxsize=65536)
def parse(keywords: str, location: str) -> Query:
    terms = []
    for raw in _SPLIT_TERMS.split(keywords or ""):
        words = tuple(stem(word) for word in fold(raw).split() if word)
        if words:
            terms.append(words)
    return Query(tuple(terms), fold(location or ""))


def searchable(title: str, company: str, category: str, description: str) -> str:
    """The folded text a listing is searched in."""
    return fold(" ".join((title, company, category, description)))


def matches(query: Query, text: str, listing_location: str) -> bool:
    """Whether a listing (its searchable text and folded location) fits the query."""
    if query.location and query.location not in listing_location:
        return False
    if not query.terms:
        return True
    return any(all(word in text for word in term) for term in query.terms)


def select(query: Query, listings: Iterable[tuple[int, str, str]]) -> list[int]:
    """Ids of matching listings, in the order given: (id, searchable text, folded location)."""
    return [listing_id for listing_id, text, location in listings if matches(query, text, location)]
