"""One-click unsubscribe (RFC 8058) as a mailbox provider and a reader use it: POST without
cookies answers 2xx and unsubscribes, GET and HEAD only show a button, a changed token
changes nothing, mail queued before the click is not sent, and coming back means double
opt-in again (CONTRACT "HTTP", STANDARDS 1-6, 13, 29)."""

from __future__ import annotations

import re

import pytest

from newsletter.models import ConsentEvent, OutboxMessage, Suppression
from newsletter.tokens import Tokens
from tests.conftest import SECRET
from tests.helpers import (
    one_click_url,
    all_rows,
    find_subscriber,
    form_action,
    only_link,
    path_of,
    signup,
    status_counts,
    subscribe_confirmed,
    time_passes,
)

EMAIL = "anna@example.org"
ONE_CLICK = b"List-Unsubscribe=One-Click"


@pytest.fixture
def unsubscribe_path(client, smtp, drain) -> str:
    """The List-Unsubscribe path of the welcome mail of a confirmed EMAIL."""
    welcome = subscribe_confirmed(client, smtp, drain, EMAIL)
    return path_of(one_click_url(welcome.message))


@pytest.fixture
def provider(app):
    """A mailbox provider's POST: no cookies, no Origin, no Referer."""
    return app.test_client(use_cookies=False)


def _events(database, name: str) -> list[ConsentEvent]:
    sub = find_subscriber(database, EMAIL)
    return all_rows(database, ConsentEvent, subscriber_public_id=sub.public_id, event=name)


def _one_click_urlencoded(client, path: str):
    return client.post(path, data=ONE_CLICK, content_type="application/x-www-form-urlencoded")


# -- POST: one click -------------------------------------------------------------------------------

def test_urlencoded_one_click_answers_2xx_without_redirect(provider, unsubscribe_path):
    answer = _one_click_urlencoded(provider, unsubscribe_path)
    assert answer.status_code in (200, 202, 204)
    assert "Location" not in answer.headers


def test_urlencoded_one_click_unsubscribes(provider, database, unsubscribe_path):
    _one_click_urlencoded(provider, unsubscribe_path)
    sub = find_subscriber(database, EMAIL)
    assert sub.status == "unsubscribed"
    assert sub.unsubscribed_at is not None
    assert status_counts(database)["unsubscribed"] == 1
    [event] = _events(database, "unsubscribed")
    assert event.channel == "one-click"


def test_multipart_one_click_unsubscribes(provider, database, unsubscribe_path):
    answer = provider.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data")
    assert answer.status_code in (200, 202, 204)
    assert "Location" not in answer.headers
    assert find_subscriber(database, EMAIL).status == "unsubscribed"
    assert _events(database, "unsubscribed")[0].channel == "one-click"


def test_one_click_leaves_a_suppression_entry(provider, database, unsubscribe_path):
    _one_click_urlencoded(provider, unsubscribe_path)
    [entry] = all_rows(database, Suppression)
    assert (entry.email_hash, entry.reason) == (find_subscriber(database, EMAIL).email_hash, "unsubscribed")


def test_repeated_one_click_answers_2xx_and_records_once(provider, database, unsubscribe_path):
    for _ in range(3):
        assert _one_click_urlencoded(provider, unsubscribe_path).status_code in (200, 202, 204)
    assert find_subscriber(database, EMAIL).status == "unsubscribed"
    assert len(_events(database, "unsubscribed")) == 1
    assert len(all_rows(database, Suppression)) == 1


def test_one_click_sets_no_cookie(provider, unsubscribe_path):
    answer = _one_click_urlencoded(provider, unsubscribe_path)
    assert "Set-Cookie" not in answer.headers


def test_empty_post_from_the_page_button_unsubscribes_too(client, database, unsubscribe_path):
    answer = client.post(unsubscribe_path)
    assert answer.status_code == 200
    assert "Sie wurden abgemeldet" in answer.get_data(as_text=True)
    assert find_subscriber(database, EMAIL).status == "unsubscribed"
    assert _events(database, "unsubscribed")[0].channel == "web"


def test_the_optional_reason_is_recorded(client, database, unsubscribe_path):
    html = client.get(unsubscribe_path).get_data(as_text=True)
    assert client.post(form_action(html), data={"reason": "found_job"}).status_code == 200
    [event] = _events(database, "unsubscribed")
    assert event.detail == {"reason": "found_job"}


def test_a_hostile_reason_is_dropped_and_still_unsubscribes(client, database, unsubscribe_path):
    assert client.post(unsubscribe_path, data={"reason": "x\r\nBcc: a@b.c"}).status_code == 200
    assert find_subscriber(database, EMAIL).status == "unsubscribed"
    assert _events(database, "unsubscribed")[0].detail is None


def test_a_reason_typed_instead_of_chosen_is_not_kept(client, database, unsubscribe_path):
    """The withdrawal record outlives an erasure: it keeps only the page's own choices."""
    answer = client.post(unsubscribe_path, data={"reason": "Ich bin Anna Schmidt aus Quedlinburg"})
    assert answer.status_code == 200
    assert find_subscriber(database, EMAIL).status == "unsubscribed"
    assert _events(database, "unsubscribed")[0].detail is None


def test_the_record_names_our_page_not_the_mail_clients_referer(provider, database, unsubscribe_path):
    answer = provider.post(
        unsubscribe_path, data=ONE_CLICK, content_type="application/x-www-form-urlencoded",
        headers={"Referer": "https://mail.example.net/inbox/4711"},
    )
    assert answer.status_code == 200
    [event] = _events(database, "unsubscribed")
    # Named without the token (the log holds no working link), under NEWSLETTER_BASE_URL.
    assert event.form_url == "http://newsletter.test/unsubscribe/<token>"


# -- GET and HEAD: prefetching changes nothing ----------------------------------------------------------

def test_get_shows_a_page_with_one_post_button(client, unsubscribe_path):
    page = client.get(unsubscribe_path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert html.count("<form") == 1
    assert form_action(html) == unsubscribe_path
    assert html.count("<button") == 1


def test_get_and_head_change_nothing(client, smtp, drain, database, unsubscribe_path):
    for _ in range(3):
        assert client.get(unsubscribe_path).status_code == 200
        head = client.head(unsubscribe_path)
        assert head.status_code == 200
        assert head.get_data() == b""
    drain()
    assert find_subscriber(database, EMAIL).status == "confirmed"
    assert _events(database, "unsubscribed") == []
    assert all_rows(database, Suppression) == []


def test_get_after_unsubscribing_says_not_subscribed(client, unsubscribe_path):
    client.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"})
    html = client.get(unsubscribe_path).get_data(as_text=True)
    assert "Diese Adresse ist zurzeit nicht angemeldet." in html


# -- tampered tokens ----------------------------------------------------------------------------------

def _flip(token: str, index: int) -> str:
    return token[:index] + ("B" if token[index] != "B" else "C") + token[index + 1:]


@pytest.mark.parametrize(
    "variant", ["payload", "signature", "appended", "truncated", "confirm-token", "preferences-token"]
)
def test_tampered_token_answers_4xx_and_changes_nothing(provider, database, unsubscribe_path, variant):
    token = unsubscribe_path.rsplit("/", 1)[1]
    public_id = find_subscriber(database, EMAIL).public_id
    bad = {
        "payload": _flip(token, 3),
        "signature": _flip(token, len(token) - 6),
        "appended": token + "A",
        "truncated": token[:-3],
        "confirm-token": Tokens([SECRET], 3600).confirm(public_id),
        "preferences-token": Tokens([SECRET], 3600).preferences(public_id),
    }[variant]
    for answer in (
        _one_click_urlencoded(provider, f"/unsubscribe/{bad}"),
        provider.post(
            f"/unsubscribe/{bad}", data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data"
        ),
        provider.get(f"/unsubscribe/{bad}"),
        provider.head(f"/unsubscribe/{bad}"),
    ):
        assert 400 <= answer.status_code < 500
    assert find_subscriber(database, EMAIL).status == "confirmed"
    assert _events(database, "unsubscribed") == []
    assert all_rows(database, Suppression) == []


# -- mail queued before the click -------------------------------------------------------------------------

def test_welcome_mail_queued_before_unsubscribing_is_not_sent(client, provider, smtp, drain, database):
    signup(client, EMAIL)
    drain()
    [confirmation] = smtp.messages
    done = client.post(only_link(confirmation.part("plain"), "/confirm/"))
    unsubscribe = re.search(r'href="(/unsubscribe/[^"]+)"', done.get_data(as_text=True)).group(1)
    assert _one_click_urlencoded(provider, unsubscribe).status_code == 200
    drain()
    assert smtp.messages == [confirmation]
    [welcome] = all_rows(database, OutboxMessage, kind="welcome")
    assert welcome.status == "cancelled"


def test_manage_mail_queued_before_unsubscribing_is_not_sent(client, provider, smtp, drain, database, unsubscribe_path):
    before = len(smtp.messages)
    assert client.post("/manage", data={"email": EMAIL}).status_code == 200
    assert _one_click_urlencoded(provider, unsubscribe_path).status_code == 200
    drain()
    assert len(smtp.messages) == before
    [manage] = all_rows(database, OutboxMessage, kind="manage")
    assert manage.status == "cancelled"


def test_data_link_can_still_be_asked_for_after_unsubscribing(client, provider, smtp, drain, unsubscribe_path):
    # The way to one's data (export, erase) stays open after leaving the list (STANDARDS 14).
    _one_click_urlencoded(provider, unsubscribe_path)
    assert client.post("/manage", data={"email": EMAIL}).status_code == 200
    drain()
    latest = smtp.to(EMAIL)[-1]
    assert latest.message["Subject"].startswith("Ihr Link zu Ihren Daten")
    assert latest.message["List-Unsubscribe"] is None
    assert client.get(only_link(latest.part("plain"), "/data/")).status_code == 200


# -- coming back ------------------------------------------------------------------------------------------

def _as_if_signed_up_yesterday(database) -> None:
    """Move the last confirmation mail out of the 24-hour bombing window."""
    time_passes(database, 25 / 24)


def test_signup_after_unsubscribing_means_double_opt_in_again(
    client, provider, smtp, drain, database, unsubscribe_path
):
    _one_click_urlencoded(provider, unsubscribe_path)
    _as_if_signed_up_yesterday(database)
    assert signup(client, EMAIL).status_code == 200
    assert find_subscriber(database, EMAIL).status == "pending"
    drain()
    mails = smtp.to(EMAIL)
    assert [m.message["Subject"].split()[0] for m in mails] == ["Bitte", "Willkommen", "Bitte"]
    new_confirmation = mails[-1]
    assert new_confirmation.message["List-Unsubscribe"] is None
    assert client.post(only_link(new_confirmation.part("plain"), "/confirm/")).status_code == 200
    assert find_subscriber(database, EMAIL).status == "confirmed"
    assert all_rows(database, Suppression) == []


def test_signup_after_unsubscribing_answers_like_any_signup(client, provider, database, unsubscribe_path):
    fresh = signup(client, "someone-new@example.org")
    _one_click_urlencoded(provider, unsubscribe_path)
    again = signup(client, EMAIL)
    assert (again.status_code, again.get_data()) == (fresh.status_code, fresh.get_data())


def test_no_mail_to_an_unsubscribed_address_without_a_new_signup(client, provider, smtp, drain, unsubscribe_path):
    _one_click_urlencoded(provider, unsubscribe_path)
    before = len(smtp.messages)
    client.get(unsubscribe_path)
    _one_click_urlencoded(provider, unsubscribe_path)
    drain()
    assert len(smtp.messages) == before


def test_an_unsubscribe_link_from_before_a_new_signup_still_unsubscribes(
    client, provider, smtp, drain, database, settings, unsubscribe_path
):
    """Every list mail's unsubscribe link must work (RFC 8058, STANDARDS 2, 6): one still in
    the inbox from a former subscription unsubscribes the reader who signed up again, and
    no digest goes out after the click."""
    from tests.helpers import add_listing, add_reader, send_now

    _one_click_urlencoded(provider, unsubscribe_path)
    _as_if_signed_up_yesterday(database)
    assert signup(client, EMAIL).status_code == 200
    drain()
    assert client.post(only_link(smtp.to(EMAIL)[-1].part("plain"), "/confirm/")).status_code == 200
    drain()
    with database.session_scope() as session:
        add_listing(session, 1, "Python-Entwickler (m/w/d)")
        add_reader(session, "other@example.org")
    send_now(database, settings, drain)
    digest = smtp.to(EMAIL)[-1]
    assert digest.message["List-Unsubscribe"] is not None and "/confirm/" not in digest.part("plain")
    # The digest's own links are the new subscription's, and open it.
    assert client.get(only_link(digest.part("plain"), "/preferences/")).status_code == 200

    answer = _one_click_urlencoded(provider, unsubscribe_path)
    assert answer.status_code == 200
    assert find_subscriber(database, EMAIL).status == "unsubscribed"
    assert [e.channel for e in _events(database, "unsubscribed")] == ["one-click", "one-click"]
    before = len(smtp.to(EMAIL))
    with database.session_scope() as session:
        add_listing(session, 2, "Python-Entwicklerin (m/w/d)", hours_ago=0)
    send_now(database, settings, drain)
    assert len(smtp.to(EMAIL)) == before
    assert len(smtp.to("other@example.org")) == 2  # the edition did go out
