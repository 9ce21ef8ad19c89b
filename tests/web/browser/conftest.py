"""A real browser against the real app: Debian's Chromium driven by Playwright, the app served
by Werkzeug in a thread on 127.0.0.1, a real `newsletter worker` and `newsletter scheduler`
as subprocesses, mail into the `smtp` sink.

    browser        one Chromium per test module (skipped without /usr/bin/chromium, or
                   NEWSLETTER_TEST_CHROMIUM, unless NEWSLETTER_TEST_BROWSER=require: then
                   it fails)
    live           the running app (`live.url(path)`, `live.app`), its settings, with a
                   worker and a scheduler
    board          what an operator finds on a Monday: the sample feed, readers with a
                   90-day history, and an operator account
    screenshot     take(page, name, until=None): a PNG for the README (docs/screenshots/
                   when NEWSLETTER_SCREENSHOTS=1, else the test's own directory)
    log_in(page, live, email)   log in through the admin's login form

The app's BASE_URL is the live server's address, so every link a mail holds opens in the
browser as it would for a reader.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from werkzeug.serving import make_server

from newsletter.config import Settings
from newsletter.demo.seed import add_demo_readers, load_sample_listings
from newsletter.models import AdminRole, ConsentEvent, Subscriber, SubscriberStatus, email_hash, utcnow
from tests.conftest import env_for
from tests.smtp_sink import free_port
from tests.web.admin.conftest import PASSWORD, make_account

CHROMIUM = Path(os.environ.get("NEWSLETTER_TEST_CHROMIUM", "/usr/bin/chromium"))  # where .ci/install-chromium puts it
BROWSER_MODE = os.environ.get("NEWSLETTER_TEST_BROWSER", "auto")
NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
OPERATOR = "olga@jobs.example.org"
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Playwright waits this long (ms) for a page or an element before the test fails.
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = "chromium is not installed (.ci/install-chromium installs it)"
        if BROWSER_MODE == "require":
            pytest.fail(f"{message}; NEWSLETTER_TEST_BROWSER=require")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright cannot download its own browser here; Debian's runs as root only
        # without its sandbox.
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile (no cookies), laptop-sized, German like most readers."""
    ctx = browser.new_context(viewport=LAPTOP, locale="de-DE", timezone_id="Europe/Berlin")
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


@dataclass
class Live:
    settings: Settings
    base: str
    app: Any  # the Flask app it serves (its url_map names the pages)

    def url(self, path: str) -> str:
        return self.base + path


def _wait_for(what: str, predicate: Any, processes: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise AssertionError(f"{process.args!r} exited with {process.returncode} before {what}")
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()  # RQ's warm shutdown
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def live(settings: Settings, redis_conn: Redis, smtp: Any, tmp_path: Path) -> Iterator[Live]:
    """The app on a port of its own with a worker and a scheduler that beat, as in
    production. The schedule's first slot is two weeks ahead: the only editions are the
    ones the test starts."""
    from rq import Worker
    from rq.cron import CronScheduler

    from newsletter import create_app

    port = free_port()
    first = (datetime.now(settings.tz) + timedelta(days=14)).replace(hour=8, minute=0, second=0, microsecond=0)
    own = replace(settings, base_url=f"http://127.0.0.1:{port}",
                  digest_first=first.replace(tzinfo=None).isoformat(timespec="minutes"))
    env = env_for(own)
    logs = [(tmp_path / f"{name}.log").open("wb") for name in ("worker", "scheduler")]
    processes = [subprocess.Popen([NEWSLETTER, name], env=env, stdout=log, stderr=subprocess.STDOUT)
                 for name, log in zip(("worker", "scheduler"), logs, strict=True)]
    app = create_app(own)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        _wait_for("the worker's first heartbeat", lambda: Worker.all(connection=redis_conn), processes)
        _wait_for("the scheduler's first heartbeat", lambda: CronScheduler.all(connection=redis_conn), processes)
        yield Live(own, f"http://127.0.0.1:{port}", app)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        for process in processes:
            _stop(process)
        for log in logs:
            log.close()
        app.extensions["newsletter_db"].dispose()


# -- what the admin shows: the demo's sample feed and readers with a history -----------------

KEYWORDS = ("Pflege", "Entwickler", "Data", "Marketing", "Logistik", "", "Werkstudent", "Controlling")
PLACES = ("", "", "Hamburg", "Berlin", "München", "Köln", "Leipzig")


def _history(session: Any, rng: random.Random, count: int) -> None:
    """`count` readers who signed up over the last 90 days: most confirmed, some still
    pending, some gone again; with the consent events the dashboard's chart counts."""
    now = utcnow()
    for n in range(count):
        address = f"leser{n:02d}@example.org"
        status = SubscriberStatus.CONFIRMED if n % 7 not in (3, 5) else (
            SubscriberStatus.PENDING if n % 7 == 3 else SubscriberStatus.UNSUBSCRIBED)
        # Pending ones are recent: the scheduler's retention purge forgets old unconfirmed signups.
        signed_up = now - (timedelta(hours=rng.uniform(1, 30)) if status == SubscriberStatus.PENDING
                           else timedelta(days=rng.uniform(1, 89), hours=rng.uniform(0, 8)))
        confirmed = signed_up + timedelta(minutes=rng.uniform(2, 600)) if status != SubscriberStatus.PENDING else None
        left = confirmed + timedelta(days=rng.uniform(0.5, 20)) if status == SubscriberStatus.UNSUBSCRIBED else None
        reader = Subscriber(email=address, email_hash=email_hash(address), language="en" if n % 5 == 4 else "de",
                            keywords=KEYWORDS[n % len(KEYWORDS)], location=PLACES[n % len(PLACES)], status=status,
                            created_at=signed_up, confirmed_at=confirmed,
                            unsubscribed_at=min(left, now) if left else None,
                            pending_since=signed_up if status == SubscriberStatus.PENDING else None)
        session.add(reader)
        session.flush()
        for event, at in (("signup", signed_up), ("confirmed", confirmed), ("unsubscribed", left)):
            if at is not None and at < now:
                session.add(ConsentEvent(subscriber_public_id=reader.public_id, email_hash=reader.email_hash,
                                         event=event, at=at, channel="web", consent_version="v1"))


@pytest.fixture
def board(database: Any) -> dict[str, Any]:
    """The demo's sample feed (64 listings, fresh today), its four readers and 40 more with
    a history, and an operator account (PASSWORD)."""
    with database.session_scope() as session:
        listings = load_sample_listings(session).added
        add_demo_readers(session)
        _history(session, random.Random(11), 40)
    make_account(database, OPERATOR, AdminRole.OPERATOR)
    return {"listings": listings, "operator": OPERATOR}


def log_in(page: Any, live: Live, email: str = OPERATOR, password: str = PASSWORD, lang: str = "de") -> None:
    """Log in through the login form, as an operator would, and land on the dashboard."""
    page.goto(live.url(f"/admin/login?lang={lang}"))
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("form[action$='/admin/login'] button[type=submit]")
    page.wait_for_url(live.url("/admin/"))


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[..., Path]:
    """Take the page from its top down to the end of `until` (a selector), or all of it.
    The viewport is made that tall rather than the page stitched together (full_page):
    Chromium paints no frame that was out of view (the preview's would be blank)."""
    def take(page: Any, name: str, until: str | None = None) -> Path:
        path = tmp_path / "screenshots" / f"{name}.png"
        size = page.viewport_size
        if until is not None:
            box = page.locator(until).bounding_box()
            height = box["y"] + box["height"] + page.evaluate("() => window.scrollY") + 24
        else:
            height = page.evaluate("() => document.documentElement.scrollHeight")
        page.set_viewport_size({"width": size["width"], "height": int(height)})
        page.evaluate("() => window.scrollTo(0, 0)")
        if until is not None:
            page.wait_for_timeout(500)  # a frame that comes into view paints a moment later
        page.screenshot(path=str(path), animations="disabled")
        page.set_viewport_size(size)
        assert path.stat().st_size > 10_000, f"{name}.png is nearly empty"
        if os.environ.get("NEWSLETTER_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, SCREENSHOTS / path.name)
        return path
    return take
