"""GET /metrics as Prometheus scrapes it: parsed with prometheus_client's own parser, every
figure checked against the rows a real lifecycle left in the database (signups, a
confirmation by its mailed link, a one-click unsubscribe, an edition sent by a real RQ
drain to a relay that answers 451 for one reader); two apps, and a real gunicorn with two
workers, answer the same; the token; Redis and the database away."""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue
from rq.registry import ScheduledJobRegistry
from sqlalchemy.engine import make_url

from newsletter import create_app
from newsletter.models import ConsentEvent, Delivery, Edition, OutboxMessage, email_hash, utcnow
from newsletter.operators.metrics import EDITION_LATENCY_BUCKETS, MAIL_LATENCY_BUCKETS
from newsletter.queueing import ALL as QUEUES
from tests.conftest import env_for
from tests.helpers import (
    add_listing,
    all_rows,
    find_subscriber,
    one_click_url,
    path_of,
    send_now,
    signup,
    status_counts,
    subscribe_confirmed,
)
from tests.smtp_sink import free_port
from tests.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]
GREYLISTED = "dora@example.org"
TOKEN = "metrics-token-0123456789"

Figures = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Figures:
    """Every sample of a scrape, by name and labels; every family is checked to be ours."""
    figures: Figures = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("newsletter_"), family.name
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in figures, f"{sample.name} {sample.labels} twice"
            figures[key] = sample.value
    return figures


def scrape(client: Any, **headers: str) -> Figures:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert response.headers["Cache-Control"] == "no-store"
    return parse(response.get_data(as_text=True))


def get(figures: Figures, name: str, **labels: str) -> float:
    return figures[(name, frozenset(labels.items()))]


def samples(figures: Figures, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (sample, labels), value in figures.items() if sample == name}


def histogram(figures: Figures, name: str, **labels: str) -> tuple[list[tuple[float, float]], float, float]:
    """(le, count) pairs in order, the +Inf count checked against _gcount, and _gsum."""
    buckets = sorted(
        (float(dict(key)["le"]), value) for key, value in samples(figures, name + "_bucket").items()
        if {k: v for k, v in key if k != "le"} == labels
    )
    counts = [count for _, count in buckets]
    assert counts == sorted(counts), f"{name} buckets not cumulative: {buckets}"
    assert buckets[-1][0] == float("inf")
    count = get(figures, name + "_gcount", **labels)
    assert buckets[-1][1] == count
    return buckets, count, get(figures, name + "_gsum", **labels)


def expected_buckets(latencies: list[float], bounds: tuple[float, ...]) -> list[tuple[float, float]]:
    return [(float(b), float(sum(1 for s in latencies if s <= b))) for b in bounds] + [
        (float("inf"), float(len(latencies)))]


def live_a_little(client: Any, smtp: Any, drain: Any, database: Any, settings: Any) -> int:
    """The lifecycle every figure is checked against; returns the edition's id."""
    subscribe_confirmed(client, smtp, drain, "anna@example.org")
    welcome = subscribe_confirmed(client, smtp, drain, "ben@example.org")
    assert client.post(path_of(one_click_url(welcome.message)), data=b"List-Unsubscribe=One-Click",
                       content_type="application/x-www-form-urlencoded").status_code in (200, 202, 204)
    subscribe_confirmed(client, smtp, drain, GREYLISTED)
    assert signup(client, "carl@example.org").status_code == 200
    drain()  # his confirmation mail goes; he never clicks it
    with database.session_scope() as session:
        add_listing(session, 1, "Python-Entwickler (m/w/d)")
        # A signup of two days ago: outside the 24-hour window of the consent figures.
        session.add(ConsentEvent(subscriber_public_id="gone-long-ago", email_hash=email_hash("old@example.org"),
                                 event="signup", at=utcnow() - timedelta(days=2)))
    smtp.handler.rcpt_reply = lambda address: "451 4.7.1 Greylisted, try later" if address == GREYLISTED else None
    edition_id = send_now(database, settings, drain)
    assert signup(client, "eve@example.org").status_code == 200  # queued, no worker takes it
    return edition_id


def test_the_figures_are_the_databases(app, client, smtp, drain, database, settings, redis_conn):
    edition_id = live_a_little(client, smtp, drain, database, settings)
    figures = scrape(client)
    now = utcnow()

    # Subscribers by state: what `newsletter subscribers stats` says.
    counts = status_counts(database)
    assert {dict(k)["state"]: v for k, v in samples(figures, "newsletter_subscribers").items()} == {
        state: counts[state] for state in ("pending", "confirmed", "unsubscribed", "bounced", "complained")}
    assert (counts["confirmed"], counts["pending"], counts["unsubscribed"]) == (2, 2, 1)
    assert get(figures, "newsletter_suppressed_addresses") == counts["suppressed"]

    # Signups, confirmations and unsubscribes of the last 24 hours, as the consent log holds them.
    recent = Counter(e.event for e in all_rows(database, ConsentEvent) if e.at >= now - timedelta(hours=24))
    assert {dict(k)["event"]: v for k, v in samples(figures, "newsletter_consent_events_last_24h").items()} == {
        "signup": recent["signup"], "confirmed": recent["confirmed"], "unsubscribed": recent["unsubscribed"]}
    assert (recent["signup"], recent["confirmed"], recent["unsubscribed"]) == (5, 3, 1)

    # Transactional mails by kind and status.
    outbox = all_rows(database, OutboxMessage)
    by_kind_status = Counter((m.kind, m.status) for m in outbox)
    shown = {(dict(k)["kind"], dict(k)["status"]): v
             for k, v in samples(figures, "newsletter_transactional_mails").items() if v}
    assert shown == by_kind_status
    assert by_kind_status[("confirm", "sent")] == 4 and by_kind_status[("confirm", "pending")] == 1

    # The last edition: state, planned, deliveries by status; the greylisted reader waits.
    deliveries = all_rows(database, Delivery, edition_id=edition_id)
    [edition] = all_rows(database, Edition, id=edition_id)
    assert get(figures, "newsletter_last_edition_info", edition=str(edition_id), state="sending",
               trigger="test") == 1
    assert get(figures, "newsletter_last_edition_planned", edition=str(edition_id)) == edition.planned == 2
    by_status = Counter(d.status for d in deliveries)
    assert {dict(k)["status"]: v for k, v in samples(figures, "newsletter_last_edition_deliveries").items() if v} \
        == by_status == {"sent": 1, "pending": 1}
    assert get(figures, "newsletter_mails_waiting_for_retry", kind="digest") == 1
    assert sum(samples(figures, "newsletter_mails_waiting_for_retry").values()) == 1
    assert get(figures, "newsletter_last_edition_created_timestamp_seconds", edition=str(edition_id)) \
        == pytest.approx(edition.created_at.replace(tzinfo=UTC).timestamp())

    # Send latency, bucket by bucket, against the rows' own times.
    latencies = [(d.sent_at - edition.created_at).total_seconds() for d in deliveries if d.status == "sent"]
    buckets, count, total = histogram(figures, "newsletter_last_edition_send_latency_seconds",
                                      edition=str(edition_id))
    assert buckets == expected_buckets(latencies, EDITION_LATENCY_BUCKETS)
    assert (count, total) == (1, pytest.approx(sum(latencies), abs=0.01))
    for kind in ("confirm", "welcome"):
        latencies = [(m.sent_at - m.created_at).total_seconds() for m in outbox if m.kind == kind and m.sent_at]
        buckets, count, total = histogram(figures, "newsletter_mail_send_latency_seconds", kind=kind)
        assert buckets == expected_buckets(latencies, MAIL_LATENCY_BUCKETS)
        assert (count, total) == (len(latencies), pytest.approx(sum(latencies), abs=0.01))

    # Queue depths, as RQ itself counts them: eve's confirmation waits, the digest retry is scheduled.
    assert get(figures, "newsletter_redis_up") == 1
    for name in QUEUES:
        queue = Queue(name, connection=redis_conn)
        assert get(figures, "newsletter_queue_jobs", queue=name) == queue.count
        assert get(figures, "newsletter_queue_scheduled_jobs", queue=name) \
            == ScheduledJobRegistry(queue=queue).get_job_count(cleanup=False)
    assert get(figures, "newsletter_queue_jobs", queue="mail") == 1
    assert get(figures, "newsletter_queue_scheduled_jobs", queue="digest") == 1
    assert get(figures, "newsletter_workers") == 0  # the drain's burst worker has left

    # A second app, as a second gunicorn worker is, answers the same.
    other = create_app(settings)
    try:
        assert scrape(other.test_client()) == figures
    finally:
        other.extensions["newsletter_db"].dispose()


def test_before_anything_happened_every_figure_is_zero_and_no_edition_is_shown(client):
    figures = scrape(client)
    assert all(value == 0 for (name, _), value in figures.items() if name != "newsletter_redis_up")
    assert not any(name.startswith("newsletter_last_edition") for name, _ in figures)
    assert len(samples(figures, "newsletter_subscribers")) == 5


def test_the_token_is_wanted_when_one_is_set(settings, redis_conn):
    app = create_app(replace(settings, metrics_token=TOKEN))
    client = app.test_client()
    try:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer tökén"},
                        {"Authorization": "Bearer"}):
            response = client.get("/metrics", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "newsletter_" not in response.get_data(as_text=True)
        assert get(scrape(client, Authorization=f"Bearer {TOKEN}"), "newsletter_redis_up") == 1
        assert get(scrape(client, Authorization=f"bearer {TOKEN}"), "newsletter_redis_up") == 1
    finally:
        app.extensions["newsletter_db"].dispose()


def test_redis_away_is_a_figure_not_an_error(settings, database):
    with database.session_scope() as session:
        add_listing(session, 1, "Tischler/in")
    app = create_app(replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    client = app.test_client()
    try:
        assert signup(client, "anna@example.org").status_code == 200  # left to the reconciler
        figures = scrape(client)
    finally:
        app.extensions["newsletter_db"].dispose()
    assert get(figures, "newsletter_redis_up") == 0
    assert samples(figures, "newsletter_queue_jobs") == {}
    assert samples(figures, "newsletter_workers") == {}
    assert get(figures, "newsletter_subscribers", state="pending") == 1  # the database's figures stay
    assert get(figures, "newsletter_transactional_mails", kind="confirm", status="pending") == 1


def test_database_away_fails_the_scrape_with_503_and_it_works_again_once_back(backend, settings, redis_conn):
    """A scrape without the database's figures would be a lie of zeros: it fails, and
    Prometheus marks the target down (`up == 0`)."""
    if backend == "sqlite":
        pytest.skip("SQLite is a file inside the app's process: it cannot be away as a server is "
                    "(tests/web/test_outages.py)")
    url = make_url(settings.database_url)
    with TcpProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        app = create_app(replace(settings, database_url=url.set(port=proxy.port).render_as_string(
            hide_password=False)))
        client = app.test_client()
        try:
            scrape(client)
            proxy.pause()
            response = client.get("/metrics", headers={"Accept": "text/plain"})
            assert response.status_code == 503 and response.headers["Retry-After"] == "30"
            assert "newsletter_" not in response.get_data(as_text=True)
            proxy.resume()
            assert get(scrape(client), "newsletter_redis_up") == 1
        finally:
            app.extensions["newsletter_db"].dispose()


def _http_get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_gunicorn_with_two_workers_answers_the_same_every_time(app, client, smtp, drain, database, settings, tmp_path):
    """The web in processes of its own, the work done by another: every scrape, whichever
    worker takes it, shows what the database holds."""
    edition_id = live_a_little(client, smtp, drain, database, settings)
    expected = scrape(client)
    port = free_port()
    with open(tmp_path / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}",
             "--no-control-socket", "wsgi:app"],
            cwd=ROOT, env=env_for(settings), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                status, _ = _http_get(port, "/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
                time.sleep(0.2)
        scrapes = []
        for _ in range(6):  # a new connection each: either worker may take it
            status, body = _http_get(port, "/metrics")
            assert status == 200, body
            scrapes.append(parse(body))
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert all(figures == expected for figures in scrapes)
    assert get(expected, "newsletter_last_edition_deliveries", edition=str(edition_id), status="sent") == 1
    assert find_subscriber(database, "eve@example.org").status == "pending"
