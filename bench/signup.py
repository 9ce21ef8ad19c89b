"""Signups per second under gunicorn, as a ratio against hello-world on the same server.

What is measured
    POST /subscribe (a form post with a new address each time, so that every request does
    the whole job: validate the address, insert the subscriber, its consent event and an
    outbox row, commit, enqueue the confirmation mail's RQ job, render the "check your
    inbox" page) against GET /bench/hello, which returns "hello" from the same Flask app
    (bench/signup_app.py). Both are served by one gunicorn with two sync workers in the same
    run, phases interleaved (hello, write, signup, signup, write, hello, ...) so that
    machine noise and drift hit all alike. For reference, POST /bench/write on the same app
    reads the same form, inserts one row, commits and sends one Redis command: the least
    any signup that is kept and handed on can do.

Why a ratio
    Absolute requests/s say more about the machine than about the code. Hello-world through
    the same server, middleware and process model is the ceiling any route can reach here;
    signup/hello says how much of that ceiling the signup's own work eats. The target is
    signup >= 0.5 x hello. The server's CPU time per request is printed too: other load on
    the machine disturbs it far less than requests/s.

Self-contained
    A temporary directory holds the database (SQLite by default; with --database-url, a
    PostgreSQL server on which a database bench_signup_<pid> is created and dropped again),
    the instance folder and gunicorn's log. Redis database 14 (or, when a test run holds it,
    the lowest free number, claimed the way tests/conftest.py claims its own) carries the
    queue and the rate limiter's counters and is flushed before and after. The SMTP port
    points at nothing: no worker runs, the mails just wait in Redis. A check at the end
    compares the stored subscribers, outbox rows and queued jobs with the 2xx answers.

The load generator
    A few client processes with a few threads each speak raw HTTP/1.1, a fresh connection per
    request (gunicorn's sync worker closes each one anyway), to 127.0.0.1 only. Raw sockets
    keep the client's CPU per request well below the server's, which matters when client and
    server share a small machine; the cores the client used are printed so that can be
    checked. Only 2xx answers completed inside a phase's window count towards the rate; any
    other answer or a connection error is a failure, and more than 1% failures make the run
    exit 1. Every phase is bounded by time and by a request count.

Run: .venv/bin/python bench/signup.py [--seconds 10] [--database-url postgresql+psycopg://...]
Exit status: 0 when the run worked (whether or not the ratio meets the target), 1 when too
many requests failed or the stored work does not match, 2 when it could not be set up.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    BENCH_OPERATOR,
    BenchError,
    claimed_redis,
    free_port,
    postgres_database,
    stop_on_sigterm,
    venv_script,
)

BENCH_DIR = Path(__file__).resolve().parent
HELLO_PATH = "/bench/hello"  # registered by bench/signup_app.py
WRITE_PATH = "/bench/write"  # likewise: one INSERT, a commit, one Redis command
SIGNUP_PATH = "/subscribe"
ROUTES = ("hello", "write", "signup")
TARGET_RATIO = 0.5
MAX_FAILURE_SHARE = 0.01
GUNICORN_WORKERS = 2
REDIS_SERVER = "redis://127.0.0.1:6379"
PREFERRED_REDIS_DB = 14  # the app's default is 0; test runs claim theirs from 15 down
# Each signup counts against the limiter; the limit itself must never answer 429 here.
RATE_LIMIT = "1000000 per minute"
# A request slower than this is broken, not slow (SQLite's busy timeout is 30 s).
REQUEST_TIMEOUT = 35.0


@dataclass(frozen=True)
class PhaseSpec:
    """One timed window of load on one route, as sent to every client process."""

    route: str
    index: int  # keeps signup addresses unique across phases
    start_at: float  # time.monotonic(): one clock for all processes on Linux
    end_at: float
    max_requests: int  # per thread: the count bound next to the time bound


@dataclass
class PhaseResult:
    """What the client saw in one phase."""

    ok: int = 0  # 2xx completed inside the window: the rate counts these
    ok_total: int = 0  # every 2xx, late ones too: the database must hold this many
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    stopped_at: float = 0.0  # the window's end, or earlier when the count bound was hit
    cpu_seconds: float = 0.0

    def merge(self, other: PhaseResult) -> None:
        self.ok += other.ok
        self.ok_total += other.ok_total
        self.failures.update(other.failures)
        self.latencies.extend(other.latencies)
        self.stopped_at = max(self.stopped_at, other.stopped_at)
        self.cpu_seconds += other.cpu_seconds


def hello_request(port: int) -> bytes:
    return (
        f"GET {HELLO_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: bench-signup\r\n"
        "Accept: text/html\r\nConnection: close\r\n\r\n"
    ).encode()


def signup_request(port: int, address: str, path: str = SIGNUP_PATH) -> bytes:
    # What the job board's embedded form sends: urlencoded fields, an HTML page wanted back.
    body = urllib.parse.urlencode({"email": address, "keywords": "python", "location": "Berlin"})
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: bench-signup\r\n"
        "Accept: text/html\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    ).encode()


def exchange(port: int, payload: bytes) -> str:
    """Send one request on a fresh connection; the status code, or why there is none."""
    head = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as sock:
            sock.sendall(payload)
            # Only the status line is parsed, but the whole answer is read: the request is
            # served when its last byte has arrived, not its first.
            while chunk := sock.recv(65536):
                if len(head) < 16:
                    head += chunk[:16]
    except OSError as exc:
        return type(exc).__name__
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return "malformed answer"
    return parts[1].decode("ascii", "replace")


def _client_thread(
    port: int, spec: PhaseSpec, tag: str, result: PhaseResult, lock: threading.Lock
) -> None:
    hello = hello_request(port)
    mine = PhaseResult(stopped_at=spec.end_at)
    time.sleep(max(0.0, spec.start_at - time.monotonic()))
    for n in range(spec.max_requests + 1):
        if n == spec.max_requests:
            mine.stopped_at = time.monotonic()
            break
        # Built before the clock starts: the client's own work is not the server's latency.
        payload = hello if spec.route == "hello" else signup_request(
            port, f"bench-{tag}-{n}@example.org", WRITE_PATH if spec.route == "write" else SIGNUP_PATH
        )
        started = time.monotonic()
        if started >= spec.end_at:
            break
        status = exchange(port, payload)
        finished = time.monotonic()
        if not status.startswith("2"):
            mine.failures[status] += 1
            continue
        mine.ok_total += 1
        if finished <= spec.end_at:
            mine.ok += 1
            mine.latencies.append(finished - started)
    mine.stopped_at = min(mine.stopped_at, spec.end_at)
    with lock:
        result.merge(mine)


def client_process(
    conn: multiprocessing.connection.Connection, port: int, proc: int, threads: int
) -> None:
    """Run the phases the parent sends until it sends None; answer each with a PhaseResult."""
    # Ctrl-C is the parent's to handle (it stops us); a traceback per child helps nobody.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while (spec := conn.recv()) is not None:
        result = PhaseResult()
        lock = threading.Lock()
        cpu_before = time.process_time()
        workers = [
            threading.Thread(
                target=_client_thread, args=(port, spec, f"{spec.index}-{proc}-{t}", result, lock)
            )
            for t in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        result.cpu_seconds = time.process_time() - cpu_before
        conn.send(result)


class LoadGenerator:
    """Client processes kept alive across phases, so that no start-up falls into a window."""

    def __init__(self, port: int, processes: int, threads: int) -> None:
        self.threads = threads
        ctx = multiprocessing.get_context("spawn")
        self._conns: list[multiprocessing.connection.Connection] = []
        self._procs: list[Any] = []
        for proc in range(processes):
            parent_end, child_end = ctx.Pipe()
            process = ctx.Process(
                target=client_process, args=(child_end, port, proc, threads), daemon=True
            )
            process.start()
            child_end.close()
            self._conns.append(parent_end)
            self._procs.append(process)

    def run(
        self, route: str, index: int, seconds: float, max_requests: int
    ) -> tuple[PhaseResult, float]:
        """Load `route` for `seconds`: the merged result and the window's actual length."""
        # A short lead, so that every thread is waiting when the window opens.
        start_at = time.monotonic() + 0.3
        per_thread = max(1, max_requests // (len(self._conns) * self.threads))
        spec = PhaseSpec(route, index, start_at, start_at + seconds, per_thread)
        for conn in self._conns:
            conn.send(spec)
        merged = PhaseResult()
        for conn in self._conns:
            merged.merge(conn.recv())
        return merged, max(merged.stopped_at - start_at, 1e-9)

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for process in self._procs:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


# -- what the server needs ----------------------------------------------------------------

def server_environment(tmp: Path, database_url: str, redis_url: str) -> dict[str, str]:
    # The caller's own NEWSLETTER_* settings must not leak into the measured server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        # Production, as deployed: HSTS and secure cookies on, a real secret key.
        NEWSLETTER_ENV="production",
        NEWSLETTER_BASE_URL="https://newsletter.example.org",
        NEWSLETTER_SECRET_KEY=secrets.token_urlsafe(48),
        **{f"NEWSLETTER_{k.upper()}": v for k, v in BENCH_OPERATOR.items()},
        NEWSLETTER_DATABASE_URL=database_url,
        NEWSLETTER_REDIS_URL=redis_url,
        NEWSLETTER_SIGNUP_RATE_LIMIT=RATE_LIMIT,
        NEWSLETTER_INSTANCE_PATH=str(tmp / "instance"),
        # Nothing listens there, and no worker runs that would try.
        NEWSLETTER_SMTP_PORT=str(free_port()),
    )
    return env


def migrate(tmp: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [venv_script("newsletter"), "db", "upgrade"], cwd=tmp, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"newsletter db upgrade failed: {(done.stderr or done.stdout).strip()}")
    import signup_app

    signup_app.create_bench_table(env["NEWSLETTER_DATABASE_URL"])


def server_log(tmp: Path) -> Path:
    return tmp / "gunicorn.log"


@contextlib.contextmanager
def gunicorn(tmp: Path, env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """gunicorn with two sync workers and no --preload, as `gunicorn wsgi:app` runs it;
    started in the temporary directory so that no `.env` of the repository is read."""
    log = server_log(tmp)
    command = [
        venv_script("gunicorn"), "--workers", str(GUNICORN_WORKERS),
        "--bind", f"127.0.0.1:{port}", "--pythonpath", str(BENCH_DIR),
        "--error-logfile", str(log), "--log-level", "warning", "--capture-output",
        "signup_app:make_app()",
    ]
    # A session of its own: a Ctrl-C is ours to handle, and we stop gunicorn in order.
    server = subprocess.Popen(command, cwd=tmp, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while exchange(port, hello_request(port)) != "200":
            if server.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise BenchError(f"gunicorn did not come up on port {port}:\n{tail}")
            time.sleep(0.1)
        yield server
    finally:
        if server.poll() is None:
            server.terminate()  # SIGTERM: graceful shutdown of master and workers
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


class ServerCpu:
    """CPU seconds used by gunicorn's workers, which tell the server's cost per request
    apart from the client's and from other load. Optional: psutil is a test extra."""

    def __init__(self, master_pid: int) -> None:
        self._workers: list[Any] = []
        with contextlib.suppress(ImportError):
            import psutil

            self._workers = psutil.Process(master_pid).children()

    @property
    def available(self) -> bool:
        return bool(self._workers)

    def seconds(self) -> float:
        total = 0.0
        for worker in self._workers:
            times = worker.cpu_times()
            total += times.user + times.system
        return total


def stored_work(database_url: str, redis_client: Any) -> dict[str, int]:
    """What the signups left behind: rows per table and queued mail jobs."""
    from rq import Queue
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            counts = {
                table: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in ("subscribers", "consent_events", "outbox", "bench_writes")
            }
    finally:
        engine.dispose()
    counts["queued jobs"] = Queue("mail", connection=redis_client).count
    return counts


# -- the run ------------------------------------------------------------------------------

@dataclass
class RouteTotals:
    """One route's measured phases added up (warm-up answers only count as answers)."""

    ok: int = 0
    ok_total: int = 0
    seconds: float = 0.0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    round_rates: list[float] = field(default_factory=list)
    client_cpu: float = 0.0
    server_cpu: float = 0.0

    def add(self, result: PhaseResult, seconds: float, server_cpu: float) -> None:
        self.ok += result.ok
        self.ok_total += result.ok_total
        self.seconds += seconds
        self.failures.update(result.failures)
        self.latencies.extend(result.latencies)
        self.round_rates.append(result.ok / seconds)
        self.client_cpu += result.cpu_seconds
        self.server_cpu += server_cpu

    def add_warmup(self, result: PhaseResult) -> None:
        self.ok_total += result.ok_total
        self.failures.update(result.failures)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def failure_share(self) -> float:
        answered = self.ok_total + self.failed
        return self.failed / answered if answered else 1.0

    @property
    def server_ms_per_request(self) -> float:
        return self.server_cpu / self.ok * 1000 if self.ok else math.nan

    @property
    def client_cores(self) -> float:
        return self.client_cpu / self.seconds if self.seconds else math.nan

    def percentile_ms(self, q: int) -> float:
        if len(self.latencies) < 2:
            return math.nan
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1] * 1000


def schedule(rounds: int) -> list[str]:
    """hello, write, signup, signup, write, hello, ...: alternating the order cancels a linear drift."""
    order: list[str] = []
    for r in range(rounds):
        order.extend(ROUTES if r % 2 == 0 else reversed(ROUTES))
    return order


def measure(args: argparse.Namespace, port: int, server_pid: int) -> dict[str, RouteTotals]:
    totals = {route: RouteTotals() for route in ROUTES}
    load = LoadGenerator(port, args.clients, args.threads)
    cpu = ServerCpu(server_pid)
    phase = 0
    try:
        if args.warmup > 0:
            # Imports, connection pools, template and statement caches, in both workers.
            for route in ROUTES:
                result, _ = load.run(route, phase, args.warmup, args.max_requests)
                totals[route].add_warmup(result)
                phase += 1
        for route in schedule(args.rounds):
            before = cpu.seconds()
            result, seconds = load.run(route, phase, args.seconds / args.rounds, args.max_requests)
            totals[route].add(result, seconds, cpu.seconds() - before)
            phase += 1
    finally:
        load.close()
    if not cpu.available:
        for route in ROUTES:
            totals[route].server_cpu = math.nan
    return totals


def report(
    args: argparse.Namespace, totals: dict[str, RouteTotals], setup: str,
    work: dict[str, int], log: Path, *, load_at_start: float,
) -> int:
    """Print the results; return the exit status (0: the run worked, whatever the ratio)."""
    hello, write, signup = totals["hello"], totals["write"], totals["signup"]
    ratio = signup.rate / hello.rate if hello.rate else 0.0
    print(
        f"machine: nproc {os.cpu_count()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"load average {load_at_start:.2f} at start"
    )
    print(
        f"setup: gunicorn {GUNICORN_WORKERS} sync workers, {setup}; client {args.clients} "
        f"processes x {args.threads} connections; {args.rounds} x "
        f"{args.seconds / args.rounds:g} s per route after {args.warmup:g} s warm-up"
    )
    for name, label, t in (
        ("hello", f"GET {HELLO_PATH}", hello), ("write", f"POST {WRITE_PATH}", write),
        ("signup", f"POST {SIGNUP_PATH}", signup),
    ):
        rounds = " / ".join(f"{r:.0f}" for r in t.round_rates)
        print(
            f"{name:<6} {label:<17} {t.rate:8.1f} req/s  p50 {t.percentile_ms(50):6.2f} ms  "
            f"p99 {t.percentile_ms(99):6.2f} ms  {t.ok:6d} ok {t.failed:3d} failed  "
            f"(rounds: {rounds})"
        )
    hello_ms, write_ms, signup_ms = (t.server_ms_per_request for t in (hello, write, signup))
    if not math.isnan(hello_ms + write_ms + signup_ms):
        print(
            f"server CPU per request: hello {hello_ms:.2f} ms, write {write_ms:.2f} ms, signup "
            f"{signup_ms:.2f} ms (ratio {hello_ms / signup_ms:.3f}); client used "
            f"{hello.client_cores:.2f} / {write.client_cores:.2f} / {signup.client_cores:.2f} cores"
        )
    verdict = "met" if ratio >= TARGET_RATIO else "below target"
    print(f"ratio signup/hello: {ratio:.3f}  (target >= {TARGET_RATIO}: {verdict})")
    if write.rate:
        print(f"for reference, write/hello: {write.rate / hello.rate if hello.rate else 0.0:.3f}, "
              f"signup/write: {signup.rate / write.rate:.3f}")
    stored = ", ".join(f"{count} {what}" for what, count in work.items() if what != "bench_writes")
    print(f"stored: {stored} for {signup.ok_total} signups answered 2xx; "
          f"{work['bench_writes']} rows for {write.ok_total} writes")

    status = 0
    for name, t in totals.items():
        if t.failures:
            detail = ", ".join(f"{code}: {n}" for code, n in t.failures.most_common())
            print(f"{name}: {t.failed} failed ({t.failure_share:.2%}): {detail}", file=sys.stderr)
        if t.failure_share > MAX_FAILURE_SHARE:
            status = 1
    if any(t.failures for t in totals.values()) and log.exists():
        # The temporary directory goes next, and the server's side of the failures with it.
        tail = log.read_text(errors="replace")[-3000:]
        print(f"-- end of gunicorn's log --\n{tail}", file=sys.stderr)
    # Fewer rows or jobs than 2xx answers would mean a signup skipped work it should do,
    # and the rate above would measure something else.
    if any(work[what] < signup.ok_total for what in ("subscribers", "outbox", "queued jobs")):
        print("error: fewer signups stored or queued than answered 2xx", file=sys.stderr)
        status = 1
    if work["bench_writes"] < write.ok_total:
        print("error: fewer bench writes stored than answered 2xx", file=sys.stderr)
        status = 1
    return status


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Signups per second under gunicorn against hello-world on the same server."
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="measured seconds per route (default 10)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2,
        help="interleaved slices each route's seconds are cut into (default 2)",
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="unmeasured seconds per route first (default 2)"
    )
    parser.add_argument(
        "--database-url", default=None,
        help="a PostgreSQL server (postgresql+psycopg://user@host:port/db) to create and drop "
        "a database bench_signup_<pid> on; default: a SQLite file in the temporary directory",
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    parser.add_argument(
        "--threads", type=int, default=3, help="connections per client process (default 3)"
    )
    parser.add_argument(
        "--max-requests", type=int, default=200_000,
        help="bound on the requests of one phase (default 200000)",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or min(args.rounds, args.clients, args.threads) < 1:
        parser.error("--seconds must be > 0, --warmup >= 0, --rounds/--clients/--threads >= 1")
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url takes a postgresql URL; SQLite is the default")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Other work on the machine skews requests/s (the ratio less so): worth showing.
    load_at_start = os.getloadavg()[0]
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="bench-signup-"))
    try:
        with contextlib.ExitStack() as stack:
            if args.database_url:
                database_url = stack.enter_context(postgres_database(args.database_url, "bench_signup"))
                backend = "postgresql"
            else:
                database_url = f"sqlite:///{tmp / 'bench.db'}"
                backend = "sqlite"
            redis_db = stack.enter_context(claimed_redis(REDIS_SERVER, "bench-signup", PREFERRED_REDIS_DB))
            env = server_environment(tmp, database_url, redis_db.url)
            migrate(tmp, env)
            port = free_port()
            server = stack.enter_context(gunicorn(tmp, env, port))
            totals = measure(args, port, server.pid)
            work = stored_work(database_url, redis_db.client)
        setup = f"{backend}, Redis db {redis_db.number}"
        return report(args, totals, setup, work, server_log(tmp), load_at_start=load_at_start)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
