"""Where a place is: German towns and postal codes to coordinates, offline, for the radius
search, and the distance between two points.

The table ships with the package (data/places.tsv.gz, built by scripts/build_gazetteer.py
from GeoNames and a postal-code list; sources and licences in data/LICENSE-places.txt).
It is read once per process, on first use, so that the web app and a worker that never
plan an edition do not pay for it.

Both readers and employers type places freely ("80331 München", "Muenchen", "Munich",
"Frankfurt a. M. (Hessen)"), so a lookup compares names in one spelling-blind form and,
when the whole text is no known place, looks for the longest run of words that is one.
A postal code lies at its most populous locality (so all of Berlin's codes lie at Berlin's
centre): measured against the centroids of the code areas, it is off by 2 km at the median and
12 km for one code in twenty.
"""

from __future__ import annotations

import gzip
import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import NamedTuple

from newsletter.listings.folding import fold

EARTH_RADIUS_KM = 6371.0088  # the mean radius (IUGG)
TABLE = "places.tsv.gz"
# Longer text is cut: a place name is short, and a lookup must stay cheap for any input.
MAX_TEXT = 200
# Place names run to about six words ("Neustadt an der Weinstraße"); longer runs are never one.
_MAX_WORDS = 6
_POSTAL_CODE = re.compile(r"(?<![0-9])[0-9]{5}(?![0-9])")
_NOT_A_WORD = re.compile(r"[^0-9a-z]+")
# Single words that stand beside a place in a location field but are never meant as one,
# although a village or district of that name exists ("Hessen" in Sachsen-Anhalt, "Mitte").
_NOT_PLACE_WORDS = (  # in key() form (a test checks): this module calls no matching at import
    "bayern brandenburg hessen niedersachsen sachsen thuringen westfalen rheinland pfalz "
    "saarland holstein schleswig mecklenburg vorpommern anhalt baden wurttemberg franken "
    "schwaben oberbayern deutschland germany bundesweit remote home office homeoffice hybrid "
    "mobil mitte nord sud ost west zentrum stadt raum region kreis landkreis umgebung nahe "
    "bereich innenstadt gebiet standort land"
)
_NOT_PLACES = frozenset(_NOT_PLACE_WORDS.split())


@dataclass(frozen=True, slots=True)
class Place:
    """A town, district or postal-code area, by the name it is shown with."""

    name: str
    latitude: float
    longitude: float


class _Entry(NamedTuple):
    place: Place
    population: int


def key(text: str) -> str:
    """The form names are looked up in: folded (case, accents, umlaut spellings, ß) with
    every run of anything but letters and digits one space, so "Frankfurt/Main" finds
    "Frankfurt (Main)" and "Halle-Neustadt" finds "Halle Neustadt". The table's keys are
    made by this very function."""
    return " ".join(_NOT_A_WORD.sub(" ", fold(text)).split())


@cache
def _table() -> dict[str, _Entry]:
    """Key -> place, read once. Lines are `key<TAB>name<TAB>latitude<TAB>longitude<TAB>
    population`; the many keys of one place share one Place."""
    source = resources.files("newsletter.listings").joinpath("data", TABLE)
    shared: dict[tuple[str, str, str], _Entry] = {}
    table: dict[str, _Entry] = {}
    with source.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("#"):
                continue
            name_key, name, latitude, longitude, population = line.rstrip("\n").split("\t")
            entry = shared.get((name, latitude, longitude))
            if entry is None:
                entry = _Entry(Place(name, float(latitude), float(longitude)), int(population))
                shared[(name, latitude, longitude)] = entry
            table[name_key] = entry
    return table


def resolve(text: str) -> Place | None:
    """The place a reader or a feed means, or None. A known 5-digit postal code wins over a
    name (it is the more precise of the two in "80331 München")."""
    if not isinstance(text, str):
        return None
    text = text[:MAX_TEXT]
    table = _table()
    for code in _POSTAL_CODE.findall(text):
        entry = table.get(code)
        if entry is not None:
            return entry.place
    words = key(_POSTAL_CODE.sub(" ", text)).split()
    if not words:
        return None
    entry = table.get(" ".join(words))
    if entry is not None:
        return entry.place
    # Junk around a name ("Raum München", "Wiesbaden, Hessen"): the longest run of words
    # that is a place; among runs of one length, the most populous place.
    for size in range(min(len(words), _MAX_WORDS), 0, -1):
        best: _Entry | None = None
        for start in range(len(words) - size + 1):
            run = " ".join(words[start : start + size])
            if size == 1 and (run in _NOT_PLACES or len(run) < 3):
                continue
            found = table.get(run)
            if found is not None and (best is None or found.population > best.population):
                best = found
        if best is not None:
            return best.place
    return None


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) on a sphere of Earth's mean radius."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    half = (
        math.sin((phi2 - phi1) / 2) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, half)))
