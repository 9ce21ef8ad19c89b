"""Job-alert searches at planning time, on SQLite and PostgreSQL: a radius around a town
or postal code across town borders, coordinates from the feed, remote, job types, and the
text match that stays for places the gazetteer does not know. Each reader's digest is read
back from the edition's variants, as the sender reads it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from newsletter.editions import planning
from newsletter.models import Delivery, EditionVariant, Listing, Subscriber
from tests.helpers import add_listing, add_reader


def _digests(database, settings) -> dict[str, list[str]]:
    """Reader address -> the titles of their digest, in digest order."""
    with database.session_scope() as session:
        edition = planning.create_edition(session, settings, "test")
        rows = session.execute(
            select(Subscriber.email, EditionVariant.listing_ids)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .join(EditionVariant, EditionVariant.id == Delivery.variant_id)
            .where(Delivery.edition_id == edition.id)
        ).all()
        titles = dict(session.execute(select(Listing.id, Listing.title)).all())
        return {email: [titles[i] for i in ids] for email, ids in rows}


def _rhein_main(session) -> None:
    # Places only as the board writes them: the gazetteer finds their coordinates.
    add_listing(session, 1, "Frankfurt: Data Engineer (m/w/d)", location="Frankfurt am Main", hours_ago=1)
    add_listing(session, 2, "Wiesbaden: Data Engineer (m/w/d)", location="Wiesbaden", hours_ago=2)
    add_listing(session, 3, "Würzburg: Data Engineer (m/w/d)", location="Würzburg", hours_ago=3)
    add_listing(session, 4, "Kassel: Data Engineer (m/w/d)", location="Kassel", hours_ago=4)


def test_a_radius_reaches_across_town_borders_and_no_further(database, settings):
    # From Offenbach: Frankfurt ~6 km, Wiesbaden ~40 km, Würzburg ~95 km, Kassel ~150 km.
    with database.session_scope() as session:
        _rhein_main(session)
        add_reader(session, "r10@example.org", location="Offenbach am Main", radius=10)
        add_reader(session, "r50@example.org", location="Offenbach", radius=50)
        add_reader(session, "r100@example.org", location="offenbach am main", radius=100)
    got = _digests(database, settings)
    assert got["r10@example.org"] == ["Frankfurt: Data Engineer (m/w/d)"]
    assert got["r50@example.org"] == ["Frankfurt: Data Engineer (m/w/d)", "Wiesbaden: Data Engineer (m/w/d)"]
    assert got["r100@example.org"] == ["Frankfurt: Data Engineer (m/w/d)", "Wiesbaden: Data Engineer (m/w/d)",
                                       "Würzburg: Data Engineer (m/w/d)"]


def test_a_postal_code_is_a_place_on_either_side(database, settings):
    with database.session_scope() as session:
        # Only a postal code: 63065 is Offenbach's centre, ~6 km from Frankfurt's 60311.
        add_listing(session, 1, "Offenbach per PLZ", location="", postal_code="63065", hours_ago=1)
        add_listing(session, 2, "Mainz per PLZ", location="Rheinhessen", postal_code="55116", hours_ago=2)
        add_reader(session, "plz@example.org", location="60311", radius=10)
        add_reader(session, "plz-town@example.org", location="60311 Frankfurt am Main", radius=50)
    got = _digests(database, settings)
    assert got["plz@example.org"] == ["Offenbach per PLZ"]
    assert got["plz-town@example.org"] == ["Offenbach per PLZ", "Mainz per PLZ"]


def test_the_feeds_coordinates_place_a_listing_whose_text_names_no_town(database, settings):
    with database.session_scope() as session:
        # "Werk Nord" is no town; the feed's geo says the job is in Munich.
        add_listing(session, 1, "Werkstudent (m/w/d)", location="Werk Nord", latitude=48.137, longitude=11.575)
        add_reader(session, "muc@example.org", location="München", radius=10)
        add_reader(session, "ber@example.org", location="Berlin", radius=25)
        add_reader(session, "catch-all@example.org")
    got = _digests(database, settings)
    assert got["muc@example.org"] == ["Werkstudent (m/w/d)"]
    assert "ber@example.org" not in got  # nobody gets an empty digest
    assert got["catch-all@example.org"] == ["Werkstudent (m/w/d)"]


@pytest.mark.parametrize("spelling", ["München", "Muenchen", "munchen", "Munich", "MÜNCHEN"])
def test_every_spelling_of_a_town_is_the_same_place(database, settings, spelling):
    with database.session_scope() as session:
        add_listing(session, 1, "Garching: Physiker (m/w/d)", location="Garching bei München")
        add_reader(session, "reader@example.org", location=spelling, radius=25)
    assert _digests(database, settings)["reader@example.org"] == ["Garching: Physiker (m/w/d)"]


def test_remote_listings_reach_readers_who_allow_remote_wherever_they_live(database, settings):
    with database.session_scope() as session:
        add_listing(session, 1, "Remote aus München", location="München", remote=True, hours_ago=1)
        add_listing(session, 2, "Vor Ort in Berlin", location="Berlin", hours_ago=2)
        add_listing(session, 3, "Remote aus Berlin", location="Berlin", remote=True, hours_ago=3)
        add_reader(session, "also@example.org", location="Berlin", radius=25, remote="also")
        add_reader(session, "no@example.org", location="Berlin", radius=25, remote="no")
        add_reader(session, "only@example.org", location="Berlin", radius=25, remote="only")
        add_reader(session, "only-nowhere@example.org", remote="only")
    got = _digests(database, settings)
    assert got["also@example.org"] == ["Remote aus München", "Vor Ort in Berlin", "Remote aus Berlin"]
    assert got["no@example.org"] == ["Vor Ort in Berlin"]  # on site only
    assert got["only@example.org"] == ["Remote aus München", "Remote aus Berlin"]
    assert got["only-nowhere@example.org"] == ["Remote aus München", "Remote aus Berlin"]


def test_job_types_pick_listings_and_untyped_listings_reach_only_readers_without_types(database, settings):
    with database.session_scope() as session:
        add_listing(session, 1, "Vollzeit", employment_type="full_time", hours_ago=1)
        add_listing(session, 2, "Teilzeit oder Vollzeit", employment_type="full_time,part_time", hours_ago=2)
        add_listing(session, 3, "Werkstudent", employment_type="student", hours_ago=3)
        add_listing(session, 4, "Ohne Angabe", hours_ago=4)
        add_reader(session, "part@example.org", employment_type="part_time")
        add_reader(session, "student-or-full@example.org", employment_type="full_time,student")
        add_reader(session, "any@example.org")
    got = _digests(database, settings)
    assert got["part@example.org"] == ["Teilzeit oder Vollzeit"]
    assert got["student-or-full@example.org"] == ["Vollzeit", "Teilzeit oder Vollzeit", "Werkstudent"]
    assert got["any@example.org"] == ["Vollzeit", "Teilzeit oder Vollzeit", "Werkstudent", "Ohne Angabe"]


def test_a_listing_in_several_towns_reaches_readers_in_each(database, settings):
    # One point (the gazetteer's pick of the text, or the feed's first place), three towns.
    with database.session_scope() as session:
        add_listing(session, 1, "Filialleitung (m/w/d)", location="Berlin, Hamburg, München", hours_ago=1)
        add_listing(session, 2, "Bauleitung (m/w/d)", location="München, Augsburg", latitude=48.137,
                    longitude=11.575, hours_ago=2)
        for town in ("Berlin", "Hamburg", "München", "Augsburg"):
            add_reader(session, f"{town.lower()}@example.org", location=town, radius=25)
    got = _digests(database, settings)
    assert got["berlin@example.org"] == ["Filialleitung (m/w/d)"]
    assert got["hamburg@example.org"] == ["Filialleitung (m/w/d)"]
    assert got["münchen@example.org"] == ["Filialleitung (m/w/d)", "Bauleitung (m/w/d)"]
    assert got["augsburg@example.org"] == ["Bauleitung (m/w/d)"]


def test_an_unknown_place_is_matched_as_text_as_before(database, settings):
    with database.session_scope() as session:
        add_listing(session, 1, "Hintertupfingen (Hybrid)", location="Hintertupfingen (Hybrid)", hours_ago=1)
        add_listing(session, 2, "Berlin", location="Berlin", hours_ago=2)
        add_reader(session, "village@example.org", location="Hintertupfingen", radius=50)
        # Radius 0 with a place: a text search, as every reader had before radius search.
        add_reader(session, "text@example.org", location="Berlin")
        add_listing(session, 3, "Potsdam", location="Potsdam", hours_ago=3)
    got = _digests(database, settings)
    assert got["village@example.org"] == ["Hintertupfingen (Hybrid)"]
    assert got["text@example.org"] == ["Berlin"]


def test_readers_with_one_search_share_a_variant_and_each_difference_makes_its_own(database, settings):
    with database.session_scope() as session:
        add_listing(session, 1, "Python (m/w/d)", location="Berlin", employment_type="full_time", remote=True)
        for n in range(3):
            add_reader(session, f"same{n}@example.org", "Python", "Berlin", radius=25, employment_type="full_time")
        add_reader(session, "wider@example.org", "Python", "Berlin", radius=50, employment_type="full_time")
        add_reader(session, "remote-only@example.org", "Python", "Berlin", radius=25, remote="only",
                   employment_type="full_time")
        add_reader(session, "two-types@example.org", "Python", "Berlin", radius=25,
                   employment_type="full_time,part_time")
    with database.session_scope() as session:
        edition = planning.create_edition(session, settings, "test")
        assert edition.planned == 6
        variants = session.scalars(select(EditionVariant).where(EditionVariant.edition_id == edition.id)).all()
        assert sorted((v.radius, v.remote, v.employment_type) for v in variants) == [
            (25, "also", "full_time"), (25, "also", "full_time,part_time"), (25, "only", "full_time"),
            (50, "also", "full_time")]
        shared = session.scalars(select(Delivery.variant_id).join(Subscriber).where(
            Subscriber.email.like("same%"))).all()
        assert len(set(shared)) == 1
