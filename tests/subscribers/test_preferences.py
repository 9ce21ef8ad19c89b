"""The preferences page behind the mailed link: changing the search; the data export with
the consent log and erasure that keeps only a hashed suppression entry and the consent
proof, both behind a fresh data link mailed on request; and the "manage my subscription"
form that mails the links (STANDARDS 11, 13-15, 26, 27, 29)."""

from __future__ import annotations

import json
import re

import pytest

from newsletter.subscribers import consent
from newsletter.cli.commands import cli
from newsletter.models import ConsentEvent, OutboxMessage, Subscriber, Suppression, email_hash
from tests.helpers import (
    one_click_url,
    all_rows,
    data_link,
    find_subscriber,
    only_link,
    path_of,
    signup,
    status_counts,
    subscribe_confirmed,
    time_passes,
)

EMAIL = "anna@example.org"
FORM_URL = "https://jobs.example.org/newsletter"


@pytest.fixture
def welcome(client, smtp, drain):
    return subscribe_confirmed(client, smtp, drain, EMAIL, keywords="Python", location="Berlin")


@pytest.fixture
def prefs_path(welcome) -> str:
    """The preferences link of the welcome mail."""
    return only_link(welcome.part("plain"), "/preferences/")


@pytest.fixture
def data_path(client, smtp, drain, prefs_path) -> str:
    """The data link mailed on request from the preferences page."""
    return data_link(client, smtp, drain, prefs_path, EMAIL)


def _events(database, name: str | None = None) -> list[ConsentEvent]:
    rows = all_rows(database, ConsentEvent, email_hash=email_hash(EMAIL))
    return [e for e in rows if name is None or e.event == name]


# -- the page and changing the search ---------------------------------------------------------------

def test_preferences_page_shows_the_current_settings(client, prefs_path):
    page = client.get(prefs_path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert EMAIL in html
    assert 'value="Python"' in html and 'value="Berlin"' in html
    assert '<option value="de" selected>' in html
    assert "aktiv" in html


def test_preferences_page_offers_the_data_link_and_unsubscribe(client, prefs_path, welcome):
    html = client.get(prefs_path).get_data(as_text=True)
    assert f'action="{prefs_path}/data-link"' in html
    assert "data.json" not in html and "/erase" not in html
    assert f'action="{path_of(one_click_url(welcome.message))}"' in html


def test_changing_the_search_persists(client, database, prefs_path):
    answer = client.post(prefs_path, data={"keywords": "Rust, Go", "location": "Hamburg", "language": "de"})
    assert answer.status_code == 200
    assert "Ihre Einstellungen wurden gespeichert." in answer.get_data(as_text=True)
    sub = find_subscriber(database, EMAIL)
    assert (sub.keywords, sub.location, sub.language, sub.status) == ("Rust, Go", "Hamburg", "de", "confirmed")


def test_changing_the_language_persists_and_answers_in_it(client, database, prefs_path):
    answer = client.post(prefs_path, data={"keywords": "Python", "location": "Berlin", "language": "en"})
    assert answer.status_code == 200
    assert "Your settings have been saved." in answer.get_data(as_text=True)
    assert find_subscriber(database, EMAIL).language == "en"
    assert '<html lang="en">' in client.get(prefs_path).get_data(as_text=True)


def test_a_change_records_a_consent_event_with_before_and_after(client, database, prefs_path):
    client.post(prefs_path, data={"keywords": "Rust", "location": "", "language": "en"}, headers={"User-Agent": "ua-1"})
    [event] = _events(database, "preferences_changed")
    assert event.detail == {
        "before": {"keywords": "Python", "location": "Berlin", "radius": 25, "remote": "also",
                   "employment_type": "", "language": "de"},
        "after": {"keywords": "Rust", "location": "", "radius": 0, "remote": "also", "employment_type": "",
                  "language": "en"},
    }
    assert (event.ip, event.user_agent) == ("127.0.0.1", "ua-1")


def test_saving_unchanged_settings_records_nothing(client, database, prefs_path):
    client.post(prefs_path, data={"keywords": "Python", "location": "Berlin", "language": "de"})
    assert _events(database, "preferences_changed") == []


@pytest.mark.parametrize(
    "field,value",
    [("keywords", "Rust\nBcc: victim@example.net"), ("keywords", "Rust\r"), ("location", "=?utf-8?q?Hamburg?="),
     ("location", "Ham\x00burg"), ("keywords", "x" * 201), ("language", "fr")],
)
def test_bad_input_answers_400_and_changes_nothing(client, database, prefs_path, field, value):
    data = {"keywords": "Rust", "location": "Hamburg", "language": "de", field: value}
    answer = client.post(prefs_path, data=data)
    assert answer.status_code == 400
    assert 'role="alert"' in answer.get_data(as_text=True)
    sub = find_subscriber(database, EMAIL)
    assert (sub.keywords, sub.location, sub.language) == ("Python", "Berlin", "de")
    assert _events(database, "preferences_changed") == []


def test_tampered_preferences_link_answers_4xx_and_changes_nothing(client, database, prefs_path):
    bad = prefs_path[:-3] + ("AAA" if not prefs_path.endswith("AAA") else "BBB")
    assert client.get(bad).status_code == 400
    assert client.post(bad, data={"keywords": "Rust"}).status_code == 400
    assert client.post(bad + "/data-link").status_code == 400
    assert find_subscriber(database, EMAIL).keywords == "Python"


# -- the data export --------------------------------------------------------------------------------------

@pytest.fixture
def exported(client, smtp, drain):
    """The export of a subscriber who signed up from the job board's page and confirmed."""
    answer = client.post(
        "/subscribe", data={"email": EMAIL, "keywords": "Python", "location": "Berlin"},
        headers={"User-Agent": "Browser/1.0", "Referer": FORM_URL},
    )
    assert answer.status_code == 200
    drain()
    [confirmation] = smtp.to(EMAIL)
    client.post(only_link(confirmation.part("plain"), "/confirm/"), headers={"User-Agent": "Browser/2.0"})
    drain()
    prefs = only_link(smtp.to(EMAIL)[1].part("plain"), "/preferences/")
    response = client.get(data_link(client, smtp, drain, prefs, EMAIL) + "/data.json")
    assert response.status_code == 200
    return response


def test_export_is_a_json_download(exported):
    assert exported.mimetype == "application/json"
    assert "attachment" in exported.headers["Content-Disposition"]
    assert exported.headers["Cache-Control"] == "no-store"
    json.loads(exported.get_data(as_text=True))


def test_export_holds_the_address_and_preferences(exported):
    subscriber = exported.get_json()["subscriber"]
    assert subscriber["email"] == EMAIL
    assert (subscriber["keywords"], subscriber["location"], subscriber["language"]) == ("Python", "Berlin", "de")
    assert subscriber["status"] == "confirmed"
    assert subscriber["confirmed_at"].endswith("Z")


def test_export_holds_the_consent_log_in_order(exported):
    events = [e["event"] for e in exported.get_json()["consent_log"]]
    assert events == ["signup", "confirmation_sent", "confirmed", "data_link_requested"]


def test_export_signup_event_is_the_full_consent_record(exported):
    signup_event = exported.get_json()["consent_log"][0]
    assert signup_event["ip"] == "127.0.0.1"
    assert signup_event["user_agent"] == "Browser/1.0"
    assert signup_event["form_url"] == FORM_URL
    assert signup_event["consent_version"] == consent.CURRENT_VERSION
    assert signup_event["consent_text"] == consent.consent_text("de")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", signup_event["at"])


def test_export_confirmation_events_have_time_ip_and_user_agent(exported):
    log = exported.get_json()["consent_log"]
    sent, confirmed = log[1], log[2]
    assert sent["at"] <= confirmed["at"]
    assert sent["detail"]["message_id"].endswith("@jobs.example.org>")
    assert (confirmed["ip"], confirmed["user_agent"]) == ("127.0.0.1", "Browser/2.0")


def test_export_names_the_time_the_confirmation_mail_left(exported):
    data = exported.get_json()
    [sent] = [e for e in data["consent_log"] if e["event"] == "confirmation_sent"]
    assert data["subscriber"]["confirmation_sent_at"] == sent["at"]


def test_export_lists_the_mails_sent(exported):
    mails = [(m["kind"], m["status"]) for m in exported.get_json()["mails"]]
    assert mails == [("confirm", "sent"), ("welcome", "sent"), ("data", "sent")]


def test_export_holds_the_digests_sent_and_the_suppression_entry(exported):
    data = exported.get_json()
    assert data["digests"] == []  # no edition yet: tests/editions/test_digest.py shows a sent one
    assert data["suppression"] is None


def test_export_holds_the_consent_log_of_an_earlier_erased_subscription(client, smtp, drain, database, data_path):
    client.post(data_path + "/erase", data={"confirm": "yes"})
    smtp.clear()
    again = subscribe_confirmed_later(client, smtp, drain, database)
    prefs = only_link(again.part("plain"), "/preferences/")
    data = client.get(data_link(client, smtp, drain, prefs, EMAIL) + "/data.json").get_json()
    events = sorted(e["event"] for e in data["consent_log"])
    earlier = ["signup", "confirmation_sent", "confirmed", "erased"]
    now = ["signup", "confirmation_sent", "confirmed", "data_link_requested"]
    assert events == sorted(earlier + now)


def subscribe_confirmed_later(client, smtp, drain, database):
    """Sign EMAIL up again a day after its last confirmation mail (the limit of one a day
    holds across an erasure), confirm it and return the welcome mail."""
    time_passes(database, 25 / 24)
    assert signup(client, EMAIL).status_code == 200
    drain()
    [confirmation] = smtp.to(EMAIL)
    page = client.get(only_link(confirmation.part("plain"), "/confirm/"))
    assert client.post(re.search(r'action="([^"]+)"', page.get_data(as_text=True)).group(1)).status_code == 200
    drain()
    return smtp.to(EMAIL)[1]


def test_english_signup_records_the_english_wording(client, database):
    client.post("/subscribe", data={"email": EMAIL, "language": "en"})
    [event] = _events(database, "signup")
    assert event.consent_text == consent.consent_text("en")


# -- erasure --------------------------------------------------------------------------------------------------

def test_erase_without_the_checkbox_answers_400_and_deletes_nothing(client, database, data_path):
    answer = client.post(data_path + "/erase")
    assert answer.status_code == 400
    assert "Bitte setzen Sie das Häkchen" in answer.get_data(as_text=True)
    assert find_subscriber(database, EMAIL).status == "confirmed"
    assert all_rows(database, Suppression) == []
    assert _events(database, "erased") == []


def test_erase_with_the_checkbox_deletes_the_subscriber(client, database, data_path):
    answer = client.post(data_path + "/erase", data={"confirm": "yes"})
    assert answer.status_code == 200
    assert "Ihre Daten wurden gelöscht" in answer.get_data(as_text=True)
    assert find_subscriber(database, EMAIL) is None
    assert all_rows(database, Subscriber) == []
    assert all_rows(database, OutboxMessage) == []
    assert sum(v for k, v in status_counts(database).items() if k != "suppressed") == 0


def test_erase_keeps_a_hashed_suppression_entry_and_the_consent_proof(client, database, data_path):
    client.post(data_path + "/erase", data={"confirm": "yes"})
    [entry] = all_rows(database, Suppression)
    assert (entry.email_hash, entry.reason) == (email_hash(EMAIL), "erased")
    assert [e.event for e in _events(database)] == ["signup", "confirmation_sent", "confirmed", "erased"]
    assert consent.consent_text("de") in [e.consent_text for e in _events(database)]


def test_nothing_kept_after_erase_holds_the_address(client, database, data_path):
    client.post(data_path + "/erase", data={"confirm": "yes"})
    kept = [
        json.dumps([e.ip, e.user_agent, e.form_url, e.consent_text, e.detail, e.subscriber_public_id])
        for e in all_rows(database, ConsentEvent)
    ] + [entry.email_hash for entry in all_rows(database, Suppression)]
    assert kept
    for text in kept:
        assert "anna" not in text.lower()


def test_erase_keeps_nothing_but_the_consent_proof(client, smtp, drain, database, prefs_path, data_path):
    """Preference changes, link requests and their details are about the person, not the
    consent: they go with the erasure (STANDARDS 15)."""
    client.post(prefs_path, data={"keywords": "Gynäkologie Teilzeit", "location": "Quedlinburg", "language": "de"})
    time_passes(database, 1.01)  # /manage mails only into a day without a link mail (the data link)
    client.post("/manage", data={"email": EMAIL})
    drain()
    assert {e.event for e in _events(database)} >= {"preferences_changed", "manage_link_requested"}
    client.post(data_path + "/erase", data={"confirm": "yes"})
    kept = _events(database)
    assert [e.event for e in kept] == ["signup", "confirmation_sent", "confirmed", "erased"]
    assert "Quedlinburg" not in json.dumps([[e.detail, e.form_url, e.consent_text] for e in kept], ensure_ascii=False)


def test_erase_keeps_only_the_signup_that_asked_for_the_confirmation_mail(client, smtp, drain, database):
    """Submitting a pending address again within the day mails nothing; those requests (with
    whoever sent them: IP, browser) prove no consent and go with the erasure."""
    assert signup(client, EMAIL).status_code == 200
    drain()
    for n in (1, 2):
        answer = client.post("/subscribe", data={"email": EMAIL}, headers={"User-Agent": f"Nachzügler {n}"},
                             environ_base={"REMOTE_ADDR": f"198.51.100.{n}"})
        assert answer.status_code == 200
    drain()
    [confirmation] = smtp.to(EMAIL)
    page = client.get(only_link(confirmation.part("plain"), "/confirm/"))
    assert client.post(re.search(r'action="([^"]+)"', page.get_data(as_text=True)).group(1)).status_code == 200
    drain()
    assert len(_events(database, "signup")) == 3
    prefs = only_link(smtp.to(EMAIL)[1].part("plain"), "/preferences/")
    erase = data_link(client, smtp, drain, prefs, EMAIL) + "/erase"
    assert client.post(erase, data={"confirm": "yes"}).status_code == 200
    kept = _events(database)
    assert [e.event for e in kept] == ["signup", "confirmation_sent", "confirmed", "erased"]
    assert kept[0].user_agent == "pytest-browser"
    assert "198.51.100." not in json.dumps([[e.ip, e.user_agent] for e in kept])


def test_after_erase_the_old_links_are_gone(client, smtp, database, prefs_path, data_path):
    [confirmation, _welcome, _data] = smtp.to(EMAIL)
    confirm = only_link(confirmation.part("plain"), "/confirm/")
    client.post(data_path + "/erase", data={"confirm": "yes"})
    for answer in (
        client.get(prefs_path),
        client.post(prefs_path, data={"keywords": "Rust"}),
        client.post(prefs_path + "/data-link"),
        client.get(data_path),
        client.get(data_path + "/data.json"),
        client.post(data_path + "/erase", data={"confirm": "yes"}),
        client.get(confirm),
        client.post(confirm),
    ):
        assert answer.status_code == 404
        assert "Dieser Link ist nicht mehr gültig" in answer.get_data(as_text=True)
    assert all_rows(database, Subscriber) == []


def test_after_erase_one_click_still_answers_2xx_and_recreates_nothing(client, database, welcome, data_path):
    # A mailbox provider may POST the List-Unsubscribe URL of an old mail at any time (RFC 8058).
    client.post(data_path + "/erase", data={"confirm": "yes"})
    unsubscribe = path_of(one_click_url(welcome.message))
    answer = client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code in (200, 202, 204)
    assert all_rows(database, Subscriber) == []
    assert [e.event for e in _events(database)][-1] == "erased"


@pytest.mark.parametrize("confirmed_at", ["2026-01-05T10:00:00Z", ""], ids=["confirmed-row", "pending-row"])
def test_after_erase_an_import_does_not_mail_the_address(
    app, client, smtp, drain, database, data_path, tmp_path, confirmed_at
):
    client.post(data_path + "/erase", data={"confirm": "yes"})
    before = len(smtp.messages)
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(
        "email,language,keywords,location,confirmed_at,consent_ip,consent_text\n"
        f"{EMAIL},de,Python,Berlin,{confirmed_at},192.0.2.1,Ja ich will\n",
        encoding="utf-8",
    )
    result = app.test_cli_runner().invoke(cli, ["subscribers", "import", str(csv_file)])
    assert result.exit_code == 1
    assert "suppressed" in result.output
    drain()
    assert all_rows(database, Subscriber) == []
    assert len(smtp.messages) == before


# -- "manage my subscription" ----------------------------------------------------------------------------

def _address_in_every_state(client, smtp, drain) -> dict[str, str]:
    signup(client, "pending@example.org")
    subscribe_confirmed(client, smtp, drain, "confirmed@example.org")
    gone = subscribe_confirmed(client, smtp, drain, "gone@example.org")
    client.post(path_of(one_click_url(gone.message)), data={"List-Unsubscribe": "One-Click"})
    drain()
    return {
        "unknown": "unknown@example.org", "pending": "pending@example.org",
        "confirmed": "confirmed@example.org", "unsubscribed": "gone@example.org",
    }


def test_manage_form_is_a_page_with_one_post_form(client):
    page = client.get("/manage")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert html.count("<form") == 1
    assert re.search(r'<form method="post" action="/manage"', html)


def test_manage_answers_the_same_for_every_address_state(client, smtp, drain):
    addresses = _address_in_every_state(client, smtp, drain)
    answers = {state: client.post("/manage", data={"email": email}) for state, email in addresses.items()}
    assert answers["unknown"].status_code == 200
    assert len({(a.status_code, a.get_data()) for a in answers.values()}) == 1


def test_manage_mails_the_links_only_to_known_addresses(client, smtp, drain):
    addresses = _address_in_every_state(client, smtp, drain)
    before = {state: len(smtp.to(email)) for state, email in addresses.items()}
    for email in addresses.values():
        client.post("/manage", data={"email": email})
    drain()
    new = {state: smtp.to(email)[before[state]:] for state, email in addresses.items()}
    assert new["unknown"] == [] and smtp.to("unknown@example.org") == []
    [mail] = new["confirmed"]
    assert mail.message["Subject"].startswith("Ihr Link zu Ihren Einstellungen")
    assert client.get(only_link(mail.part("plain"), "/preferences/")).status_code == 200
    for state in ("pending", "unsubscribed"):  # only what Art. 15 DSGVO asks for: their data
        [mail] = new[state]
        assert mail.message["Subject"].startswith("Ihr Link zu Ihren Daten")
        assert client.get(only_link(mail.part("plain"), "/data/")).status_code == 200


def test_manage_mail_to_a_subscriber_carries_the_list_headers(client, smtp, drain):
    subscribe_confirmed(client, smtp, drain, EMAIL)
    client.post("/manage", data={"email": EMAIL})
    drain()
    mail = smtp.to(EMAIL)[-1]
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = one_click_url(mail.message)
    assert only_link(mail.part("plain"), "/unsubscribe/") == path_of(unsubscribe)


def test_manage_asked_twice_mails_once(client, smtp, drain):
    subscribe_confirmed(client, smtp, drain, EMAIL)
    for _ in range(4):
        client.post("/manage", data={"email": EMAIL})
    drain()
    assert len(smtp.to(EMAIL)) == 3  # confirmation, welcome, one settings link


@pytest.mark.parametrize("value", ["not-an-address", "anna@example.org\r\nBcc: x@example.net", ""])
def test_manage_with_a_bad_address_answers_400_and_mails_nothing(client, smtp, drain, value):
    answer = client.post("/manage", data={"email": value})
    assert answer.status_code == 400
    assert "Bitte geben Sie eine gültige E-Mail-Adresse ein." in answer.get_data(as_text=True)
    drain()
    assert smtp.messages == []


# -- a form that is not ours -------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"", b"keywords=Rust", b"keywords=Caf\xe9&location=K\xf6ln&language=en"])
def test_an_incomplete_or_unreadable_settings_form_answers_400_and_changes_nothing(client, database, prefs_path, body):
    answer = client.post(prefs_path, data=body, content_type="application/x-www-form-urlencoded")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "Das Formular konnte nicht gelesen werden" in html
    assert 'value="Python"' in html  # the stored settings, to start again from
    sub = find_subscriber(database, EMAIL)
    assert (sub.keywords, sub.location, sub.language) == ("Python", "Berlin", "de")
    assert _events(database, "preferences_changed") == []


@pytest.mark.parametrize("field, value, message", [
    ("keywords", "x" * 201, "Suchbegriffe: bitte eine Zeile mit höchstens 200 Zeichen."),
    ("location", "Berlin\nBcc: x@example.org", "Ort: bitte eine Zeile mit höchstens 100 Zeichen."),
])
def test_a_settings_error_names_its_field_and_is_tied_to_it(client, database, prefs_path, field, value, message):
    """As on the signup form: the message says which field, links to it, and the field is
    marked invalid and described by the message (WCAG 3.3.1)."""
    data = {"keywords": "Python", "location": "Berlin", "language": "de", field: value}
    answer = client.post(prefs_path, data=data)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert f'<li id="{field}-error"><a href="#{field}">{message}</a></li>' in html
    [tag] = re.findall(rf'<input id="{field}"[^>]*>', html)
    assert 'aria-invalid="true"' in tag and f"{field}-error" in re.search(r'aria-describedby="([^"]*)"', tag).group(1)
    assert find_subscriber(database, EMAIL).keywords == "Python"


def test_a_settings_form_with_a_part_not_in_utf8_answers_400_and_changes_nothing(client, database, prefs_path):
    body = b"".join(
        b"--XX\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (name, value)
        for name, value in ((b"keywords", b"M\xfcnchen"), (b"location", b"Berlin"), (b"language", b"de"))
    ) + b"--XX--\r\n"
    answer = client.post(prefs_path, data=body, content_type="multipart/form-data; boundary=XX")
    assert answer.status_code == 400
    assert find_subscriber(database, EMAIL).keywords == "Python"
    assert _events(database, "preferences_changed") == []


def test_the_manage_form_not_in_utf8_answers_400_and_mails_nothing(client, smtp, drain, welcome):
    body = b"--XX\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nann\xe4@example.org\r\n--XX--\r\n"
    answer = client.post("/manage", data=body, content_type="multipart/form-data; boundary=XX")
    assert answer.status_code == 400
    assert "Das Formular konnte nicht gelesen werden" in answer.get_data(as_text=True)
    drain()
    assert len(smtp.to(EMAIL)) == 2  # confirmation and welcome, nothing more
