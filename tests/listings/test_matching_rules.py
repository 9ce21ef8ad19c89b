"""The job-alert rules a reader sees: which listings a search gets, by place and radius,
remote work, job types and keywords. Pure functions on realistic listings; the database
side (planning an edition) is tested in tests/editions."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.listings import matching
from newsletter.listings.criteria import DEFAULT_RADIUS
from newsletter.listings.matching import facts, matches, parse, select
from newsletter.listings.places import distance_km

_ids = itertools.count(1)


@dataclass
class Job:
    """A listing as the store holds it (the attributes of models.Listing that matter)."""

    title: str = "Python-Entwickler:in (m/w/d)"
    company: str = "Beispiel GmbH"
    category: str = "IT"
    description: str = "Wir suchen Verstärkung für unser Backend-Team."
    location: str = ""
    postal_code: str = ""
    latitude: float | None = None
    longitude: float | None = None
    remote: bool = False
    employment_type: str = "full_time"
    id: int = 0

    def __post_init__(self) -> None:
        self.id = self.id or next(_ids)


def gets(job: Job, keywords: str = "", location: str = "", radius: int = 0, remote: str = "also",
         employment_type: str = "") -> bool:
    return matches(parse(keywords, location, radius, remote, employment_type), facts(job))


# -- place and radius --------------------------------------------------------------------------


def test_a_reader_in_offenbach_gets_frankfurt_across_the_town_border() -> None:
    frankfurt = Job(location="Frankfurt am Main")  # about 6 km away
    assert gets(frankfurt, location="Offenbach", radius=25)
    assert gets(frankfurt, location="Offenbach am Main", radius=10)
    # Before coordinates, "offenbach" was looked for in "frankfurt am main": no match.


def test_darmstadt_is_out_of_a_ten_km_radius_around_offenbach_but_in_fifty() -> None:
    darmstadt = Job(location="Darmstadt")  # about 27 km away
    assert not gets(darmstadt, location="Offenbach", radius=10)
    assert gets(darmstadt, location="Offenbach", radius=50)


def test_a_postal_code_as_the_readers_place() -> None:
    potsdam = Job(location="Potsdam")  # about 27 km from Berlin's centre, where 10115 lies
    berlin = Job(location="Berlin")
    assert gets(berlin, location="10115", radius=10)
    assert not gets(potsdam, location="10115", radius=10)
    assert gets(potsdam, location="10115", radius=50)
    assert gets(potsdam, location="10115 Berlin", radius=50)


def test_a_place_with_radius_0_is_looked_for_as_text() -> None:
    # Readers from before radius search were given the default radius by the migration;
    # a 0 left (by hand) means no radius: the place's name, as matching always did.
    query = parse("", "Offenbach", 0)
    assert query.radius == 0
    assert not matches(query, facts(Job(location="Frankfurt am Main")))  # about 6 km, another name
    assert matches(query, facts(Job(location="Offenbach am Main (Hybrid)")))
    wide = parse("", "Offenbach", DEFAULT_RADIUS)
    assert matches(wide, facts(Job(location="Hanau")))  # about 11 km
    assert not matches(wide, facts(Job(location="Wiesbaden")))  # about 37 km


def test_spellings_of_the_readers_place_do_not_matter() -> None:
    augsburg = Job(location="Augsburg")  # about 57 km from München
    for spelling in ("München", "Muenchen", "munich", "80331"):
        assert gets(Job(location="München"), location=spelling, radius=10), spelling
        assert not gets(augsburg, location=spelling, radius=50), spelling
        assert gets(augsburg, location=spelling, radius=100), spelling


def test_the_feeds_coordinates_win_over_its_postal_code() -> None:
    # The postal code is Berlin's, the feed's point is in Munich; the text names no town.
    job = Job(location="Zentrale", postal_code="10115", latitude=48.14, longitude=11.58)
    assert gets(job, location="München", radius=10)
    assert not gets(job, location="Berlin", radius=10)


def test_a_town_the_listing_names_counts_beside_its_point() -> None:
    # "München, Augsburg": one point (München's), two towns; each town's readers get it.
    job = Job(location="München, Augsburg", latitude=48.14, longitude=11.58)
    assert gets(job, location="Augsburg", radius=10)
    assert gets(job, location="München", radius=10)
    assert not gets(job, location="Ulm", radius=25)


def test_the_listings_postal_code_wins_over_its_text() -> None:
    job = Job(location="Zentrale", postal_code="80331")
    assert gets(job, location="München", radius=10)
    assert facts(job).point is not None


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [(float("nan"), 8.0), (1000.0, 8.0), (50.0, float("inf")), (50.0, None), (True, 8.0)],
)
def test_unusable_feed_coordinates_fall_back_to_the_postal_code(latitude, longitude) -> None:
    job = Job(location="", postal_code="60311", latitude=latitude, longitude=longitude)
    assert gets(job, location="Offenbach", radius=10)  # 60311 is Frankfurt am Main


def test_an_unknown_readers_place_matches_by_text_as_before() -> None:
    assert parse("", "Hintertupfingen").place is None
    assert gets(Job(location="Hintertupfingen-Süd"), location="Hintertupfingen", radius=50)
    assert not gets(Job(location="Berlin"), location="Hintertupfingen", radius=100)


def test_a_listing_whose_place_is_unknown_matches_by_text() -> None:
    works = Job(location="Offenbacher Landstraße, Werk 2")
    assert facts(works).point is None
    assert gets(works, location="Offenbach", radius=10)  # "offenbach" is in its text
    assert not gets(works, location="Hanau", radius=100)
    # A reader's postal code stands for its town's name in that text comparison.
    assert gets(Job(location="Münchener Freiheit, Werk 2"), location="80331", radius=10)


def test_no_place_means_anywhere() -> None:
    assert gets(Job(location="Hamburg"))
    assert gets(Job(location=""), keywords="python")


# -- remote ------------------------------------------------------------------------------------


def test_remote_also_gets_remote_listings_wherever_they_are() -> None:
    remote_in_hamburg = Job(location="Hamburg", remote=True)
    assert gets(remote_in_hamburg, location="Offenbach", radius=10, remote="also")
    assert not gets(Job(location="Hamburg"), location="Offenbach", radius=10, remote="also")


def test_remote_no_is_on_site_only() -> None:
    assert not gets(Job(location="Hamburg", remote=True), location="Offenbach", radius=10, remote="no")
    assert not gets(Job(location="Frankfurt am Main", remote=True), location="Offenbach", radius=10, remote="no")
    assert gets(Job(location="Frankfurt am Main"), location="Offenbach", radius=10, remote="no")
    assert not gets(Job(remote=True), remote="no")


def test_remote_only_gets_remote_listings_alone_whatever_the_place() -> None:
    assert gets(Job(location="Hamburg", remote=True), location="Offenbach", radius=10, remote="only")
    assert not gets(Job(location="Frankfurt am Main"), location="Offenbach", radius=10, remote="only")
    assert gets(Job(remote=True), remote="only")
    assert not gets(Job(), remote="only")


def test_an_unknown_remote_value_counts_as_also() -> None:
    assert parse("", "", 0, "sometimes").remote == "also"


# -- job types ---------------------------------------------------------------------------------


def test_a_reader_who_picked_types_gets_listings_with_one_of_them() -> None:
    assert gets(Job(employment_type="full_time,part_time"), employment_type="part_time")
    assert gets(Job(employment_type="internship"), employment_type="student,internship")
    assert not gets(Job(employment_type="full_time"), employment_type="part_time")
    assert not gets(Job(employment_type=""), employment_type="part_time")


def test_a_reader_who_picked_none_gets_every_type_and_untyped_listings() -> None:
    for kind in ("", "full_time", "freelance", "apprenticeship,part_time"):
        assert gets(Job(employment_type=kind)), kind


# -- keywords and everything together ------------------------------------------------------------


def test_keywords_as_before() -> None:
    job = Job(title="Softwareentwicklerin Python", location="Köln")
    assert gets(job, keywords="python")
    assert gets(job, keywords="Java; Softwareentwickler")
    assert not gets(job, keywords="Java")
    assert not gets(job, keywords="Python", location="Berlin", radius=100)


def test_every_rule_at_once() -> None:
    jobs = [
        Job(title="Python Backend", location="Frankfurt am Main", employment_type="full_time"),
        Job(title="Python Backend", location="Darmstadt", employment_type="full_time"),
        Job(title="Python Backend", location="Hamburg", remote=True, employment_type="part_time"),
        Job(title="Java Backend", location="Offenbach", employment_type="full_time"),
        Job(title="Python Werkstudent", location="Hanau", employment_type="student"),
    ]
    query = parse("python", "Offenbach", 25, "also", "full_time,part_time")
    assert select(query, [facts(job) for job in jobs]) == [jobs[0].id, jobs[2].id]


def test_select_keeps_the_order_given() -> None:
    jobs = [Job(location=town) for town in ("Hanau", "Frankfurt am Main", "Offenbach", "Kiel")]
    listed = [facts(job) for job in reversed(jobs)]
    assert select(parse("", "Offenbach", 25), listed) == [jobs[2].id, jobs[1].id, jobs[0].id]
    assert select(parse("", ""), listed) == [job.id for job in reversed(jobs)]


def test_parse_is_cached_and_readers_sharing_a_search_share_it() -> None:
    assert parse("python", "Köln", 25, "also", "full_time") is parse("python", "Köln", 25, "also", "full_time")


def test_old_helpers_keep_working() -> None:
    assert matching.fold("Münchner Straße") == matching.fold("Muenchner Strasse") == "munchner strasse"
    assert matching.stem("entwicklerinnen") == "entwickler"
    assert matching.searchable("Entwickler", "ACME", "IT", "Köln") == "entwickler acme it koln"


# -- the distance test: the cheap box and the full haversine agree --------------------------------


@pytest.mark.parametrize(
    ("north", "east", "inside"),
    [(0.22, 0.0, True), (0.23, 0.0, False), (0.0, 0.34, True), (0.0, 0.36, False), (-0.22, 0.0, True)],
)
def test_the_edge_of_a_25_km_circle(north: float, east: float, inside: bool) -> None:
    # One degree of latitude is 111.2 km, one of longitude at 50° N is 71.4 km.
    query = parse("", "Offenbach", 25)
    place = query.place
    job = Job(latitude=place.latitude + north, longitude=place.longitude + east)
    assert (distance_km(place.latitude, place.longitude, job.latitude, job.longitude) <= 25) is inside
    assert matches(query, facts(job)) is inside


@settings(max_examples=400, deadline=None)
@given(
    st.floats(min_value=-2.0, max_value=2.0),
    st.floats(min_value=-3.0, max_value=3.0),
    st.sampled_from([10, 25, 50, 100]),
)
def test_matches_agrees_with_distance_km(north: float, east: float, radius: int) -> None:
    query = parse("", "Offenbach", radius)
    place = query.place
    job = Job(latitude=place.latitude + north, longitude=place.longitude + east)
    exact = distance_km(place.latitude, place.longitude, job.latitude, job.longitude)
    if not math.isclose(exact, radius, abs_tol=1e-6):
        assert matches(query, facts(job)) is (exact <= radius)


# -- select is matches applied to each listing ------------------------------------------------------

_TOWNS = ["", "Offenbach", "Frankfurt am Main", "10115", "Hintertupfingen", "Darmstadt", "Potsdam", "Kiel"]
_TYPES = ["", "full_time", "part_time", "student,internship", "freelance,full_time"]
_jobs = st.builds(
    Job,
    title=st.sampled_from(["Python Backend", "Java Entwicklerin", "Pflegekraft", "Werkstudent Python"]),
    location=st.sampled_from([*_TOWNS, "Werk Hintertupfingen", "Offenbacher Landstraße 3"]),
    postal_code=st.sampled_from(["", "", "63065", "80331", "99999"]),
    remote=st.booleans(),
    employment_type=st.sampled_from(_TYPES),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_jobs, max_size=12),
    st.sampled_from(["", "python", "java; pflege", "python backend"]),
    st.sampled_from(_TOWNS),
    st.sampled_from([0, 10, 25, 50, 100]),
    st.sampled_from(["no", "also", "only"]),
    st.sampled_from(_TYPES),
)
def test_select_is_matches_applied_to_each_listing(jobs, keywords, location, radius, remote, types) -> None:
    query = parse(keywords, location, radius, remote, types)
    listed = [facts(job) for job in jobs]
    assert select(query, listed) == [item.id for item in listed if matches(query, item)]


def test_folding_listings_long_texts_keeps_none_of_them_in_memory() -> None:
    # A long-lived worker folds every listing's whole text once per edition; a cache of
    # them grew by hundreds of MB with no hit.
    import tracemalloc

    from newsletter.listings import matching

    texts = [f"Stelle {n} " + "Wir bieten flexible Arbeitszeiten und ein Jobticket. " * 400 for n in range(300)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for text in texts:
        matching.searchable(text, "Firma", "IT", "")
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert kept < 2_000_000, f"{kept / 1e6:.1f} MB kept after folding {len(texts)} texts"
