"""A reader's whole way in a real browser, as the job board sends them: the search result's
"subscribe to this search" link, the form it fills in, the confirmation mail from the SMTP
sink, confirm, the preferences page with a radius and job types, a digest sent by a real
worker, its web version, and unsubscribe. The listings come in as employers send them:
a schema.org JobPosting feed with coordinates, job types and salaries.

The README's screenshots of the form, a digest and the preferences page are taken here
(docs/screenshots/ when NEWSLETTER_SCREENSHOTS=1)."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from playwright.sync_api import expect

from newsletter.editions import planning
from newsletter.listings import store
from newsletter.models import utcnow
from newsletter.tokens import tokens_for
from tests.helpers import find_subscriber, queue_edition

from .conftest import Live
from .test_accessibility import Audit

READER = "mara@example.org"


def _posting(n: int, title: str, town: str, postal: str, lat: float, lon: float, *, types: list[str],
             salary: tuple[float, float, str] | None = None, remote: bool = False) -> dict[str, Any]:
    """One JobPosting as a board's feed carries it."""
    posting: dict[str, Any] = {
        "@context": "https://schema.org", "@type": "JobPosting",
        "identifier": f"journey-{n}", "title": title, "url": f"https://jobs.example.org/stellen/journey-{n}",
        "datePosted": (utcnow() - timedelta(hours=n)).isoformat(timespec="seconds") + "Z",
        "hiringOrganization": {"@type": "Organization", "name": "Isar Analytics GmbH"},
        "description": "<p>Sie bauen Datenprodukte mit Python und SQL in einem kleinen Team.</p>",
        "employmentType": types,
        "jobLocation": {"@type": "Place", "address": {"@type": "PostalAddress", "addressLocality": town,
                                                     "postalCode": postal, "addressCountry": "DE"},
                        "geo": {"@type": "GeoCoordinates", "latitude": lat, "longitude": lon}},
    }
    if salary:
        low, high, unit = salary
        posting["baseSalary"] = {"@type": "MonetaryAmount", "currency": "EUR", "value": {
            "@type": "QuantitativeValue", "minValue": low, "maxValue": high, "unitText": unit}}
    if remote:
        posting["jobLocationType"] = "TELECOMMUTE"
    return posting


FEED = [
    _posting(1, "Data Engineer Python (m/w/d)", "Garching bei München", "85748", 48.249, 11.651,
             types=["FULL_TIME"], salary=(62000, 78000, "YEAR")),
    _posting(2, "Werkstudent Python Data (m/w/d)", "München", "80331", 48.137, 11.575,
             types=["PART_TIME"], salary=(17.5, 17.5, "HOUR")),
    _posting(3, "Python-Entwicklerin (m/w/d) remote", "Hamburg", "20095", 53.551, 9.994,
             types=["FULL_TIME"], salary=(58000, 70000, "YEAR"), remote=True),
    _posting(4, "Python Developer Augsburg (m/w/d)", "Augsburg", "86150", 48.371, 10.898,
             types=["FULL_TIME"], salary=(55000, 65000, "YEAR")),
    _posting(5, "Python Praktikum (m/w/d)", "München", "80331", 48.137, 11.575, types=["INTERN"]),
]


def _mail(smtp: Any, count: int, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while len(smtp.to(READER)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    mails = smtp.to(READER)
    assert len(mails) >= count, f"{READER} got {len(mails)} mails, expected {count}"
    return mails[count - 1]


def _link(live: Live, text: str, prefix: str) -> str:
    found = re.findall(re.escape(live.url(prefix)) + r"[^\s<>\"]+", text)
    assert found, f"no {prefix} link in the mail"
    return found[0]


def test_a_reader_subscribes_to_a_search_gets_a_digest_reads_it_online_and_leaves(
        page, live, smtp, database, screenshot):
    # The board's link under a search for "Python" in Munich: the form comes filled in.
    search = {"keywords": "Python", "location": "München", "radius": "50", "remote": "also",
              "employment_type": "full_time"}
    page.goto(live.url("/subscribe?" + urlencode(search)))
    expect(page.locator("#keywords")).to_have_value("Python")
    expect(page.locator("#location")).to_have_value("München")
    expect(page.locator("#radius")).to_have_value("50")
    expect(page.locator("#remote-also")).to_be_checked()
    expect(page.locator("#type-full_time")).to_be_checked()
    expect(page.locator("#type-part_time")).not_to_be_checked()
    page.fill("#email", READER)
    screenshot(page, "signup-form")
    page.click("form[action*='/subscribe'] button[type=submit]")
    expect(page.locator("h1")).to_be_visible()
    assert find_subscriber(database, READER).status == "pending"

    # The confirmation mail's link, and its one button.
    page.goto(_link(live, _mail(smtp, 1).part("plain"), "/confirm/"))
    page.click("form[action*='/confirm/'] button[type=submit]")
    reader = find_subscriber(database, READER)
    assert (reader.status, reader.keywords, reader.location, reader.radius, reader.employment_type) == (
        "confirmed", "Python", "München", 50, "full_time")

    # The welcome mail's preferences link: a closer radius and part-time work too.
    page.goto(_link(live, _mail(smtp, 2).part("plain"), "/preferences/"))
    expect(page.locator("#radius")).to_have_value("50")
    page.select_option("#radius", "25")
    page.check("#type-part_time")
    expect(page.get_by_text("München", exact=False).first).to_be_visible()
    page.click("form[action*='/preferences/']:not([action*='data-link']) button[type=submit]")
    reader = find_subscriber(database, READER)
    assert (reader.radius, reader.employment_type) == (25, "full_time,part_time")
    screenshot(page, "preferences")

    # The employers' feed, then an edition that a real worker sends.
    with database.session_scope() as session:
        result = store.import_feed(session, json.dumps(FEED).encode(), "feed.jsonld")
        assert (result.added, result.rejected) == (5, [])
    with database.session_scope() as session:
        edition_id = planning.create_edition(session, live.settings, "test").id
    queue_edition(live.settings, edition_id)
    digest = _mail(smtp, 3)
    text = digest.part("plain")
    # Garching (~15 km, full-time) and the working-student job in Munich (part-time) and the
    # remote one from Hamburg; not Augsburg (~57 km) and not the internship.
    assert "Data Engineer Python" in text and "Werkstudent Python Data" in text and "Python-Entwicklerin" in text
    assert "Augsburg" not in text and "Praktikum" not in text
    assert "62.000–78.000 € im Jahr" in text and "17,50 € pro Stunde" in text

    # The digest as the reader's mail program shows it (on a blank page: our pages' CSP
    # would keep its inline styles from applying).
    page.goto("about:blank")
    page.set_content(digest.part("html"))
    screenshot(page, "digest")

    # Its web version: the same listings, no link of this reader's.
    web = _link(live, text, "/digest/")
    page.goto(web)
    expect(page.get_by_text("Data Engineer Python (m/w/d)")).to_be_visible()
    html = page.content()
    assert reader.public_id not in html and "/unsubscribe/" not in html and "/preferences/" not in html
    # It passes axe in both languages at both widths, as every reader's page does.
    audit = Audit(live)
    audit.page = page
    audit("web version", "de")
    variant_id, _language = tokens_for(live.settings).read_digest_web(web.rsplit("/", 1)[1])
    page.goto(live.url(f"/digest/{tokens_for(live.settings).digest_web(variant_id, 'en')}"))
    expect(page.get_by_text("Data Engineer Python (m/w/d)")).to_be_visible()
    audit("web version", "en")
    audit.assert_clean()

    # And out again: the digest's unsubscribe link, one button.
    page.goto(_link(live, text, "/unsubscribe/"))
    page.click("form[action*='/unsubscribe/'] button[type=submit]")
    assert find_subscriber(database, READER).status == "unsubscribed"
