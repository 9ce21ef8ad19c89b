"""The dashboard's figures against the database: subscribers by state, the daily series,
the last editions' counts, the next slot and what an edition now would cover, the queues,
the warning when no worker or scheduler beats, and alarms marked seen (audited)."""

from __future__ import annotations

import re
from datetime import timedelta

from newsletter import queueing
from newsletter.editions import planning
from newsletter.models import AuditEvent, ConsentEvent, OperatorAlarm, utcnow
from newsletter.operators import dashboard
from newsletter.subscribers import subscriptions
from tests.helpers import add_listing, add_reader, all_rows, queue_edition
from tests.web.admin.conftest import logged_in, post


def _tile(page: str, state: str) -> int:
    return int(re.search(rf'<dd data-state="{state}">(\d+)</dd>', page).group(1))


def _total(page: str, series: str) -> int:
    return int(re.search(rf'<strong data-total="{series}">(\d+)</strong>', page).group(1))


def test_the_figures_are_the_databases(client, database, settings, operator):
    now = utcnow()
    with database.session_scope() as session:
        for n in range(3):
            add_reader(session, f"c{n}@example.net")
        add_reader(session, "p@example.net", status="pending")
        add_reader(session, "u@example.net", status="unsubscribed")
        add_listing(session, 1, "Gärtnerin")
        events = [("signup", "a", 1), ("signup", "a", 1), ("signup", "b", 2), ("confirmed", "a", 1),
                  ("unsubscribed", "b", 0), ("signup", "old", 120)]
        for event, who, days_ago in events:
            session.add(ConsentEvent(subscriber_public_id=who, email_hash=who, event=event,
                                     at=now - timedelta(days=days_ago)))
    with database.session_scope() as session:
        edition_id = planning.create_edition(session, settings, "test").id
        stats = subscriptions.stats(session)
    queue_edition(settings, edition_id)  # as `digest send` does; no worker takes it here
    logged_in(client, operator)
    page = client.get("/admin/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    for state in ("confirmed", "pending", "unsubscribed", "bounced", "complained", "suppressed"):
        assert _tile(page, state) == stats[state], state
    assert _tile(page, "confirmed") == 3
    # A form sent twice on one day is one signup; 120 days ago is outside the chart.
    assert (_total(page, "signups"), _total(page, "confirmations"), _total(page, "unsubscribes")) == (2, 1, 1)
    assert page.count("<polyline") == 3
    row = re.search(rf'href="/admin/editions/{edition_id}">#{edition_id}</a></th>(.*?)</tr>', page, re.S).group(1)
    assert '<td data-count="queued">3</td>' in row and '<td data-count="sent">0</td>' in row
    slot = dashboard.next_slot(settings, utcnow())
    assert slot > utcnow() and "Next scheduled:" in page
    # The open edition holds the next one; the dry run counts nothing new for it.
    assert f"Edition {edition_id} is still sending" in page
    assert "would reach 0 readers with 0 listings" in page
    assert re.search(r'data-queue="digest">1<', page)  # its one chunk waits: no worker runs


def test_no_worker_and_no_scheduler_is_a_warning_until_they_beat(client, database, operator, redis_conn):
    logged_in(client, operator)
    page = client.get("/admin/").get_data(as_text=True)
    assert 'id="no-worker"' in page and 'id="no-scheduler"' in page
    # What a running worker and `newsletter scheduler` write to Redis (rq 3.0's registries).
    from rq import Worker
    from rq.cron import CronScheduler

    worker = Worker(list(queueing.ALL), connection=redis_conn, name="worker-on-host-a")
    worker.register_birth()
    worker.heartbeat()
    cron = CronScheduler(connection=redis_conn)
    cron.register_birth()
    cron.heartbeat()
    page = client.get("/admin/").get_data(as_text=True)
    assert 'id="no-worker"' not in page and 'id="no-scheduler"' not in page and "worker-on-host-a" in page
    worker.register_death()
    cron.register_death()
    assert 'id="no-worker"' in client.get("/admin/").get_data(as_text=True)


def test_alarms_are_listed_until_marked_seen_one_or_all(client, database, operator):
    with database.session_scope() as session:
        session.add_all([OperatorAlarm(kind="smtp_policy", message=f"relay refuses us ({n})") for n in range(3)])
    logged_in(client, operator)
    page = client.get("/admin/").get_data(as_text=True)
    assert all(f"relay refuses us ({n})" in page for n in range(3))
    first = all_rows(database, OperatorAlarm)[0]
    assert post(client, "/admin/alarms/seen", {"alarm": str(first.id)}).status_code == 303
    page = client.get("/admin/").get_data(as_text=True)
    assert "relay refuses us (0)" not in page and "relay refuses us (1)" in page
    post(client, "/admin/alarms/seen")
    assert all(a.seen_at is not None for a in all_rows(database, OperatorAlarm))
    assert 'id="alarms-h"' in client.get("/admin/").get_data(as_text=True)
    seen = [e.detail for e in all_rows(database, AuditEvent) if e.action == "alarms.seen"]
    assert seen == [{"alarms": [first.id], "count": 1}, {"alarms": "all", "count": 2}]


def test_with_redis_away_the_dashboard_says_so_instead_of_failing(app, client, database, operator):
    from dataclasses import replace

    from newsletter.web.extensions import init_redis

    logged_in(client, operator)
    settings = app.extensions["newsletter_settings"]
    init_redis(app, replace(settings, redis_url="redis://127.0.0.1:1/0"))  # a port where nothing listens
    response = client.get("/admin/", headers={"Accept-Language": "en"})
    assert response.status_code == 200 and "Redis does not answer" in response.get_data(as_text=True)
