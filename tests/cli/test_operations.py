"""What an operator meets at the edges, run as real processes: gunicorn on a bad
configuration, stopping the worker and the scheduler while Redis is gone, a database,
Redis or folder that fails, bad values caught at start, click's usage errors, the group's
-e/--env-file option, and `subscribers import` rows without their consent proof."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.config import Settings
from newsletter.models import Subscriber
from tests.conftest import env_for, make_settings
from tests.redis_server import RedisServer
from tests.smtp_sink import free_port

BIN = Path(sys.executable).parent
NEWSLETTER = str(BIN / "newsletter")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sqlite_settings(sqlite_template: Path, redis_conn: object, tmp_path: Path) -> Settings:
    """Settings on a migrated SQLite file of the test's own: what is tested here does not
    depend on the database's kind, and these are slow tests (a process each)."""
    target = tmp_path / "newsletter.db"
    shutil.copy(sqlite_template, target)
    return make_settings(database_url=f"sqlite:///{target}", instance_path=str(tmp_path / "instance"))


def run(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NEWSLETTER, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line on stderr (fails the test, showing stderr, when there are more)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def wait_until(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.1)


def finish(process: subprocess.Popen[bytes], seconds: float) -> int | None:
    """Wait for the process a bounded time; kill its whole session when it does not end.
    Returns its exit status, or None when it had to be killed."""
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


# -- 1. gunicorn --------------------------------------------------------------------------

def test_gunicorn_stops_on_a_bad_configuration_instead_of_rebooting_workers(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_SMTP_PORT="abc", NEWSLETTER_INSTANCE_PATH=str(tmp_path / "instance"))
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:  # a file, not a pipe: a rebooting gunicorn would fill a pipe
        gunicorn = subprocess.Popen(
            [str(BIN / "gunicorn"), "-b", f"127.0.0.1:{free_port()}", "--no-control-socket", "wsgi:app"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True,
        )
    status = finish(gunicorn, 30)
    stderr = log.read_text()
    assert status is not None, "gunicorn still booting workers after 30 s:\n" + stderr[-2000:]
    assert status != 0
    ours = [line for line in stderr.splitlines() if "NEWSLETTER_SMTP_PORT" in line]
    assert ours == ["error: NEWSLETTER_SMTP_PORT: expected a whole number, got 'abc'"]
    assert stderr.count("Booting worker") == 1


# -- 2. stopping while Redis is gone ------------------------------------------------------

def start(settings: Settings, tmp_path: Path, command: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"{command}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([NEWSLETTER, command], env=env_for(settings), cwd=tmp_path,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return process, log


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_scheduler_waiting_for_a_redis_that_is_down_stops_cleanly(sqlite_settings, tmp_path, signum):
    down = replace(sqlite_settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    scheduler, log = start(down, tmp_path, "scheduler")
    wait_until(lambda: "retrying in 5 s" in log.read_text(), 30, "the scheduler waits for Redis")
    scheduler.send_signal(signum)
    status = finish(scheduler, 30)
    output = log.read_text()
    assert status == 0, output
    assert "Traceback" not in output


@pytest.mark.parametrize("command, started, noticed", [
    ("scheduler", "Enqueued job digest_tick", None),
    ("worker", "Listening on", "could not connect to Redis"),
])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_after_redis_went_away_is_a_clean_stop(sqlite_settings, tmp_path, command, started, noticed, signum):
    redis = RedisServer(tmp_path / "redis").start()
    process, log = start(replace(sqlite_settings, redis_url=redis.url), tmp_path, command)
    try:
        wait_until(lambda: started in log.read_text(), 30, f"the {command} started")
        redis.stop()
        if noticed:
            wait_until(lambda: noticed in log.read_text(), 30, f"the {command} noticed Redis is gone")
        else:
            time.sleep(0.5)  # the scheduler sleeps until its next job; Redis is gone meanwhile
        process.send_signal(signum)
        status = finish(process, 30)
    finally:
        finish(process, 0.1)
        redis.stop()
    output = log.read_text()
    assert status == 0, output
    assert "Traceback" not in output


# -- 3. a database, Redis or folder that fails ----------------------------------------------

def unanswered_postgresql() -> str:
    return f"postgresql+psycopg://newsletter@127.0.0.1:{free_port()}/newsletter"


@pytest.mark.parametrize("args", [("subscribers", "stats"), ("worker", "--burst"), ("digest", "status")])
@pytest.mark.parametrize("url, fragment", [
    (unanswered_postgresql(), "database"),
    ("sqlite:////proc/nonexistent/newsletter.db", "/proc/nonexistent"),  # folder cannot be made
    ("sqlite:////proc/newsletter.db", "database"),  # folder exists, file cannot be made
], ids=["postgresql-down", "sqlite-no-folder", "sqlite-unwritable"])
def test_a_database_that_fails_is_one_line(sqlite_settings, tmp_path, args, url, fragment):
    env = env_for(replace(sqlite_settings, database_url=url))
    result = run(env, *args, cwd=tmp_path)
    assert result.returncode != 0
    line = one_line(result)
    assert line.startswith("error: ") and fragment in line


@pytest.mark.parametrize("args", [("digest", "status"), ("subscribers", "stats"), ("listings", "import", "feed.json")])
def test_a_database_never_migrated_says_to_run_db_upgrade(sqlite_settings, tmp_path, args):
    (tmp_path / "feed.json").write_text(
        '[{"id": "1", "title": "Koch (m/w/d)", "url": "https://jobs.example.org/1", "published_at": "2026-11-20"}]')
    env = env_for(replace(sqlite_settings, database_url=f"sqlite:///{tmp_path / 'fresh.db'}"))
    result = run(env, *args, cwd=tmp_path)
    assert result.returncode == 1
    line = one_line(result)
    assert "no such table" in line and line.endswith("; run `newsletter db upgrade` first"), line


@pytest.fixture
def fresh_database_url(backend, tmp_path):  # type: ignore[no-untyped-def]
    """An empty database of this backend, never migrated."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    import uuid

    from sqlalchemy import create_engine, make_url, text

    from tests.conftest import PG_ADMIN_URL

    name = f"newsletter_fresh_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_db_upgrade_run_by_several_hosts_at_once_succeeds_everywhere(sqlite_settings, tmp_path, fresh_database_url):
    """Web and worker containers each running `db upgrade` at start, on a new database:
    one migrates, the others wait for it and find nothing left to do."""
    env = env_for(replace(sqlite_settings, database_url=fresh_database_url))
    runs = [subprocess.Popen([NEWSLETTER, "db", "upgrade"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(run.wait(timeout=120), run.stderr.read()) for run in runs]
    assert [code for code, _ in results] == [0, 0, 0], results
    for run in runs:
        run.stdout.close()
        run.stderr.close()


def test_db_upgrade_in_a_folder_that_cannot_be_made_is_one_line(sqlite_settings, tmp_path):
    env = env_for(replace(sqlite_settings, database_url="sqlite:////proc/x/y.db"))
    result = run(env, "db", "upgrade", cwd=tmp_path)
    assert result.returncode != 0 and "/proc/x" in one_line(result)


def test_a_worker_without_redis_is_one_line(sqlite_settings, tmp_path):
    env = env_for(replace(sqlite_settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    result = run(env, "worker", "--burst", cwd=tmp_path)
    assert result.returncode != 0 and "Redis" in one_line(result)


@pytest.mark.parametrize("variable, value", [
    ("NEWSLETTER_REDIS_URL", "redis://127.0.0.1:notaport/7"),
    ("NEWSLETTER_REDIS_URL", "redis://127.0.0.1:70000/7"),
    ("NEWSLETTER_DATABASE_URL", "postgresql+psycopg://newsletter@127.0.0.1:notaport/newsletter"),
])
def test_a_url_with_a_bad_port_stops_at_start_naming_it(sqlite_settings, tmp_path, variable, value):
    env = env_for(sqlite_settings) | {variable: value}
    for args in (("subscribers", "stats"), ("worker", "--burst")):
        result = run(env, *args, cwd=tmp_path)
        assert result.returncode == 2 and variable in one_line(result)


def test_an_instance_folder_that_cannot_be_made_is_named(sqlite_settings, tmp_path):
    env = env_for(sqlite_settings) | {"NEWSLETTER_SECRET_KEY": "", "NEWSLETTER_INSTANCE_PATH": "/proc/nope"}
    result = run(env, "subscribers", "stats", cwd=tmp_path)
    assert result.returncode == 2 and "NEWSLETTER_INSTANCE_PATH" in one_line(result)


# -- 4. and 5. values that would break later ----------------------------------------------

@pytest.mark.parametrize("variable, value", [
    ("NEWSLETTER_SMTP_TIMEOUT_SECONDS", "0"),
    ("NEWSLETTER_SMTP_TIMEOUT_SECONDS", "inf"),
    ("NEWSLETTER_SMTP_TIMEOUT_SECONDS", "nan"),
    ("NEWSLETTER_LIST_NAME", "Jobs\r\nBcc: everyone@example.org"),
    ("NEWSLETTER_LIST_NAME", "Jobs\x07"),
    ("NEWSLETTER_LIST_ID", "jobs\n.example.org"),
    ("NEWSLETTER_LIST_ID", "jobs\x7f.example.org"),
    ("NEWSLETTER_LIST_ID", "jobs list <x>.example.org"),
    ("NEWSLETTER_RETRY_BASE_SECONDS", "0"),
    ("NEWSLETTER_RETRY_GIVE_UP_SECONDS", "inf"),
    ("NEWSLETTER_REQUEUE_AFTER_SECONDS", "0"),
    ("NEWSLETTER_CONSENT_RETENTION_DAYS", "0"),
    ("NEWSLETTER_DEMO_SMTP_PORT", "0"),
    ("NEWSLETTER_DEMO_SMTP_PORT", "65536"),
    ("NEWSLETTER_TICK_INTERVAL_SECONDS", "0"),
    ("NEWSLETTER_RECONCILE_INTERVAL_SECONDS", "0"),
])
def test_a_value_that_would_break_later_stops_at_start_naming_it(sqlite_settings, tmp_path, variable, value):
    env = env_for(sqlite_settings) | {variable: value}
    result = run(env, "subscribers", "stats", cwd=tmp_path)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(f"error: {variable}: "), line


def test_an_env_file_that_is_not_utf8_is_one_line_naming_it(sqlite_settings, tmp_path):
    (tmp_path / ".env").write_bytes(b"NEWSLETTER_LIST_NAME=Stellenb\xf6rse\n")
    result = run(env_for(sqlite_settings), "subscribers", "stats", cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result) == "error: .env: not UTF-8 text (byte 0xf6 at offset 29); convert the file to UTF-8"


def test_good_list_headers_and_timeouts_still_start(sqlite_settings, tmp_path):
    env = env_for(sqlite_settings) | {
        "NEWSLETTER_LIST_NAME": "Stellenbörse Süd", "NEWSLETTER_LIST_ID": "stellen.jobs.example.org",
        "NEWSLETTER_SMTP_TIMEOUT_SECONDS": "0.5", "NEWSLETTER_REQUEUE_AFTER_SECONDS": "1",
        "NEWSLETTER_CONSENT_RETENTION_DAYS": "1", "NEWSLETTER_DEMO_SMTP_PORT": "65535",
    }
    result = run(env, "subscribers", "stats", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_idn_sender_bounce_and_dkim_domains_are_kept_as_a_labels(tmp_path):
    from newsletter.config import ConfigError, load_settings

    key = tmp_path / "dkim.pem"
    key.write_text("not read at start")
    env = {"NEWSLETTER_MAIL_FROM": "Jobbörse Süd <newsletter@jobbörse.de>",
           "NEWSLETTER_BOUNCE_ADDRESS": "bounces@Jobbörse.de",
           "NEWSLETTER_DKIM_SELECTOR": "s1", "NEWSLETTER_DKIM_DOMAIN": "jobbörse.de",
           "NEWSLETTER_DKIM_KEY_FILE": str(key), "NEWSLETTER_INSTANCE_PATH": str(tmp_path)}
    s = load_settings(env, dotenv_path=None)
    assert s.mail_from == "Jobbörse Süd <newsletter@xn--jobbrse-d1a.de>"
    assert (s.mail_domain, s.bounce_address, s.dkim_domain) == (
        "xn--jobbrse-d1a.de", "bounces@xn--jobbrse-d1a.de", "xn--jobbrse-d1a.de")
    with pytest.raises(ConfigError, match="^NEWSLETTER_DKIM_DOMAIN: "):
        load_settings(env | {"NEWSLETTER_DKIM_DOMAIN": "jobbörse..de"}, dotenv_path=None)


def test_links_on_an_idn_host_are_kept_ascii_and_templates_keep_their_placeholders(tmp_path):
    from newsletter.config import ConfigError, load_settings

    env = {"NEWSLETTER_INSTANCE_PATH": str(tmp_path),
           "NEWSLETTER_BASE_URL": "https://Jobbörse.de:8443/news letter",
           "NEWSLETTER_PRIVACY_URL": "https://jobbörse.de/datenschutz#abschnitt-ä",
           "NEWSLETTER_BOARD_URL": "https://jobbörse.de",
           "NEWSLETTER_BOARD_SEARCH_URL": "https://jobbörse.de/suche?q={keywords}&ort={location}&für=alle"}
    s = load_settings(env, dotenv_path=None)
    assert s.base_url == "https://xn--jobbrse-d1a.de:8443/news%20letter"
    assert s.privacy_url == "https://xn--jobbrse-d1a.de/datenschutz#abschnitt-%C3%A4"
    assert s.board_url == "https://xn--jobbrse-d1a.de"
    assert s.board_search_url == "https://xn--jobbrse-d1a.de/suche?q={keywords}&ort={location}&f%C3%BCr=alle"
    with pytest.raises(ConfigError, match="^NEWSLETTER_BASE_URL: "):
        load_settings(env | {"NEWSLETTER_BASE_URL": "https://jobbörse..de"}, dotenv_path=None)
    for bad in ("http://bücher.test:99999/", "http://bücher.test:abc/"):
        with pytest.raises(ConfigError, match="^NEWSLETTER_BASE_URL: invalid port"):
            load_settings(env | {"NEWSLETTER_BASE_URL": bad}, dotenv_path=None)
    userinfo = load_settings(env | {"NEWSLETTER_BOARD_URL": "https://gast:pässe@jobbörse.de"}, dotenv_path=None)
    assert userinfo.board_url == "https://gast:p%C3%A4sse@xn--jobbrse-d1a.de"


@pytest.mark.parametrize("sender", ["n@localhost", "Jobs <n@mail.local>", "Jobs <n@jobs.test>", '"news letter"@example.org'])
def test_a_sender_on_a_local_or_test_domain_still_starts(tmp_path, sender):
    """Development and staging relays use such domains; only production asks for real ones."""
    from newsletter.config import load_settings

    s = load_settings({"NEWSLETTER_MAIL_FROM": sender, "NEWSLETTER_INSTANCE_PATH": str(tmp_path)}, dotenv_path=None)
    assert s.mail_from == sender


# -- 6. usage errors ------------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (("frobnicate",), "No such command 'frobnicate'"),
    (("subscribers", "stats", "--bogus"), "--bogus"),
    (("worker", "extra"), "extra"),
    (("digest", "status", "abc"), "abc"),
    (("--bogus", "subscribers", "stats"), "--bogus"),
    (("worker", "--brust"), "Did you mean '--burst'? See 'newsletter worker --help'."),
])
def test_a_usage_error_is_one_line(sqlite_settings, tmp_path, args, fragment):
    result = run(env_for(sqlite_settings), *args, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    line = one_line(result)
    assert line.startswith("error: ") and fragment in line and "--help" in line


def test_help_stays_as_it_was(sqlite_settings, tmp_path):
    env = env_for(sqlite_settings)
    top = run(env, "--help", cwd=tmp_path)
    assert top.returncode == 0 and top.stdout.startswith("Usage: newsletter [OPTIONS] COMMAND [ARGS]...")
    assert "subscribers" in top.stdout and "-e, --env-file FILE" in top.stdout
    worker = run(env, "worker", "--help", cwd=tmp_path)
    assert worker.returncode == 0 and "--burst" in worker.stdout
    bare = run(env, "subscribers", cwd=tmp_path)  # a group without its command: its help
    assert "Usage: newsletter subscribers" in bare.stdout + bare.stderr and "stats" in bare.stdout + bare.stderr


# -- 7. -e / --env-file -----------------------------------------------------------------------

@pytest.mark.parametrize("command", [("subscribers", "stats"), ("worker", "--burst")])
@pytest.mark.parametrize("spelling", ["-e", "--env-file"])
def test_the_env_file_option_is_read_before_the_settings_are_checked(sqlite_settings, tmp_path, command, spelling):
    env = env_for(sqlite_settings)
    del env["NEWSLETTER_SMTP_PORT"]
    env_file = tmp_path / "staging.env"
    env_file.write_text("NEWSLETTER_SMTP_PORT=abc\n")
    result = run(env, spelling, str(env_file), *command, cwd=tmp_path)
    assert result.returncode == 2 and "NEWSLETTER_SMTP_PORT" in one_line(result)


def test_the_env_file_yields_to_the_environment_and_beats_dot_env(sqlite_settings, tmp_path):
    env = env_for(sqlite_settings)
    env_file = tmp_path / "staging.env"
    env_file.write_text("NEWSLETTER_SMTP_PORT=abc\n")
    # The environment wins over the file.
    assert run(env, "-e", str(env_file), "subscribers", "stats", cwd=tmp_path).returncode == 0
    # The file wins over .env.
    del env["NEWSLETTER_SMTP_PORT"]
    (tmp_path / ".env").write_text("NEWSLETTER_SMTP_PORT=abc\n")
    env_file.write_text("NEWSLETTER_SMTP_PORT=2525\n")
    result = run(env, f"--env-file={env_file}", "subscribers", "stats", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert run(env, "subscribers", "stats", cwd=tmp_path).returncode == 2  # .env alone is read too


def test_a_missing_env_file_is_one_line(sqlite_settings, tmp_path):
    result = run(env_for(sqlite_settings), "-e", str(tmp_path / "missing.env"), "subscribers", "stats", cwd=tmp_path)
    assert result.returncode == 2 and "missing.env" in one_line(result)


# -- 8. subscribers import ----------------------------------------------------------------

def test_import_rejects_confirmed_rows_without_an_ip_and_names_the_line_a_record_starts_on(settings, database, tmp_path, redis_conn):
    csv = tmp_path / "list.csv"
    csv.write_text(
        "email,language,keywords,location,confirmed_at,consent_ip,consent_text\n"
        "ok@example.org,de,,,2024-03-01T09:30:00Z,203.0.113.7,Ja\n"
        'bad-address,de,"Python\nRust",,,,\n'  # lines 3 and 4
        "\n"
        "noip@example.org,de,,,2024-03-01T09:30:00Z,,Ja ich will den Newsletter\n"
        "pending@example.org,de,,,,,\n",
        encoding="utf-8",
    )
    result = subprocess.run([NEWSLETTER, "subscribers", "import", str(csv)], env=env_for(settings),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "confirmed: 1" in result.stdout and "pending: 1" in result.stdout and "rejected: 2" in result.stdout
    errors = result.stderr.strip().splitlines()
    assert errors[0].startswith(f"{csv}: line 3: email"), errors
    assert errors[1].startswith(f"{csv}: line 6: consent_ip"), errors
    with database.session_scope() as session:
        assert sorted(session.scalars(select(Subscriber.email))) == ["ok@example.org", "pending@example.org"]
