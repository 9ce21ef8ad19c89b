"""The preferences page with the whole search: the reader sees and changes radius, remote
work and job types, learns whether their place is one the radius search knows, and the
data export holds it all; an old form that lacks the new fields changes none of them."""

from __future__ import annotations

import json
import re

import pytest

from newsletter.models import ConsentEvent, email_hash
from tests.helpers import all_rows, data_link, find_subscriber, only_link, subscribe_confirmed

EMAIL = "anna@example.org"


@pytest.fixture
def prefs_path(client, smtp, drain) -> str:
    welcome = subscribe_confirmed(client, smtp, drain, EMAIL, keywords="Python", location="München",
                                  radius="50", remote="no", employment_type=["part_time", "student"])
    return only_link(welcome.part("plain"), "/preferences/")


def _page(client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200
    return page.get_data(as_text=True)


def _selected_radius(html: str) -> str:
    select = re.search(r'<select id="radius".*?</select>', html, re.DOTALL)[0]
    [value] = re.findall(r'<option value="(\d+)" selected>', select)
    return value


def _checked(html: str, name: str) -> list[str]:
    return re.findall(rf'<input type="(?:radio|checkbox)" id="[^"]+" name="{name}" value="([^"]+)" checked>', html)


def _place_note(html: str) -> str:
    match = re.search(r'<p class="place-note" id="place-note">(.*?)</p>', html, re.DOTALL)
    return " ".join(match.group(1).split()) if match else ""


def _save(client, path: str, **fields):
    data = {"keywords": "Python", "location": "München", "language": "de", "radius": "50", "remote": "no",
            "employment_type": ["", "part_time", "student"]}
    data.update(fields)
    return client.post(path, data=data)


def _changes(database) -> list[ConsentEvent]:
    return [e for e in all_rows(database, ConsentEvent, email_hash=email_hash(EMAIL)) if e.event == "preferences_changed"]


def test_the_page_shows_the_whole_search(client, prefs_path):
    html = _page(client, prefs_path)
    assert 'value="München"' in html
    assert _selected_radius(html) == "50"
    assert _checked(html, "remote") == ["no"]
    assert _checked(html, "employment_type") == ["part_time", "student"]


def test_changing_radius_remote_and_types_persists(client, database, prefs_path):
    answer = _save(client, prefs_path, radius="100", remote="only", employment_type=["", "internship"])
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "Ihre Einstellungen wurden gespeichert." in html
    assert (_selected_radius(html), _checked(html, "remote"), _checked(html, "employment_type")) == (
        "100", ["only"], ["internship"])
    sub = find_subscriber(database, EMAIL)
    assert (sub.radius, sub.remote, sub.employment_type) == (100, "only", "internship")
    [change] = _changes(database)
    assert change.detail["before"]["radius"] == 50 and change.detail["after"]["employment_type"] == "internship"


def test_ticking_no_type_means_every_type(client, database, prefs_path):
    assert _save(client, prefs_path, employment_type="").status_code == 200
    assert find_subscriber(database, EMAIL).employment_type == ""
    assert _checked(_page(client, prefs_path), "employment_type") == []


def test_an_older_form_without_the_new_fields_keeps_them(client, database, prefs_path):
    """A settings page still open in a tab from before, or a reader's own bookmarklet: the
    fields it does not send are not reset to their defaults."""
    answer = client.post(prefs_path, data={"keywords": "Rust", "location": "München", "language": "de"})
    assert answer.status_code == 200
    sub = find_subscriber(database, EMAIL)
    assert (sub.keywords, sub.radius, sub.remote, sub.employment_type) == ("Rust", 50, "no", "part_time,student")


def test_a_new_place_without_a_radius_gets_the_default_and_no_place_none(client, database, prefs_path):
    client.post(prefs_path, data={"keywords": "Python", "location": "Hamburg", "language": "de"})
    assert find_subscriber(database, EMAIL).radius == 25
    assert _save(client, prefs_path, location="").status_code == 200
    assert find_subscriber(database, EMAIL).radius == 0


@pytest.mark.parametrize("field, value, message", [
    ("radius", "5", "Umkreis: bitte 10, 25, 50 oder 100 km wählen."),
    ("remote", "maybe", "Remote-Arbeit: bitte eine der drei Möglichkeiten wählen."),
    ("employment_type", ["", "full_time", "evil"], "Anstellungsart: bitte nur die angebotenen Arten ankreuzen."),
])
def test_a_bad_choice_answers_400_and_changes_nothing(client, database, prefs_path, field, value, message):
    answer = _save(client, prefs_path, keywords="Go", **{field: value})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert f'<li id="{field}-error">' in html and message in html
    assert 'value="Go"' in html  # what was typed, to correct it
    sub = find_subscriber(database, EMAIL)
    assert (sub.keywords, sub.radius, sub.remote, sub.employment_type) == ("Python", 50, "no", "part_time,student")
    assert _changes(database) == []


def test_a_known_place_names_the_radius_around_it(client, prefs_path):
    assert _place_note(_page(client, prefs_path)) == "Sie erhalten Angebote im Umkreis von 50 km um München."


def test_a_postal_code_names_its_place(client, database, prefs_path):
    html = _save(client, prefs_path, location="80331", radius="10").get_data(as_text=True)
    assert _place_note(html) == "Sie erhalten Angebote im Umkreis von 10 km um 80331 München."


def test_an_unknown_place_is_named_as_unknown(client, prefs_path):
    html = _save(client, prefs_path, location="Hintertupfingen").get_data(as_text=True)
    assert _place_note(html) == ("Wir kennen den Ort „Hintertupfingen“ nicht: Angebote werden nach dem "
                                 "Ortsnamen gesucht, ohne Umkreis.")


def test_an_unknown_place_is_shown_escaped(client, prefs_path):
    html = _save(client, prefs_path, location="<b>Nirgendwo</b>").get_data(as_text=True)
    assert "&lt;b&gt;Nirgendwo&lt;/b&gt;" in _place_note(html) and "<b>Nirgendwo" not in html


def test_remote_only_says_the_place_plays_no_part(client, prefs_path):
    html = _save(client, prefs_path, remote="only").get_data(as_text=True)
    assert _place_note(html) == "Nur remote: Der Ort schränkt Ihre Angebote nicht ein."


def test_no_place_no_note(client, prefs_path):
    assert _place_note(_save(client, prefs_path, location="").get_data(as_text=True)) == ""


def test_the_page_in_english(client, prefs_path):
    html = _page(client, prefs_path + "?lang=en")
    assert _place_note(html) == "Your search covers 50 km around München."
    assert "On site only" in html and "Working student" in html


def test_the_data_export_holds_the_whole_search(client, smtp, drain, prefs_path):
    data_path = data_link(client, smtp, drain, prefs_path, EMAIL)
    export = json.loads(client.get(data_path + "/data.json").get_data(as_text=True))
    text = json.dumps(export)
    assert '"radius": 50' in text and '"remote": "no"' in text and '"employment_type": "part_time,student"' in text
