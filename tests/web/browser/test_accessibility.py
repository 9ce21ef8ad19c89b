"""Every page of the admin and of the reader's side, checked with axe-core in a real
browser, in German and in English, at phone (390 px) and laptop (1280 px) width: no
violation of impact "serious" or "critical". A failure lists each rule with its targets
and the page that explains it.

The admin's pages are taken from the app's url_map (every GET route of the admin without
an argument in its path, plus those with one, filled from seeded data), so a page added
later is checked without a change here; a route of the admin or of the reader's side that
no check reached fails the test by name. The reader's pages are reached as a reader
reaches them: the signup form, then the links of the mails in the SMTP sink.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from werkzeug.exceptions import NotFound

from newsletter.editions import planning
from newsletter.models import OperatorAlarm, SubscriberStatus
from newsletter.tokens import Tokens, tokens_for
from tests.helpers import add_reader, find_subscriber, queue_edition
from tests.web.admin.conftest import PASSWORD

from .conftest import LAPTOP, PHONE, TIMEOUT_MS, Live, log_in

LANGUAGES = ("de", "en")
LOCALES = {"de": "de-DE", "en": "en-GB"}
VIEWPORTS = {"phone": PHONE, "laptop": LAPTOP}
BLOCKING = ("serious", "critical")
# Routes of the admin and the reader's side that are no page of their own.
NOT_PAGES = {
    "admin.edition_progress": "the JSON the edition page polls",
    "admin.preview_frame": "the digest mail itself, in the preview's sandboxed frame (no script runs there)",
    "public.index": "a redirect to the signup form",
    "public.export": "the JSON download of a reader's data",
}
ANNA = "anna@example.org"  # a demo reader


@dataclass(frozen=True)
class Finding:
    where: str
    language: str
    width: str
    rule: str
    impact: str
    help: str
    help_url: str
    targets: tuple[str, ...]

    def __str__(self) -> str:
        return (f"{self.where} [{self.language}, {self.width}]: {self.impact} {self.rule}: {self.help}\n"
                f"    {self.help_url}\n    targets: {', '.join(self.targets)}")


class Audit:
    """Runs axe on the page the browser shows, at each width, and keeps what blocks."""

    def __init__(self, live: Live) -> None:
        self.page: Any = None  # the page to check: set by the test as it opens one
        self.adapter = live.app.url_map.bind("127.0.0.1")
        self.axe = Axe()
        self.findings: list[Finding] = []
        self.endpoints: set[str] = set()
        self.runs = 0
        self.seconds = 0.0

    def endpoint_of(self, url: str, method: str = "GET") -> str:
        try:
            endpoint, _args = self.adapter.match(urlsplit(url).path, method=method)
        except NotFound:
            return "(no route)"
        return str(endpoint)

    def __call__(self, where: str, language: str, method: str = "GET") -> None:
        page = self.page
        page.wait_for_load_state()
        shown = page.locator("html").get_attribute("lang")
        assert shown == language, f"{where}: the page is in {shown!r}, expected {language!r}"
        self.endpoints.add(self.endpoint_of(page.url, method))
        size = page.viewport_size
        for width, viewport in VIEWPORTS.items():
            page.set_viewport_size(viewport)
            t0 = time.monotonic()
            violations = self._axe()
            self.seconds += time.monotonic() - t0
            self.runs += 1
            for violation in violations:
                if violation["impact"] in BLOCKING:
                    targets = tuple(" ".join(map(str, node["target"])) for node in violation["nodes"])
                    self.findings.append(Finding(where, language, width, violation["id"], violation["impact"],
                                                 violation["help"], violation["helpUrl"], targets))
        page.set_viewport_size(size)

    def _axe(self) -> list[dict[str, Any]]:
        """axe-core's violations on the page as it is now. The script (the one
        axe-playwright-python bundles) goes in once per page, not once per run."""
        if not self.page.evaluate("() => typeof window.axe === 'object'"):
            self.page.evaluate(self.axe.axe_script)
        return list(self.page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")["violations"])

    def summary(self, started: float) -> str:
        return (f"axe: {self.runs} runs ({self.seconds:.1f} s) over {len(self.endpoints)} routes, "
                f"{time.monotonic() - started:.1f} s in all")

    def assert_clean(self) -> None:
        assert not self.findings, (f"{len(self.findings)} serious or critical accessibility violation(s):\n"
                                   + "\n".join(map(str, self.findings)))

    def assert_reached(self, prefix: str) -> None:
        """Every GET route of the blueprint `prefix` was checked, or is named in NOT_PAGES."""
        routes = {rule.endpoint for rule in self.adapter.map.iter_rules()
                  if rule.endpoint.startswith(prefix) and "GET" in (rule.methods or ())}
        missed = sorted(routes - self.endpoints - NOT_PAGES.keys())
        assert not missed, (f"no check reached {missed}: add a page of a route with a path argument to "
                            "`extra` of the admin's test, or name what is no page in NOT_PAGES")


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only: what a page shows does not depend on the database, and the browser
    test of the admin's work runs on both."""
    target = tmp_path / "newsletter.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


def _with_language(path: str, language: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}lang={language}"


@contextmanager
def _browser_in(browser: Any, language: str) -> Iterator[Any]:
    """A page of a fresh profile whose browser asks for `language`: forms post without
    ?lang=, and their answers must be in it too."""
    context = browser.new_context(viewport=LAPTOP, locale=LOCALES[language], timezone_id="Europe/Berlin")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


# -- the admin --------------------------------------------------------------------------------

def _admin_pages(live: Live, extra: list[str]) -> list[str]:
    """Every GET route of the admin whose path takes no argument, then `extra`."""
    rules = [rule for rule in live.app.url_map.iter_rules()
             if rule.endpoint.startswith("admin.") and "GET" in (rule.methods or ())
             and not rule.arguments and rule.endpoint not in NOT_PAGES and rule.endpoint != "admin.login_form"]
    return sorted({rule.rule for rule in rules}) + extra


def test_every_admin_page_in_german_and_english_on_a_phone_and_a_laptop(browser, live, board, database):
    with database.session_scope() as session:
        edition_id = planning.create_edition(session, live.settings, "test").id
        session.add(OperatorAlarm(kind="policy", message="example.net refused our mail: 554 5.7.1 policy"))
        session.add(OperatorAlarm(kind="build", message="edition 1: a listing without a title was left out"))
    queue_edition(live.settings, edition_id)  # the worker sends it while the pages are checked
    reader = find_subscriber(database, ANNA)
    # Pages whose route has an argument, or that show more with a query.
    extra = [f"/admin/editions/{edition_id}", f"/admin/subscribers/reader?id={reader.id}",
             f"/admin/preview?email={ANNA}", "/admin/subscribers?q=nobody%40example.org"]
    audit = Audit(live)
    started = time.monotonic()
    skipped: set[str] = set()
    for language in LANGUAGES:
        with _browser_in(browser, language) as page:
            audit.page = page
            page.goto(live.url(_with_language("/admin/login", language)))
            audit("login form", language)
            page.fill("#email", board["operator"])
            page.fill("#password", "not the password at all")
            page.click("form[action$='/admin/login'] button[type=submit]")
            audit("login refused", language, method="POST")

            log_in(page, live, board["operator"], PASSWORD, lang=language)
            for path in _admin_pages(live, extra):
                response = page.goto(live.url(_with_language(path, language)))
                assert response is not None and response.status < 500, f"{path}: {response and response.status}"
                if not response.headers.get("content-type", "").startswith("text/html"):
                    skipped.add(path)  # JSON or a file: no page
                    continue
                audit(path, language)

            # Answers of forms that are pages of their own: a new token shown once, the
            # confirmation step before an erasure.
            page.goto(live.url(_with_language("/admin/tokens", language)))
            page.fill("#name", f"job board feed {language}")
            page.check("#scope-listings")
            page.click("form[action$='/admin/tokens'] button[type=submit]")
            audit("token created", language, method="POST")
            page.goto(live.url(_with_language(f"/admin/subscribers/reader?id={reader.id}", language)))
            page.click("form[action$='/admin/subscribers/erase'] button[type=submit]")
            audit("erase: the confirmation step", language, method="POST")

    print(audit.summary(started), f"; not pages: {sorted(skipped)}")
    audit.assert_reached("admin.")
    audit.assert_clean()


# -- the reader's side ----------------------------------------------------------------------

class _Yesterday(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 30 * 86400


class _OldTokens(Tokens):
    """Links as a mail of a month ago holds them: signed then, expired now."""

    def _timed(self, salt: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.keys, salt=salt, signer=_Yesterday)


def _mailed_link(smtp: Any, address: str, prefix: str, count: int, live: Live) -> str:
    """The `prefix` link of the `count`-th mail to `address`, once the worker sent it."""
    deadline = time.monotonic() + 20
    while len(smtp.to(address)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    mails = smtp.to(address)
    assert len(mails) >= count, f"{address} got {len(mails)} mails, expected {count}"
    found = re.findall(re.escape(live.url(prefix)) + r"[^\s<>\"]+", mails[count - 1].part("plain"))
    assert found, f"no {prefix} link in mail {count} to {address}"
    return found[0]


def _reader_pages(page: Any, live: Live, smtp: Any, audit: Audit, language: str) -> None:
    """A reader's whole way in `language`: sign up (a mistake first), confirm, change the
    settings, ask for the data, unsubscribe, come back to the forms, erase."""
    address = f"leserin-{language}@example.org"
    submit = "button[type=submit]"
    page.goto(live.url(_with_language("/subscribe", language)))
    audit("signup form", language)
    page.click(f"form[action*='/subscribe'] {submit}")
    audit("signup form with an error", language, method="POST")
    page.fill("#email", address)
    page.fill("#keywords", "Python")
    page.select_option("#language", language)
    page.click(f"form[action*='/subscribe'] {submit}")
    audit("signup sent", language, method="POST")

    page.goto(_mailed_link(smtp, address, "/confirm/", 1, live))
    audit("confirm", language)
    page.click(f"form[action*='/confirm/'] {submit}")
    audit("confirmed", language, method="POST")

    preferences = _mailed_link(smtp, address, "/preferences/", 2, live)
    unsubscribe = _mailed_link(smtp, address, "/unsubscribe/", 2, live)
    page.goto(preferences)
    audit("preferences", language)
    page.fill("#keywords", "Python, Data")
    page.click(f"form[action*='/preferences/']:not([action*='data-link']) {submit}")
    audit("preferences saved", language, method="POST")
    page.click(f"form[action*='/data-link'] {submit}")
    audit("data link sent", language, method="POST")

    page.goto(_mailed_link(smtp, address, "/data/", 3, live))
    audit("data", language)
    data_page = page.url
    page.click(f"form[action*='/erase'] {submit}")
    audit("erase not confirmed", language, method="POST")

    page.goto(unsubscribe)
    audit("unsubscribe", language)
    page.click(f"form[action*='/unsubscribe/'] {submit}")
    audit("unsubscribed", language, method="POST")

    # The form in the board's frame: the form, a mistake, then "check your inbox".
    page.goto(live.url(_with_language("/embed/subscribe?keywords=Pflege&location=Köln&radius=50", language)))
    audit("embedded signup form", language)
    page.click(f"form[action*='/subscribe'] {submit}")
    audit("embedded signup form with an error", language, method="POST")
    page.fill("#email", f"eingebettet-{language}@example.org")
    page.check("#type-part_time")
    page.click(f"form[action*='/subscribe'] {submit}")
    audit("embedded signup sent", language, method="POST")

    page.goto(live.url(_with_language("/manage", language)))
    audit("manage form", language)
    page.fill("#email", address)
    page.click(f"form[action*='/manage'] {submit}")
    audit("manage link sent", language, method="POST")

    page.goto(data_page)
    page.check("#confirm-erase")
    page.click(f"form[action*='/erase'] {submit}")
    audit("erased", language, method="POST")


def test_every_reader_page_in_german_and_english_on_a_phone_and_a_laptop(browser, live, database, smtp):
    started = time.monotonic()
    audit = Audit(live)
    for language in LANGUAGES:
        with _browser_in(browser, language) as page:
            audit.page = page
            _reader_pages(page, live, smtp, audit, language)

    # Links that lead nowhere: garbled, a month old, a page that does not exist.
    with database.session_scope() as session:
        add_reader(session, "alt@example.org", status=SubscriberStatus.PENDING)
    old = find_subscriber(database, "alt@example.org")
    current = tokens_for(live.settings)
    expired = _OldTokens(current.keys, current.confirm_max_age_seconds, current.data_max_age_seconds)
    for language in LANGUAGES:
        with _browser_in(browser, language) as page:
            audit.page = page
            for where, path in (("invalid link", "/confirm/not-a-token"),
                                ("expired confirmation", f"/confirm/{expired.confirm(old.public_id)}"),
                                ("expired data link", f"/data/{expired.data(old.public_id, old.link_generation)}"),
                                ("page not found", "/no-such-page")):
                page.goto(live.url(_with_language(path, language)))
                audit(where, language)

    print(audit.summary(started))
    audit.assert_reached("public.")
    audit.assert_clean()

