"""The SMTP transport against real servers: STARTTLS, implicit TLS, AUTH, and what each
kind of reply means."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from newsletter.mail.transport import (
    BounceError,
    PolicyError,
    SmtpTransport,
    TemporaryError,
    UnsendableError,
    classify,
)
from tests.conftest import make_settings
from tests.smtp_sink import Handler, free_port

MESSAGE = b"From: a@jobs.example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


def _server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return context


def _authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    accounts = {b"relay-user": b"s3cret", "büro".encode(): "Passwört-€".encode()}  # RFC 4616: UTF-8
    ok = isinstance(auth_data, LoginPassword) and accounts.get(auth_data.login) == auth_data.password
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture
def secure_relay(ca, request) -> Iterator[tuple[Handler, int, str]]:  # type: ignore[no-untyped-def]
    mode = request.param
    handler = Handler()
    port = free_port()
    context = _server_context(ca[0])
    # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; implicit TLS is TLS anyway.
    options = {"authenticator": _authenticator, "auth_require_tls": mode == "starttls"}
    if mode == "starttls":
        controller = Controller(handler, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True, **options)
    else:
        controller = Controller(handler, hostname="127.0.0.1", port=port, ssl_context=context, **options)
    controller.start()
    yield handler, port, mode
    controller.stop()


def _relay_settings(port: int, mode: str, ca, username: str, password: str):  # type: ignore[no-untyped-def]
    return make_settings(smtp_port=port, smtp_security=mode, smtp_username=username, smtp_password=password,
                         smtp_ca_file=str(ca[1]), smtp_timeout_seconds=5)


@pytest.mark.parametrize("secure_relay", ["starttls", "tls"], indirect=True)
def test_secured_and_authenticated_relay_accepts_mail(secure_relay, ca):
    handler, port, mode = secure_relay
    with SmtpTransport(_relay_settings(port, mode, ca, "relay-user", "s3cret")) as transport:
        transport.send("bounces+x@jobs.example.org", "b@example.org", MESSAGE)
        transport.send("bounces+y@jobs.example.org", "c@example.org", MESSAGE)  # same connection
    assert [m.rcpt_tos for m in handler.messages] == [["b@example.org"], ["c@example.org"]]


@pytest.mark.parametrize("secure_relay", ["starttls", "tls"], indirect=True)
def test_a_user_name_and_password_that_are_not_ascii_log_in(secure_relay, ca):
    """smtplib sends credentials as ASCII only (a UnicodeEncodeError out of login); AUTH
    PLAIN carries UTF-8 (RFC 4616), and passwords with umlauts are common."""
    handler, port, mode = secure_relay
    with SmtpTransport(_relay_settings(port, mode, ca, "büro", "Passwört-€")) as transport:
        transport.send("bounces+x@jobs.example.org", "b@example.org", MESSAGE)
    assert [m.rcpt_tos for m in handler.messages] == [["b@example.org"]]


@pytest.mark.parametrize("secure_relay", ["starttls"], indirect=True)
@pytest.mark.parametrize("username, password", [("relay-user", "wrong"), ("büro", "Passwort-€")])
def test_wrong_password_is_an_operator_problem(secure_relay, ca, username, password):
    _, port, mode = secure_relay
    with pytest.raises(PolicyError, match="AUTH"), SmtpTransport(_relay_settings(port, mode, ca, username, password)) as transport:
        transport.send("bounces@jobs.example.org", "b@example.org", MESSAGE)


@pytest.mark.parametrize("secure_relay", ["tls"], indirect=True)
def test_untrusted_certificate_is_not_accepted(secure_relay):
    _, port, mode = secure_relay
    settings = make_settings(smtp_port=port, smtp_security=mode, smtp_timeout_seconds=5)
    with pytest.raises(TemporaryError, match="cannot reach"), SmtpTransport(settings) as transport:
        transport.send("bounces@jobs.example.org", "b@example.org", MESSAGE)


def test_starttls_required_but_not_offered_is_refused(smtp):
    settings = make_settings(smtp_port=smtp.port, smtp_security="starttls", smtp_timeout_seconds=5)
    with pytest.raises(PolicyError, match="STARTTLS"), SmtpTransport(settings) as transport:
        transport.send("bounces@jobs.example.org", "b@example.org", MESSAGE)
    assert smtp.messages == []


@pytest.mark.parametrize(
    "code, text, expected",
    [
        (451, "4.7.1 greylisted", TemporaryError),
        (421, "4.4.2 closing", TemporaryError),
        (550, "5.1.1 no such user", BounceError),
        (552, "5.2.2 mailbox full", BounceError),
        (550, "5.7.1 rejected by DMARC policy", PolicyError),
        (554, "5.7.26 unauthenticated sender", PolicyError),
    ],
)
def test_reply_classification(code, text, expected):
    assert type(classify(code, text)) is expected


def test_a_refused_sender_is_never_the_readers_bounce():
    assert type(classify(553, "sender address rejected", sender_side=True)) is PolicyError


def test_data_refusal_after_accepted_recipient(smtp):
    smtp.handler.data_reply = lambda envelope: "554 5.6.0 message content rejected"
    settings = replace(make_settings(smtp_port=smtp.port))
    with pytest.raises(BounceError), SmtpTransport(settings) as transport:
        transport.send("bounces@jobs.example.org", "b@example.org", MESSAGE)


def test_utf8_needed_but_not_requested_is_unsendable_and_the_connection_stays_usable(smtp):
    settings = make_settings(smtp_port=smtp.port)
    with SmtpTransport(settings) as transport:
        with pytest.raises(UnsendableError, match="SMTPUTF8"):
            transport.send("bounces@jobs.example.org", "jörg@example.org", MESSAGE, utf8=False)
        transport.send("bounces@jobs.example.org", "b@example.org", MESSAGE)
    assert [m.rcpt_tos for m in smtp.messages] == [["b@example.org"]]
