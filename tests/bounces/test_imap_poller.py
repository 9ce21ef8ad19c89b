"""The IMAP poller against a real IMAP server: a private Dovecot (tests/imap_server.py) with
TLS from a private CA. Every message is recorded before it moves to the done folder; what
could not be recorded (the database down) or not read (wrong password, untrusted
certificate, a silent server) stays in the inbox, with one log line that shows no password.
A message no poll will ever read (too large, intake failed on it) moves unread to Skipped
inside the done folder, so that no number of them keeps later bounces from being read.

Without Dovecot (.ci/install-dovecot installs it) the tests are skipped, unless
NEWSLETTER_TEST_DOVECOT=require makes that a failure."""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from newsletter.bounces.imap import MAX_MESSAGE_BYTES, poll
from newsletter.bounces.intake import process_message
from newsletter.config import ConfigError, Settings, validate
from newsletter.db import Database
from newsletter.mail.compose import mailto_address, verp_sender
from newsletter.tokens import tokens_for
from tests.conftest import make_settings
from tests.helpers import add_reader, find_subscriber, status_counts
from tests.imap_server import DovecotServer
from tests.smtp_sink import free_port

PASSWORD = "pw-Geheim#42%"  # a '#' and '%' that the URL must carry percent-encoded
URL_PASSWORD = "pw-Geheim%2342%25"

DSN = b"""\
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: bounces+abc123.1@jobs.example.org
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-1@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

The mail could not be delivered.
--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; leser@dead.example
Action: failed
Status: 5.1.1

--b1--
""".replace(b"\n", b"\r\n")

OUT_OF_OFFICE = b"""\
From: Erika <erika@example.net>
To: bounces+abc123.1@jobs.example.org
Subject: Abwesenheitsnotiz
Auto-Submitted: auto-replied
Message-ID: <ooo-1@example.net>

Ich bin bis Montag nicht im Buero.
""".replace(b"\n", b"\r\n")

UNSUBSCRIBE = b"""\
From: leser@example.net
To: bounces+abc123@jobs.example.org
Subject: unsubscribe
Message-ID: <unsub-1@example.net>

""".replace(b"\n", b"\r\n")

MESSAGES = (DSN, OUT_OF_OFFICE, UNSUBSCRIBE)


@pytest.fixture
def dovecot(request: pytest.FixtureRequest) -> Iterator[DovecotServer]:
    """A Dovecot of the test's own; `indirect` parameters name capabilities it lacks."""
    server = DovecotServer(PASSWORD, without=getattr(request, "param", ())).start()
    yield server
    server.stop()


def imap_settings(settings: Settings, server: DovecotServer, **changes: str) -> Settings:
    return validate(replace(settings, bounce_imap_url=server.url(password=URL_PASSWORD), **changes))


def deliver_all(server: DovecotServer) -> None:
    for raw in MESSAGES:
        server.deliver(raw)


def logins_seen(server: DovecotServer) -> int:
    """Logins in Dovecot's own log (its log process writes a moment after the fact)."""
    time.sleep(0.5)
    return server.log().count(" Login: ")


def texts(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


# -- the normal course -----------------------------------------------------------------------

def returned_mail(settings: Settings, database: Database) -> list[bytes]:
    """The three kinds of mail the bounce mailbox gets, for two readers of ours: a DSN to
    one's VERP address, an out-of-office answering it, a mail to the other's List-Unsubscribe
    mailto: address."""
    with database.session_scope() as session:
        add_reader(session, "leser@dead.example")
        add_reader(session, "geht@example.net")
    bouncing = find_subscriber(database, "leser@dead.example").public_id
    leaving = find_subscriber(database, "geht@example.net").public_id
    verp = verp_sender(settings, tokens_for(settings).verp_tag(bouncing)).encode()  # the tag we sign
    mailto = mailto_address(settings, tokens_for(settings).mailto_unsubscribe(leaving))
    assert mailto is not None
    return [DSN.replace(b"bounces+abc123.1@jobs.example.org", verp),
            OUT_OF_OFFICE.replace(b"bounces+abc123.1@jobs.example.org", verp),
            UNSUBSCRIBE.replace(b"bounces+abc123@jobs.example.org", mailto.encode())]


@pytest.mark.parametrize("dovecot", [(), ("MOVE",), ("MOVE", "UIDPLUS")], indirect=True,
                         ids=["move", "copy-uidplus", "copy-expunge"])
def test_poll_records_and_moves_every_message(dovecot: DovecotServer, settings: Settings,
                                              database: Database) -> None:
    """With MOVE, and on servers without it (COPY, \\Deleted, UID EXPUNGE or EXPUNGE):
    the bounce, the auto-reply and the unsubscribe each do what they mean, and every
    message ends up in the done folder byte for byte, none in the inbox; the second poll
    finds nothing to do."""
    mails = returned_mail(settings, database)
    for raw in mails:
        dovecot.deliver(raw)
    configured = imap_settings(settings, dovecot)

    counts = poll(configured, database, context=dovecot.client_context())

    assert counts == Counter(bounced=1, ignored=1, unsubscribed=1)
    stats = status_counts(database)
    assert (stats["bounced"], stats["unsubscribed"]) == (1, 1), stats
    assert dovecot.messages("INBOX") == []
    assert sorted(dovecot.messages("Processed")) == sorted(mails)
    assert poll(configured, database, context=dovecot.client_context()) == Counter()
    assert len(dovecot.messages("Processed")) == 3


def test_a_message_recorded_by_a_poll_that_died_before_moving_it(dovecot: DovecotServer, settings: Settings,
                                                                  database: Database) -> None:
    """A poll that stopped between recording a message and moving it (the worker killed):
    the next poll reads it again, which changes nothing, and moves it."""
    [dsn, *_] = returned_mail(settings, database)
    dovecot.deliver(dsn)
    configured = imap_settings(settings, dovecot)
    assert process_message(database, configured, dsn) == "bounced"  # what the dead poll did

    assert poll(configured, database, context=dovecot.client_context()) == Counter(already=1)

    assert dovecot.messages("Processed") == [dsn]
    assert status_counts(database)["bounced"] == 1


def test_poll_over_starttls_into_a_non_ascii_folder(dovecot: DovecotServer, settings: Settings,
                                                    database: Database) -> None:
    """imap:// speaks STARTTLS; a done folder named in German is created under that name
    (IMAP's modified UTF-7 on the wire)."""
    deliver_all(dovecot)
    configured = validate(replace(settings, bounce_imap_url=dovecot.url(password=URL_PASSWORD, starttls=True),
                                  bounce_imap_done_folder="Rückläufer erledigt"))

    counts = poll(configured, database, context=dovecot.client_context())

    assert counts == Counter(ignored=3)  # no reader of ours is named in them
    assert "Rückläufer erledigt" in dovecot.folders()
    assert len(dovecot.messages("R&APw-ckl&AOQ-ufer erledigt")) == 3
    assert dovecot.messages("INBOX") == []


def test_limit_takes_the_oldest_first(dovecot: DovecotServer, settings: Settings, database: Database) -> None:
    deliver_all(dovecot)
    configured = imap_settings(settings, dovecot)

    assert sum(poll(configured, database, limit=2, context=dovecot.client_context()).values()) == 2

    assert dovecot.messages("INBOX") == [UNSUBSCRIBE]


def oversized(n: int) -> bytes:
    line = b"x" * 998 + b"\r\n"
    return (b"From: a@example.net\r\nSubject: huge %d\r\n\r\n" % n) + line * (MAX_MESSAGE_BYTES // len(line) + 10)


def test_oversized_messages_are_moved_unread_and_block_no_bounce(dovecot: DovecotServer, settings: Settings,
                                                                 database: Database,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Messages too large to be bounces, as many as a poll takes: they go to Skipped in the
    done folder, so the DSN after them is read by the next poll at the latest (left in the
    inbox they took up the limit at every poll, and the DSN was never read)."""
    huge = [oversized(1), oversized(2)]
    for raw in huge:
        dovecot.deliver(raw)
    dovecot.deliver(DSN)
    configured = imap_settings(settings, dovecot)

    with caplog.at_level(logging.WARNING, logger="newsletter.bounces.imap"):
        counts = poll(configured, database, limit=2, context=dovecot.client_context())
        if not dovecot.messages("Processed"):
            counts += poll(configured, database, limit=2, context=dovecot.client_context())

    assert counts == Counter(skipped=2, ignored=1)
    assert dovecot.messages("Processed") == [DSN]
    assert dovecot.messages("INBOX") == []
    assert "Processed/Skipped" in dovecot.folders()
    assert dovecot.messages("Processed/Skipped") == huge  # unread, byte for byte
    logged = texts(caplog)
    assert f"message UID 1 ({len(huge[0])} bytes) is larger than any bounce" in logged
    assert "moved unread to 'Processed/Skipped'" in logged
    assert "huge" not in logged and "xxxx" not in logged  # no content


def test_a_message_intake_fails_on_is_moved_unread_and_the_rest_go_on(dovecot: DovecotServer, settings: Settings,
                                                                      database: Database,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A fault that cannot be made for real (intake raises only database errors; this would be
    a bug in it): process_message replaced by one that fails on the out-of-office. That
    message goes to Skipped; the log names its UID, its size and the error's type, not the
    error's text, which could quote the message."""
    deliver_all(dovecot)
    configured = imap_settings(settings, dovecot)

    def failing_on_the_auto_reply(database: Database, settings: Settings, raw: bytes) -> str:
        if b"Abwesenheitsnotiz" in raw:
            raise ValueError("cannot read Abwesenheitsnotiz of leser@dead.example")
        return process_message(database, settings, raw)

    monkeypatch.setattr("newsletter.bounces.imap.process_message", failing_on_the_auto_reply)
    with caplog.at_level(logging.WARNING, logger="newsletter.bounces.imap"):
        counts = poll(configured, database, context=dovecot.client_context())

    assert counts == Counter(ignored=2, skipped=1)  # the DSN and unsubscribe name no reader of ours
    assert dovecot.messages("INBOX") == []
    assert dovecot.messages("Processed/Skipped") == [OUT_OF_OFFICE]
    assert dovecot.messages("Processed") == [DSN, UNSUBSCRIBE]
    logged = texts(caplog)
    assert f"message UID 2 ({len(OUT_OF_OFFICE)} bytes) could not be processed (ValueError)" in logged
    assert "Abwesenheitsnotiz" not in logged and "leser@" not in logged
    assert all(record.exc_info is None for record in caplog.records)


# -- what goes wrong leaves the messages where they are ---------------------------------------

def test_database_down_leaves_every_message_in_the_inbox(dovecot: DovecotServer, tmp_path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    deliver_all(dovecot)
    nowhere = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/newsletter"
    configured = make_settings(database_url=nowhere, instance_path=str(tmp_path / "instance"),
                               bounce_imap_url=dovecot.url(password=URL_PASSWORD))
    database = Database(nowhere, connect_args={"connect_timeout": 3})
    try:
        with caplog.at_level(logging.ERROR, logger="newsletter.bounces.imap"):
            counts = poll(configured, database, context=dovecot.client_context())
    finally:
        database.dispose()

    assert counts == Counter()
    assert sorted(dovecot.messages("INBOX")) == sorted(MESSAGES)
    assert dovecot.messages("Processed") == []
    assert "the database failed" in texts(caplog)


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[tuple[Settings, Database]]:
    """Settings and a database for polls that stop before any message is read: one run,
    not one per backend (the SQLite file is never opened)."""
    url = f"sqlite:///{tmp_path / 'never-opened.db'}"
    database = Database(url)
    yield make_settings(database_url=url, instance_path=str(tmp_path / "instance")), database
    database.dispose()


def test_wrong_password_is_one_log_line_without_it(dovecot: DovecotServer, offline: tuple[Settings, Database],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    settings, database = offline
    deliver_all(dovecot)
    configured = validate(replace(settings, bounce_imap_url=dovecot.url(password="Falsch-pw-%23")))

    with caplog.at_level(logging.DEBUG):
        counts = poll(configured, database, context=dovecot.client_context())

    assert counts == Counter()
    assert "login as 'bounces' refused" in texts(caplog)
    assert "imaps://bounces:***@127.0.0.1" in texts(caplog)
    for record in caplog.records:
        shown = record.getMessage() + str(record.exc_text or "")
        assert "Falsch-pw" not in shown and "Geheim" not in shown
    assert len(dovecot.messages("INBOX")) == 3


def test_untrusted_certificate_sends_no_password(dovecot: DovecotServer, offline: tuple[Settings, Database],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Without a context the system's CA store decides, which does not know the test CA:
    the poll stops before LOGIN."""
    settings, database = offline
    deliver_all(dovecot)
    logins = logins_seen(dovecot)

    with caplog.at_level(logging.ERROR, logger="newsletter.bounces.imap"):
        counts = poll(imap_settings(settings, dovecot), database)

    assert counts == Counter()
    assert "CERTIFICATE_VERIFY_FAILED" in texts(caplog)
    assert logins_seen(dovecot) == logins
    assert len(dovecot.messages("INBOX")) == 3


def test_server_without_starttls_never_gets_the_password(offline: tuple[Settings, Database],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    settings, database = offline
    server = DovecotServer(PASSWORD, tls=False).start()
    try:
        server.deliver(DSN)
        logins = logins_seen(server)
        url = server.url(password=URL_PASSWORD, starttls=True)
        with caplog.at_level(logging.ERROR, logger="newsletter.bounces.imap"):
            counts = poll(validate(replace(settings, bounce_imap_url=url)), database)
        assert counts == Counter()
        assert "offers no STARTTLS" in texts(caplog)
        assert logins_seen(server) == logins
        assert server.messages("INBOX") == [DSN]
    finally:
        server.stop()


def test_a_silent_server_times_out(offline: tuple[Settings, Database],
                                   caplog: pytest.LogCaptureFixture) -> None:
    """A port that accepts the connection and never says a word (a hung server)."""
    settings, database = offline
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"imaps://u:{URL_PASSWORD}@127.0.0.1:{listener.getsockname()[1]}/"
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="newsletter.bounces.imap"):
            counts = poll(validate(replace(settings, bounce_imap_url=url)), database, timeout=1.0)
    assert counts == Counter()
    assert time.monotonic() - started < 10
    assert "timed out" in texts(caplog)


def test_nothing_configured_does_nothing(offline: tuple[Settings, Database]) -> None:
    settings, database = offline
    assert settings.bounce_imap_url == ""
    assert poll(settings, database) == Counter()


# -- NEWSLETTER_BOUNCE_IMAP_URL ----------------------------------------------------------------

@pytest.mark.parametrize(("url", "expected"), [
    ("https://u:Secret1@mail.example.org/", "expected imaps://"),
    ("pop3s://u:Secret1@mail.example.org/", "expected imaps://"),
    ("mail.example.org", "expected imaps://"),
    ("imaps://mail.example.org/INBOX", "user and password"),
    ("imaps://u@mail.example.org/INBOX", "user and password"),
    ("imaps://u:Secret1@mail.example.org:99999/", "port"),
    ("imaps://u:Secret1@mail.example.org:x1/", "port"),
    ("imaps://u:Sec?ret1@mail.example.org/", "percent-encode"),
    ("imaps://u:Sec%C3%A4ret1@mail.example.org/", "ASCII"),
    ("imaps://u:Secret1@/INBOX", "no host"),
])
def test_bad_imap_urls_are_refused_naming_the_variable(url: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_settings(bounce_imap_url=url)
    message = str(error.value)
    assert message.startswith("NEWSLETTER_BOUNCE_IMAP_URL: ") and expected in message, message
    assert "Secret1" not in message and "Sec?ret1" not in message


def test_done_folder_must_differ_from_the_one_read() -> None:
    with pytest.raises(ConfigError, match="^NEWSLETTER_BOUNCE_IMAP_DONE_FOLDER: must differ"):
        make_settings(bounce_imap_url="imaps://u:p@mail.example.org/", bounce_imap_done_folder="inbox")
    with pytest.raises(ConfigError, match="^NEWSLETTER_BOUNCE_IMAP_DONE_FOLDER: expected a folder"):
        make_settings(bounce_imap_url="imaps://u:p@mail.example.org/", bounce_imap_done_folder=" ")
    with pytest.raises(ConfigError, match="^NEWSLETTER_BOUNCE_IMAP_DONE_FOLDER: expected a folder"):
        make_settings(bounce_imap_url="imaps://u:p@mail.example.org/", bounce_imap_done_folder="Done*")


def test_imap_url_forms_that_are_accepted() -> None:
    """There is no form without TLS: imap:// is STARTTLS, whatever the host (the poll
    refuses a server that does not offer it, test above)."""
    from newsletter.config import parse_imap_url

    remote = parse_imap_url("imap://bounce%40jobs.example.org:p%2Fw@mail.example.org/Bounces%20In")
    assert (remote.starttls, remote.port, remote.user, remote.password, remote.folder) == (
        True, 143, "bounce@jobs.example.org", "p/w", "Bounces In")
    tls = parse_imap_url("imaps://u:p@[::1]:1993")
    assert (tls.starttls, tls.host, tls.port, tls.folder) == (False, "::1", 1993, "INBOX")
    assert "p/w" not in repr(remote)
    assert make_settings(bounce_imap_url="imaps://u:p@mail.example.org/").bounce_imap_url


def test_private_ca_of_an_operator_through_ssl_cert_file(dovecot: DovecotServer, settings: Settings,
                                                         database: Database, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """What the module's docstring tells an operator whose IMAP server has a certificate
    from a private CA: OpenSSL's SSL_CERT_FILE, no setting of ours."""
    deliver_all(dovecot)
    ca_file = tmp_path / "ca.pem"
    dovecot.ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))

    assert sum(poll(imap_settings(settings, dovecot), database).values()) == 3
    assert dovecot.messages("INBOX") == []
