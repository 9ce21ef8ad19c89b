"""The signup form in a frame on the board's own pages (/embed/subscribe) and the plain form
the README gives the board to copy: only NEWSLETTER_EMBED_ORIGINS may frame the embed and
what it posts, every other page refuses every frame; the setting refuses to start on
anything but bare origins (CONTRACT "HTTP", STANDARDS 32)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from newsletter import create_app
from newsletter.config import ConfigError, load_settings
from newsletter.models import ConsentEvent, Subscriber
from newsletter.subscribers import consent
from tests.conftest import make_settings, replace
from tests.helpers import all_rows, find_subscriber, form_action, only_link, subscribe_confirmed

BOARD = ("https://jobs.example.org", "https://www.jobs.example.org:8443")
ANNA = "anna@example.org"
NONE_CSP = "frame-ancestors 'none'"


@pytest.fixture
def board_app(settings, redis_conn):
    application = create_app(replace(settings, embed_origins=BOARD))
    yield application
    application.extensions["newsletter_db"].dispose()


@pytest.fixture
def board(board_app):
    """A client of the app with the board's origins set."""
    return board_app.test_client()


def _frame_ancestors(response) -> str:
    csp = response.headers["Content-Security-Policy"]
    [directive] = [part.strip() for part in csp.split(";") if part.strip().startswith("frame-ancestors")]
    return directive


class _Fields(HTMLParser):
    """The first form of a page or snippet: its method, action and the fields a browser
    would send as they stand (text inputs, hidden ones, the selected option, ticked boxes)."""

    def __init__(self) -> None:
        super().__init__()
        self.method = self.action = ""
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and not self.action:
            self.method, self.action = a.get("method", "get"), a.get("action", "")
        elif tag == "input" and "name" in a:
            if a.get("type") in ("radio", "checkbox") and "checked" not in a:
                return
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select is not None and "selected" in a:
            self.fields.append((self._select, a["value"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def _form_of(html: str) -> _Fields:
    parser = _Fields()
    parser.feed(html)
    return parser


# -- the setting ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, origins", [
    ("", ()),
    ("none", ()),
    ("https://jobs.example.org", ("https://jobs.example.org",)),
    (" https://Jobs.Example.ORG/ , https://jobs.example.org:8443,http://localhost:5000, http://127.0.0.1",
     ("https://jobs.example.org", "https://jobs.example.org:8443", "http://localhost:5000", "http://127.0.0.1")),
    ("https://jobs.example.org,https://jobs.example.org", ("https://jobs.example.org",)),
    ("https://bücher.example", ("https://xn--bcher-kva.example",)),
])
def test_good_origins_are_taken_as_bare_origins(value, origins):
    settings = load_settings(environ={"NEWSLETTER_EMBED_ORIGINS": value, "NEWSLETTER_SECRET_KEY": "k" * 40},
                             dotenv_path=None)
    assert settings.embed_origins == origins


@pytest.mark.parametrize("value, reason", [
    ("*", "wildcards are not allowed"),
    ("https://*.example.org", "wildcards are not allowed"),
    ("https://jobs.example.org/newsletter", "no path"),
    ("https://jobs.example.org?x=1", "no path, query or fragment"),
    ("https://jobs.example.org#top", "no path, query or fragment"),
    ("http://jobs.example.org", "use https"),
    ("jobs.example.org", "expected an origin"),
    ("javascript:alert(1)", "expected an origin"),
    ("https://user:pw@jobs.example.org", "no user or password"),
    ("https://jobs.example.org:70000", "port"),
    ("https://jobs.example.org:0", "port"),
    ("https://jobs.example.org 'unsafe-inline'", "comma-separated origins"),
    ("https://jobs.example.org; script-src *", "wildcards"),
    ("https://jobs.example.org;frame-ancestors", "comma-separated origins"),
    ("https://jobs_example.org", "not a host name"),
    ("https://", "expected an origin"),
    ("none,https://jobs.example.org", "expected an origin"),
])
def test_anything_but_a_bare_origin_refuses_to_start(value, reason):
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={"NEWSLETTER_EMBED_ORIGINS": value}, dotenv_path=None)
    message = str(refused.value)
    assert message.startswith("NEWSLETTER_EMBED_ORIGINS: ") and reason in message
    assert "\n" not in message


# -- who may frame what --------------------------------------------------------------------------

def test_without_origins_nobody_may_frame_the_embed(client):
    page = client.get("/embed/subscribe")
    assert page.status_code == 200
    assert _frame_ancestors(page) == NONE_CSP
    assert page.headers["X-Frame-Options"] == "DENY"


def test_with_origins_only_they_may_frame_the_embed(board):
    page = board.get("/embed/subscribe")
    assert page.status_code == 200
    assert _frame_ancestors(page) == "frame-ancestors https://jobs.example.org https://www.jobs.example.org:8443"
    assert "X-Frame-Options" not in page.headers
    # The rest of the policy is the strict one every page has.
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "form-action 'self'" in csp and "script-src" not in csp


def test_every_other_page_keeps_refusing_frames(board, smtp, drain):
    welcome = subscribe_confirmed(board, smtp, drain, ANNA)
    prefs = only_link(welcome.part("plain"), "/preferences/")
    for response in (board.get("/subscribe"), board.get("/subscribe?embed=0"), board.get(prefs),
                     board.get("/manage"), board.get("/no-such-page"),
                     board.post("/subscribe", data={"email": "ben@example.org"}),
                     board.post("/subscribe", data={"email": "not an address"})):
        assert _frame_ancestors(response) == NONE_CSP, response.request.path
        assert response.headers["X-Frame-Options"] == "DENY"


def test_the_embed_is_the_same_form_in_compact_form(board):
    html = board.get("/embed/subscribe?keywords=Python&location=Berlin&radius=50&remote=no"
                     "&employment_type=part_time&employment_type=student").get_data(as_text=True)
    form = _form_of(html)
    assert (form.method, form.action) == ("post", "/subscribe?embed=1")
    fields = dict(form.fields)
    assert fields["form_url"] == "http://newsletter.test/embed/subscribe"
    assert fields["consent_version"] == consent.CURRENT_VERSION and fields["consent_language"] == "de"
    assert (fields["keywords"], fields["location"], fields["radius"], fields["remote"]) == ("Python", "Berlin", "50", "no")
    assert [v for k, v in form.fields if k == "employment_type"] == ["", "part_time", "student"]
    assert consent.consent_text("de") in html and 'name="website"' in html
    assert '<body class="embed">' in html and 'class="site' not in html  # no site header or footer
    # Links that leave the form open outside the frame (those pages refuse frames).
    assert re.search(r'<a href="https://jobs.example.org/datenschutz" target="_blank" rel="noopener">', html)


def test_the_embed_names_the_board_page_it_sits_on(board, database):
    html = board.get("/embed/subscribe?form_url=https://jobs.example.org/jobs/python%3Fpage%3D2").get_data(as_text=True)
    form = _form_of(html)
    assert dict(form.fields)["form_url"] == "https://jobs.example.org/jobs/python"  # no query: it may hold an address
    hostile = _form_of(board.get("/embed/subscribe?form_url=javascript:alert(1)").get_data(as_text=True))
    assert dict(hostile.fields)["form_url"] == "http://newsletter.test/embed/subscribe"


def test_a_signup_in_the_frame_answers_in_the_frame(board, smtp, drain, database):
    form = _form_of(board.get("/embed/subscribe?form_url=https://jobs.example.org/jobs").get_data(as_text=True))
    data: dict[str, list[str]] = {}
    for name, value in form.fields:
        data.setdefault(name, []).append(value)
    data["email"] = [ANNA]
    data["location"] = ["Hamburg"]
    data["employment_type"] = ["", "internship"]
    answer = board.post(form.action, data=data)
    assert answer.status_code == 200
    assert "Posteingang" in answer.get_data(as_text=True) and '<body class="embed">' in answer.get_data(as_text=True)
    assert _frame_ancestors(answer).startswith("frame-ancestors https://jobs.example.org")
    assert "X-Frame-Options" not in answer.headers
    [signup] = all_rows(database, ConsentEvent, event="signup")
    assert signup.form_url == "https://jobs.example.org/jobs"
    drain()
    [mail] = smtp.to(ANNA)
    page = board.get(only_link(mail.part("plain"), "/confirm/")).get_data(as_text=True)
    assert board.post(form_action(page)).status_code == 200
    sub = find_subscriber(database, ANNA)
    assert (sub.status, sub.location, sub.radius, sub.employment_type) == ("confirmed", "Hamburg", 25, "internship")


def test_a_second_signup_from_the_same_frame_still_names_the_board_page(board, database):
    # "Back to the form" after the answer: the next signup's consent record must name the
    # board page the frame sits on, not our embed's own address.
    answer = board.post("/subscribe?embed=1", data={
        "email": ANNA, "form_url": "https://jobs.example.org/jobs", "consent_version": consent.CURRENT_VERSION})
    [back] = re.findall(r'<a href="([^"]*embed/subscribe[^"]*)"', answer.get_data(as_text=True))
    again = _form_of(board.get(back.replace("&amp;", "&")).get_data(as_text=True))
    assert dict(again.fields)["form_url"] == "https://jobs.example.org/jobs"
    # Without a board page, the link is the plain embed.
    plain = board.post("/subscribe?embed=1", data={"email": "ben@example.org"}).get_data(as_text=True)
    assert re.findall(r'<a href="([^"]*embed/subscribe[^"]*)"', plain) == ["/embed/subscribe"]


def test_an_error_in_the_frame_shows_the_compact_form_again(board, database):
    answer = board.post("/subscribe?embed=1", data={
        "email": "not an address", "keywords": "Python", "remote": "only",
        "form_url": "https://jobs.example.org/jobs", "consent_version": consent.CURRENT_VERSION})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert '<body class="embed">' in html and '<li id="email-error">' in html
    assert _frame_ancestors(answer).startswith("frame-ancestors https://jobs.example.org")
    form = _form_of(html)
    assert form.action == "/subscribe?embed=1"
    assert dict(form.fields)["form_url"] == "https://jobs.example.org/jobs" and dict(form.fields)["remote"] == "only"
    assert all_rows(database, Subscriber) == []


def test_the_answer_in_the_frame_is_the_same_for_every_address(board, smtp, drain):
    subscribe_confirmed(board, smtp, drain, ANNA)
    known = board.post("/subscribe?embed=1", data={"email": ANNA})
    fresh = board.post("/subscribe?embed=1", data={"email": "ben@example.org"})
    bot = board.post("/subscribe?embed=1", data={"email": "bot@example.org", "website": "http://spam.example"})
    assert known.get_data() == fresh.get_data() == bot.get_data()
    assert known.status_code == fresh.status_code == bot.status_code == 200


def test_the_rate_limit_answer_shows_in_the_frame_too(settings, redis_conn):
    application = create_app(replace(settings, embed_origins=BOARD, signup_rate_limit="1 per minute"))
    try:
        board = application.test_client()
        assert board.post("/subscribe?embed=1", data={"email": ANNA}).status_code == 200
        limited = board.post("/subscribe?embed=1", data={"email": "ben@example.org"})
        assert limited.status_code == 429
        assert _frame_ancestors(limited).startswith("frame-ancestors https://jobs.example.org")
        assert "X-Frame-Options" not in limited.headers
        plain = board.post("/subscribe", data={"email": "cem@example.org"})
        assert plain.status_code == 429 and _frame_ancestors(plain) == NONE_CSP
    finally:
        application.extensions["newsletter_db"].dispose()


# -- the plain form the README gives the board -------------------------------------------------

README_SNIPPET = """\
<form method="post" action="https://newsletter.example.org/subscribe" accept-charset="UTF-8">
  <label for="nl-email">E-Mail-Adresse</label>
  <input id="nl-email" name="email" type="email" autocomplete="email" required>
  <label for="nl-keywords">Suchbegriffe</label>
  <input id="nl-keywords" name="keywords" type="text" maxlength="200" value="Python">
  <label for="nl-location">Ort oder Postleitzahl</label>
  <input id="nl-location" name="location" type="text" maxlength="100" value="München">
  <label for="nl-radius">Umkreis</label>
  <select id="nl-radius" name="radius">
    <option value="10">10 km</option><option value="25" selected>25 km</option>
    <option value="50">50 km</option><option value="100">100 km</option>
  </select>
  <input type="hidden" name="remote" value="also">
  <input type="hidden" name="employment_type" value="full_time,part_time">
  <input type="hidden" name="language" value="de">
  <input type="hidden" name="form_url" value="https://jobs.example.org/suche">
  <input type="hidden" name="consent_version" value="2026-11-27">
  <input type="hidden" name="consent_language" value="de">
  <p>Ja, ich möchte den Jobs-Newsletter alle 14 Tage per E-Mail erhalten: neue Stellenangebote
  passend zu meinen Suchbegriffen und meinem Ort. Keine Werbung. Meine Einwilligung kann ich
  jederzeit über den Abmeldelink in jeder E-Mail widerrufen. Details in der
  <a href="https://jobs.example.org/datenschutz">Datenschutzerklärung</a>.</p>
  <button type="submit">Newsletter abonnieren</button>
</form>
"""


def test_the_readme_snippet_signs_up_with_its_consent_record(app, smtp, drain, database):
    """The board's page, not ours: no cookie, another Origin, every field the snippet has."""
    form = _form_of(README_SNIPPET)
    assert form.method == "post" and urlsplit(form.action).path == "/subscribe"
    fields = {name: value for name, value in form.fields}
    assert {"form_url", "consent_version", "consent_language"} <= set(fields)
    # The wording the snippet shows is the published text of the version it names.
    shown = " ".join(re.sub(r"<[^>]+>", "", README_SNIPPET.split("<p>")[1].split("</p>")[0]).split())
    assert shown == consent.consent_text("de", fields["consent_version"])
    browser = app.test_client(use_cookies=False)
    answer = browser.post(urlsplit(form.action).path, data={**fields, "email": ANNA},
                          headers={"Origin": "https://jobs.example.org"})
    assert answer.status_code == 200
    assert "Fast geschafft" in answer.get_data(as_text=True)
    as_json = browser.post("/subscribe", data={**fields, "email": "ben@example.org"},
                           headers={"Accept": "application/json"})
    assert (as_json.status_code, as_json.get_json()) == (202, {"status": "pending"})
    [event, _] = all_rows(database, ConsentEvent, event="signup")
    assert (event.form_url, event.consent_version) == ("https://jobs.example.org/suche", "2026-11-27")
    assert event.consent_text == consent.consent_text("de", "2026-11-27")
    drain()
    [mail] = smtp.to(ANNA)
    assert app.test_client().post(only_link(mail.part("plain"), "/confirm/")).status_code == 200
    sub = find_subscriber(database, ANNA)
    assert (sub.status, sub.keywords, sub.location, sub.radius, sub.remote, sub.employment_type) == (
        "confirmed", "Python", "München", 25, "also", "full_time,part_time")


def test_a_make_settings_override_is_checked_too():
    with pytest.raises(ConfigError):
        make_settings(embed_origins=("https://*.example.org",))
