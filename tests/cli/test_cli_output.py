"""The command line's two faces, run as real processes: through a pipe the CONTRACT's
`key: value` lines, unchanged; on a pseudo-terminal tables and progress bars (NO_COLOR and
TERM=dumb respected). And the waiting commands: `digest send --wait` and
`digest status --watch`, with a real `newsletter worker` doing the sending."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.cli.test_digest_cli import NEWSLETTER, lines, run, seed
from tests.conftest import env_for

BOX = ("╭", "│", "╰")
BAR = "━"  # rich's progress bar
ESCAPE = "\x1b["
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# `digest status` through a pipe, key by key in order (CONTRACT: edition, state, queued,
# sent, failed, bounced; the others came later and stay too).
STATUS_KEYS = ["edition", "state", "queued", "sent", "failed", "bounced", "cancelled", "soft_bounced",
               "policy_bounced", "complained", "recipients", "listings", "created_at", "trigger", "retrying", "alarms"]


def on_terminal(settings, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str]:
    """Run a command with stdin, stdout and stderr on a new pseudo-terminal; its exit
    status and everything the terminal showed."""
    master, slave = pty.openpty()
    full_env = env_for(settings) | {"TERM": "xterm-256color", "COLUMNS": "120"} | (env or {})
    if env is None or "NO_COLOR" not in env:
        full_env.pop("NO_COLOR", None)
    process = subprocess.Popen([NEWSLETTER, *args], stdin=slave, stdout=slave, stderr=slave, env=full_env)
    os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not chunk:
                break
            shown += chunk
        else:
            process.kill()
            pytest.fail(f"{args} did not end within {timeout} s; it showed {shown.decode(errors='replace')!r}")
        return process.wait(timeout=10), shown.decode()
    finally:
        os.close(master)


def visible(shown: str) -> list[str]:
    """The lines a terminal shows, escape sequences (colours, cursor) taken out."""
    return _ESCAPES.sub("", shown).replace("\r\n", "\n").split("\n")


def rest_of(process: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    """The rest of a process's stdout and its stderr once it ended. Not communicate(): it
    reads the pipe itself and would lose what readline() already buffered."""
    assert process.stdout is not None and process.stderr is not None
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.stdout.read(), process.stderr.read()


@contextmanager
def worker(settings) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running `newsletter worker`, stopped (SIGTERM: RQ's warm shutdown) after."""
    process = subprocess.Popen([NEWSLETTER, "worker"], env=env_for(settings),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def feed(tmp_path, count: int) -> str:
    path = tmp_path / "feed.json"
    path.write_text(json.dumps([
        {"id": f"job-{n}", "title": f"Data Engineer {n}", "url": f"https://jobs.example.org/stellen/{n}",
         "published_at": "2026-01-05T09:00:00+01:00"} for n in range(count)
    ]), encoding="utf-8")
    return str(path)


def subscriber_csv(tmp_path, count: int) -> str:
    path = tmp_path / "readers.csv"
    rows = ["email,language,keywords,location,confirmed_at,consent_ip,consent_text"]
    rows += [f"reader{n}@example.org,de,Data,Köln,2025-03-01T10:00:00Z,192.0.2.{n % 250 + 1},Ja zum Newsletter"
             for n in range(count)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


# -- through a pipe: the lines as they always were --------------------------------------------

def test_status_through_a_pipe_is_the_same_key_value_lines(settings, database, redis_conn):
    seed(database)
    edition = lines(run(settings, "digest", "send").stdout)["edition"]
    result = run(settings, "digest", "status", edition)
    assert result.returncode == 0 and result.stderr == ""
    out = result.stdout.splitlines()
    assert [line.split(": ", 1)[0] for line in out] == STATUS_KEYS
    assert out[:6] == [f"edition: {edition}", "state: sending", "queued: 2", "sent: 0", "failed: 0", "bounced: 0"]
    assert out[12].endswith("Z") and out[13:] == ["trigger: cli", "retrying: 0", "alarms: 0"]
    assert not any(mark in result.stdout for mark in (*BOX, BAR, ESCAPE))


def test_imports_stats_and_token_list_through_a_pipe_are_plain_lines(settings, database, tmp_path):
    listings = run(settings, "listings", "import", feed(tmp_path, 30))
    assert (listings.returncode, listings.stdout, listings.stderr) == (
        0, "added: 30\nupdated: 0\nunchanged: 0\nrejected: 0\n", "")
    readers = run(settings, "subscribers", "import", subscriber_csv(tmp_path, 5))
    assert (readers.returncode, readers.stdout, readers.stderr) == (
        0, "confirmed: 5\npending: 0\nskipped: 0\nrejected: 0\n", "")
    stats = run(settings, "subscribers", "stats")
    assert stats.stdout == "pending: 0\nconfirmed: 5\nunsubscribed: 0\nbounced: 0\ncomplained: 0\nsuppressed: 0\n"
    assert run(settings, "api-token", "create", "board").returncode == 0
    tokens = run(settings, "api-token", "list").stdout.splitlines()
    assert len(tokens) == 1
    name, scopes, created, used, state = tokens[0].split("\t")
    assert (name, scopes, used, state) == ("board", "scopes listings editions", "last used -", "active")
    assert created.startswith("created ") and created.endswith("Z")


def test_a_dumb_terminal_gets_the_plain_lines(settings, database):
    code, shown = on_terminal(settings, "subscribers", "stats", env={"TERM": "dumb"})
    assert code == 0
    assert shown.replace("\r\n", "\n") == "pending: 0\nconfirmed: 0\nunsubscribed: 0\nbounced: 0\ncomplained: 0\nsuppressed: 0\n"


# -- on a terminal: tables and bars -----------------------------------------------------------

def test_on_a_terminal_stats_status_and_tokens_are_tables(settings, database, redis_conn):
    seed(database)
    edition = lines(run(settings, "digest", "send").stdout)["edition"]
    assert run(settings, "api-token", "create", "board").returncode == 0
    for args, words in ((("subscribers", "stats"), ("confirmed", "3")),
                        (("digest", "status", edition), ("state", "sending", "recipients")),
                        (("api-token", "list"), ("name", "last used", "board", "active"))):
        code, shown = on_terminal(settings, *args)
        assert code == 0, shown
        assert all(mark in shown for mark in BOX), shown
        assert all(word in shown for word in words), shown
        assert ": " not in shown.replace("last_", ""), shown  # no key: value lines


def test_no_color_keeps_the_table_without_escape_sequences(settings, database):
    code, coloured = on_terminal(settings, "subscribers", "stats")
    assert code == 0 and ESCAPE in coloured
    code, plain = on_terminal(settings, "subscribers", "stats", env={"NO_COLOR": "1"})
    assert code == 0 and all(mark in plain for mark in BOX)
    assert ESCAPE not in plain, plain


def test_imports_show_a_progress_bar_on_a_terminal(settings, database, tmp_path):
    code, shown = on_terminal(settings, "listings", "import", feed(tmp_path, 1200))
    assert code == 0, shown
    assert BAR in shown and "feed.json" in shown and "100%" in shown
    assert "added: 1200" in shown  # the summary lines are kept as they are
    code, shown = on_terminal(settings, "subscribers", "import", subscriber_csv(tmp_path, 40))
    assert code == 0, shown
    assert BAR in shown and "41/41" in shown and "confirmed: 40" in shown


def test_a_rejected_row_keeps_its_one_line_on_a_terminal(settings, database, tmp_path):
    path = tmp_path / "feed.json"
    path.write_text(json.dumps([{"id": "x", "title": "T", "url": "ftp://nope", "published_at": "2026-01-05"}]))
    piped = run(settings, "listings", "import", str(path))
    assert piped.returncode == 1 and len(piped.stderr.splitlines()) == 1 and piped.stderr.startswith(f"{path}: ")
    code, shown = on_terminal(settings, "listings", "import", str(path))
    assert code == 1
    assert piped.stderr.strip() in visible(shown)


# -- digest send --wait -----------------------------------------------------------------------

def test_send_wait_ends_when_a_worker_has_sent_it(settings, database, smtp, redis_conn):
    seed(database, readers=6)
    with worker(settings):
        result = run(settings, "digest", "send", "--wait")
    assert result.returncode == 0, result.stderr
    sent_lines, status_block = result.stdout.split("\n\n")
    assert sent_lines.splitlines()[0].startswith("edition: ")
    status = lines(status_block)
    assert [line.split(": ", 1)[0] for line in status_block.splitlines()] == STATUS_KEYS
    assert status["state"] == "done" and status["sent"] == status["recipients"] == "5" and status["queued"] == "0"
    assert len(smtp.messages) == 5
    assert result.stderr == ""


def test_send_wait_on_a_terminal_shows_a_bar_then_the_status_table(settings, database, smtp, redis_conn):
    seed(database, readers=4)
    with worker(settings):
        code, shown = on_terminal(settings, "digest", "send", "--wait")
    assert code == 0, shown
    assert BAR in shown and "3/3" in shown
    assert all(mark in shown for mark in BOX) and "done" in shown


def test_send_wait_stops_with_1_when_the_edition_is_paused(settings, database, redis_conn):
    """No worker runs: the edition stays sending until the operator pauses it."""
    seed(database)
    waiting = subprocess.Popen([NEWSLETTER, "digest", "send", "--wait"], env=env_for(settings),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waiting.stdout is not None
    edition = waiting.stdout.readline().strip().removeprefix("edition: ")
    assert run(settings, "digest", "pause", edition).returncode == 0
    out, err = rest_of(waiting)
    assert waiting.returncode == 1, (out, err)
    assert lines(out.split("\n\n")[1])["state"] == "paused"
    assert err.splitlines() == [f"error: edition {edition} is paused; `newsletter digest resume {edition}` carries on"]


def test_ctrl_c_stops_waiting_and_leaves_the_edition_sending(settings, database, redis_conn):
    seed(database)
    waiting = subprocess.Popen([NEWSLETTER, "digest", "send", "--wait"], env=env_for(settings),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waiting.stdout is not None
    edition = waiting.stdout.readline().strip().removeprefix("edition: ")
    time.sleep(1)  # into the polling loop
    waiting.send_signal(signal.SIGINT)
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 130
    assert len(err.splitlines()) == 1 and err.startswith("error: interrupted: stopped waiting") and "Traceback" not in err
    assert lines(run(settings, "digest", "status", edition).stdout)["state"] == "sending"


def test_wait_and_dry_run_together_are_a_usage_error(settings, database):
    result = run(settings, "digest", "send", "--wait", "--dry-run")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "--wait" in result.stderr


# -- digest status --watch --------------------------------------------------------------------

def test_watch_through_a_pipe_prints_blocks_until_the_edition_is_done(settings, database, smtp, redis_conn):
    seed(database)
    edition = lines(run(settings, "digest", "send").stdout)["edition"]
    watching = subprocess.Popen([NEWSLETTER, "digest", "status", "--watch", "--interval", "0.3"],
                                env=env_for(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert watching.stdout is not None
    assert watching.stdout.readline() == f"edition: {edition}\n"  # the first look is printed
    assert run(settings, "worker", "--burst").returncode == 0
    rest, err = rest_of(watching)
    assert watching.returncode == 0 and err == ""
    blocks = (f"edition: {edition}\n" + rest).split("\n\n")
    assert len(blocks) >= 2
    assert all([line.split(": ", 1)[0] for line in block.splitlines()] == STATUS_KEYS for block in blocks), blocks
    assert lines(blocks[0])["state"] == "sending"
    assert lines(blocks[-1])["state"] == "done" and lines(blocks[-1])["sent"] == "2"


def test_watch_on_a_terminal_redraws_a_table_and_ends_with_the_edition(settings, database, smtp, redis_conn):
    seed(database)
    run(settings, "digest", "send")
    with worker(settings):
        code, shown = on_terminal(settings, "digest", "status", "--watch", "--interval", "0.3")
    assert code == 0, shown
    assert all(mark in shown for mark in BOX) and "done" in shown


def test_interval_without_watch_is_a_usage_error(settings, database):
    result = run(settings, "digest", "status", "--interval", "1")
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "error: --interval needs --watch. See 'newsletter digest status --help'."]
