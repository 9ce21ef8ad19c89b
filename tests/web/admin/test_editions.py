"""Editions from the admin, through its pages and a real worker: the dry run and "send
now" (then a drain finishes it), pause, resume and cancel, the live progress JSON, the
digest preview as a reader and as a search, and the test send into the SMTP sink.
Every action leaves its audit row, which the database will not let anyone rewrite."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import delete, update
from sqlalchemy.exc import DatabaseError

from newsletter import job_context
from newsletter.editions import planning
from newsletter.models import AuditEvent, Delivery, Edition, EditionState
from tests.helpers import add_listing, add_reader, all_rows
from tests.web.admin.conftest import csrf, logged_in, post

ANNA, BERT = "anna@example.net", "bert@example.net"


@pytest.fixture
def board(database):
    """Two readers with different searches and three listings."""
    with database.session_scope() as session:
        add_listing(session, 1, "Python-Entwicklerin", location="Berlin")
        add_listing(session, 2, "Koch (m/w/d)", location="Hamburg")
        add_listing(session, 3, "Backend-Entwickler Python", location="Berlin")
        add_reader(session, ANNA, keywords="python", location="Berlin")
        add_reader(session, BERT, keywords="koch", language="en")


def _audit(database) -> list[tuple[str, str, int | None]]:
    return [(e.actor, e.action, e.edition_id) for e in all_rows(database, AuditEvent) if e.action != "login"]


def _new_edition_id(response) -> int:
    assert response.status_code == 303, response.status_code
    return int(re.fullmatch(r"/admin/editions/(\d+)", response.headers["Location"]).group(1))


def test_send_now_says_what_it_covers_then_sends_and_a_drain_finishes_it(client, database, board, operator, drain, smtp, settings):
    logged_in(client, operator)
    page = client.get("/admin/editions/new", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "It would reach 2 readers with 3 listings." in page and "Send to 2 readers now" in page
    assert not all_rows(database, Edition)  # the dry run made nothing
    job_context.configure(settings)
    edition_id = _new_edition_id(post(client, "/admin/editions", page="/admin/editions/new"))
    progress = client.get(f"/admin/editions/{edition_id}/progress").get_json()
    assert progress["state"] == "sending" and progress["recipients"] == 2 and progress["queued"] == 2
    drain()
    assert {m.rcpt_tos[0] for m in smtp.messages} == {ANNA, BERT}
    progress = client.get(f"/admin/editions/{edition_id}/progress").get_json()
    assert progress | {"id": 0} == {"id": 0, "state": "done", "recipients": 2, "queued": 0, "sent": 2, "failed": 0,
                                    "bounced": 0, "cancelled": 0, "retrying": 0, "soft_bounced": 0,
                                    "policy_bounced": 0, "complained": 0}
    page = client.get(f"/admin/editions/{edition_id}").get_data(as_text=True)
    assert 'data-count="sent">2<' in page and "progress.js" not in page  # a finished edition polls nothing
    assert _audit(database) == [(operator, "edition.send", edition_id)]
    [event] = [e for e in all_rows(database, AuditEvent) if e.action == "edition.send"]
    assert event.detail == {"recipients": 2, "listings": 3} and event.ip == "127.0.0.1"


def test_a_second_send_while_one_is_open_is_refused_with_the_reason(client, database, board, operator, settings):
    with database.session_scope() as session:
        planning.create_edition(session, settings, "test")
    logged_in(client, operator)
    response = post(client, "/admin/editions", page="/admin/editions/new")
    assert response.headers["Location"] == "/admin/editions/new"
    assert "still sending" in client.get("/admin/editions/new").get_data(as_text=True)
    assert len(all_rows(database, Edition)) == 1 and _audit(database) == []


def test_pause_resume_and_cancel_change_the_state_and_are_audited(client, database, board, operator, settings, drain):
    with database.session_scope() as session:
        edition_id = planning.create_edition(session, settings, "test").id
    logged_in(client, operator)
    page = f"/admin/editions/{edition_id}"
    assert "progress.js" in client.get(page).get_data(as_text=True)  # a sending edition refreshes itself
    assert post(client, f"{page}/pause", page=page).status_code == 303
    assert all_rows(database, Edition)[0].state == EditionState.PAUSED
    job_context.configure(settings)
    drain()  # paused: a worker sends nothing
    assert {d.status for d in all_rows(database, Delivery)} == {"pending"}
    # Pausing again is refused, with the reason on the page.
    post(client, f"{page}/pause", page=page)
    assert "cannot pause" in client.get(page).get_data(as_text=True)
    assert post(client, f"{page}/resume", page=page).status_code == 303
    assert all_rows(database, Edition)[0].state == EditionState.SENDING
    assert post(client, f"{page}/cancel", page=page).status_code == 303
    assert all_rows(database, Edition)[0].state == EditionState.CANCELLED
    assert {d.status for d in all_rows(database, Delivery)} == {"cancelled"}
    assert _audit(database) == [(operator, "edition.pause", edition_id), (operator, "edition.resume", edition_id),
                                (operator, "edition.cancel", edition_id)]
    assert client.get("/admin/editions/999").status_code == 404


def test_the_preview_shows_what_a_reader_would_get_with_placeholder_links(client, database, board, operator):
    logged_in(client, operator)
    page = client.get("/admin/preview", query_string={"email": ANNA}).get_data(as_text=True)
    listed = re.search(r'<ol class="listings" id="preview-listings">(.*?)</ol>', page, re.S).group(1)
    assert "Python-Entwicklerin" in listed and "Backend-Entwickler Python" in listed and "Koch" not in listed
    text = re.search(r'<pre class="mail" id="preview-text">(.*?)</pre>', page, re.S).group(1)
    assert "Python-Entwicklerin" in text and "/unsubscribe/PREVIEW" in text
    frame = client.get("/admin/preview/frame", query_string={"email": ANNA})
    html = frame.get_data(as_text=True)
    assert "Backend-Entwickler Python" in html and "/preferences/PREVIEW" in html
    assert "sandbox" in frame.headers["Content-Security-Policy"] and frame.headers["X-Frame-Options"] == "SAMEORIGIN"
    # As a search, in English; a search nothing matches says the reader gets no mail.
    page = client.get("/admin/preview", query_string={"keywords": "koch", "digest_language": "en"}).get_data(as_text=True)
    assert "Koch (m/w/d)" in page and "Python" not in re.search(r'id="preview-listings">(.*?)</ol>', page, re.S).group(1)
    page = client.get("/admin/preview", query_string={"keywords": "astronaut"}).get_data(as_text=True)
    assert 'id="no-mail"' in page
    assert 'id="preview-listings"' not in client.get("/admin/preview", query_string={"email": "x@nowhere.example"}).get_data(as_text=True)


def test_a_test_send_arrives_marked_and_leaves_no_delivery(client, database, board, operator, smtp):
    logged_in(client, operator)
    preview_page = f"/admin/preview?email={ANNA}"
    response = post(client, "/admin/preview/test", {"email": ANNA, "to": "chefin@jobs.example.org"}, page=preview_page)
    assert response.status_code == 303
    [mail] = smtp.wait_for(1)
    assert mail.rcpt_tos == ["chefin@jobs.example.org"] and mail.mail_from == "bounces@jobs.example.org"
    assert str(mail.message["Subject"]).startswith("[TEST] ")
    assert "Python-Entwicklerin" in mail.part("plain") and "/unsubscribe/PREVIEW" in mail.part("plain")
    assert ANNA not in mail.data.decode()
    assert not all_rows(database, Delivery) and not all_rows(database, Edition)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "chefin@jobs.example.org" in page  # "sent to ..." on the page it came back to
    [event] = [e for e in all_rows(database, AuditEvent) if e.action == "preview.test_send"]
    assert event.actor == operator and event.detail["outcome"] == "sent" and ANNA not in str(event.detail)
    # A bad address is refused with the reason, and nothing goes out.
    post(client, "/admin/preview/test", {"email": ANNA, "to": "kein@"}, page=preview_page)
    assert len(smtp.messages) == 1


def test_the_database_refuses_to_rewrite_or_delete_the_audit_log(client, database, operator):
    logged_in(client, operator)
    assert all_rows(database, AuditEvent)
    for statement in (update(AuditEvent).values(actor="someone else"), delete(AuditEvent)):
        with pytest.raises(DatabaseError, match="append-only"):
            with database.session_scope() as session:
                session.execute(statement)
    assert [e.actor for e in all_rows(database, AuditEvent)] == [operator]


def test_the_audit_log_page_lists_the_actions(client, database, board, operator, settings):
    with database.session_scope() as session:
        edition_id = planning.create_edition(session, settings, "test").id
    logged_in(client, operator)
    post(client, f"/admin/editions/{edition_id}/pause", page="/admin/")
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "edition.pause" in page and "login" in page and f'href="/admin/editions/{edition_id}"' in page
    filtered = client.get("/admin/audit", query_string={"action": "edition.pause"}).get_data(as_text=True)
    assert "edition.pause" in filtered and "<td>login</td>" not in filtered
    assert csrf(client, "/admin/audit")
