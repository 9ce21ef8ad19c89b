"""`newsletter doctor`, run as a real process against real services: the test's own relay
(aiosmtpd with STARTTLS from a trustme CA and AUTH), the run's Redis, SQLite and PostgreSQL,
a DNS server of the test's own, and the Flask app served over HTTP on 127.0.0.1. Also the
production refusal of a DKIM domain that does not align with the From domain."""

from __future__ import annotations

import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dkim
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from newsletter.config import ConfigError, aligned, load_settings
from newsletter.migrate import upgrade
from newsletter.operators import doctor
from tests.cli.test_dns_records import DnsServer
from tests.conftest import PG_ADMIN_URL, env_for
from tests.helpers import PRODUCTION, DkimKey
from tests.smtp_sink import Handler, free_port

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
USER, PASSWORD = "relay-user", "s3cret-Relay-Pw"
READER = "postmaster@example.org"


def run(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NEWSLETTER, "doctor", *args], env=env_for(settings), capture_output=True, text=True,
                          timeout=120)


def by_check(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """{check name: its whole line}; every line is `status: check: ...`."""
    lines = result.stdout.splitlines()
    assert all(line.split(": ")[0] in ("ok", "fail") for line in lines), result.stdout  # CONTRACT: ok/fail
    return {line.split(": ")[1]: line for line in lines}


CHECKS = ["settings", "database", "redis", "smtp relay", "smtp tls", "smtp auth", "dkim key", "dmarc alignment",
          "test mail", "one-click unsubscribe", "digest size"]


# -- the test's relay, DNS and web server -----------------------------------------------

@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


def _authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture
def relay(ca) -> Iterator[tuple[Handler, int]]:  # type: ignore[no-untyped-def]
    """A relay as providers run them on port 587: STARTTLS required, AUTH only over TLS."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca[0].issue_cert("127.0.0.1").configure_cert(context)
    handler, port = Handler(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            authenticator=_authenticator, auth_require_tls=True)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer().start()
    yield server
    server.stop()


class WebServer:
    """The Flask app of `settings`, served over real HTTP on 127.0.0.1 in a thread."""

    def __init__(self, settings, port: int) -> None:  # type: ignore[no-untyped-def]
        from werkzeug.serving import make_server

        from newsletter import create_app

        self.app = create_app(settings)
        self.server = make_server("127.0.0.1", port, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)
        self.app.extensions["newsletter_db"].dispose()


@pytest.fixture
def healthy(settings, redis_conn, relay, ca, dns_server, tmp_path) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """Settings that pass every check: the relay with STARTTLS and AUTH, a DKIM key DNS
    publishes, BASE_URL served by the app itself."""
    handler, smtp_port = relay
    key = DkimKey(tmp_path)
    port = free_port()
    good = replace(key.settings(settings), smtp_port=smtp_port, smtp_security="starttls", smtp_username=USER,
                   smtp_password=PASSWORD, smtp_ca_file=str(ca[1]), smtp_timeout_seconds=5,
                   base_url=f"http://127.0.0.1:{port}")
    dns_server.records = {f"{key.SELECTOR}._domainkey.{key.DOMAIN}": [f"v=DKIM1; k=ed25519; p={key.public}"]}
    web = WebServer(good, port)
    yield good
    web.stop()


# -- a configuration that passes ------------------------------------------------------

def test_a_healthy_configuration_passes_every_check_and_the_test_mail_arrives(healthy, relay, dns_server, database):
    from newsletter.models import ConsentEvent, Subscriber
    from tests.helpers import all_rows

    result = run(healthy, "--to", READER, "--resolver", dns_server.address)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = by_check(result)
    assert list(lines) == CHECKS
    assert all(line.startswith("ok: ") for line in lines.values()), result.stdout
    assert "at the newest revision" in lines["database"]
    assert lines["smtp tls"] == f"ok: smtp tls: 127.0.0.1:{healthy.smtp_port} offers STARTTLS; the certificate verified"
    assert lines["smtp auth"] == f"ok: smtp auth: 127.0.0.1:{healthy.smtp_port} accepted AUTH as 'relay-user'"
    assert "matches the record at news._domainkey.jobs.example.org" in lines["dkim key"]
    assert lines["one-click unsubscribe"].endswith("answered 200")
    assert "KB with 20 long listings" in lines["digest size"]
    assert PASSWORD not in result.stdout + result.stderr

    [mail] = relay[0].messages
    assert mail.rcpt_tos == [READER] and mail.mail_from == "bounces@jobs.example.org"
    message = mail.message
    assert message["Subject"] == "Newsletter doctor test" and message["Auto-Submitted"] == "auto-generated"
    record = f"v=DKIM1; k=ed25519; p={dns_server.records['news._domainkey.jobs.example.org'][0].split('p=')[1]}"
    assert dkim.verify(mail.data, dnsfunc=lambda name, timeout=5: record.encode())
    # The one-click POST named a reader nobody is: nothing was written.
    assert all_rows(database, Subscriber) == [] and all_rows(database, ConsentEvent) == []


def test_without_to_the_test_mail_is_a_skipped_ok_line_and_dns_that_does_not_answer_skips_dkim(healthy, relay):
    result = run(healthy, "--resolver", f"127.0.0.1:{free_port()}")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = by_check(result)
    assert lines["test mail"].startswith("ok: test mail: skipped: none sent; `newsletter doctor --to YOUR-ADDRESS`")
    assert lines["dkim key"].startswith("ok: dkim key: skipped: the ed25519 key loads and signs; not compared with DNS")
    assert relay[0].messages == []


# -- configurations that fail ----------------------------------------------------------

def test_a_wrong_password_fails_the_auth_line_without_showing_it(healthy, relay, dns_server):
    wrong = replace(healthy, smtp_password="Wrong-Passw0rd")
    result = run(wrong, "--to", READER, "--resolver", dns_server.address)
    assert result.returncode == 1
    lines = by_check(result)
    assert lines["smtp relay"].startswith("ok:") and lines["smtp tls"].startswith("ok:")
    assert lines["smtp auth"].startswith(f"fail: smtp auth: 127.0.0.1:{healthy.smtp_port} refused AUTH as 'relay-user': 535")
    assert lines["smtp auth"].endswith("-- fix: check NEWSLETTER_SMTP_USERNAME and NEWSLETTER_SMTP_PASSWORD")
    assert lines["test mail"].startswith("fail: test mail:")
    assert "Wrong-Passw0rd" not in result.stdout + result.stderr
    assert relay[0].messages == []


def test_a_relay_without_starttls_fails_when_starttls_is_configured(healthy, smtp, dns_server):
    plain = replace(healthy, smtp_port=smtp.port)
    result = run(plain, "--resolver", dns_server.address)
    assert result.returncode == 1
    lines = by_check(result)
    assert lines["smtp relay"].startswith("ok: smtp relay:")
    assert lines["smtp tls"] == (f"fail: smtp tls: 127.0.0.1:{smtp.port} does not offer STARTTLS but "
                                 "NEWSLETTER_SMTP_SECURITY=starttls -- fix: turn STARTTLS on at the relay, or use its "
                                 "TLS port with NEWSLETTER_SMTP_SECURITY=tls")
    assert lines["smtp auth"].startswith("ok: smtp auth: skipped: not tried")  # no password in clear


def test_a_relay_whose_certificate_does_not_verify_fails_the_tls_line(healthy, relay, dns_server):
    result = run(replace(healthy, smtp_ca_file=""), "--resolver", dns_server.address)
    assert result.returncode == 1
    line = by_check(result)["smtp tls"]
    assert line.startswith("fail: smtp tls: the TLS handshake with") and "CERTIFICATE_VERIFY_FAILED" in line
    assert "NEWSLETTER_SMTP_CA_FILE" in line


def test_a_base_url_nobody_answers_fails_the_one_click_line(healthy, dns_server):
    result = run(replace(healthy, base_url=f"http://127.0.0.1:{free_port()}"), "--resolver", dns_server.address)
    assert result.returncode == 1
    line = by_check(result)["one-click unsubscribe"]
    assert line.startswith("fail: one-click unsubscribe: POST http://127.0.0.1:") and "refused" in line
    assert "-- fix: serve NEWSLETTER_BASE_URL: the reverse proxy" in line


def test_a_dkim_record_of_another_key_fails(healthy, dns_server, tmp_path):
    (tmp_path / "old").mkdir()
    old = DkimKey(tmp_path / "old")
    dns_server.records = {"news._domainkey.jobs.example.org": [f"v=DKIM1; k=ed25519; p={old.public}"]}
    result = run(healthy, "--resolver", dns_server.address)
    assert result.returncode == 1
    line = by_check(result)["dkim key"]
    assert line.startswith("fail: dkim key: the ed25519 key loads and signs, but news._domainkey.jobs.example.org: "
                           "the published key is not the configured key")


def test_nothing_answering_fails_each_check_in_one_line(settings, tmp_path):
    dead = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0", base_url=f"http://127.0.0.1:{free_port()}",
                   dkim_key_file="", dkim_selector="", dkim_domain="")
    result = run(dead, "--resolver", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1 and result.stderr == ""
    lines = by_check(result)
    assert list(lines) == CHECKS
    assert [name for name, line in lines.items() if line.startswith("fail:")] == [
        "redis", "smtp relay", "one-click unsubscribe"]
    assert "Traceback" not in result.stdout


@pytest.fixture
def unmigrated(backend: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A database without the newest schema: (URL, what doctor should say)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        upgrade(url, "0001")
        yield url, "is at revision 0001, the newest is"
        return
    name = f"newsletter_doctor_{free_port()}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:  # noqa: BLE001
        pytest.skip("PostgreSQL does not answer here")
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False), "has no schema yet"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_a_database_not_migrated_fails_with_db_upgrade_as_the_fix(settings, unmigrated):
    url, says = unmigrated
    result = run(replace(settings, database_url=url))
    assert result.returncode == 1
    line = by_check(result)["database"]
    assert line.startswith("fail: database: ") and says in line
    assert line.endswith("-- fix: run `newsletter db upgrade`")


def test_a_missing_sqlite_file_is_not_created_by_the_check(settings, tmp_path):
    path = tmp_path / "nowhere" / "newsletter.db"
    result = run(replace(settings, database_url=f"sqlite:///{path}"))
    assert by_check(result)["database"] == (f"fail: database: no database file at {path} -- fix: run "
                                            "`newsletter db upgrade` to create the schema")
    assert not path.exists()


def test_a_bad_to_address_is_one_usage_line(settings):
    result = run(settings, "--to", "not an address")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: --to: ") and len(result.stderr.splitlines()) == 1


# -- the checks on their own -------------------------------------------------------------

def test_settings_that_do_not_load_are_the_first_fail_line_and_nothing_else_runs(tmp_path):
    env = {"NEWSLETTER_SMTP_SECURITY": "ssl", "NEWSLETTER_INSTANCE_PATH": str(tmp_path)}
    results = list(doctor.run(lambda: load_settings(environ=env, dotenv_path=None)))
    assert [r.line() for r in results] == [
        "fail: settings: NEWSLETTER_SMTP_SECURITY: expected one of none, starttls, tls, got 'ssl' -- fix: correct "
        "that variable (environment, .env or -e FILE)"]


def test_settings_that_do_not_load_end_the_command_as_one_fail_line(capsys, tmp_path):
    # What console.main is to call for `doctor` on a ConfigError (instead of its exit 2).
    from newsletter.cli.deliverability import report_bad_settings

    with pytest.raises(SystemExit) as stopped:
        report_bad_settings(ConfigError("NEWSLETTER_BASE_URL: expected an absolute http(s) URL, got 'x'"))
    assert stopped.value.code == 1
    assert capsys.readouterr().out.startswith("fail: settings: NEWSLETTER_BASE_URL: expected an absolute")


def test_a_digest_of_the_most_listings_allowed_is_clipped_by_gmail(settings):
    result = doctor.check_digest_size(replace(settings, digest_max_listings=200))
    assert result.status == doctor.Status.FAIL
    assert "with 200 long listings" in result.detail and result.fix == "lower NEWSLETTER_DIGEST_MAX_LISTINGS"


# -- production refuses a DKIM domain that does not align (STANDARDS 36) ------------------

@pytest.mark.parametrize("dkim_domain, mail_from, accepted", [
    ("stellenwerk.de", "Stellenwerk <newsletter@stellenwerk.de>", True),
    ("stellenwerk.de", "Stellenwerk <newsletter@news.stellenwerk.de>", True),  # relaxed: the parent signs
    ("mail.stellenwerk.de", "Stellenwerk <newsletter@stellenwerk.de>", True),
    ("mailer-provider.example.net", "Stellenwerk <newsletter@stellenwerk.de>", False),
    ("werk.de", "Stellenwerk <newsletter@stellenwerk.de>", False),  # a suffix of letters is no parent domain
])
def test_production_refuses_a_dkim_domain_that_does_not_align(tmp_path, dkim_domain, mail_from, accepted):
    key = DkimKey(tmp_path)
    env = PRODUCTION | {"NEWSLETTER_MAIL_FROM": mail_from, "NEWSLETTER_DKIM_SELECTOR": "news",
                        "NEWSLETTER_DKIM_DOMAIN": dkim_domain, "NEWSLETTER_DKIM_KEY_FILE": str(key.file),
                        "NEWSLETTER_INSTANCE_PATH": str(tmp_path)}
    if accepted:
        assert load_settings(environ=env, dotenv_path=None).dkim_domain == dkim_domain
        return
    with pytest.raises(ConfigError) as refused:
        load_settings(environ=env, dotenv_path=None)
    message = str(refused.value)
    assert message.startswith(f"NEWSLETTER_DKIM_DOMAIN: {dkim_domain!r} does not align with the From domain")
    assert mail_from.split("@")[1].rstrip(">") in message
    # Outside production the same settings start (the doctor's alignment line says it).
    assert load_settings(environ=env | {"NEWSLETTER_ENV": "development"}, dotenv_path=None)
    assert not aligned(dkim_domain, mail_from.split("@")[1].rstrip(">"))
