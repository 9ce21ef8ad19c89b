"""The offline gazetteer: what readers and feeds type for a place, and where it lies."""

from __future__ import annotations

import gzip
import random
import re
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.listings import places
from newsletter.listings.places import Place, distance_km, resolve

MUNICH = (48.137, 11.575)


def near(place: Place | None, latitude: float, longitude: float, km: float = 3.0) -> bool:
    return place is not None and distance_km(place.latitude, place.longitude, latitude, longitude) <= km


@pytest.mark.parametrize(
    "text", ["München", "Muenchen", "Munchen", "MÜNCHEN", "münchen", "Munich", "  München  "]
)
def test_spellings_of_one_town_find_it_by_its_german_name(text: str) -> None:
    place = resolve(text)
    assert place is not None and place.name == "München"
    assert near(place, *MUNICH)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Frankfurt am Main", "Frankfurt am Main"),
        ("frankfurt", "Frankfurt am Main"),  # the big one, not Frankfurt (Oder)
        ("Frankfurt/Main", "Frankfurt am Main"),
        ("Frankfurt a. M.", "Frankfurt am Main"),
        ("Frankfurt (Oder)", "Frankfurt (Oder)"),
        ("Köln", "Köln"),
        ("Koeln", "Köln"),
        ("Cologne", "Köln"),
        ("Nuremberg", "Nürnberg"),
        ("Düsseldorf", "Düsseldorf"),
        ("Dusseldorf", "Düsseldorf"),
        ("Halle", "Halle (Saale)"),
        ("Halle (Westf.)", "Halle (Westf.)"),
        ("St. Augustin", "Sankt Augustin"),
        ("Garmisch-Partenkirchen", "Garmisch-Partenkirchen"),
        ("Perlin", "Perlin"),  # a village, although GeoNames lists it as a name of Berlin
    ],
)
def test_town_names_and_their_common_forms(text: str, shown: str | None) -> None:
    place = resolve(text)
    assert (place.name if place else None) == shown


@pytest.mark.parametrize("text", ["80331", "80331 München", "München 80331", "D-80331", "PLZ 80331"])
def test_a_postal_code_alone_or_beside_its_town(text: str) -> None:
    place = resolve(text)
    assert place is not None and place.name == "80331 München"
    assert near(place, *MUNICH)


def test_postal_codes_lie_at_their_own_town() -> None:
    assert near(resolve("10115"), 52.52, 13.40, km=5)  # Berlin
    assert near(resolve("63065"), 50.10, 8.77, km=5)  # Offenbach am Main
    assert near(resolve("14467"), 52.40, 13.07, km=5)  # Potsdam
    assert near(resolve("01067"), 51.05, 13.74, km=5)  # Dresden: a leading zero


def test_a_known_postal_code_wins_over_the_name_beside_it() -> None:
    assert resolve("10115 München").name == "10115 Berlin"
    # An unknown code leaves the name to decide.
    assert resolve("00000 München").name == "München"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Raum München", "München"),
        ("Wiesbaden, Hessen", "Wiesbaden"),
        ("Mannheim (Hybrid)", "Mannheim"),
        ("Homeoffice / München", "München"),
        ("Stuttgart und Umgebung", "Stuttgart"),
        ("Hamburg-Altona", "Altona"),
    ],
)
def test_junk_around_a_town_in_a_location_field(text: str, shown: str) -> None:
    place = resolve(text)
    assert place is not None and place.name == shown


@pytest.mark.parametrize(
    "text",
    ["Hintertupfingen", "", "   ", "Remote", "Home Office", "Hessen", "Deutschlandweit", "12345678",
     "1234", "../../", "..\\..\\etc\\passwd", "Москва", "東京", "🏠🏢", "a" * 100, "\u202e\u200bX"],
)
def test_unknown_places_and_junk_resolve_to_nothing(text: str) -> None:
    assert resolve(text) is None


def test_non_text_is_no_place() -> None:
    assert resolve(None) is None  # type: ignore[arg-type]
    assert resolve(80331) is None  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=100))
def test_any_text_a_reader_can_type_never_raises(text: str) -> None:
    assert resolve(text) is None or isinstance(resolve(text), Place)


def test_a_hundred_random_unicode_characters_never_raise() -> None:
    rng = random.Random(12)
    for _ in range(200):
        text = "".join(chr(rng.choice([rng.randrange(1, 0x2FFF), rng.randrange(0xE000, 0x10FFFF)])) for _ in range(100))
        assert resolve(text) is None or isinstance(resolve(text), Place)


def test_long_text_is_cut_and_still_answers() -> None:
    assert resolve("München " + "x" * 10_000) is not None
    assert resolve("x " * 10_000) is None


def test_distance_berlin_potsdam() -> None:
    berlin, potsdam = resolve("Berlin"), resolve("Potsdam")
    assert distance_km(berlin.latitude, berlin.longitude, potsdam.latitude, potsdam.longitude) == pytest.approx(27, abs=3)


def test_distance_is_symmetric_and_zero_at_a_point() -> None:
    assert distance_km(50.0, 8.0, 50.0, 8.0) == 0.0
    assert distance_km(50.0, 8.0, 52.0, 13.0) == pytest.approx(distance_km(52.0, 13.0, 50.0, 8.0))
    # A quarter of a meridian: 10,007.5 km on the mean radius.
    assert distance_km(0.0, 0.0, 90.0, 0.0) == pytest.approx(10007.5, abs=0.5)


def test_the_table_is_keyed_by_the_lookup_rules_and_lies_in_germany() -> None:
    """A change of fold() or key() without a rebuild (scripts/build_gazetteer.py) would
    leave keys no lookup can reach: every name shown must still lead to a key."""
    source = resources.files("newsletter.listings").joinpath("data", places.TABLE)
    table = places._table()
    codes = names = 0
    with source.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("#"):
                continue
            name_key, name, latitude, longitude, population = line.rstrip("\n").split("\t")
            assert re.fullmatch(r"[0-9a-z]+( [0-9a-z]+)*", name_key), name_key
            assert 47.2 <= float(latitude) <= 55.1 and 5.8 <= float(longitude) <= 15.1, line
            assert name and int(population) >= 0
            if name_key.isdigit():
                assert len(name_key) == 5 and name.startswith(name_key + " ")
                codes += 1
            else:
                assert places.key(name) in table, name
                names += 1
    assert codes > 8000 and names > 20000


def test_words_never_taken_for_a_place_are_written_as_lookup_keys() -> None:
    assert all(places.key(word) == word for word in places._NOT_PLACES)


def test_the_table_is_read_once() -> None:
    assert places._table() is places._table()
