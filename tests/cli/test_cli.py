"""The `newsletter` command line, run as a real process: configuration errors, db upgrade,
subscribers import / stats / purge."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.models import ConsentEvent, OutboxMessage, Subscriber, Suppression, email_hash, utcnow
from tests.helpers import PRODUCTION
from tests.conftest import env_for

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")


def run(settings, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = env_for(settings)
    env.update(extra_env or {})
    return subprocess.run([NEWSLETTER, *args], env=env, capture_output=True, text=True, timeout=120)


def stats(settings) -> dict[str, int]:
    result = run(settings, "subscribers", "stats")
    assert result.returncode == 0, result.stderr
    return {k: int(v) for k, v in (line.split(": ") for line in result.stdout.splitlines())}


@pytest.mark.parametrize(
    "variable, value, fragment",
    [
        ("NEWSLETTER_SMTP_PORT", "abc", "NEWSLETTER_SMTP_PORT"),
        ("NEWSLETTER_SMTP_SECURITY", "ssl", "NEWSLETTER_SMTP_SECURITY"),
        ("NEWSLETTER_BASE_URL", "example.org", "NEWSLETTER_BASE_URL"),
        ("NEWSLETTER_TIMEZONE", "Mars/Olympus", "NEWSLETTER_TIMEZONE"),
        ("NEWSLETTER_SIGNUP_RATE_LIMIT", "lots", "NEWSLETTER_SIGNUP_RATE_LIMIT"),
        ("NEWSLETTER_DIGEST_FIRST", "next tuesday", "NEWSLETTER_DIGEST_FIRST"),
        ("NEWSLETTER_MAIL_FROM", "no address", "NEWSLETTER_MAIL_FROM"),
        ("NEWSLETTER_MAIL_FROM", "Jobs <nachrichtenbüro@jobs.example.org>", "must be ASCII"),
        ("NEWSLETTER_MAIL_FROM", "Jobs <news@jobs..example.org>", "NEWSLETTER_MAIL_FROM"),
        ("NEWSLETTER_BOUNCE_ADDRESS", "bounces@xn--.example.org", "NEWSLETTER_BOUNCE_ADDRESS"),
    ],
)
def test_a_bad_setting_stops_with_one_line_naming_it(settings, variable, value, fragment):
    result = run(settings, "subscribers", "stats", extra_env={variable: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]


def test_production_refuses_a_missing_secret_key_and_plain_http(settings):
    result = run(settings, "subscribers", "stats", extra_env={"NEWSLETTER_ENV": "production", "NEWSLETTER_SECRET_KEY": ""})
    assert result.returncode == 2 and "NEWSLETTER_SECRET_KEY" in result.stderr
    result = run(
        settings, "subscribers", "stats",
        extra_env={"NEWSLETTER_ENV": "production", "NEWSLETTER_BASE_URL": "http://jobs.example.org"},
    )
    assert result.returncode == 2 and "NEWSLETTER_BASE_URL" in result.stderr and "https" in result.stderr




def test_production_starts_with_the_operators_own_values(settings):
    result = run(settings, "subscribers", "stats", extra_env=PRODUCTION)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("variable", [v for v in PRODUCTION if v not in ("NEWSLETTER_ENV", "NEWSLETTER_SECRET_KEY", "NEWSLETTER_BASE_URL")])
def test_production_refuses_the_made_up_example_operator(tmp_path, variable):
    """Every mail carries the Impressum (DDG §5) and the privacy link: the built-in ones
    describe a made-up company."""
    from newsletter.config import ConfigError, load_settings

    env = {k: v for k, v in PRODUCTION.items() if k != variable} | {"NEWSLETTER_INSTANCE_PATH": str(tmp_path)}
    with pytest.raises(ConfigError, match=f"^{variable}: required in production"):
        load_settings(env, dotenv_path=None)


def test_production_refuses_the_demo_inbox(settings):
    result = run(
        settings, "subscribers", "stats",
        extra_env={"NEWSLETTER_ENV": "production", "NEWSLETTER_BASE_URL": "https://jobs.example.org",
                   "NEWSLETTER_DEMO": "true"},
    )
    assert result.returncode == 2 and "NEWSLETTER_DEMO" in result.stderr


def test_gunicorn_entry_point_refuses_bad_configuration(settings):
    env = env_for(settings)
    env["NEWSLETTER_SMTP_PORT"] = "99999"
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], env=env, capture_output=True, text=True,
        cwd=Path(__file__).resolve().parents[2], timeout=60,
    )
    # 4: gunicorn's APP_LOAD_ERROR, on which it stops instead of booting workers for good
    # (tests/cli/test_operations.py runs gunicorn itself).
    assert result.returncode == 4 and result.stderr.strip().splitlines() == [
        "error: NEWSLETTER_SMTP_PORT: must be between 1 and 65535, got 99999"
    ]


def test_db_upgrade_creates_and_is_idempotent(settings, tmp_path, backend):
    # SQLite: a file that does not exist yet (its folder neither); PostgreSQL: the migrated
    # test database, upgraded once more.
    fresh = settings if backend == "postgresql" else replace(settings, database_url=f"sqlite:///{tmp_path}/fresh/new.db")
    first = run(fresh, "db", "upgrade")
    second = run(fresh, "db", "upgrade")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout and "revision" in first.stdout
    assert stats(fresh)["pending"] == 0


def test_stats_counts_every_state(settings, database):
    with database.session_scope() as session:
        for i, status in enumerate(["pending", "confirmed", "confirmed", "unsubscribed", "bounced", "complained"]):
            address = f"s{i}@example.org"
            session.add(Subscriber(email=address, email_hash=email_hash(address), status=status))
    counts = stats(settings)
    assert {k: counts[k] for k in ("pending", "confirmed", "unsubscribed", "bounced", "complained")} == {
        "pending": 1, "confirmed": 2, "unsubscribed": 1, "bounced": 1, "complained": 1,
    }


def test_import_confirmed_list_keeps_consent_and_names_bad_rows(settings, database, smtp, drain, tmp_path):
    with database.session_scope() as session:
        session.add(Suppression(email_hash=email_hash("blocked@example.org"), reason="complained"))
    csv = tmp_path / "list.csv"
    csv.write_text(
        "email,language,keywords,location,confirmed_at,consent_ip,consent_text\n"
        "old@example.org,de,Python,Berlin,2024-03-01T09:30:00Z,203.0.113.7,Ja ich will den Newsletter\n"
        "new@example.org,en,,,,,\n"
        "not-an-address,de,,,,,\n"
        "blocked@example.org,de,,,2024-01-01T00:00:00Z,198.51.100.1,Ja\n"
        "late@example.org,de,,,2024-13-45,,Ja\n"
        "nowording@example.org,de,,,2024-01-01T00:00:00Z,,\n",
        encoding="utf-8",
    )
    result = run(settings, "subscribers", "import", str(csv))
    assert result.returncode == 1
    assert "confirmed: 1" in result.stdout and "pending: 1" in result.stdout and "rejected: 4" in result.stdout
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 4
    assert errors[0].startswith(f"{csv}: line 4: email:")
    assert "line 5" in errors[1] and "suppressed" in errors[1]
    assert "line 6" in errors[2] and "confirmed_at" in errors[2]
    assert "line 7" in errors[3] and "consent_text" in errors[3]

    with database.session_scope() as session:
        old = session.scalar(select(Subscriber).where(Subscriber.email == "old@example.org"))
        assert old.status == "confirmed" and old.keywords == "Python"
        proof = session.scalar(select(ConsentEvent).where(ConsentEvent.subscriber_public_id == old.public_id))
        assert proof.event == "imported" and proof.ip == "203.0.113.7" and proof.consent_text.startswith("Ja")
        assert proof.at.isoformat() == "2024-03-01T09:30:00"
    drain()
    # Only the row without confirmed_at gets a (double-opt-in) mail.
    assert [m.rcpt_tos for m in smtp.messages] == [["new@example.org"]]
    assert "/confirm/" in smtp.messages[0].part("plain")

    again = run(settings, "subscribers", "import", str(csv))
    assert "skipped: 2" in again.stdout
    skipped = [line for line in again.stderr.splitlines() if "skipped" in line]
    assert skipped == [f"{csv}: line 2: skipped: already a subscriber (confirmed), left as it is",
                       f"{csv}: line 3: skipped: already a subscriber (pending), left as it is"]


@pytest.mark.parametrize("header, reason", [
    ("email,language,confirmd_at", "line 1: unknown column(s) 'confirmd_at'"),
    ("email,email,language", "line 1: column(s) email given twice"),
])
def test_an_import_with_a_header_we_do_not_know_takes_nothing(settings, database, smtp, drain, tmp_path, header, reason):
    """A misspelt confirmed_at would have sent every confirmed reader a confirmation mail."""
    path = tmp_path / "list.csv"
    path.write_text(f"{header}\ntypo@example.org,de,2025-01-01T10:00:00Z\n", encoding="utf-8")
    result = run(settings, "subscribers", "import", str(path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[0].startswith(f"{path}: {reason}")
    drain()
    assert stats(settings)["pending"] == 0 and smtp.messages == []


def test_an_import_that_is_not_utf8_names_the_byte_and_line_as_the_listings_import_does(settings, tmp_path):
    path = tmp_path / "list.csv"
    path.write_bytes("email,keywords\nanna@example.org,München\n".encode("latin-1"))
    result = run(settings, "subscribers", "import", str(path))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: {path}: cannot import: not UTF-8 text (byte 0xfc on line 2, "
                                     "offset 33); convert the file to UTF-8")


def test_an_empty_import_file_says_so(settings, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text(" \n")
    result = run(settings, "subscribers", "import", str(path))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {path}: cannot import, nothing written: the file is empty"


def test_an_import_with_a_field_over_the_csv_limit_is_one_line_and_takes_nothing(settings, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("email,keywords\nfirst@example.org,Python\nbig@example.org," + "d" * 200_000 + "\n")
    result = run(settings, "subscribers", "import", str(path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: cannot import, nothing written: line 3: not valid CSV: field larger than field limit (131072)"]
    assert stats(settings)["pending"] == 0


def test_purge_deletes_stale_unconfirmed_signups_only(settings, database):
    old = utcnow() - timedelta(days=15)
    with database.session_scope() as session:
        stale = Subscriber(email="stale@example.org", email_hash=email_hash("stale@example.org"),
                           status="pending", created_at=old, confirmation_sent_at=old)
        fresh = Subscriber(email="fresh@example.org", email_hash=email_hash("fresh@example.org"), status="pending")
        loyal = Subscriber(email="loyal@example.org", email_hash=email_hash("loyal@example.org"),
                           status="confirmed", created_at=old, confirmed_at=old)
        session.add_all([stale, fresh, loyal])
        session.flush()
        session.add(ConsentEvent(subscriber_public_id=stale.public_id, email_hash=stale.email_hash, event="signup"))
        session.add(OutboxMessage(kind="confirm", subscriber_id=stale.id, status="sent"))
    result = run(settings, "subscribers", "purge")
    assert result.returncode == 0, result.stderr
    assert "unconfirmed: 1" in result.stdout
    with database.session_scope() as session:
        left = sorted(session.scalars(select(Subscriber.email)))
        events = session.scalar(select(func.count()).select_from(ConsentEvent))
        mails = session.scalar(select(func.count()).select_from(OutboxMessage))
    assert left == ["fresh@example.org", "loyal@example.org"]
    assert events == 0 and mails == 0


def test_the_scheduler_purges_stale_signups_without_an_operator(settings, database, redis_conn):
    """STANDARDS 12 needs no cron entry: `newsletter scheduler` queues the purge (hourly,
    and once at its start) and a worker runs it."""
    import time

    from tests.processes import start, stop

    old = utcnow() - timedelta(days=15)
    with database.session_scope() as session:
        session.add(Subscriber(email="stale@example.org", email_hash=email_hash("stale@example.org"),
                               status="pending", created_at=old, confirmation_sent_at=old))
        session.add(Subscriber(email="fresh@example.org", email_hash=email_hash("fresh@example.org"), status="pending"))
    scheduler, worker = start(settings, "scheduler"), start(settings, "worker")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with database.session_scope() as session:
                left = sorted(session.scalars(select(Subscriber.email)))
            if left == ["fresh@example.org"]:
                break
            time.sleep(0.2)
    finally:
        stop(scheduler)
        stop(worker)
    assert left == ["fresh@example.org"]


def test_purge_keeps_consent_proof_of_the_erased_until_its_retention_ends(settings, database):
    with database.session_scope() as session:
        session.add(ConsentEvent(subscriber_public_id="gone-recently", email_hash="h1", event="erased"))
        session.add(ConsentEvent(subscriber_public_id="gone-long-ago", email_hash="h2", event="erased",
                                 at=utcnow() - timedelta(days=4 * 365)))
    result = run(settings, "subscribers", "purge")
    assert "consent_records: 1" in result.stdout
    with database.session_scope() as session:
        assert list(session.scalars(select(ConsentEvent.subscriber_public_id))) == ["gone-recently"]
