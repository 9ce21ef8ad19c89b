"""A reader's data export and erasure sit behind a fresh link that expires, mailed on
request: the lasting preferences link in every digest opens no data, so a forwarded digest
hands nobody the reader's data (STANDARDS 14, 15, 26, 29; Art. 15 DSGVO for everyone we
hold data about). /manage mails a reader at most once a day."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from newsletter.tokens import DATA_SALT
from tests.conftest import SECRET
from tests.helpers import (
    one_click_url,
    data_link,
    find_subscriber,
    links,
    only_link,
    path_of,
    signup,
    subscribe_confirmed,
    time_passes,
)

EMAIL = "anna@example.org"


@pytest.fixture
def prefs_path(client, smtp, drain) -> str:
    welcome = subscribe_confirmed(client, smtp, drain, EMAIL, keywords="Python", location="Berlin")
    return only_link(welcome.part("plain"), "/preferences/")


def _data_button(client, prefs_path: str):
    return client.post(prefs_path + "/data-link")


def _old_data_token(public_id: str, age_minutes: float) -> str:
    """A data token signed `age_minutes` ago: a link opened late."""

    class SignedEarlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - age_minutes * 60)

    return URLSafeTimedSerializer([SECRET], salt=DATA_SALT, signer=SignedEarlier).dumps(public_id)


def _later(database, **delta: float) -> None:
    """The clock moves on by `delta` (timedelta's keywords) for the stored times."""
    time_passes(database, timedelta(**delta) / timedelta(days=1))


# -- the preferences link opens no data ----------------------------------------------------------

def test_the_preferences_link_no_longer_exports_or_erases(client, database, prefs_path):
    export = client.get(prefs_path + "/data.json")
    erase = client.post(prefs_path + "/erase", data={"confirm": "yes"})
    assert export.status_code in (404, 405) and EMAIL not in export.get_data(as_text=True)
    assert erase.status_code in (404, 405)
    assert find_subscriber(database, EMAIL).status == "confirmed"


def test_the_data_button_answers_that_a_link_was_mailed(client, prefs_path):
    answer = _data_button(client, prefs_path)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert "Wir haben Ihnen einen Link zu Ihren Daten per E-Mail geschickt." in html
    assert "Link zu meinen Daten per E-Mail senden" in html


def test_the_data_mail_holds_only_the_expiring_link_and_no_list_headers(client, smtp, drain, prefs_path):
    _data_button(client, prefs_path)
    drain()
    mail = smtp.to(EMAIL)[-1]
    assert mail.message["Subject"] == "Ihr Link zu Ihren Daten beim Jobs-Newsletter"
    assert mail.message["List-Unsubscribe"] is None and mail.message["List-Unsubscribe-Post"] is None
    text, html = mail.part("plain"), mail.part("html")
    assert set(links(text, "/data/")) == set(links(html, "/data/")) and len(set(links(text, "/data/"))) == 1
    for part in (text, html):
        assert not links(part, "/preferences/") and not links(part, "/unsubscribe/")
        assert "60 Minuten" in part and "nicht angefordert" in part and "newsletter@jobs.example.org" in part


def test_the_data_link_opens_a_page_to_download_and_to_erase(client, smtp, drain, prefs_path):
    path = data_link(client, smtp, drain, prefs_path, EMAIL)
    page = client.get(path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "<h1>Ihre Daten</h1>" in html and EMAIL in html
    assert f'href="{path}/data.json"' in html
    assert f'<form method="post" action="{path}/erase">' in html
    assert re.search(r'<input id="confirm-erase" name="confirm" type="checkbox"', html)
    assert '<label for="confirm-erase">' in html
    export = client.get(path + "/data.json")
    assert export.status_code == 200 and export.get_json()["subscriber"]["email"] == EMAIL


def test_erasing_through_the_data_link_needs_the_checkbox(client, smtp, drain, database, prefs_path):
    path = data_link(client, smtp, drain, prefs_path, EMAIL)
    refused = client.post(path + "/erase")
    assert refused.status_code == 400 and "Bitte setzen Sie das Häkchen" in refused.get_data(as_text=True)
    assert find_subscriber(database, EMAIL) is not None
    assert client.post(path + "/erase", data={"confirm": "yes"}).status_code == 200
    assert find_subscriber(database, EMAIL) is None


def test_the_data_button_mails_once_in_ten_minutes(client, smtp, drain, database, prefs_path):
    answers = [_data_button(client, prefs_path) for _ in range(3)]
    assert len({(a.status_code, a.get_data()) for a in answers}) == 1  # the same answer each time
    drain()
    assert len(smtp.to(EMAIL)) == 3  # confirmation, welcome, one data link
    _later(database, minutes=9)
    _data_button(client, prefs_path)
    drain()
    assert len(smtp.to(EMAIL)) == 3
    _later(database, minutes=2)
    _data_button(client, prefs_path)
    drain()
    assert len(smtp.to(EMAIL)) == 4


def test_an_expired_data_link_answers_410_and_says_how_to_get_a_new_one(client, database, prefs_path):
    public_id = find_subscriber(database, EMAIL).public_id
    token = _old_data_token(public_id, age_minutes=61)
    for answer in (client.get(f"/data/{token}"), client.get(f"/data/{token}/data.json"),
                   client.post(f"/data/{token}/erase", data={"confirm": "yes"})):
        html = answer.get_data(as_text=True)
        assert answer.status_code == 410
        assert "Dieser Link zu Ihren Daten ist abgelaufen" in html and 'href="/manage"' in html
        assert EMAIL not in html
    assert find_subscriber(database, EMAIL) is not None
    assert client.get(f"/data/{_old_data_token(public_id, age_minutes=59)}").status_code == 200


def test_a_bad_data_link_answers_400_and_a_link_of_another_kind_does_not_open_it(client, smtp, drain, database, prefs_path):
    path = data_link(client, smtp, drain, prefs_path, EMAIL)
    flipped = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    preferences_token = prefs_path.rsplit("/", 1)[1]
    for bad in (flipped, f"/data/{preferences_token}"):
        assert client.get(bad).status_code == 400
        assert client.get(bad + "/data.json").status_code == 400
        assert client.post(bad + "/erase", data={"confirm": "yes"}).status_code == 400
    assert find_subscriber(database, EMAIL) is not None


def test_a_data_link_does_not_open_the_preferences(client, smtp, drain, prefs_path):
    token = data_link(client, smtp, drain, prefs_path, EMAIL).rsplit("/", 1)[1]
    assert client.get(f"/preferences/{token}").status_code == 400


def test_a_data_link_asked_for_before_unsubscribing_still_arrives(client, smtp, drain, prefs_path, welcome_unsubscribe):
    _data_button(client, prefs_path)
    assert client.post(welcome_unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    drain()
    assert links(smtp.to(EMAIL)[-1].part("plain"), "/data/")


@pytest.fixture
def welcome_unsubscribe(smtp, prefs_path) -> str:
    return path_of(one_click_url(smtp.to(EMAIL)[1].message))


# -- /manage: once a day; a data link for everyone we hold data about ----------------------------

def test_manage_mails_a_reader_at_most_once_a_day(client, smtp, drain, database, prefs_path):
    assert client.post("/manage", data={"email": EMAIL}).status_code == 200
    drain()
    assert len(smtp.to(EMAIL)) == 3
    _later(database, hours=2)
    assert client.post("/manage", data={"email": EMAIL}).status_code == 200
    drain()
    assert len(smtp.to(EMAIL)) == 3
    _later(database, hours=23)
    client.post("/manage", data={"email": EMAIL})
    drain()
    assert len(smtp.to(EMAIL)) == 4


def test_the_manage_mail_carries_the_preferences_link_and_a_fresh_data_link(client, smtp, drain, database, prefs_path):
    client.post("/manage", data={"email": EMAIL})
    drain()
    mail = smtp.to(EMAIL)[-1]
    assert mail.message["Subject"].startswith("Ihr Link zu Ihren Einstellungen")
    for part in (mail.part("plain"), mail.part("html")):
        assert links(part, "/preferences/") and links(part, "/data/")
        assert "60 Minuten" in part
    path = only_link(mail.part("plain"), "/data/")
    assert client.get(path).status_code == 200
    assert client.get(path + "/data.json").get_json()["subscriber"]["email"] == EMAIL


def test_a_pending_address_gets_its_data_link_from_manage(client, smtp, drain, database):
    """Art. 15 DSGVO: we hold its address and consent record, so it may see them; it gets
    no second confirmation mail and no settings link."""
    assert signup(client, EMAIL, keywords="Python").status_code == 200
    drain()
    assert client.post("/manage", data={"email": EMAIL}).status_code == 200
    drain()
    [_confirmation, mail] = smtp.to(EMAIL)
    assert mail.message["Subject"].startswith("Ihr Link zu Ihren Daten")
    assert mail.message["List-Unsubscribe"] is None
    text = mail.part("plain")
    assert not links(text, "/confirm/") and not links(text, "/preferences/") and not links(text, "/unsubscribe/")
    data = client.get(only_link(text, "/data/") + "/data.json").get_json()
    assert (data["subscriber"]["email"], data["subscriber"]["status"]) == (EMAIL, "pending")


def test_a_pending_address_gets_its_data_link_once_a_day(client, smtp, drain, database):
    signup(client, EMAIL)
    drain()
    for _ in range(3):
        client.post("/manage", data={"email": EMAIL})
    _later(database, hours=2)
    client.post("/manage", data={"email": EMAIL})
    drain()
    assert len(smtp.to(EMAIL)) == 2  # the confirmation and one data link
    _later(database, hours=23)
    client.post("/manage", data={"email": EMAIL})
    drain()
    assert len(smtp.to(EMAIL)) == 3


def test_an_unsubscribed_address_gets_only_its_data_link_from_manage(client, smtp, drain, welcome_unsubscribe):
    client.post(welcome_unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert client.post("/manage", data={"email": EMAIL}).status_code == 200
    drain()
    mail = smtp.to(EMAIL)[-1]
    assert mail.message["Subject"].startswith("Ihr Link zu Ihren Daten")
    assert mail.message["List-Unsubscribe"] is None
    assert not links(mail.part("plain"), "/preferences/")
    data = client.get(only_link(mail.part("plain"), "/data/") + "/data.json").get_json()
    assert data["subscriber"]["status"] == "unsubscribed"


def test_manage_answers_the_same_whatever_the_address_holds(client, smtp, drain, database):
    signup(client, "pending@example.org")
    subscribe_confirmed(client, smtp, drain, "confirmed@example.org")
    addresses = ["unknown@example.org", "pending@example.org", "confirmed@example.org"]
    answers = [client.post("/manage", data={"email": email}) for email in addresses]
    answers += [client.post("/manage", data={"email": email}) for email in addresses]  # throttled now
    assert len({(a.status_code, a.get_data()) for a in answers}) == 1
