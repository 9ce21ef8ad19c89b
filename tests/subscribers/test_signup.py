"""The signup form and POST /subscribe as a reader (and a bot, and an attacker) sees them:
the page, the one answer for every address state, the confirmation mail, and the limits
on what a form can make the service send (CONTRACT "HTTP", STANDARDS 9-10, 18-29)."""

from __future__ import annotations

import json
import re
from email import message_from_bytes, message_from_string, policy
from email.header import decode_header

import pytest

from newsletter.subscribers import consent
from newsletter.models import ConsentEvent, OutboxMessage, Subscriber
from tests.conftest import make_settings
from tests.helpers import (
    one_click_url,
    BASE,
    all_rows,
    data_link,
    find_subscriber,
    links,
    only_link,
    signup,
    status_counts,
    subscribe_confirmed,
    time_passes,
)

CONSENT_DE = consent.consent_text("de")
CONSENT_EN = consent.consent_text("en")
PRIVACY_URL = "https://jobs.example.org/datenschutz"
JSON_ACCEPT = {"Accept": "application/json"}


def _subscribers(database) -> int:
    return len(all_rows(database, Subscriber))


# -- the form page ---------------------------------------------------------------------------

def test_form_is_german_by_default(client):
    page = client.get("/subscribe")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert '<html lang="de">' in html
    assert CONSENT_DE in html
    assert CONSENT_EN not in html


def test_form_is_english_with_lang_parameter(client):
    html = client.get("/subscribe?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in html
    assert CONSENT_EN in html
    assert CONSENT_DE not in html


def test_form_is_english_for_an_english_browser(client):
    page = client.get("/subscribe", headers={"Accept-Language": "en-GB,en;q=0.9"})
    html = page.get_data(as_text=True)
    assert '<html lang="en">' in html
    assert CONSENT_EN in html


def test_form_links_the_privacy_notice_next_to_the_consent_text(client):
    html = client.get("/subscribe").get_data(as_text=True)
    consent_block = re.search(r'<p class="consent"[^>]*>(.*?)</p>', html, re.S)
    assert consent_block, "no consent paragraph on the form"
    assert CONSENT_DE in consent_block.group(1)
    assert f'href="{PRIVACY_URL}"' in consent_block.group(1)


def test_form_has_no_csrf_token_and_posts_to_subscribe(client):
    html = client.get("/subscribe").get_data(as_text=True)
    assert "csrf" not in html.lower()
    assert re.search(r'<form method="post" action="/subscribe"', html)
    assert 'name="email"' in html and 'name="website"' in html


def test_post_without_any_token_or_cookie_is_accepted(app, database):
    # The job board embeds the form on its own pages: no session, no CSRF token.
    fresh = app.test_client(use_cookies=False)
    answer = fresh.post(
        "/subscribe", data={"email": "embed@example.org"}, headers={"Origin": "https://jobs.example.org"}
    )
    assert answer.status_code == 200
    assert find_subscriber(database, "embed@example.org").status == "pending"


# -- the answer ----------------------------------------------------------------------------

def test_form_post_answers_the_check_your_inbox_page_and_stores_a_pending_row(client, database):
    answer = signup(client, "anna@example.org", keywords="Python", location="Berlin")
    assert answer.status_code == 200
    assert answer.mimetype == "text/html"
    assert "Posteingang" in answer.get_data(as_text=True)
    sub = find_subscriber(database, "anna@example.org")
    assert (sub.status, sub.keywords, sub.location, sub.language) == ("pending", "Python", "Berlin", "de")
    assert status_counts(database)["pending"] == 1


def test_json_body_is_accepted(client, database):
    answer = client.post("/subscribe", json={"email": "json@example.org", "keywords": "Go", "language": "en"})
    assert answer.status_code == 202  # a JSON body and no Accept preference: the JSON answer
    sub = find_subscriber(database, "json@example.org")
    assert (sub.status, sub.keywords, sub.language) == ("pending", "Go", "en")


def test_json_accept_answers_202_pending(client, database):
    answer = client.post("/subscribe", json={"email": "api@example.org"}, headers=JSON_ACCEPT)
    assert answer.status_code == 202
    assert answer.get_json() == {"status": "pending"}
    assert find_subscriber(database, "api@example.org").status == "pending"


def test_form_body_with_json_accept_answers_202_pending(client, database):
    answer = client.post("/subscribe", data={"email": "formapi@example.org"}, headers=JSON_ACCEPT)
    assert answer.status_code == 202
    assert answer.get_json() == {"status": "pending"}
    assert find_subscriber(database, "formapi@example.org") is not None


def _answers_for_every_state(client, smtp, drain, send) -> dict[str, tuple[int, bytes]]:
    """The answer to `send(email)` for a new, a pending, a confirmed and an unsubscribed address."""
    signup(client, "pending@example.org")
    subscribe_confirmed(client, smtp, drain, "confirmed@example.org")
    welcome = subscribe_confirmed(client, smtp, drain, "gone@example.org")
    unsubscribe_path = one_click_url(welcome.message).replace(BASE, "")
    assert client.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    answers = {}
    for state, email in (
        ("new", "new@example.org"), ("pending", "pending@example.org"),
        ("confirmed", "confirmed@example.org"), ("unsubscribed", "gone@example.org"),
    ):
        response = send(email)
        answers[state] = (response.status_code, response.get_data())
    return answers


def test_same_page_for_new_pending_confirmed_and_unsubscribed(client, smtp, drain, database):
    answers = _answers_for_every_state(client, smtp, drain, lambda email: signup(client, email))
    assert answers["new"][0] == 200
    assert len(set(answers.values())) == 1, {state: code for state, (code, _) in answers.items()}


def test_same_json_for_new_pending_confirmed_and_unsubscribed(client, smtp, drain, database):
    answers = _answers_for_every_state(
        client, smtp, drain,
        lambda email: client.post("/subscribe", json={"email": email}, headers=JSON_ACCEPT),
    )
    assert answers["new"][0] == 202
    assert json.loads(answers["new"][1]) == {"status": "pending"}
    assert len(set(answers.values())) == 1, {state: code for state, (code, _) in answers.items()}


# -- subscription bombing ----------------------------------------------------------------

def test_five_submissions_give_one_confirmation_mail(client, smtp, drain):
    for _ in range(5):
        assert signup(client, "target@example.org").status_code == 200
    drain()
    assert len(smtp.to("target@example.org")) == 1
    assert len(smtp.messages) == 1


def test_case_variants_of_an_address_are_one_subscriber_and_one_mail(client, smtp, drain, database):
    for variant in ("target@example.org", "Target@Example.org", "TARGET@EXAMPLE.ORG"):
        assert signup(client, variant).status_code == 200
    drain()
    assert _subscribers(database) == 1
    assert len(smtp.messages) == 1


@pytest.mark.parametrize("reason", ["bounced", "complained"])
def test_an_address_suppressed_for_good_gets_the_normal_answer_and_no_mail(client, smtp, drain, database, reason):
    # Its subscriber row is gone (erased or purged); only the hashed suppression is left.
    from newsletter.models import Suppression
    from newsletter.models import email_hash

    with database.session_scope() as session:
        session.add(Suppression(email_hash=email_hash("gone@example.org"), reason=reason))
    normal = signup(client, "someone@example.org")
    suppressed = signup(client, "gone@example.org")
    assert (suppressed.status_code, suppressed.get_data()) == (normal.status_code, normal.get_data())
    drain()
    assert find_subscriber(database, "gone@example.org") is None
    assert smtp.to("gone@example.org") == []
    assert len(smtp.to("someone@example.org")) == 1


def test_an_unsubscribed_address_may_sign_up_again(client, smtp, drain, database):
    from newsletter.models import Suppression
    from newsletter.models import email_hash

    with database.session_scope() as session:
        session.add(Suppression(email_hash=email_hash("back@example.org"), reason="unsubscribed"))
    signup(client, "back@example.org")
    drain()
    assert len(smtp.to("back@example.org")) == 1


def test_honeypot_gets_the_normal_answer_and_nothing_happens(client, smtp, drain, database):
    normal = signup(client, "human@example.org")
    bot = signup(client, "bot@example.org", website="http://spam.example")
    assert (bot.status_code, bot.get_data()) == (normal.status_code, normal.get_data())
    drain()
    assert find_subscriber(database, "bot@example.org") is None
    assert smtp.to("bot@example.org") == []


def test_honeypot_in_json_gets_the_normal_json_answer(client, smtp, drain, database):
    answer = client.post("/subscribe", json={"email": "bot@example.org", "website": "x"}, headers=JSON_ACCEPT)
    assert (answer.status_code, answer.get_json()) == (202, {"status": "pending"})
    drain()
    assert find_subscriber(database, "bot@example.org") is None
    assert smtp.messages == []


@pytest.fixture
def limited_client(settings, smtp, tmp_path, redis_conn):
    """A client of an app that allows three signups per minute and IP."""
    from newsletter import create_app

    limited = make_settings(
        database_url=settings.database_url, smtp_port=smtp.port,
        instance_path=str(tmp_path / "instance"), signup_rate_limit="3 per minute",
    )
    app = create_app(limited)
    yield app.test_client()
    app.extensions["newsletter_db"].dispose()


def test_per_ip_rate_limit_answers_429(limited_client, database):
    for n in range(3):
        assert signup(limited_client, f"r{n}@example.org").status_code == 200
    refused = signup(limited_client, "r3@example.org")
    assert refused.status_code == 429
    assert find_subscriber(database, "r3@example.org") is None


def test_the_manage_form_is_limited_per_ip_too(limited_client, smtp, drain):
    """The "mail me my link" form can make us send mail just as the signup can."""
    for n in range(3):
        assert limited_client.post("/manage", data={"email": f"m{n}@example.org"}).status_code == 200
    assert limited_client.post("/manage", data={"email": "m3@example.org"}).status_code == 429


def test_pages_name_the_configured_lifetime_of_a_confirmation_link(settings, smtp, tmp_path, database, redis_conn):
    from newsletter import create_app

    short = make_settings(
        database_url=settings.database_url, smtp_port=smtp.port,
        instance_path=str(tmp_path / "instance"), confirm_max_age_hours=24,
    )
    app = create_app(short)
    try:
        client = app.test_client()
        done = signup(client, "anna@example.org").get_data(as_text=True)
        assert "Der Link ist 24 Stunden gültig" in done and "48" not in done
        expired = client.get("/confirm/" + _expired_token(database, "anna@example.org", hours=25))
        assert expired.status_code == 410
        assert "nur 24 Stunden gültig" in expired.get_data(as_text=True)
    finally:
        app.extensions["newsletter_db"].dispose()


def _expired_token(database, email: str, hours: float) -> str:
    import time

    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    from newsletter.tokens import CONFIRM_SALT
    from tests.conftest import SECRET

    class SignedEarlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - hours * 3600)

    public_id = find_subscriber(database, email).public_id
    return URLSafeTimedSerializer([SECRET], salt=CONFIRM_SALT, signer=SignedEarlier).dumps(public_id)


def test_rate_limit_is_per_ip(limited_client, database):
    for n in range(3):
        signup(limited_client, f"r{n}@example.org")
    other_ip = limited_client.post(
        "/subscribe", data={"email": "other@example.org"}, environ_base={"REMOTE_ADDR": "192.0.2.7"}
    )
    assert other_ip.status_code == 200
    assert find_subscriber(database, "other@example.org") is not None


def test_rate_limit_answers_json_to_json_clients(limited_client):
    for n in range(3):
        signup(limited_client, f"r{n}@example.org")
    refused = limited_client.post("/subscribe", json={"email": "r3@example.org"}, headers=JSON_ACCEPT)
    assert refused.status_code == 429
    assert "error" in refused.get_json()


# -- hostile and malformed input ----------------------------------------------------------

HOSTILE = [
    ("email", "anna@example.org\r\nBcc: victim@example.net"),
    ("email", "anna@example.org\nBcc: victim@example.net"),
    ("email", "=?utf-8?q?anna=40example=2Eorg?=@example.org"),
    ("email", "anna\x00@example.org"),
    ("keywords", "Python\r\nBcc: victim@example.net"),
    ("keywords", "Python\x1b[31m"),
    ("keywords", "=?utf-8?q?Python=0D=0ABcc=3A_victim=40example=2Enet?="),
    ("keywords", "Python\u2028Bcc: victim@example.net"),
    ("location", "Berlin\rBcc: victim@example.net"),
    ("location", "Berlin\x85"),
    ("location", "=?UTF-8?B?QmVybGluDQpCY2M6IHZpY3RpbUBleGFtcGxlLm5ldA==?="),
    ("location", "Berlin\x7f"),
    # Direction overrides and isolates: shown again in the digest's "Ihre Suche" line and on
    # the settings page, an unclosed one flips the rest of the line.
    ("keywords", "\u202eredoc\u202c"),
    ("location", "Berlin\u2067"),
    ("keywords", "Python\ufeff"),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE, ids=[f"{f}-{i}" for i, (f, _) in enumerate(HOSTILE)])
def test_control_characters_and_encoded_words_in_a_form_are_refused(client, smtp, drain, database, field, value):
    data = {"email": "anna@example.org", field: value}
    answer = client.post("/subscribe", data=data)
    assert answer.status_code == 400
    assert answer.mimetype == "text/html"
    drain()
    assert _subscribers(database) == 0
    assert all_rows(database, ConsentEvent) == []
    assert smtp.messages == []


@pytest.mark.parametrize(("field", "value"), HOSTILE, ids=[f"{f}-{i}" for i, (f, _) in enumerate(HOSTILE)])
def test_control_characters_and_encoded_words_in_json_are_refused(client, smtp, drain, database, field, value):
    body = {"email": "anna@example.org", field: value}
    answer = client.post("/subscribe", json=body, headers=JSON_ACCEPT)
    assert answer.status_code == 400
    assert answer.get_json()["field"] == field
    drain()
    assert _subscribers(database) == 0
    assert smtp.messages == []


INVALID_ADDRESSES = [
    "",
    "   ",
    "not-an-address",
    "anna@",
    "@example.org",
    "anna@localhost",
    "anna example@example.org",
    '"anna"@example.org',
    "anna@example.org, eve@example.net",
    "Anna <anna@example.org>",
    "anna@@example.org",
    "anna@exa_mple.org",
    "a" * 250 + "@example.org",
]


@pytest.mark.parametrize("address", INVALID_ADDRESSES)
def test_invalid_address_answers_a_readable_400_page(client, smtp, drain, database, address):
    answer = client.post("/subscribe", data={"email": address, "keywords": "Python"})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert answer.mimetype == "text/html"
    assert "Bitte geben Sie eine gültige E-Mail-Adresse ein." in html
    assert 'aria-invalid="true"' in html
    assert 'value="Python"' in html  # what the reader typed is kept for a second try
    drain()
    assert _subscribers(database) == 0
    assert smtp.messages == []


@pytest.mark.parametrize("address", ["not-an-address", "anna@", "Anna <anna@example.org>"])
def test_invalid_address_in_json_answers_an_error_naming_the_field(client, database, address):
    answer = client.post("/subscribe", json={"email": address}, headers=JSON_ACCEPT)
    assert answer.status_code == 400
    body = answer.get_json()
    assert body["field"] == "email"
    assert body["error"]
    assert _subscribers(database) == 0


@pytest.mark.parametrize(
    "body",
    [[], ["anna@example.org"], "anna@example.org", 42, None, {"email": 42}, {"email": ["a@example.org"]},
     {"email": "anna@example.org", "keywords": {"x": 1}}, {"email": "anna@example.org", "language": "fr"},
     {"email": "anna@example.org", "language": ["de"]}],
    ids=repr,
)
def test_malformed_json_answers_400(client, smtp, drain, database, body):
    answer = client.post("/subscribe", json=body, headers=JSON_ACCEPT)
    assert answer.status_code == 400
    assert "error" in answer.get_json()
    drain()
    assert _subscribers(database) == 0
    assert smtp.messages == []


def test_unparseable_json_answers_400(client, database):
    answer = client.post("/subscribe", data=b'{"email": "anna@', content_type="application/json", headers=JSON_ACCEPT)
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "body"
    assert _subscribers(database) == 0


@pytest.mark.parametrize("field", ["email", "keywords", "location"])
def test_lone_surrogate_in_json_answers_400_and_stores_nothing(client, smtp, drain, database, field):
    body = {"email": "anna@example.org", field: "Ber\ud800lin"}
    raw = json.dumps(body)  # JSON can carry a "\ud800" escape that UTF-8 cannot
    for accept in ("text/html", "application/json"):
        answer = client.post("/subscribe", data=raw, content_type="application/json", headers={"Accept": accept})
        assert answer.status_code == 400
    drain()
    assert _subscribers(database) == 0
    assert smtp.messages == []


def test_form_body_over_64_kb_answers_a_readable_413_page(client, database):
    answer = client.post("/subscribe", data=b"email=" + b"x" * 70_000, content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 413
    assert answer.mimetype == "text/html"
    assert "Die Anfrage ist zu groß." in answer.get_data(as_text=True)
    assert _subscribers(database) == 0


def test_json_body_over_64_kb_answers_a_413_json_error(client, database):
    answer = client.post("/subscribe", data=b'{"email": "' + b"x" * 70_000 + b'"}', content_type="application/json")
    assert answer.status_code == 413
    assert answer.get_json() == {"error": "The request is too large."}  # JSON errors speak English
    assert _subscribers(database) == 0


def test_over_long_keywords_answer_400(client, database):
    answer = signup(client, "anna@example.org", keywords="x" * 201)
    assert answer.status_code == 400
    assert _subscribers(database) == 0


# -- international addresses -----------------------------------------------------------------

def test_idn_domain_is_accepted_and_stored_normalised(client, smtp, drain, database):
    assert signup(client, "User@BÜCHER.de").status_code == 200
    sub = find_subscriber(database, "user@bücher.de")
    assert sub.email == "User@bücher.de"
    drain()
    [mail] = smtp.messages
    assert mail.rcpt_tos == ["User@xn--bcher-kva.de"]  # sent in its ASCII form: see the test below


def test_idn_domain_in_a_labels_is_the_same_subscriber(client, smtp, drain, database):
    signup(client, "user@bücher.de")
    signup(client, "user@xn--bcher-kva.de")
    drain()
    assert _subscribers(database) == 1
    assert len(smtp.messages) == 1


def test_non_ascii_local_part_is_delivered_with_smtputf8(client, smtp, drain, database):
    assert signup(client, "jörg@example.org").status_code == 200
    assert find_subscriber(database, "jörg@example.org").email == "jörg@example.org"
    drain()
    [mail] = smtp.to("jörg@example.org")
    assert "SMTPUTF8" in mail.mail_options
    # RFC 6532: with SMTPUTF8 the header carries the address as raw UTF-8.
    headers = message_from_string(mail.data.decode("utf-8"), policy=policy.SMTPUTF8)
    assert headers["To"].addresses[0].addr_spec == "jörg@example.org"


def test_an_idn_domain_with_an_ascii_local_part_goes_as_a_labels_without_smtputf8(client, smtp, drain, database):
    """The relay offers SMTPUTF8, but a later hop may not: an address that has an ASCII
    form goes in it (RFC 5891), and needs nothing of anyone."""
    assert signup(client, "dora@bücher.example").status_code == 200
    drain()
    [mail] = smtp.messages
    assert mail.rcpt_tos == ["dora@xn--bcher-kva.example"]
    assert "SMTPUTF8" not in mail.mail_options and mail.data.isascii()
    assert find_subscriber(database, "dora@bücher.example") is not None  # kept as typed


def test_ascii_address_is_sent_without_smtputf8(client, smtp, drain):
    signup(client, "plain@example.org")
    drain()
    [mail] = smtp.messages
    assert "SMTPUTF8" not in mail.mail_options
    assert mail.data.isascii()


# -- the confirmation mail ---------------------------------------------------------------------

@pytest.fixture
def confirmation(client, smtp, drain):
    """The confirmation mail of a German signup with keywords and location typed in."""
    answer = signup(client, "anna@example.org", keywords="Zauberstabschnitzerei", location="Quedlinburg")
    assert answer.status_code == 200
    drain()
    [mail] = smtp.messages
    return mail


def test_confirmation_mail_has_a_text_and_an_html_part(confirmation):
    message = confirmation.message
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert message["MIME-Version"] == "1.0"


def test_confirmation_mail_holds_exactly_one_link_and_it_goes_to_confirm(confirmation):
    text, html = confirmation.part("plain"), confirmation.part("html")
    [confirm_url] = links(text, "/confirm/")
    assert set(links(html, "/confirm/")) == {confirm_url}
    every_link = set(re.findall(r"https?://[^\s<>\"]+", text)) | set(re.findall(r'href="([^"]+)"', html))
    assert every_link == {confirm_url}


def test_confirmation_mail_has_no_list_headers(confirmation):
    message = confirmation.message
    for header in ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"):
        assert message[header] is None, header


def test_confirmation_mail_never_repeats_what_the_user_typed(confirmation):
    raw = confirmation.data.decode("utf-8", "replace")
    readable = confirmation.part("plain") + confirmation.part("html") + str(confirmation.message["Subject"])
    for typed in ("Zauberstabschnitzerei", "Quedlinburg"):
        assert typed not in readable
        assert typed not in raw


def test_confirmation_mail_has_the_single_headers_rfc_5322_wants(confirmation):
    message = confirmation.message
    for header in ("Date", "From", "To", "Subject", "Message-ID", "MIME-Version"):
        assert len(message.get_all(header) or []) == 1, header
    assert message["To"].addresses[0].addr_spec == "anna@example.org"
    assert message["From"].addresses[0].addr_spec == "newsletter@jobs.example.org"


def test_confirmation_mail_is_marked_auto_submitted(confirmation):
    assert confirmation.message["Auto-Submitted"] == "auto-generated"


def test_confirmation_mail_message_id_is_on_the_from_domain(confirmation):
    assert re.fullmatch(r"<[^@<>\s]+@jobs\.example\.org>", str(confirmation.message["Message-ID"]))


def test_confirmation_mail_envelope_sender_is_verp_tagged(confirmation, database):
    public_id = find_subscriber(database, "anna@example.org").public_id
    # public id, then an HMAC only we can make: a bounce to it names its reader for sure
    assert re.fullmatch(rf"bounces\+{re.escape(public_id)}\.[0-9a-f]{{12}}@jobs\.example\.org", confirmation.mail_from)


def test_confirmation_mail_sets_no_return_path(confirmation):
    assert confirmation.message["Return-Path"] is None
    assert b"\nReturn-Path:" not in confirmation.data and not confirmation.data.startswith(b"Return-Path:")


def test_confirmation_subject_is_encoded_and_parses_back_to_german(confirmation):
    raw_subject = re.search(rb"^Subject: (.*(?:\r?\n[ \t].*)*)", confirmation.data, re.M).group(1)
    assert raw_subject.isascii() and b"=?utf-8?" in raw_subject.lower()
    parsed = message_from_bytes(confirmation.data, policy=policy.default)
    assert parsed["Subject"] == "Bitte bestätigen Sie Ihre Anmeldung zum Jobs-Newsletter"
    decoded = "".join(
        part.decode(charset or "ascii") if isinstance(part, bytes) else part
        for part, charset in decode_header(raw_subject.decode("ascii"))
    )
    assert decoded.replace("\r\n", "").replace("\n", "") == "Bitte bestätigen Sie Ihre Anmeldung zum Jobs-Newsletter"


def test_confirmation_mail_is_german_with_the_sender_identity_and_ignore_note(confirmation):
    text = confirmation.part("plain")
    assert "Falls Sie sich nicht angemeldet haben, ignorieren Sie diese E-Mail" in text
    assert "newsletter@jobs.example.org" in text
    assert "Beispiel Jobs GmbH" in text


def test_confirmation_mail_is_english_for_language_en(client, smtp, drain):
    signup(client, "emma@example.org", language="en")
    drain()
    [mail] = smtp.messages
    assert mail.message["Subject"] == "Please confirm your subscription to the Jobs-Newsletter"
    assert "If this was not you, simply ignore this email." in mail.part("plain")
    assert only_link(mail.part("plain"), "/confirm/").startswith("/confirm/")


def test_english_page_language_makes_an_english_mail(client, smtp, drain, database):
    client.post("/subscribe?lang=en", data={"email": "emma@example.org"})
    assert find_subscriber(database, "emma@example.org").language == "en"
    drain()
    [mail] = smtp.messages
    assert mail.message["Subject"].startswith("Please confirm")


def test_sending_the_confirmation_is_recorded(client, smtp, drain, database):
    signup(client, "anna@example.org")
    drain()
    sub = find_subscriber(database, "anna@example.org")
    events = [e.event for e in all_rows(database, ConsentEvent, subscriber_public_id=sub.public_id)]
    assert events == ["signup", "confirmation_sent"]
    [outbox_row] = all_rows(database, OutboxMessage)
    assert (outbox_row.kind, outbox_row.status) == ("confirm", "sent")
    assert outbox_row.message_id == str(smtp.messages[0].message["Message-ID"])


# -- the consent record names what the person saw --------------------------------------------

def _form_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


def test_the_wording_recorded_is_the_one_on_the_page_not_the_newsletters_language(client, database):
    """A German page, an English newsletter: the person agreed to the German text."""
    hidden = _form_fields(client.get("/subscribe").get_data(as_text=True))
    assert hidden["consent_language"] == "de"
    answer = client.post("/subscribe", data={**hidden, "email": "anna@example.org", "language": "en"})
    assert answer.status_code == 200
    [event] = all_rows(database, ConsentEvent, event="signup")
    assert event.consent_text == CONSENT_DE
    assert find_subscriber(database, "anna@example.org").language == "en"


def test_the_english_page_records_the_english_wording_for_a_german_newsletter(client, database):
    hidden = _form_fields(client.get("/subscribe?lang=en").get_data(as_text=True))
    client.post("/subscribe", data={**hidden, "email": "anna@example.org", "language": "de"})
    [event] = all_rows(database, ConsentEvent, event="signup")
    assert event.consent_text == CONSENT_EN


@pytest.mark.parametrize("version", ["1999-01-01", "latest", "2026-11-01 ", False, 0, [], {}])
def test_a_consent_version_never_published_answers_400_and_stores_nothing(client, smtp, drain, database, version):
    if isinstance(version, str):
        answer = client.post("/subscribe", data={"email": "anna@example.org", "consent_version": version})
        assert answer.status_code == 400
        assert "Das Formular konnte nicht gelesen werden" in answer.get_data(as_text=True)
    json_answer = client.post("/subscribe", json={"email": "anna@example.org", "consent_version": version},
                              headers=JSON_ACCEPT)
    assert json_answer.status_code == 400 and json_answer.get_json()["field"] == "body"
    drain()
    assert _subscribers(database) == 0 and smtp.messages == []


def test_an_embedded_form_without_the_hidden_fields_records_the_current_wording(client, database):
    client.post("/subscribe", data={"email": "anna@example.org", "language": "en"})
    [event] = all_rows(database, ConsentEvent, event="signup")
    assert (event.consent_version, event.consent_text) == (consent.CURRENT_VERSION, CONSENT_EN)


# -- the page's language stays the page's --------------------------------------------------------

def test_an_english_page_leads_to_english_pages_for_a_german_browser(client):
    german_browser = {"Accept-Language": "de-DE,de;q=0.9"}
    page = client.get("/subscribe?lang=en", headers=german_browser).get_data(as_text=True)
    assert 'action="/subscribe?lang=en"' in page
    manage = re.search(r'href="(/manage[^"]*)"', page).group(1)
    assert manage == "/manage?lang=en"
    assert "Manage my subscription" in client.get(manage, headers=german_browser).get_data(as_text=True)
    done = client.post("/subscribe?lang=en", data={"email": "anna@example.org"}, headers=german_browser)
    assert "Almost done: please check your inbox" in done.get_data(as_text=True)
    assert 'href="/subscribe?lang=en"' in done.get_data(as_text=True)


def test_pages_in_the_browsers_language_keep_their_links_plain(client):
    page = client.get("/subscribe", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert 'action="/subscribe"' in page and 'href="/manage"' in page


def test_the_answer_is_in_the_language_of_the_page_not_of_the_newsletter(client):
    """A German page, an English newsletter chosen in it: the answer stays German."""
    hidden = _form_fields(client.get("/subscribe").get_data(as_text=True))
    answer = client.post("/subscribe", data={**hidden, "email": "anna@example.org", "language": "en"})
    assert "Fast geschafft" in answer.get_data(as_text=True)


# -- a body that cannot be read ----------------------------------------------------------------

def test_a_form_not_in_utf8_answers_400_naming_the_form_not_the_address(client, smtp, drain, database):
    answer = client.post(
        "/subscribe", data=b"email=leo@example.com&keywords=Caf\xe9",
        content_type="application/x-www-form-urlencoded",
    )
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "Das Formular konnte nicht gelesen werden" in html
    assert "gültige E-Mail-Adresse" not in html
    drain()
    assert _subscribers(database) == 0 and smtp.messages == []


@pytest.mark.parametrize("body, content_type", [
    # A Latin-1 form on the board's page: Werkzeug keeps escapes it cannot decode as they
    # are ("M%FCnchen"), which stored would never match "München".
    (b"email=latin1%40example.org&keywords=M%FCnchen", "application/x-www-form-urlencoded"),
    (b"email=s%40example.org&location=%ED%A0%80x", "application/x-www-form-urlencoded"),  # a surrogate
    # A multipart part in Latin-1 comes back with U+FFFD in place of its bytes.
    (b"--XX\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nmp@example.org\r\n"
     b"--XX\r\nContent-Disposition: form-data; name=\"keywords\"\r\n\r\nM\xfcnchen\r\n--XX--\r\n",
     "multipart/form-data; boundary=XX"),
], ids=["urlencoded-latin1", "urlencoded-surrogate", "multipart-latin1"])
def test_a_form_with_escapes_or_parts_not_in_utf8_answers_400_and_stores_nothing(
        client, smtp, drain, database, body, content_type):
    answer = client.post("/subscribe", data=body, content_type=content_type)
    assert answer.status_code == 400
    assert "Das Formular konnte nicht gelesen werden" in answer.get_data(as_text=True)
    drain()
    assert _subscribers(database) == 0 and smtp.messages == []


def test_a_utf8_form_with_raw_bytes_and_escapes_together_is_read(client, database):
    """curl --data sends UTF-8 raw; a field escaped next to it is UTF-8 too."""
    body = "email=r%40example.org&keywords=K%C3%BCche&location=München".encode()
    answer = client.post("/subscribe", data=body, content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 200
    [sub] = all_rows(database, Subscriber)
    assert (sub.keywords, sub.location) == ("Küche", "München")


def test_a_percent_sign_typed_in_a_field_is_kept(client, database):
    answer = client.post("/subscribe", data={"email": "p@example.org", "keywords": "100%FC Remote, Gehalt 80%"})
    assert answer.status_code == 200
    [sub] = all_rows(database, Subscriber)
    assert sub.keywords == "100%FC Remote, Gehalt 80%"


def test_the_consent_record_names_our_form_by_the_base_url_not_the_host_header(client, database):
    """Without a form_url or Referer the record names our own form, at NEWSLETTER_BASE_URL:
    the Host header is the client's to choose."""
    client.post("/subscribe", data={"email": "anna@example.org"}, headers={"Host": "attacker.example"})
    [event] = all_rows(database, ConsentEvent, event="signup")
    assert event.form_url == BASE + "/subscribe"


# -- an erased address --------------------------------------------------------------------------

def test_an_erased_address_gets_no_second_confirmation_mail_within_a_day(client, smtp, drain, database):
    """Erasure deletes the row that remembers the last confirmation mail; the limit of one
    per day must hold all the same (STANDARDS 28)."""
    subscribe_confirmed(client, smtp, drain, "anna@example.org")
    [_, welcome] = smtp.to("anna@example.org")
    preferences = only_link(welcome.part("plain"), "/preferences/")
    erase = data_link(client, smtp, drain, preferences, "anna@example.org") + "/erase"
    assert client.post(erase, data={"confirm": "yes"}).status_code == 200
    first = signup(client, "anna@example.org")
    drain()
    assert first.status_code == 200
    assert first.get_data() == signup(client, "someone-new@example.org").get_data()
    drain()
    assert len(smtp.to("anna@example.org")) == 3  # confirmation, welcome and data link, from before
    assert find_subscriber(database, "anna@example.org").status == "pending"


def test_an_address_erased_long_ago_gets_its_confirmation_mail(client, smtp, drain, database):
    from datetime import timedelta

    from newsletter.subscribers.mailbox import mailbox_hash
    from newsletter.models import ConfirmationMail, Suppression, email_hash, utcnow

    hashed = email_hash("anna@example.org")
    with database.session_scope() as session:
        session.add(Suppression(email_hash=hashed, reason="erased", created_at=utcnow() - timedelta(days=30)))
        session.add(ConsentEvent(subscriber_public_id="x" * 22, email_hash=hashed, event="confirmation_sent",
                                 at=utcnow() - timedelta(days=40), channel="email"))
        # Its budget record, not yet purged: older than the window, it limits nothing.
        session.add(ConfirmationMail(mailbox_hash=mailbox_hash("anna@example.org"),
                                     sent_at=utcnow() - timedelta(days=40)))
    assert signup(client, "anna@example.org").status_code == 200
    drain()
    [mail] = smtp.to("anna@example.org")
    assert only_link(mail.part("plain"), "/confirm/")


# -- the confirmation budget is the mailbox's (STANDARDS 28) -----------------------------------

def _mails_to(smtp, addresses) -> int:
    return sum(1 for mail in smtp.messages if set(mail.rcpt_tos) & set(addresses))


def test_tags_and_case_of_one_mailbox_get_one_confirmation_mail_a_day(client, smtp, drain, database):
    """victim+1@, victim+2@ and Victim@ are one inbox: a form must not mail it once per spelling."""
    spellings = ("anna+1@example.org", "anna+2@example.org", "Anna@example.org")
    normal = signup(client, "someone@example.net")
    answers = [signup(client, address) for address in spellings]
    assert {(a.status_code, a.get_data()) for a in answers} == {(normal.status_code, normal.get_data())}
    drain()
    assert _mails_to(smtp, spellings) == 1
    assert len(smtp.to("someone@example.net")) == 1


def test_gmail_dots_and_googlemail_are_one_mailbox(client, smtp, drain):
    spellings = ("a.b@gmail.com", "ab@googlemail.com", "A.B+news@googlemail.com")
    answers = {(a.status_code, a.get_data()) for a in (signup(client, address) for address in spellings)}
    assert len(answers) == 1
    drain()
    assert _mails_to(smtp, spellings) == 1


def test_a_mailbox_gets_at_most_three_confirmation_mails_in_thirty_days(client, smtp, drain, database, redis_conn):
    from rq import Queue

    from newsletter import queueing
    from worker import jobs

    answers = set()
    for day in range(4):
        answer = signup(client, "anna@example.org" if day % 2 else f"anna+day{day}@example.org")
        answers.add((answer.status_code, answer.get_data()))
        drain()
        time_passes(database, 1.01)
    assert len(answers) == 1
    assert len(smtp.messages) == 3
    # A month after the first one, that one no longer counts, and the purge drops its record.
    time_passes(database, 26)
    assert signup(client, "anna@example.org").status_code == 200
    drain()
    assert len(smtp.messages) == 4
    Queue(queueing.MAINTENANCE, connection=redis_conn).enqueue(jobs.purge)
    drain()
    from newsletter.models import ConfirmationMail

    assert len(all_rows(database, ConfirmationMail)) == 3


def test_a_pending_signup_sent_again_every_day_is_purged_counted_from_the_first(
        client, smtp, drain, database, settings, redis_conn):
    """Each repeat must not restart the clock of STANDARDS 12, or a form sent daily keeps
    an address nobody confirmed on file (and in mail) for ever."""
    from rq import Queue

    from newsletter import queueing
    from worker import jobs

    def purge() -> None:
        Queue(queueing.MAINTENANCE, connection=redis_conn).enqueue(jobs.purge)
        drain()

    days = settings.unconfirmed_retention_days
    for _ in range(days - 1):
        assert signup(client, "anna@example.org").status_code == 200
        drain()
        time_passes(database, 1)
    purge()
    assert find_subscriber(database, "anna@example.org").status == "pending"  # not yet
    assert signup(client, "anna@example.org").status_code == 200
    drain()
    time_passes(database, 1.5)
    purge()
    assert find_subscriber(database, "anna@example.org") is None


# -- the consent record's form URL ---------------------------------------------------------------

@pytest.mark.parametrize("referer, kept", [
    ("javascript:alert(1)", None),
    ("https://jobs.example.org/" + "x" * 2000, None),
    ("https://jobs.example.org/stellen", "https://jobs.example.org/stellen"),
    ("https://jobs.example.org/stellen?q=python", "https://jobs.example.org/stellen"),
    ("https://jobs.example.org/stellen?q=" + "x" * 2000, "https://jobs.example.org/stellen"),
])
def test_only_a_web_address_of_a_fitting_length_is_kept_from_the_referer(client, database, referer, kept):
    answer = client.post("/subscribe", data={"email": "anna@example.org"}, headers={"Referer": referer})
    assert answer.status_code == 200
    [event] = all_rows(database, ConsentEvent, event="signup")
    assert event.form_url == (kept or BASE + "/subscribe")


# A board page that pre-fills the form puts the address into its own URL.
PREFILLED = "anna%40example.org&keywords=Gyn%C3%A4kologie&location=Quedlinburg#email=anna@example.org"


@pytest.mark.parametrize("posted, referer, kept", [
    (None, "https://jobs.example.org/jobs?email=" + PREFILLED, "https://jobs.example.org/jobs"),
    ("https://anna%40example.org:pw@jobs.example.org:8443/jobs/newsletter?email=" + PREFILLED, None,
     "https://jobs.example.org:8443/jobs/newsletter"),
    ("http://anna@[2001:db8::1]:8080/jobs;v=1?email=" + PREFILLED, "https://jobs.example.org/jobs?email=anna",
     "http://[2001:db8::1]:8080/jobs;v=1"),
])
def test_the_consent_record_keeps_the_form_page_without_what_its_url_carried(
    client, smtp, drain, database, posted, referer, kept
):
    """Scheme, host and path name the form; userinfo, query and fragment are the visitor's
    (a pre-filled address, a search) and would outlive an erasure in the consent proof."""
    data = {"email": "anna@example.org", "keywords": "Gynäkologie", "location": "Quedlinburg"}
    if posted is not None:
        data["form_url"] = posted
    headers = {"User-Agent": "pytest-browser"} | ({"Referer": referer} if referer else {})
    assert client.post("/subscribe", data=data, headers=headers).status_code == 200
    drain()
    [confirmation] = smtp.to("anna@example.org")
    assert client.post(only_link(confirmation.part("plain"), "/confirm/")).status_code == 200
    drain()
    [event] = all_rows(database, ConsentEvent, event="signup")
    assert event.form_url == kept
    prefs = only_link(smtp.to("anna@example.org")[-1].part("plain"), "/preferences/")
    erased = client.post(data_link(client, smtp, drain, prefs, "anna@example.org") + "/erase", data={"confirm": "yes"})
    assert erased.status_code == 200
    kept_events = all_rows(database, ConsentEvent)
    assert "signup" in [e.event for e in kept_events]
    for e in kept_events:
        text = json.dumps([e.ip, e.user_agent, e.form_url, e.consent_text, e.detail], ensure_ascii=False).lower()
        assert "anna" not in text and "quedlinburg" not in text and "gynäkologie" not in text and "%40" not in text
