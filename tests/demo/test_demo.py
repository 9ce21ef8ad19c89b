"""`newsletter demo` (what `make demo` runs) as a newcomer meets it: one command, then the
signup form, the confirmation mail in /dev/inbox, the admin with the operator account the
demo printed, and Ctrl-C stopping everything."""

from __future__ import annotations

import os
import http.cookiejar
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil

from newsletter.demo.seed import DEMO_OPERATOR, demo_operator
from newsletter.operators import accounts
from tests.smtp_sink import free_port

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")


def fetch(url: str, data: dict[str, str] | None = None) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(url, data=body, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def read_lines(process: subprocess.Popen[bytes]) -> list[str]:
    """The process's output lines so far, collected by a thread while it runs."""
    lines: list[str] = []

    def collect() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            lines.append(raw.decode(errors="replace"))

    threading.Thread(target=collect, daemon=True).start()
    return lines


def admin_login(base: str, email: str, password: str) -> tuple[int, str]:
    """Log in through the admin's form as a browser would (its CSRF token, the session
    cookie) and return the status and page that follow."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(base + "/admin/login", timeout=10) as response:
        token = re.search(r'name="csrf_token" value="([^"]+)"', response.read().decode()).group(1)
    form = urllib.parse.urlencode({"email": email, "password": password, "csrf_token": token}).encode()
    try:
        with opener.open(base + "/admin/login", data=form, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_until(predicate, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, urllib.error.URLError):
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError("timed out")


def test_demo_from_signup_to_confirmed_with_embedded_redis_and_inbox(tmp_path):
    port, smtp_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nothing there: embedded Redis
        NEWSLETTER_DEMO_SMTP_PORT=str(smtp_port),
    )
    demo = subprocess.Popen(
        [NEWSLETTER, "demo", "--port", str(port)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    output = read_lines(demo)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: fetch(base + "/healthz")[0] == 200)
        # The operator account it printed opens the admin (its dashboard, in German).
        login = wait_until(lambda: re.search(r"log in as (\S+) with the password (\S+)", "".join(output)))
        assert f"{base}/admin/" in "".join(output) and login.group(1) == DEMO_OPERATOR
        status, page = admin_login(base, login.group(1), login.group(2))
        assert status == 200 and "<h1>Übersicht</h1>" in page and DEMO_OPERATOR in page
        assert admin_login(base, DEMO_OPERATOR, "not the printed password")[0] == 401
        status, page = fetch(base + "/subscribe")
        assert status == 200 and "Keine Stellenangebote mehr verpassen." in page
        assert fetch(base + "/subscribe", {"email": "neu@example.org", "keywords": "Python"})[0] == 200

        mails = re.compile(r'href="(/dev/inbox/[^"/?]+)"')
        [mail_path] = wait_until(lambda: mails.findall(fetch(base + "/dev/inbox/")[1]))
        status, mail_page = fetch(base + mail_path)
        assert status == 200 and "neu@example.org" in mail_page
        [confirm] = set(re.findall(r'href="(http://127\.0\.0\.1:5000/confirm/[^"]+)"', mail_page))
        confirm = confirm.replace("127.0.0.1:5000", f"127.0.0.1:{port}")
        assert fetch(confirm)[0] == 200
        status, done = fetch(confirm, {})
        assert status == 200
        wait_until(lambda: len(mails.findall(fetch(base + "/dev/inbox/")[1])) == 2)
        html_link = re.findall(r'href="(/dev/inbox/[^"]+/html)"', fetch(base + mail_path)[1])
        assert html_link and fetch(base + html_link[0])[0] == 200

        # "Send an edition now": the sample listings go to the demo readers and the newcomer.
        status, page = fetch(base + "/dev/inbox/send-edition", {})
        assert status == 200 and "Edition 1 created" in page
        digests = wait_until(lambda: [s for s in re.findall(r'href="/dev/inbox/[^"/?]+">([^<]+)<', fetch(base + "/dev/inbox/")[1])
                                      if "Jobs für Sie" in s or "jobs for you" in s or "Job für Sie" in s][4:] or None)
        assert digests
    finally:
        children = psutil.Process(demo.pid).children(recursive=True)
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=60)
    printed = "".join(output)
    assert demo.returncode == 0, printed
    assert "/dev/inbox" in printed and "Ctrl-C" in printed
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_dev_inbox_does_not_exist_outside_demo_mode(client):
    assert client.get("/dev/inbox").status_code == 404
    assert client.get("/dev/inbox/").status_code == 404


def test_each_demo_start_gives_its_operator_a_new_password_and_ends_the_old_one(database):
    with database.session_scope() as session:
        email, first = demo_operator(session)
    with database.session_scope() as session:
        again, second = demo_operator(session)
    assert email == again == DEMO_OPERATOR and first != second
    with database.session_scope() as session:
        assert accounts.authenticate(session, email, first) is None
        user = accounts.authenticate(session, email, second)
        assert user is not None and user.role == "operator"
        assert [u.email for u in accounts.list_users(session)] == [DEMO_OPERATOR]
