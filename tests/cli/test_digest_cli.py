"""The operator's digest commands, run as real processes: send, --dry-run, tick, status,
pause, resume, cancel; and the global send rate shared by two workers."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from newsletter.models import Listing, Subscriber, email_hash, utcnow
from tests.conftest import env_for

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")


def run(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NEWSLETTER, *args], env=env_for(settings), capture_output=True, text=True, timeout=120)


def lines(output: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in output.splitlines() if ": " in line)


def seed(database, readers: int = 3) -> None:
    with database.session_scope() as session:
        session.add(Listing(external_id="job-1", title="Data Scientist (w/m/d)", url="https://jobs.example.org/stellen/1",
                            company="Zahlenwerk AG", location="Köln", published_at=utcnow()))
        session.add(Listing(external_id="job-2", title="Pflegefachkraft (m/w/d)", url="https://jobs.example.org/stellen/2",
                            company="Klinikum Süd", location="Nürnberg", published_at=utcnow()))
        for n in range(readers):
            session.add(Subscriber(email=f"r{n}@example.org", email_hash=email_hash(f"r{n}@example.org"),
                                   status="confirmed", keywords="Data" if n else "Koch"))


def test_dry_run_shows_recipients_and_listings_and_sends_nothing(settings, database, smtp):
    seed(database)
    result = run(settings, "digest", "send", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == "recipients: 2" and out[1] == "listings: 2"
    assert any("Data Scientist (w/m/d)" in line and "https://jobs.example.org/stellen/1" in line for line in out[2:])
    assert "edition" not in result.stdout
    assert run(settings, "digest", "status").returncode == 1  # no edition was made


def test_send_then_status_then_a_worker_delivers(settings, database, smtp, redis_conn):
    seed(database)
    sent = run(settings, "digest", "send")
    assert sent.returncode == 0, sent.stderr
    edition = lines(sent.stdout)["edition"]
    status = lines(run(settings, "digest", "status").stdout)
    assert status["edition"] == edition and status["state"] == "sending" and status["queued"] == "2"
    worker = run(settings, "worker", "--burst")
    assert worker.returncode == 0, worker.stderr
    status = lines(run(settings, "digest", "status", edition).stdout)
    assert (status["state"], status["queued"], status["sent"], status["failed"], status["bounced"]) == ("done", "0", "2", "0", "0")
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["r1@example.org", "r2@example.org"]


def test_tick_is_idempotent(settings, database, redis_conn):
    own = replace(settings, digest_first="2026-01-06T08:00")
    seed(database)
    first, second = run(own, "digest", "tick"), run(own, "digest", "tick")
    assert first.returncode == second.returncode == 0
    assert lines(first.stdout)["edition"].isdigit()
    assert second.stdout.strip() == "edition: none due"


def test_pause_resume_cancel_and_their_refusals(settings, database, smtp, redis_conn):
    seed(database)
    edition = lines(run(settings, "digest", "send").stdout)["edition"]
    assert lines(run(settings, "digest", "pause", edition).stdout)["state"] == "paused"
    run(settings, "worker", "--burst")
    assert smtp.messages == []
    refused = run(settings, "digest", "pause", edition)
    assert refused.returncode == 1 and refused.stderr.strip() == f"error: edition {edition} is paused; cannot pause it"
    assert lines(run(settings, "digest", "cancel", edition).stdout)["state"] == "cancelled"
    missing = run(settings, "digest", "resume", "999")
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no edition 999"
    bad = run(settings, "digest", "status", "abc")
    assert bad.returncode != 0 and "abc" in bad.stderr


def test_policy_alarm_shows_in_status(settings, database, smtp, redis_conn):
    smtp.handler.rcpt_reply = lambda address: "554 5.7.26 message not authenticated (DMARC)"
    seed(database)
    edition = lines(run(settings, "digest", "send").stdout)["edition"]
    run(settings, "worker", "--burst")
    status = lines(run(settings, "digest", "status", edition).stdout)
    assert status["alarms"] == "1" and "5.7.26" in status["last_alarm"]
    assert status["bounced"] == "0"


def test_status_shows_deliveries_waiting_for_a_retry_and_why(settings, database, redis_conn):
    """A relay that cannot be reached raises no alarm (it is temporary); status said only
    "queued: 2" while every try failed."""
    from socket import socket

    with socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    own = replace(settings, smtp_port=port)
    seed(database)
    edition = lines(run(own, "digest", "send").stdout)["edition"]
    before = lines(run(own, "digest", "status", edition).stdout)
    assert before["retrying"] == "0" and "last_error" not in before
    run(own, "worker", "--burst")
    status = lines(run(own, "digest", "status", edition).stdout)
    assert status["queued"] == "2" and status["retrying"] == "2"
    assert status["last_error"].startswith(f"0 cannot reach 127.0.0.1:{port}")


def test_global_send_rate_holds_across_two_workers(settings, database, smtp, redis_conn):
    own = replace(settings, send_rate=10, send_chunk_size=5)
    seed(database, readers=41)
    run(own, "digest", "send")
    workers = [subprocess.Popen([NEWSLETTER, "worker", "--burst"], env=env_for(own),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    for worker in workers:
        worker.wait(timeout=120)
    stamps = [m.received_at for m in smtp.messages]
    assert len(stamps) == 40
    start = min(stamps)
    per_window = Counter(int(t - start) for t in stamps)
    # Windows are aligned on the clock, not on the first mail: a second of ours may span two.
    assert max(per_window.values()) <= 20 and len(per_window) >= 3, per_window


@pytest.mark.parametrize("args", [("status", "99999999999999999999999"), ("pause", "2147483648"), ("cancel", "99999999999999999999")])
def test_an_edition_id_past_any_edition_is_no_edition_not_a_traceback(settings, database, args):
    result = run(settings, "digest", *args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: no edition {args[1]}"]


def test_one_edition_at_a_time_so_a_cancelled_ones_listings_reach_the_next(settings, database, redis_conn):
    """A second edition made while the first was paused started its window at the first's
    cut-off: cancelling the first then lost its listings for good, where `digest cancel`
    promises they go into the next edition."""
    seed(database)
    first = lines(run(settings, "digest", "send").stdout)["edition"]
    assert run(settings, "digest", "pause", first).returncode == 0
    refused = run(settings, "digest", "send")
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"error: edition {first} is still paused: resume it and let it finish, or cancel it first"
    assert run(settings, "digest", "cancel", first).returncode == 0
    after = run(settings, "digest", "send")
    assert after.returncode == 0, after.stderr
    assert lines(after.stdout)["listings"] == "2" and lines(after.stdout)["recipients"] == "2"
