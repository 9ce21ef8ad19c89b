"""The confirmation link: GET only shows a button, POST confirms and sends the welcome mail
with the list headers; tampered, foreign and expired tokens change nothing; old links keep
working after a key rotation (CONTRACT "HTTP", STANDARDS 1-5, 8, 12, 26)."""

from __future__ import annotations

import re
import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from newsletter.models import ConsentEvent
from newsletter.tokens import CONFIRM_SALT, Tokens
from tests.conftest import SECRET, make_settings
from tests.helpers import (
    one_click_url,
    BASE,
    DkimKey,
    all_rows,
    data_link,
    find_subscriber,
    form_action,
    links,
    only_link,
    path_of,
    signup,
    subscribe_confirmed,
    time_passes,
)

EMAIL = "anna@example.org"
NEW_SECRET = "rotated-secret-key-abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.fixture
def confirm_path(client, smtp, drain) -> str:
    """The path of the confirmation link mailed to a fresh signup of EMAIL."""
    assert signup(client, EMAIL, keywords="Python").status_code == 200
    drain()
    [mail] = smtp.to(EMAIL)
    return only_link(mail.part("plain"), "/confirm/")


def _token(path: str) -> str:
    return path.rsplit("/", 1)[1]


def _events(database, name: str) -> list[ConsentEvent]:
    sub = find_subscriber(database, EMAIL)
    return all_rows(database, ConsentEvent, subscriber_public_id=sub.public_id, event=name)


def _old_confirm_token(public_id: str, age_hours: float, keys: list[str] | None = None) -> str:
    """A confirmation token signed `age_hours` ago: what a reader holds who clicks late."""

    class SignedEarlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - age_hours * 3600)

    return URLSafeTimedSerializer(keys or [SECRET], salt=CONFIRM_SALT, signer=SignedEarlier).dumps(public_id)


# -- GET shows, POST confirms -----------------------------------------------------------------

def test_get_shows_a_page_with_one_post_form_to_the_same_link(client, confirm_path):
    page = client.get(confirm_path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert html.count("<form") == 1
    assert form_action(html) == confirm_path
    assert "Ja, Newsletter abonnieren" in html


def test_get_changes_nothing(client, smtp, drain, database, confirm_path):
    for _ in range(3):  # mail scanners prefetch links, some more than once
        assert client.get(confirm_path).status_code == 200
    assert client.head(confirm_path).status_code == 200
    drain()
    assert find_subscriber(database, EMAIL).status == "pending"
    assert _events(database, "confirmed") == []
    assert len(smtp.messages) == 1


def test_post_confirms(client, database, confirm_path):
    done = client.post(confirm_path, headers={"User-Agent": "pytest-browser"})
    assert done.status_code == 200
    assert "Vielen Dank, Ihre Anmeldung ist bestätigt" in done.get_data(as_text=True)
    sub = find_subscriber(database, EMAIL)
    assert sub.status == "confirmed"
    assert sub.confirmed_at is not None
    [event] = _events(database, "confirmed")
    assert (event.ip, event.user_agent) == ("127.0.0.1", "pytest-browser")


def test_submitting_the_form_of_the_get_page_confirms(client, database, confirm_path):
    html = client.get(confirm_path).get_data(as_text=True)
    assert client.post(form_action(html)).status_code == 200
    assert find_subscriber(database, EMAIL).status == "confirmed"


def test_confirmed_page_links_preferences_and_unsubscribe(client, confirm_path):
    html = client.post(confirm_path).get_data(as_text=True)
    assert re.search(r'href="/preferences/[^"]+"', html)
    assert re.search(r'href="/unsubscribe/[^"]+"', html)


# -- the welcome mail ---------------------------------------------------------------------------

@pytest.fixture
def welcome(client, smtp, drain, confirm_path):
    assert client.post(confirm_path).status_code == 200
    drain()
    mails = smtp.to(EMAIL)
    assert len(mails) == 2
    return mails[1]


def test_welcome_mail_has_one_list_unsubscribe_with_the_unsubscribe_url(welcome):
    values = welcome.message.get_all("List-Unsubscribe")
    assert len(values) == 1
    # The https link first (RFC 8058), then the reader's mailto: address (RFC 2369).
    assert re.fullmatch(re.escape(f"<{BASE}/unsubscribe/") + r"[A-Za-z0-9_.\-]+>"
                        + re.escape(", <mailto:bounces+u.") + r"[A-Za-z0-9_\-]+\.[0-9a-f]{20}"
                        + re.escape("@jobs.example.org?subject=unsubscribe>"), str(values[0]))


def test_welcome_mail_has_one_click_post_header(welcome):
    assert welcome.message.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]


def test_welcome_mail_has_a_readable_list_id(welcome):
    [list_id] = welcome.message.get_all("List-Id")
    assert list_id == "Jobs-Newsletter <jobs-newsletter.jobs.example.org>"


def test_welcome_mail_shows_preferences_and_unsubscribe_links_in_both_parts(welcome):
    header_url = one_click_url(welcome.message)
    text, html = welcome.part("plain"), welcome.part("html")
    for part in (text, html):
        assert set(links(part, "/unsubscribe/")) == {header_url}
        assert len(set(links(part, "/preferences/"))) == 1
    assert set(links(text, "/preferences/")) == set(links(html, "/preferences/"))


def test_welcome_mail_links_do_not_carry_the_address(welcome):
    # The mailto: names our own bounce domain; the reader's address is in neither URI.
    assert "anna" not in welcome.message["List-Unsubscribe"].lower()
    for url in [one_click_url(welcome.message), *links(welcome.part("plain"), "/preferences/")]:
        assert "anna" not in url.lower()
        assert "example.org" not in url.lower()


def test_welcome_mail_goes_out_with_verp_and_auto_submitted(welcome, database):
    public_id = find_subscriber(database, EMAIL).public_id
    # public id, then an HMAC only we can make: a bounce to it names its reader for sure
    assert re.fullmatch(rf"bounces\+{re.escape(public_id)}\.[0-9a-f]{{12}}@jobs\.example\.org", welcome.mail_from)
    assert welcome.message["Auto-Submitted"] == "auto-generated"
    assert welcome.message["Return-Path"] is None


def test_transactional_mails_carry_a_feedback_id_per_kind(welcome, smtp):
    confirmation = smtp.to(EMAIL)[0]
    assert confirmation.message["Feedback-ID"] == "confirm:transactional:newsletter:jobs.example.org"
    assert welcome.message["Feedback-ID"] == "welcome:transactional:newsletter:jobs.example.org"


def test_welcome_mail_is_dkim_signed_over_the_list_headers(client, smtp, settings, tmp_path, confirm_path):
    """STANDARDS 7 holds for every mail with List-Unsubscribe, not only the digest."""
    from rq import SimpleWorker

    from newsletter import job_context, queueing

    key = DkimKey(tmp_path)
    ctx = job_context.configure(key.settings(settings))  # the worker signs; the web app needs no key
    try:
        assert client.post(confirm_path).status_code == 200
        SimpleWorker(list(queueing.ALL), connection=ctx.redis).work(burst=True, with_scheduler=False)
    finally:
        ctx.database.dispose()
    [_, welcome] = smtp.to(EMAIL)
    assert "feedback-id" in key.assert_signed_over_list_headers(welcome)


def test_welcome_preferences_link_opens_the_settings(client, welcome):
    path = only_link(welcome.part("plain"), "/preferences/")
    page = client.get(path)
    assert page.status_code == 200
    assert EMAIL in page.get_data(as_text=True)


# -- confirming twice ----------------------------------------------------------------------------

def test_second_post_says_already_confirmed_and_sends_nothing(client, smtp, drain, database, welcome, confirm_path):
    again = client.post(confirm_path)
    assert again.status_code == 200
    assert "Sie sind bereits angemeldet" in again.get_data(as_text=True)
    drain()
    assert len(smtp.messages) == 2
    assert len(_events(database, "confirmed")) == 1


def test_get_after_confirming_says_already_confirmed(client, database, welcome, confirm_path):
    page = client.get(confirm_path)
    assert page.status_code == 200
    assert "Sie sind bereits angemeldet" in page.get_data(as_text=True)
    assert find_subscriber(database, EMAIL).status == "confirmed"


def test_an_already_confirmed_link_shows_no_lasting_links(client, welcome, confirm_path):
    """A confirmation link may have been forwarded within its 48 hours; once used it must
    not hand out the preferences and unsubscribe links, which never expire (STANDARDS 26)."""
    for answer in (client.get(confirm_path), client.post(confirm_path)):
        html = answer.get_data(as_text=True)
        assert answer.status_code == 200
        assert "Sie sind bereits angemeldet" in html
        assert "/preferences/" not in html and "/unsubscribe/" not in html
        assert 'href="/manage"' in html


# -- tampered and foreign tokens --------------------------------------------------------------------

def _flip(token: str, index: int) -> str:
    char = token[index]
    replacement = "B" if char != "B" else "C"
    return token[:index] + replacement + token[index + 1:]


def _tampered(token: str, public_id: str) -> dict[str, str]:
    keys = [SECRET]
    return {
        "payload-char-changed": _flip(token, 3),
        "signature-char-changed": _flip(token, len(token) - 6),
        "appended": token + "A",
        "truncated": token[:-3],
        "signature-removed": token.rsplit(".", 1)[0],
        "garbage": "not-a-token",
        "unsubscribe-token": Tokens(keys, 3600).unsubscribe(public_id),
        "preferences-token": Tokens(keys, 3600).preferences(public_id),
        "other-key": Tokens(["some-other-key-0123456789abcdefghijklmnop"], 3600).confirm(public_id),
    }


@pytest.mark.parametrize(
    "variant",
    ["payload-char-changed", "signature-char-changed", "appended", "truncated", "signature-removed",
     "garbage", "unsubscribe-token", "preferences-token", "other-key"],
)
def test_tampered_token_answers_4xx_and_changes_nothing(client, smtp, drain, database, confirm_path, variant):
    public_id = find_subscriber(database, EMAIL).public_id
    bad = _tampered(_token(confirm_path), public_id)[variant]
    assert bad != _token(confirm_path)
    for method in (client.get, client.post):
        answer = method(f"/confirm/{bad}")
        assert 400 <= answer.status_code < 500, (method, answer.status_code)
        assert "Dieser Link ist ungültig" in answer.get_data(as_text=True)
    drain()
    assert find_subscriber(database, EMAIL).status == "pending"
    assert _events(database, "confirmed") == []
    assert len(smtp.messages) == 1


def test_token_of_an_unknown_subscriber_answers_404(client, database, confirm_path):
    token = Tokens([SECRET], 3600).confirm("NoSuchSubscriber123")
    assert client.post(f"/confirm/{token}").status_code == 404
    assert find_subscriber(database, EMAIL).status == "pending"


# -- expiry ----------------------------------------------------------------------------------------

def test_expired_link_answers_410_says_so_and_links_the_signup(client, database, confirm_path):
    token = _old_confirm_token(find_subscriber(database, EMAIL).public_id, age_hours=49)
    for method in (client.get, client.post):
        answer = method(f"/confirm/{token}")
        html = answer.get_data(as_text=True)
        assert answer.status_code == 410
        assert "Dieser Bestätigungslink ist abgelaufen" in html
        assert 'href="/subscribe"' in html


def test_expired_link_subscribes_nobody(client, smtp, drain, database, confirm_path):
    token = _old_confirm_token(find_subscriber(database, EMAIL).public_id, age_hours=49)
    client.post(f"/confirm/{token}")
    drain()
    assert find_subscriber(database, EMAIL).status == "pending"
    assert _events(database, "confirmed") == []
    assert len(smtp.messages) == 1


def test_link_younger_than_48_hours_still_confirms(client, database, confirm_path):
    token = _old_confirm_token(find_subscriber(database, EMAIL).public_id, age_hours=47)
    assert client.post(f"/confirm/{token}").status_code == 200
    assert find_subscriber(database, EMAIL).status == "confirmed"


def test_expired_and_tampered_link_is_invalid_not_expired(client, database, confirm_path):
    token = _old_confirm_token(find_subscriber(database, EMAIL).public_id, age_hours=49)
    answer = client.post(f"/confirm/{_flip(token, 3)}")
    assert answer.status_code == 400
    assert find_subscriber(database, EMAIL).status == "pending"


def test_expired_page_is_english_for_an_english_subscriber(client, smtp, drain, database):
    signup(client, "emma@example.org", language="en")
    public_id = find_subscriber(database, "emma@example.org").public_id
    answer = client.get(f"/confirm/{_old_confirm_token(public_id, age_hours=49)}", headers={"Accept-Language": "en"})
    assert answer.status_code == 410
    assert "This confirmation link has expired" in answer.get_data(as_text=True)


# -- key rotation ----------------------------------------------------------------------------------

def _app_with_keys(settings, smtp, tmp_path, secret_key: str, fallbacks: tuple[str, ...]):
    from newsletter import create_app

    rotated = make_settings(
        database_url=settings.database_url, smtp_port=smtp.port, instance_path=str(tmp_path / "rotated"),
        secret_key=secret_key, secret_key_fallbacks=fallbacks,
    )
    return create_app(rotated)


@pytest.fixture
def rotated_client(settings, smtp, tmp_path, redis_conn):
    """A client of the app after the key was rotated, the old key kept as a fallback."""
    app = _app_with_keys(settings, smtp, tmp_path, NEW_SECRET, (SECRET,))
    yield app.test_client()
    app.extensions["newsletter_db"].dispose()


def test_old_preferences_link_works_after_key_rotation(rotated_client, welcome):
    path = only_link(welcome.part("plain"), "/preferences/")
    page = rotated_client.get(path)
    assert page.status_code == 200
    assert EMAIL in page.get_data(as_text=True)


def test_old_unsubscribe_link_works_after_key_rotation(rotated_client, database, welcome):
    path = path_of(one_click_url(welcome.message))
    answer = rotated_client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert find_subscriber(database, EMAIL).status == "unsubscribed"


def test_old_links_fail_when_the_old_key_is_dropped(settings, smtp, tmp_path, database, welcome):
    app = _app_with_keys(settings, smtp, tmp_path, NEW_SECRET, ())
    try:
        client = app.test_client()
        unsubscribe = path_of(one_click_url(welcome.message))
        assert client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 400
        assert client.get(only_link(welcome.part("plain"), "/preferences/")).status_code == 400
    finally:
        app.extensions["newsletter_db"].dispose()
    assert find_subscriber(database, EMAIL).status == "confirmed"



# -- a signup for a known address: nothing changes until its own mail is clicked --------------

def _click(client, mail) -> None:
    """Open the confirmation link of `mail` and press its button."""
    page = client.get(only_link(mail.part("plain"), "/confirm/"))
    assert client.post(form_action(page.get_data(as_text=True))).status_code == 200


def _one_click(client, welcome) -> str:
    """Unsubscribe with the welcome mail's List-Unsubscribe; its path."""
    path = one_click_url(welcome.message).replace(BASE, "")
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    return path


def _search(database) -> tuple[str, str, str, str]:
    sub = find_subscriber(database, EMAIL)
    return sub.status, sub.keywords, sub.location, sub.language


def test_a_signup_for_a_former_reader_changes_the_search_only_through_its_own_mail(client, smtp, drain, database):
    """Anyone can type a former reader's address into the form: what they type takes effect
    only when the address's owner clicks the mail it brought."""
    _one_click(client, subscribe_confirmed(client, smtp, drain, EMAIL, keywords="Python", location="Berlin"))
    normal = signup(client, "someone@example.net")
    within_the_day = signup(client, EMAIL, keywords="Spam", location="Nirgendwo")
    drain()
    assert (within_the_day.status_code, within_the_day.get_data()) == (normal.status_code, normal.get_data())
    assert len(smtp.to(EMAIL)) == 2  # no mail: the budget; and so no change either
    assert _search(database) == ("pending", "Python", "Berlin", "de")
    time_passes(database, 1.01)
    normal = signup(client, "someone-else@example.net", language="en")
    attack = signup(client, EMAIL, keywords="Rust", location="Köln", language="en")
    assert (attack.status_code, attack.get_data()) == (normal.status_code, normal.get_data())
    drain()
    assert _search(database) == ("pending", "Python", "Berlin", "de")
    confirmation = smtp.to(EMAIL)[-1]
    assert str(confirmation.message["Subject"]).startswith("Please confirm")  # in the language asked for
    assert "Rust" not in confirmation.part("plain") and "Köln" not in confirmation.part("plain")
    _click(client, confirmation)
    assert _search(database) == ("confirmed", "Rust", "Köln", "en")


def test_an_older_confirmation_mail_confirms_what_was_asked_for_with_it(client, smtp, drain, database):
    _one_click(client, subscribe_confirmed(client, smtp, drain, EMAIL, keywords="Python", location="Berlin"))
    mails = []
    for keywords, location in (("Rust", "Köln"), ("Go", "Hamburg")):
        time_passes(database, 1.01)
        assert signup(client, EMAIL, keywords=keywords, location=location).status_code == 200
        drain()
        mails.append(smtp.to(EMAIL)[-1])
    assert mails[0] is not mails[1]
    _click(client, mails[0])
    assert _search(database) == ("confirmed", "Rust", "Köln", "de")
    # The later mail's link now says "already confirmed" and changes nothing.
    assert client.post(only_link(mails[1].part("plain"), "/confirm/")).status_code == 200
    assert _search(database) == ("confirmed", "Rust", "Köln", "de")


def test_a_link_that_names_no_mail_confirms_the_stored_search(client, smtp, drain, database):
    """Links mailed before they named their mail keep working."""
    assert signup(client, EMAIL, keywords="Python").status_code == 200
    token = URLSafeTimedSerializer([SECRET], salt=CONFIRM_SALT).dumps(find_subscriber(database, EMAIL).public_id)
    assert client.post(f"/confirm/{token}").status_code == 200
    assert _search(database) == ("confirmed", "Python", "", "de")


# -- a new subscription after an unsubscribe: old settings and data links open nothing of it ----

def test_links_of_a_former_subscription_open_nothing_of_the_next(client, smtp, drain, database):
    """Preferences and data links name the row's link generation, which a new signup after an
    unsubscribe raises: they open nothing of a subscription nobody has confirmed yet, nor of
    the one confirmed after it. The public id stays, so the consent log stays one."""
    from newsletter.subscribers import subscriptions

    welcome = subscribe_confirmed(client, smtp, drain, EMAIL, keywords="Python", location="Berlin")
    old_preferences = only_link(welcome.part("plain"), "/preferences/")
    old_data = data_link(client, smtp, drain, old_preferences, EMAIL)
    assert client.get(old_data).status_code == 200
    public_id = find_subscriber(database, EMAIL).public_id
    _one_click(client, welcome)
    time_passes(database, 1.01)
    assert signup(client, EMAIL, keywords="Rust").status_code == 200
    drain()
    confirmation = smtp.to(EMAIL)[-1]

    def old_links_open_nothing() -> None:
        before = len(smtp.to(EMAIL))
        for answer in (client.get(old_preferences),
                       client.post(old_preferences, data={"keywords": "Spam", "location": "", "language": "de"}),
                       client.post(old_preferences + "/data-link"),
                       client.get(old_data), client.get(old_data + "/data.json"),
                       client.post(old_data + "/erase", data={"confirm": "yes"})):
            assert answer.status_code == 404
            assert "Dieser Link ist nicht mehr gültig" in answer.get_data(as_text=True)
            assert "Rust" not in answer.get_data(as_text=True)
        drain()
        assert len(smtp.to(EMAIL)) == before  # no data link mailed either
        assert find_subscriber(database, EMAIL).keywords in ("Python", "Rust")

    old_links_open_nothing()
    assert find_subscriber(database, EMAIL).status == "pending"
    done = client.post(only_link(confirmation.part("plain"), "/confirm/")).get_data(as_text=True)
    page_preferences = re.search(r'href="(/preferences/[^"]+)"', done).group(1)
    assert client.get(page_preferences).status_code == 200  # the confirmation page's link is of the new generation
    drain()
    assert _search(database) == ("confirmed", "Rust", "", "de")
    old_links_open_nothing()
    assert _search(database) == ("confirmed", "Rust", "", "de")
    new_welcome = smtp.to(EMAIL)[-1]
    new_preferences = only_link(new_welcome.part("plain"), "/preferences/")
    assert new_preferences != old_preferences
    assert client.get(new_preferences).status_code == 200
    # The links mailed from now on (here by /manage) carry the new generation and open.
    assert client.post("/manage", data={"email": EMAIL}).status_code == 200
    drain()
    manage = smtp.to(EMAIL)[-1]
    assert only_link(manage.part("plain"), "/preferences/") == new_preferences
    assert client.get(only_link(manage.part("plain"), "/data/")).status_code == 200
    # One public id throughout: the consent log is one, under it.
    assert find_subscriber(database, EMAIL).public_id == public_id
    assert [e.event for e in all_rows(database, ConsentEvent, subscriber_public_id=public_id)] == [
        "signup", "confirmation_sent", "confirmed", "data_link_requested", "unsubscribed",
        "signup", "confirmation_sent", "preferences_changed", "confirmed", "manage_link_requested"]
    with database.session_scope() as session:
        log = subscriptions.export(session, subscriptions.find_by_email(session, EMAIL))["consent_log"]
    assert [e["event"] for e in log] == [
        "signup", "confirmation_sent", "confirmed", "data_link_requested", "unsubscribed",
        "signup", "confirmation_sent", "preferences_changed", "confirmed", "manage_link_requested"]
