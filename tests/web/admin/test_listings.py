"""Listings in the admin: a feed file uploaded goes through the import of `newsletter
listings import` (the good rows kept, each rejected one named), a file that is no feed
takes nothing, the API's 4 MB limit holds, the list pages, and a withdrawal (confirmed
first, audited) keeps the listing out of the next edition."""

from __future__ import annotations

import html
import io
import json
from datetime import timedelta

import pytest

from newsletter.models import AuditEvent, Listing, utcnow
from tests.helpers import add_listing, add_reader, all_rows, send_now
from tests.web.admin.conftest import csrf, logged_in, post


@pytest.fixture
def en(client):
    client.environ_base.update({"HTTP_ACCEPT_LANGUAGE": "en"})
    return client


def _upload(client, raw: bytes, name: str):
    token = csrf(client, "/admin/listings")
    return client.post("/admin/listings/upload", data={"csrf_token": token, "file": (io.BytesIO(raw), name)},
                       content_type="multipart/form-data")


def _row(n: int, **fields: object) -> dict[str, object]:
    published = (utcnow() - timedelta(hours=2)).isoformat() + "Z"
    return {"id": f"feed-{n}", "title": f"Stelle {n}", "url": f"https://jobs.example.org/{n}",
            "published_at": published, **fields}


def _titles(database) -> dict[str, bool]:
    return {row.external_id: row.withdrawn_at is not None for row in all_rows(database, Listing)}


def test_an_upload_keeps_the_good_rows_and_names_the_rejected_one(en, database, operator):
    logged_in(en, operator)
    lines = [_row(1), _row(2, url="javascript:alert(1)"), _row(3)]
    raw = "\n".join(json.dumps(line) for line in lines).encode()
    response = _upload(en, raw, "feed.jsonl")
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 200
    for count, value in (("added", 2), ("updated", 0), ("unchanged", 0), ("rejected", 1)):
        assert f'data-count="{count}">{value}<' in page
    rejected = page.split('id="rejected"')[1].split("</ul>")[0]
    assert "line 2 (feed-2): url:" in rejected
    assert _titles(database) == {"feed-1": False, "feed-3": False}
    [audit] = [e for e in all_rows(database, AuditEvent) if e.action == "listings.import"]
    assert (audit.actor, audit.detail) == (operator, {"file": "feed.jsonl", "added": 2, "updated": 0, "unchanged": 0,
                                                      "rejected": 1})
    # The same file again changes nothing; a CSV of the board's columns updates one.
    again = _upload(en, raw, "feed.jsonl").get_data(as_text=True)
    assert 'data-count="unchanged">2<' in again
    csv = f"id,title,url,published_at\nfeed-1,Stelle 1 (neu),https://jobs.example.org/1,{_row(1)['published_at']}\n"
    assert 'data-count="updated">1<' in _upload(en, csv.encode(), "feed.csv").get_data(as_text=True)
    assert "Stelle 1 (neu)" in en.get("/admin/listings").get_data(as_text=True)


def test_json_ld_is_read_like_the_cli_reads_it(en, database, operator):
    logged_in(en, operator)
    document = {"@context": "https://schema.org", "@graph": [{
        "@type": "JobPosting", "identifier": "ld-1", "title": "Gärtnerin", "url": "https://jobs.example.org/ld-1",
        "datePosted": _row(1)["published_at"], "hiringOrganization": {"@type": "Organization", "name": "Grün GmbH"},
    }]}
    response = _upload(en, json.dumps(document).encode(), "jobs.jsonld")
    assert 'data-count="added">1<' in response.get_data(as_text=True)
    assert _titles(database) == {"ld-1": False}


@pytest.mark.parametrize("raw, name, reason", [
    (b"id,title\n1,x\n", "feed.json", "not JSON"),
    (b"[{\"id\": 1,", "feed.json", "not valid JSON"),
    (b"", "feed.csv", "the file is empty"),
])
def test_a_file_that_is_no_feed_takes_nothing(en, database, operator, raw, name, reason):
    logged_in(en, operator)
    response = _upload(en, raw, name)
    assert response.status_code == 400 and reason in html.unescape(response.get_data(as_text=True))
    assert all_rows(database, Listing) == []
    assert [e.action for e in all_rows(database, AuditEvent) if e.action.startswith("listing")] == []


def test_an_upload_over_four_megabytes_is_refused(en, database, operator):
    logged_in(en, operator)
    raw = json.dumps([_row(1, description="x" * (4 * 1024 * 1024))]).encode()
    assert _upload(en, raw, "big.json").status_code == 413
    assert all_rows(database, Listing) == []


def test_the_list_pages_through_the_newest_first(en, database, operator):
    with database.session_scope() as session:
        for n in range(1, 56):
            add_listing(session, n, f"Stelle Nummer {n:02d}", hours_ago=n)
    logged_in(en, operator)
    first = en.get("/admin/listings").get_data(as_text=True)
    assert "Stelle Nummer 01" in first and "Stelle Nummer 50" in first and "Stelle Nummer 51" not in first
    assert "55 listings, newest first" in first and 'href="/admin/listings?page=2"' in first
    second = en.get("/admin/listings?page=2").get_data(as_text=True)
    assert "Stelle Nummer 51" in second and "Stelle Nummer 01" not in second


def test_withdraw_asks_first_then_keeps_the_listing_out_of_the_next_edition(en, database, settings, smtp, drain, operator):
    with database.session_scope() as session:
        add_listing(session, 1, "Bleibt drin")
        add_listing(session, 2, "Wird zurückgezogen")
        add_reader(session, "leser@example.net")
    logged_in(en, operator)
    asked = post(en, "/admin/listings/withdraw", {"id": "job-2"}, page="/admin/listings")
    assert asked.status_code == 200 and "Withdraw “Wird zurückgezogen” (job-2)?" in asked.get_data(as_text=True)
    assert _titles(database) == {"job-1": False, "job-2": False}

    done = post(en, "/admin/listings/withdraw", {"id": "job-2", "confirm": "yes"}, page="/admin/listings")
    assert done.status_code == 303 and done.headers["Location"] == "/admin/listings"
    assert _titles(database) == {"job-1": False, "job-2": True}
    page = en.get("/admin/listings").get_data(as_text=True)
    assert "is withdrawn" in page and 'name="id" value="job-2"' not in page
    [audit] = [e for e in all_rows(database, AuditEvent) if e.action == "listing.withdraw"]
    assert (audit.actor, audit.detail) == (operator, {"id": "job-2"})
    assert post(en, "/admin/listings/withdraw", {"id": "job-404", "confirm": "yes"},
                page="/admin/listings").status_code == 404

    send_now(database, settings, drain)
    [mail] = smtp.to("leser@example.net")
    text = mail.part("plain")
    assert "Bleibt drin" in text and "Wird zurückgezogen" not in text


def test_a_viewer_sees_the_listings_without_upload_or_withdraw(client, database, viewer):
    with database.session_scope() as session:
        add_listing(session, 1, "Sichtbar")
    logged_in(client, viewer)
    page = client.get("/admin/listings").get_data(as_text=True)
    assert "Sichtbar" in page and 'type="file"' not in page and "/admin/listings/withdraw" not in page
    assert post(client, "/admin/listings/withdraw", {"id": "job-1", "confirm": "yes"}).status_code == 403
    assert _upload(client, json.dumps([_row(9)]).encode(), "feed.json").status_code == 403
    assert _titles(database) == {"job-1": False}
