"""An operator's morning in a real browser: the admin asks for a login, the dashboard shows
the list and that a worker and the scheduler run, the preview shows what a reader would
get (its HTML in a frame), a test mail of it arrives at the SMTP sink, and an edition sent
from the dry run page is watched on its page until the worker has sent all of it.

The screenshots of the README are taken here (docs/screenshots/ when
NEWSLETTER_SCREENSHOTS=1; otherwise they go to the test's own directory, so that taking
them is tested on every run)."""

from __future__ import annotations

import re
import time
from typing import Any

from playwright.sync_api import expect

from newsletter.editions import planning
from newsletter.models import Edition
from tests.helpers import all_rows, status_counts
from tests.web.admin.conftest import PASSWORD

from .conftest import OPERATOR, TIMEOUT_MS, Live

ANNA = "anna@example.org"  # a demo reader: "Python, Machine Learning", anywhere
# The sink takes this long per mail while the edition sends, like a relay far away, so
# that the edition page is seen refreshing before the edition is done.
RELAY_SECONDS = 0.2


def _dry_run(live: Live, database: Any) -> planning.Preview:
    with database.session_scope() as session:
        return planning.preview(session, live.settings)


def test_an_operator_previews_test_sends_and_watches_an_edition_finish(page, live, board, smtp, database, screenshot):
    # Without a session the admin shows its login form and nothing else.
    page.goto(live.url("/admin/"))
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))
    expect(page.locator("#states")).to_have_count(0)
    page.fill("#email", OPERATOR)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Anmelden").click()

    # The dashboard: the list by state, the chart's totals, a worker and a scheduler alive.
    expect(page).to_have_url(live.url("/admin/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Übersicht")
    states = status_counts(database)
    for state in ("confirmed", "pending", "unsubscribed"):
        expect(page.locator(f"#states [data-state={state}]")).to_have_text(str(states[state]))
    expect(page.locator("[data-total=signups]")).to_have_text("40")
    expect(page.locator("#no-worker")).to_have_count(0)
    expect(page.locator("#no-scheduler")).to_have_count(0)
    expect(page.locator("#workers tbody th")).to_have_count(1)

    # The preview as a reader: her listings, the text part with placeholder links, the
    # HTML in its sandboxed frame.
    page.get_by_role("link", name="Vorschau", exact=True).click()
    page.fill("#email", ANNA)
    page.get_by_role("button", name="Vorschau anzeigen").click()
    listed = page.locator("#preview-listings li")
    expect(listed.first).to_be_visible()
    titles = listed.all_inner_texts()
    assert any("Machine Learning Engineer" in t for t in titles) and any("Python" in t for t in titles)
    assert not any("Pflegefachkraft" in t for t in titles)
    expect(page.locator("#preview-text")).to_contain_text("/unsubscribe/PREVIEW")
    frame = page.frame_locator("iframe.mail-frame")
    expect(frame.locator("body")).to_contain_text("Machine Learning Engineer")
    screenshot(page, "admin-preview", until="iframe.mail-frame")

    # A test send of it arrives, marked as a test, and the page says so.
    page.fill("#to", OPERATOR)
    page.get_by_role("button", name="Testmail senden").click()
    expect(page.locator("p.notice")).to_have_text(f"Die Testmail wurde an {OPERATOR} gesendet.")
    [test_mail] = smtp.wait_for(1) and smtp.to(OPERATOR)
    assert str(test_mail.message["Subject"]).startswith("[TEST]")
    assert "Machine Learning Engineer" in test_mail.part("plain")

    # The dry run says what an edition made now would cover, then the edition is sent.
    page.get_by_role("link", name="Übersicht", exact=True).click()
    page.get_by_role("link", name="Probelauf und jetzt senden").click()
    expected = _dry_run(live, database)
    assert expected.recipients > 10
    expect(page.locator("#dry-run")).to_contain_text(f"{expected.recipients} ")
    expect(page.locator("#dry-run")).to_contain_text(f"{len(expected.listings)} ")
    assert not all_rows(database, Edition)  # the dry run made nothing
    smtp.handler.data_reply = lambda envelope: time.sleep(RELAY_SECONDS)
    page.get_by_role("button", name=f"Jetzt an {expected.recipients} Leser senden").click()

    # Its page refreshes its counts while the worker sends (no reload: the mark set in
    # the window stays), then shows it done with every mail sent.
    page.wait_for_url(re.compile(r"/admin/editions/\d+$"))
    expect(page.locator("#progress")).to_have_attribute("data-state", "sending")
    page.evaluate("window.watching = true")
    page.wait_for_function(
        "() => window.watching && document.querySelector('[data-field=refreshed]').textContent !== ''"
        " && Number(document.querySelector('[data-count=sent]').textContent) > 0",
        timeout=TIMEOUT_MS,
    )
    expect(page.locator("#progress")).to_have_attribute("data-state", "done", timeout=60_000)
    [edition] = all_rows(database, Edition)
    assert edition.planned == expected.recipients
    sent = page.locator("#progress [data-count=sent]")
    expect(sent).to_have_text(str(edition.planned))
    expect(page.locator("#progress [data-count=queued]")).to_have_text("0")
    expect(page.locator("#progress [data-count=failed]")).to_have_text("0")
    expect(page.locator("progress[data-progress=done]")).to_have_attribute("value", str(edition.planned))
    smtp.handler.data_reply = lambda envelope: None
    digests = [m for m in smtp.messages if not str(m.message["Subject"]).startswith("[TEST]")]
    assert len(digests) == edition.planned
    screenshot(page, "admin-edition")

    # The dashboard has it among the last editions.
    page.get_by_role("link", name="Übersicht", exact=True).click()
    row = page.locator(f"tr:has(a[href='/admin/editions/{edition.id}'])")
    expect(row.locator("[data-count=sent]")).to_have_text(str(edition.planned))
    screenshot(page, "admin-dashboard")
