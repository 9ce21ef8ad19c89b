"""The one spelling both sides of a comparison are put into: a reader's search and a
listing's text, a typed place and the gazetteer's names (München = Muenchen = Munchen)."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "ø": "o", "œ": "oe"})
# After accents are stripped, ae/oe/ue spellings of umlauts collapse onto the same letter.
_UMLAUT_SPELLINGS = (("ae", "a"), ("oe", "o"), ("ue", "u"))


# Searches and place names repeat and are short: they are cached. A listing's whole text is
# folded once per edition and may be 20,000 characters: caching those would hold gigabytes
# in a long-lived worker for no hit.
_CACHED_UP_TO = 200


def fold(text: str) -> str:
    """Lower-case, without accents, with umlaut spellings collapsed: the form both sides of
    a match are compared in."""
    return _fold_cached(text) if len(text) <= _CACHED_UP_TO else _fold(text)


@lru_cache(maxsize=65536)
def _fold_cached(text: str) -> str:
    return _fold(text)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_FOLD))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    for spelled, letter in _UMLAUT_SPELLINGS:
        plain = plain.replace(spelled, letter)
    return " ".join(plain.split())
