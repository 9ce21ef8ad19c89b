"""Which listings match a reader's job alert: keywords, a place and radius, remote work,
job types.

Keywords: any term matches (terms are separated by commas or semicolons; the words of one
term must all occur). Matching is a substring match over title, company, category and
description that ignores case, umlaut spelling (München = Muenchen = Munchen) and common
German and English word endings (Entwickler finds Entwicklerin, Entwicklern; Ingenieure
finds Ingenieur).

Place: a reader's place that the gazetteer knows (places.resolve) matches listings within
the radius of it, across town borders (Offenbach finds Frankfurt). The reader's place text
found in the listing's location text matches too: where either side's place is unknown,
with a radius of 0 (no radius chosen), and for a listing that names several towns
("München, Augsburg"), whose one point is only the first of them. A remote listing
reaches every reader who accepts remote work (remote "also", the default), wherever they
live; "only" wants remote listings alone, and "no" (on site only) none of them.

Job types: a reader who picked some gets listings with at least one of them; a listing
that names no type reaches only readers who picked none.

Planning asks this for every distinct search against every listing of an edition (some
10,000 x 2,000), so both sides are worked out once (parse, facts) and `matches` does only
comparisons, a box test on degrees and, for pairs inside the box, a haversine without its
square root and arcsine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from newsletter.listings import places
from newsletter.listings.folding import fold
from newsletter.listings.criteria import DEFAULT_REMOTE, REMOTE_CHOICES, split_types

_SUFFIXES = ("innen", "ern", "en", "er", "in", "es", "e", "n", "s")
_MIN_STEM = 4
_SPLIT_TERMS = re.compile(r"[,;]+")
_LEADING_POSTAL_CODE = re.compile(r"^[0-9]{5}\s+")


def stem(word: str) -> str:
    """Drop one common ending so that inflected forms still match as substrings."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            return word[: -len(suffix)]
    return word


def searchable(title: str, company: str, category: str, description: str) -> str:
    """The folded text a listing is searched in."""
    return fold(" ".join((title or "", company or "", category or "", description or "")))


@dataclass(frozen=True, slots=True)
class _Circle:
    """A reader's place and radius, in the forms the distance test needs."""

    latitude: float
    longitude: float
    lat_span: float  # degrees of latitude the radius covers
    lon_span: float  # degrees of longitude it covers at worst (on the side nearer the pole)
    phi: float
    cos_phi: float
    limit: float  # sin²(radius / 2R): haversine's `a` at the radius


def _circle(place: places.Place, radius_km: float) -> _Circle:
    # (places and this module import each other: its names are read at call time only.)
    lat_span = radius_km / (places.EARTH_RADIUS_KM * math.pi / 180)
    widest = math.radians(min(90.0, abs(place.latitude) + lat_span))
    lon_span = 360.0 if math.cos(widest) < 1e-9 else min(360.0, lat_span / math.cos(widest))
    phi = math.radians(place.latitude)
    half_angle = min(math.pi / 2, radius_km / (2 * places.EARTH_RADIUS_KM))
    return _Circle(
        place.latitude,
        place.longitude,
        lat_span,
        lon_span,
        phi,
        math.cos(phi),
        math.sin(half_angle) ** 2,
    )


@dataclass(frozen=True)
class Query:
    """A reader's search, worked out once (parse): folded keyword terms, the folded place
    text, the place the gazetteer made of it (or None), the radius in km that applies
    (0: none, the place is looked for as text), remote and job types."""

    terms: tuple[tuple[str, ...], ...]  # any term; all words of a term
    location: str
    place: places.Place | None = None
    radius: int = 0
    remote: str = DEFAULT_REMOTE
    types: frozenset[str] = frozenset()
    _circle: _Circle | None = field(default=None, repr=False, compare=False)
    # The texts looked for in a listing's location when a distance cannot be had.
    _names: tuple[str, ...] = field(default=(), repr=False, compare=False)


def _whole_number(value: object) -> int:
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0
    return max(0, number)


@lru_cache(maxsize=65536)
def parse(
    keywords: str,
    location: str,
    radius: int = 0,
    remote: str = DEFAULT_REMOTE,
    employment_type: str = "",
) -> Query:
    """A reader's stored search as a Query; unknown remote values count as the default."""
    terms = []
    for raw in _SPLIT_TERMS.split(keywords or ""):
        words = tuple(stem(word) for word in fold(raw).split() if word)
        if words:
            terms.append(words)
    folded = fold(location or "")
    place = places.resolve(location) if folded else None
    # Radius 0 is a text search for the place: a stored search from before radius search
    # existed, or one made by hand; signups with a place get a radius (validation).
    reach = _whole_number(radius)
    names = [folded] if folded else []
    if place is not None:
        town = fold(_LEADING_POSTAL_CODE.sub("", place.name))
        if town and town not in names:
            names.append(town)
    return Query(
        terms=tuple(terms),
        location=folded,
        place=place,
        radius=reach,
        remote=remote if remote in REMOTE_CHOICES else DEFAULT_REMOTE,
        types=split_types(employment_type or ""),
        _circle=_circle(place, reach) if place is not None and reach > 0 else None,
        _names=tuple(names),
    )


class ListingLike(Protocol):
    """What facts() reads of a listing (a models.Listing, or any object with these)."""

    id: int
    title: str
    company: str
    category: str
    description: str
    location: str
    postal_code: str
    latitude: float | None
    longitude: float | None
    remote: bool
    employment_type: str


@dataclass(frozen=True, slots=True)
class ListingFacts:
    """What matching needs of one listing, worked out once per edition."""

    id: int
    text: str  # searchable(): folded title, company, category, description
    location: str  # folded location text
    point: tuple[float, float] | None  # latitude, longitude
    remote: bool
    types: frozenset[str]
    # The point again, in the forms the distance test reads without unpacking.
    _lat: float = field(default=0.0, init=False, repr=False, compare=False)
    _lon: float = field(default=0.0, init=False, repr=False, compare=False)
    _phi: float = field(default=0.0, init=False, repr=False, compare=False)
    _cos_phi: float = field(default=0.0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.point is not None:
            phi = math.radians(self.point[0])
            object.__setattr__(self, "_lat", self.point[0])
            object.__setattr__(self, "_lon", self.point[1])
            object.__setattr__(self, "_phi", phi)
            object.__setattr__(self, "_cos_phi", math.cos(phi))


def _coordinates(latitude: object, longitude: object) -> tuple[float, float] | None:
    """The feed's own point, when it gave a usable one."""
    if (
        latitude is None
        or longitude is None
        or isinstance(latitude, bool)
        or isinstance(longitude, bool)
    ):
        return None
    try:
        lat, lon = float(latitude), float(longitude)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


def facts(listing: ListingLike) -> ListingFacts:
    """A listing's facts. Its point: the feed's coordinates when it gave both, else its
    postal code's, else its location's, else none (then its place matches by text)."""
    point = _coordinates(listing.latitude, listing.longitude)
    if point is None:
        place = places.resolve(listing.postal_code or "") or places.resolve(listing.location or "")
        if place is not None:
            point = (place.latitude, place.longitude)
    return ListingFacts(
        id=listing.id,
        text=searchable(listing.title, listing.company, listing.category, listing.description),
        location=fold(listing.location or ""),
        point=point,
        remote=bool(listing.remote),
        types=split_types(listing.employment_type or ""),
    )


def _within(circle: _Circle, listing: ListingFacts) -> bool:
    """Whether a listing's point lies in the circle: a box on degrees rules most pairs out
    without trigonometry; inside it, haversine's `a` is compared with its value at the
    radius (no square root, no arcsine)."""
    if abs(listing._lat - circle.latitude) > circle.lat_span:
        return False
    lon_gap = abs(listing._lon - circle.longitude)
    if lon_gap > 180.0:
        lon_gap = 360.0 - lon_gap
    if lon_gap > circle.lon_span:
        return False
    half_dphi = math.sin((listing._phi - circle.phi) / 2)
    half_dlambda = math.sin(math.radians(lon_gap) / 2)
    spread = half_dphi * half_dphi + circle.cos_phi * listing._cos_phi * half_dlambda * half_dlambda
    return spread <= circle.limit


def _place_fits(query: Query, listing: ListingFacts) -> bool:
    """Rules (b) and (c): remote "only" and "no"; then no place, a remote listing for
    remote "also", the radius, or the text of the place (where a distance cannot be had,
    and for a listing that names several towns, of which its point is only one)."""
    if query.remote == "only":
        return listing.remote
    if query.remote == "no" and listing.remote:
        return False
    if not query.location or (listing.remote and query.remote == "also"):
        return True
    if query._circle is not None and listing.point is not None and _within(query._circle, listing):
        return True
    return _named(query, listing)


def _named(query: Query, listing: ListingFacts) -> bool:
    """The place by text, where a distance cannot be had: the reader's place text (or the
    town of their postal code) within the listing's location text."""
    return any(name in listing.location for name in query._names)


def _has_terms(terms: tuple[tuple[str, ...], ...], text: str) -> bool:
    return any(all(word in text for word in term) for term in terms)


def matches(query: Query, listing: ListingFacts) -> bool:
    """Whether the listing fits the reader's search (the rules in the module docstring)."""
    if query.types and query.types.isdisjoint(listing.types):
        return False
    if not _place_fits(query, listing):
        return False
    return not query.terms or _has_terms(query.terms, listing.text)


def select(query: Query, listings: Iterable[ListingFacts]) -> list[int]:
    """Ids of the matching listings, in the order given: `matches` applied rule by rule to
    the listings still in, so that each rule costs one tight loop over fewer listings."""
    chosen = list(listings)
    if query.types:
        wanted = query.types
        chosen = [item for item in chosen if not wanted.isdisjoint(item.types)]
    if query.remote == "only":
        chosen = [item for item in chosen if item.remote]
    elif query.remote == "no":
        chosen = [item for item in chosen if not item.remote]
    if query.location and query.remote != "only":
        anywhere = query.remote == "also"
        circle = query._circle
        if circle is not None:
            # The latitude band first, inline: it alone rules most listings out.
            low, high = circle.latitude - circle.lat_span, circle.latitude + circle.lat_span
            chosen = [
                item
                for item in chosen
                if (anywhere and item.remote)
                or (item.point is not None and low <= item._lat <= high and _within(circle, item))
                or _named(query, item)
            ]
        else:
            chosen = [item for item in chosen if (anywhere and item.remote) or _named(query, item)]
    if query.terms:
        if len(query.terms) == 1 and len(query.terms[0]) == 1:
            word = query.terms[0][0]
            chosen = [item for item in chosen if word in item.text]
        else:
            terms = query.terms
            chosen = [item for item in chosen if _has_terms(terms, item.text)]
    return [item.id for item in chosen]
