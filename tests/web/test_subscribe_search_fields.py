"""The signup form's search fields as a reader and the job board see them: the board's
"Diese Suche als Newsletter abonnieren" link pre-fills the form (each good field kept, each
bad one dropped, never an error page), and a signup by form or JSON stores radius, remote
and job types once its confirmation link is clicked (CONTRACT "HTTP": GET/POST /subscribe)."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from newsletter.models import Subscriber
from tests.helpers import (
    all_rows,
    find_subscriber,
    form_action,
    only_link,
    signup,
    subscribe_confirmed,
)

ANNA = "anna@example.org"
JSON_ACCEPT = {"Accept": "application/json"}


def _form(client, query: str = "", **headers):
    page = client.get("/subscribe" + query, headers=headers)
    assert page.status_code == 200
    return page.get_data(as_text=True)


def _selected_radius(html: str) -> str:
    [value] = re.findall(r'<option value="(\d+)" selected>', re.search(r'<select id="radius".*?</select>', html, re.DOTALL)[0])
    return value


def _checked(html: str, name: str) -> list[str]:
    return re.findall(rf'<input type="(?:radio|checkbox)" id="[^"]+" name="{name}" value="([^"]+)" checked>', html)


def _value_of(html: str, field: str) -> str:
    return re.search(rf'<input id="{field}"[^>]*value="([^"]*)"', html).group(1)


# -- the board's link pre-fills the form ---------------------------------------------------------

def test_without_a_query_the_form_shows_the_defaults(client):
    html = _form(client)
    assert _selected_radius(html) == "25"
    assert _checked(html, "remote") == ["also"]
    assert _checked(html, "employment_type") == []
    assert (_value_of(html, "keywords"), _value_of(html, "location")) == ("", "")


def test_the_boards_link_fills_in_every_field(client):
    html = _form(client, "?keywords=Python%2C+Data&location=M%C3%BCnchen&radius=50&remote=only"
                         "&employment_type=full_time,internship")
    assert _value_of(html, "keywords") == "Python, Data"
    assert _value_of(html, "location") == "München"
    assert _selected_radius(html) == "50"
    assert _checked(html, "remote") == ["only"]
    assert _checked(html, "employment_type") == ["full_time", "internship"]


@pytest.mark.parametrize("query, expected", [
    ("employment_type=part_time&employment_type=student", ["part_time", "student"]),
    ("employment_type=freelance", ["freelance"]),
    ("employment_type=part_time,student&employment_type=apprenticeship", ["part_time", "student", "apprenticeship"]),
    ("employment_type=FULL_TIME", ["full_time"]),
])
def test_job_types_come_comma_separated_or_repeated(client, query, expected):
    assert _checked(_form(client, "?" + query), "employment_type") == expected


@pytest.mark.parametrize("radius", ["10", "100"])
def test_each_offered_radius_is_taken(client, radius):
    assert _selected_radius(_form(client, f"?location=Berlin&radius={radius}")) == radius


@pytest.mark.parametrize("remote", ["no", "also", "only"])
def test_each_remote_choice_is_taken(client, remote):
    assert _checked(_form(client, f"?remote={remote}"), "remote") == [remote]


@pytest.mark.parametrize("query", [
    "radius=9999", "radius=-25", "radius=25.0", "radius=%EF%BC%92%EF%BC%95",  # full-width "２５"
    "remote=%3Cscript%3Ealert(1)%3C/script%3E", "remote=ONLY",
    "employment_type=full_time,evil", "employment_type=%3Cscript%3E",
    "keywords=" + "x" * 10_000, "keywords=Python%0D%0ABcc:%20x@example.org", "keywords=%3D%3Futf-8%3Fq%3Fx%3F%3D",
    "location=M%FCnchen", "location=%FF%FE", "keywords=%C3",
])
def test_a_bad_value_is_dropped_and_the_good_ones_kept(client, query):
    html = _form(client, f"?{query}&location=Hamburg&keywords=Java&remote=no&radius=10&employment_type=student"
                 if not query.startswith(("location=", "keywords=")) else f"?{query}&remote=no&radius=10")
    # The bad field shows its default, or nothing; the page is the normal form (200).
    assert "<script" not in html and "alert(1)" not in html
    assert "evil" not in html and "xxxxxxxxxx" not in html and "Bcc" not in html and "=?utf-8" not in html
    assert "%FC" not in html and "%FF" not in html and "\ufffd" not in html
    name = query.split("=")[0]
    if name == "radius":
        assert _selected_radius(html) == "25" and _value_of(html, "location") == "Hamburg"
    else:
        assert _selected_radius(html) == "10"
    if name == "remote":
        assert _checked(html, "remote") == ["also"]
    else:
        assert _checked(html, "remote") == ["no"]
    if name == "employment_type":
        assert _checked(html, "employment_type") == [] and _value_of(html, "keywords") == "Java"
    if name in ("keywords", "location"):
        assert _value_of(html, name) == ""


def test_a_hostile_query_string_never_fails_the_page(client):
    for query in ("?radius=&remote=&employment_type=", "?employment_type=" + ",".join(["full_time"] * 500),
                  "?" + "&".join(["employment_type=full_time"] * 300), "?%FF=%FF", "?keywords", "?=&&=&",
                  "?location=" + "%C3%A4" * 5000):
        page = client.get("/subscribe" + query)
        assert page.status_code == 200, query


def test_a_prefilled_text_is_escaped(client):
    html = _form(client, "?keywords=" + quote('"><b onmouseover=x>') + "&location=" + quote("<i>Köln</i>"))
    assert _value_of(html, "keywords") == "&#34;&gt;&lt;b onmouseover=x&gt;"
    assert "<b onmouseover" not in html and "<i>Köln" not in html


def test_switching_the_language_keeps_the_search(client):
    html = _form(client, "?keywords=Python&location=Berlin&radius=50&remote=no&employment_type=part_time,student")
    english = re.search(r'<a href="([^"]+)" lang="en"', html).group(1).replace("&amp;", "&")
    page = client.get(english).get_data(as_text=True)
    assert '<html lang="en">' in page
    assert (_value_of(page, "keywords"), _value_of(page, "location"), _selected_radius(page)) == ("Python", "Berlin", "50")
    assert _checked(page, "remote") == ["no"] and _checked(page, "employment_type") == ["part_time", "student"]


def test_the_form_is_accessible_without_script(client):
    html = _form(client)
    assert "<script" not in html
    assert '<label for="radius">Umkreis</label>' in html
    for fieldset in re.findall(r"<fieldset.*?</fieldset>", html, re.DOTALL):
        assert re.search(r"<legend>[^<]+", fieldset)
        for box in re.findall(r'<input type="(?:radio|checkbox)" id="([^"]+)"', fieldset):
            assert f'<label for="{box}">' in fieldset
    assert "Nur vor Ort" in html and "Vor Ort oder remote" in html and "Nur remote" in html
    assert "Werkstudent/in" in html and "Ausbildung" in html


# -- the post ----------------------------------------------------------------------------------

def test_a_form_signup_stores_the_search_once_confirmed(client, smtp, drain, database):
    subscribe_confirmed(client, smtp, drain, ANNA, keywords="Python", location="Leipzig", radius="100",
                        remote="no", employment_type=["", "part_time", "internship"])
    sub = find_subscriber(database, ANNA)
    assert (sub.status, sub.location, sub.radius, sub.remote, sub.employment_type) == (
        "confirmed", "Leipzig", 100, "no", "part_time,internship")


def test_the_forms_own_fields_as_the_page_posts_them(client, smtp, drain, database):
    """What a browser sends for the prefilled page: every field of the form as it stands."""
    html = _form(client, "?keywords=Rust&location=Bremen&radius=10&remote=only&employment_type=freelance")
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    assert set(fields) >= {"form_url", "consent_version", "consent_language", "employment_type"}
    data = {**fields, "email": ANNA, "keywords": "Rust", "location": "Bremen", "radius": _selected_radius(html),
            "remote": _checked(html, "remote")[0], "employment_type": ["", *_checked(html, "employment_type")],
            "language": "de", "website": ""}
    assert client.post(form_action(html), data=data).status_code == 200
    drain()
    [mail] = smtp.to(ANNA)
    page = client.get(only_link(mail.part("plain"), "/confirm/")).get_data(as_text=True)
    assert client.post(form_action(page)).status_code == 200
    sub = find_subscriber(database, ANNA)
    assert (sub.keywords, sub.location, sub.radius, sub.remote, sub.employment_type) == (
        "Rust", "Bremen", 10, "only", "freelance")


def test_a_json_signup_takes_the_fields_and_a_list_of_types(client, smtp, drain, database):
    answer = client.post("/subscribe", json={"email": ANNA, "location": "Köln", "radius": 50, "remote": "only",
                                             "employment_type": ["student", "full_time"]}, headers=JSON_ACCEPT)
    assert (answer.status_code, answer.get_json()) == (202, {"status": "pending"})
    drain()
    [mail] = smtp.to(ANNA)
    assert client.post(only_link(mail.part("plain"), "/confirm/")).status_code == 200
    sub = find_subscriber(database, ANNA)
    assert (sub.radius, sub.remote, sub.employment_type) == (50, "only", "full_time,student")


def test_a_json_signup_takes_comma_separated_types(client, database):
    answer = client.post("/subscribe", json={"email": ANNA, "employment_type": "internship,apprenticeship"})
    assert answer.status_code == 202
    assert find_subscriber(database, ANNA).employment_type == "internship,apprenticeship"


def test_a_place_without_radius_gets_the_default_and_no_place_no_radius(client, database):
    signup(client, ANNA, location="Dresden")
    signup(client, "ben@example.org", radius="25")
    assert find_subscriber(database, ANNA).radius == 25
    assert find_subscriber(database, "ben@example.org").radius == 0


@pytest.mark.parametrize("field, value, message", [
    ("radius", "30", "Umkreis: bitte 10, 25, 50 oder 100 km wählen."),
    ("remote", "sometimes", "Remote-Arbeit: bitte eine der drei Möglichkeiten wählen."),
    ("employment_type", "full_time,evil", "Anstellungsart: bitte nur die angebotenen Arten ankreuzen."),
])
def test_a_bad_choice_shows_the_form_again_with_its_reason(client, database, field, value, message):
    answer = signup(client, ANNA, keywords="Python", location="Berlin", **{field: value})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert message in html and f'<li id="{field}-error">' in html
    assert _value_of(html, "keywords") == "Python" and _value_of(html, "email") == ANNA  # kept to correct
    if field != "radius":
        assert value.rpartition(",")[2] not in html  # the bad choice is not echoed
    assert all_rows(database, Subscriber) == []


@pytest.mark.parametrize("body, field", [
    ({"radius": 30, "location": "Berlin"}, "radius"),
    ({"radius": "9999"}, "radius"),  # no place: still no radius any form offers
    ({"radius": True, "location": "Berlin"}, "radius"),
    ({"remote": ["only"]}, "remote"),
    ({"remote": "<script>"}, "remote"),
    ({"employment_type": ["full_time", 3]}, "employment_type"),
    ({"employment_type": {"full_time": True}}, "employment_type"),
    ({"employment_type": "x," * 150}, "employment_type"),
])
def test_a_bad_json_field_answers_400_naming_it(client, database, body, field):
    answer = client.post("/subscribe", json={"email": ANNA, **body}, headers=JSON_ACCEPT)
    assert answer.status_code == 400
    assert answer.get_json()["field"] == field
    assert all_rows(database, Subscriber) == []


def test_the_answer_is_the_same_for_a_known_address_and_its_search_waits_for_the_link(client, smtp, drain, database):
    subscribe_confirmed(client, smtp, drain, ANNA, location="Berlin", radius="10")
    fresh = signup(client, "new@example.org", location="Kiel", radius="50", remote="no", employment_type="student")
    known = signup(client, ANNA, location="Kiel", radius="50", remote="no", employment_type="student")
    assert (fresh.status_code, fresh.get_data()) == (known.status_code, known.get_data())
    sub = find_subscriber(database, ANNA)
    assert (sub.location, sub.radius, sub.remote, sub.employment_type) == ("Berlin", 10, "also", "")


def test_a_json_signup_may_write_the_radius_as_a_whole_float(client, database):
    # JSON has one number type: 25.0 is 25, as the API reads whole numbers.
    answer = client.post("/subscribe", json={"email": "float@example.org", "location": "Berlin", "radius": 25.0},
                         headers={"Accept": "application/json"})
    assert answer.status_code == 202, answer.get_data(as_text=True)
    refused = client.post("/subscribe", json={"email": "half@example.org", "location": "Berlin", "radius": 25.5},
                          headers={"Accept": "application/json"})
    assert refused.status_code == 400 and refused.get_json()["field"] == "radius"


@pytest.mark.parametrize(("path", "said"), [("/subscribe?lang=de", "Ortsdaten: GeoNames (CC BY 4.0)"),
                                            ("/subscribe?lang=en", "Place data: GeoNames (CC BY 4.0)"),
                                            ("/embed/subscribe", "countries-states-cities-database (ODbL 1.0)")])
def test_the_forms_with_a_radius_name_the_place_datas_sources(client, database, path, said):
    # ODbL 1.0 (4.3) wants the notice where the derived table is used: the radius search.
    assert said in client.get(path).get_data(as_text=True)
