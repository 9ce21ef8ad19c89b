"""Small hardenings: a token is accepted only in its one canonical spelling, the demo's
/dev/inbox never redirects to an address built from the Host header, and a chunked body
over MAX_CONTENT_LENGTH answers 413 like the same body sent with a Content-Length; JSON
nested deeper than the parser goes answers 400."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from itsdangerous.encoding import base64_decode
from werkzeug.serving import make_server

from newsletter import create_app
from newsletter.models import ConsentEvent, Suppression
from newsletter.tokens import TokenExpired, TokenInvalid, Tokens
from tests.conftest import SECRET, replace
from tests.helpers import (
    one_click_url,
    all_rows,
    find_subscriber,
    only_link,
    path_of,
    signup,
    status_counts,
    subscribe_confirmed,
)

EMAIL = "anna@example.org"
OLD_SECRET = "retired-secret-key-abcdefghijklmnopqrstuvwxyz0123456789"
LIMIT = 64 * 1024  # the app's MAX_CONTENT_LENGTH
INVALID = "Dieser Link ist ungültig"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# -- tokens: one spelling only ---------------------------------------------------------------------

def _signature(token: str) -> str:
    return token.rsplit(".", 1)[1]


def _low_bits_variant(token: str) -> str:
    """The token with its last character swapped for one that differs only in the bits that
    base64 drops: the same signature bytes, spelt differently."""
    sig = _signature(token)
    for char in _ALPHABET:
        if char != sig[-1] and base64_decode(sig[:-1] + char) == base64_decode(sig):
            return token[:-1] + char
    raise AssertionError(f"the signature {sig!r} has no unused low bits")


def _variants(token: str) -> dict[str, str]:
    """Other spellings of `token` whose signature decodes to the same bytes."""
    found = {"low-bits": _low_bits_variant(token), "padded": token + "=", "non-ascii": token + "é"}
    for variant in found.values():
        assert variant != token
        assert base64_decode(_signature(variant)) == base64_decode(_signature(token))
    return found


def _token(path: str) -> str:
    return path.rsplit("/", 1)[1]


def _events(database, name: str) -> list[ConsentEvent]:
    sub = find_subscriber(database, EMAIL)
    return all_rows(database, ConsentEvent, subscriber_public_id=sub.public_id, event=name)


@pytest.mark.parametrize("variant", ["low-bits", "padded", "non-ascii"])
def test_confirm_token_in_another_spelling_answers_4xx_and_changes_nothing(
    client, smtp, drain, database, variant
):
    assert signup(client, EMAIL, keywords="Python").status_code == 200
    drain()
    [mail] = smtp.to(EMAIL)
    path = only_link(mail.part("plain"), "/confirm/")
    bad = _variants(_token(path))[variant]
    for method in (client.get, client.post):
        answer = method(f"/confirm/{bad}")
        assert 400 <= answer.status_code < 500, (method, answer.status_code)
        assert INVALID in answer.get_data(as_text=True)
    drain()
    assert find_subscriber(database, EMAIL).status == "pending"
    assert _events(database, "confirmed") == []
    assert len(smtp.messages) == 1
    assert client.post(path).status_code == 200  # the mailed spelling still confirms


@pytest.mark.parametrize("variant", ["low-bits", "padded", "non-ascii"])
def test_unsubscribe_token_in_another_spelling_answers_4xx_and_changes_nothing(
    app, client, smtp, drain, database, variant
):
    welcome = subscribe_confirmed(client, smtp, drain, EMAIL)
    path = path_of(one_click_url(welcome.message))
    bad = f"/unsubscribe/{_variants(_token(path))[variant]}"
    provider = app.test_client(use_cookies=False)
    for answer in (
        provider.post(
            bad, data=b"List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
        ),
        provider.post(
            bad, data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data"
        ),
        client.post(bad, data={"reason": "too-many"}),
        provider.get(bad),
        provider.head(bad),
    ):
        assert 400 <= answer.status_code < 500, answer.status_code
    assert find_subscriber(database, EMAIL).status == "confirmed"
    assert _events(database, "unsubscribed") == []
    assert all_rows(database, Suppression) == []


@pytest.mark.parametrize("variant", ["low-bits", "padded", "non-ascii"])
def test_preferences_token_in_another_spelling_answers_4xx_and_changes_nothing(
    client, smtp, drain, database, variant
):
    welcome = subscribe_confirmed(client, smtp, drain, EMAIL, keywords="Python", location="Berlin")
    path = only_link(welcome.part("plain"), "/preferences/")
    bad = f"/preferences/{_variants(_token(path))[variant]}"
    for answer in (
        client.get(bad),
        client.post(bad, data={"keywords": "Rust", "location": "Köln"}),
        client.post(bad + "/data-link"),
    ):
        assert 400 <= answer.status_code < 500, answer.status_code
        assert INVALID in answer.get_data(as_text=True)
    sub = find_subscriber(database, EMAIL)
    assert (sub.status, sub.keywords, sub.location) == ("confirmed", "Python", "Berlin")
    assert _events(database, "preferences_changed") == []
    assert status_counts(database).get("confirmed") == 1


def test_only_the_canonical_spelling_verifies_also_under_a_fallback_key_and_when_expired():
    public_id = "AbCdEfGhIjKlMnOp"
    old, rotated = Tokens([OLD_SECRET], 3600), Tokens([OLD_SECRET, SECRET], 3600)
    for make, read in (("confirm", "read_confirm"), ("unsubscribe", "read_unsubscribe"),
                       ("preferences", "read_preferences")):
        token = getattr(old, make)(public_id)
        named = getattr(rotated, read)(token)
        # Key rotation keeps old links working; a confirmation link names its mail too, a
        # preferences link its link generation.
        assert (named if make == "unsubscribe" else named[0]) == public_id
        for bad in _variants(token).values():
            with pytest.raises(TokenInvalid):
                getattr(rotated, read)(bad)
    # An expired link spelt differently is invalid, as an expired and tampered one is.
    token = Tokens([SECRET], 3600).confirm(public_id)
    with pytest.raises(TokenExpired):
        Tokens([SECRET], -1).read_confirm(token)
    with pytest.raises(TokenInvalid):
        Tokens([SECRET], -1).read_confirm(_low_bits_variant(token))


# -- /dev/inbox without the slash ---------------------------------------------------------------------

@pytest.fixture
def demo_client(settings, redis_conn) -> Iterator[Any]:
    application = create_app(replace(settings, demo=True))
    yield application.test_client()
    application.extensions["newsletter_db"].dispose()


def test_inbox_without_slash_never_redirects_to_the_host_header(demo_client, database):
    for kwargs in ({"headers": {"Host": "evil.example"}}, {"base_url": "http://evil.example"}):
        answer = demo_client.get("/dev/inbox", **kwargs)
        assert "evil.example" not in answer.headers.get("Location", "")
        assert answer.status_code == 200, answer.headers
        assert "No mail yet" in answer.get_data(as_text=True)


def test_the_demos_send_button_pressed_again_while_an_edition_sends_says_so(demo_client, database):
    """One edition at a time: the second press is refused with the reason, not a 500."""
    from newsletter.models import Listing, Subscriber, email_hash, utcnow

    with database.session_scope() as session:
        session.add(Listing(external_id="d-1", title="Koch (m/w/d)", url="https://jobs.example.org/d-1",
                            published_at=utcnow()))
        session.add(Subscriber(email="d@example.org", email_hash=email_hash("d@example.org"), status="confirmed"))
    assert demo_client.post("/dev/inbox/send-edition").status_code == 303
    again = demo_client.post("/dev/inbox/send-edition")
    assert again.status_code == 409
    assert "edition 1 is still sending" in again.get_data(as_text=True)


# -- a chunked body over MAX_CONTENT_LENGTH --------------------------------------------------------

@pytest.fixture
def server(app) -> Iterator[int]:
    """The app behind Werkzeug's own HTTP server, which decodes chunked bodies (and so sets
    wsgi.input_terminated, as gunicorn does); the test client cannot send one."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_port
    httpd.shutdown()
    thread.join(10)
    httpd.server_close()


def _post(
    port: int, path: str, body: bytes, headers: dict[str, str], chunked: bool
) -> tuple[int, str, bytes]:
    """POST `body` over a raw socket, chunked or with Content-Length; (status, type, body).
    A second thread sends, so that an early answer is read while the body is still going out."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{framing}\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"

    def send() -> None:
        try:
            sock.sendall(head.encode())
            step = 256 * 1024
            for start in range(0, len(body), step):
                piece = body[start:start + step]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed before the whole body was sent

    sender = threading.Thread(target=send)
    sender.start()
    try:
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        sender.join(60)
        sock.close()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
FORM_JSON = {**FORM, "Accept": "application/json"}


def _form(size: int) -> bytes:
    head = b"email=anna%40example.org&keywords="
    return head + b"x" * (size - len(head))


@pytest.mark.parametrize("size", [LIMIT + 1, 20 * 1024 * 1024])
@pytest.mark.parametrize("headers", [FORM, FORM_JSON], ids=["html", "json"])
def test_chunked_body_over_the_limit_answers_413_like_with_content_length(
    server, database, size, headers
):
    body = _form(size)
    chunked = _post(server, "/subscribe", body, headers, chunked=True)
    declared = _post(server, "/subscribe", body, headers, chunked=False)
    assert declared[0] == 413
    assert chunked == declared
    text = chunked[2].decode()
    if "Accept" in headers:
        assert json.loads(text) == {"error": "The request is too large."}  # JSON speaks English
    else:
        assert chunked[1].startswith("text/html") and "Die Anfrage ist zu groß." in text
    assert status_counts(database).get("pending", 0) == 0


def test_chunked_bodies_up_to_the_limit_are_read_whole(server, database):
    # At exactly the limit the body is read in full and judged on its content (keywords too long).
    at_limit = _post(server, "/subscribe", _form(LIMIT), FORM_JSON, chunked=True)
    assert at_limit == _post(server, "/subscribe", _form(LIMIT), FORM_JSON, chunked=False)
    assert at_limit[0] == 400 and json.loads(at_limit[2])["field"] == "keywords"
    small = _post(server, "/subscribe", b"email=anna%40example.org&keywords=Python", FORM, chunked=True)
    assert small[0] == 200
    assert find_subscriber(database, EMAIL).keywords == "Python"


def test_chunked_api_upload_keeps_the_api_limit_of_a_few_mb(server, database):
    from newsletter.operators import api_tokens

    with database.session_scope() as session:
        secret = api_tokens.create(session, "jobboard").secret
    rows = [
        {
            "id": f"job-{n}", "title": f"Pflegefachkraft {n}",
            "url": f"https://jobs.example.org/stellen/job-{n}",
            "published_at": "2026-11-20T09:30:00+01:00",
            "description": "Wir suchen Verstärkung. " * 80,
        }
        for n in range(100)
    ]
    payload = json.dumps(rows).encode()
    assert LIMIT < len(payload) < 4 * 1024 * 1024
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}
    status, _, answer = _post(server, "/api/v1/listings", payload, headers, chunked=True)
    assert status == 200, answer
    assert json.loads(answer)["added"] == 100


# -- JSON nested deeper than the parser goes ---------------------------------------------------------

DEEP = '{"email": "deep@example.org", "keywords": ' + "[" * 5_000 + "]" * 5_000 + "}"


def test_deeply_nested_json_answers_400_not_500(client, database):
    answer = client.post("/subscribe", data=DEEP, content_type="application/json",
                         headers={"Accept": "application/json"})
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "body"
    assert find_subscriber(database, "deep@example.org") is None


def test_deeply_nested_json_to_the_api_answers_400(client, database):
    from newsletter.operators import api_tokens

    with database.session_scope() as session:
        secret = api_tokens.create(session, "deep").secret
    answer = client.post("/api/v1/listings", data="[" * 5_000 + "]" * 5_000,
                         content_type="application/json", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "body"


def test_json_errors_speak_english_whatever_the_page_language(client):
    """A program reads them; before, a 413 came in German and a 400 in English."""
    german = {"Accept": "application/json", "Accept-Language": "de"}
    too_large = client.post("/subscribe", json={"email": "a@example.org", "keywords": "x" * 70_000}, headers=german)
    bad = client.post("/subscribe", json={"email": "nope"}, headers=german)
    assert too_large.status_code == 413 and too_large.get_json()["error"] == "The request is too large."
    assert bad.status_code == 400 and bad.get_json()["error"].startswith("email:")
    page = client.post("/subscribe", data={"email": "a@example.org", "keywords": "x" * 70_000},
                       headers={"Accept-Language": "de"})
    assert page.status_code == 413 and "zu groß" in page.get_data(as_text=True)


@pytest.mark.parametrize(("salt", "route", "payload"), [
    # An outbox id no INTEGER column holds failed the lookup (OverflowError, "out of range").
    ("newsletter.confirm.v1", "/confirm/", ["AbCdEfGhIjKlMnOp", 10**40]),
    ("newsletter.confirm.v1", "/confirm/", ["AbCdEfGhIjKlMnOp", 0]),
    # A NUL in a public id failed the lookup on PostgreSQL ("cannot contain NUL").
    ("newsletter.unsubscribe.v1", "/unsubscribe/", "abcdefgh\x00ij"),
    ("newsletter.preferences.v1", "/preferences/", "abcdefgh ij/k"),
])
def test_a_signed_token_holding_what_no_row_can_have_answers_400_not_500(client, salt, route, payload):
    # Only the key's holder can sign these: the point is a 4xx where a bug could leave one.
    from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer

    kind = URLSafeTimedSerializer if "confirm" in salt else URLSafeSerializer
    token = kind([SECRET], salt=salt).dumps(payload)
    for answer in (client.get(route + token), client.post(route + token)):
        assert answer.status_code == 400, answer.status_code
        assert INVALID in answer.get_data(as_text=True)
