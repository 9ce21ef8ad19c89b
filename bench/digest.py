"""Digest delivery end to end: messages per second against raw smtplib, worker memory, and
the time to plan a million deliveries.

What is measured
    1. Pipeline throughput with one real `newsletter worker` process (RQ, running the
       chunk jobs in-process): from the moment the edition is created (window, variants,
       set-based planning, commit, queueing the chunk jobs: planning.create_edition and
       queueing.queue_edition, as `newsletter digest send` calls them) until the SMTP sink has
       received the last message. The worker is started and idle before the clock starts,
       as a production worker is. N confirmed readers (default 5,000) over ~50 distinct
       (keywords, location) preference sets, 200 German listings in the window, German and
       English readers mixed (bench/digest_data.py).
    2. Baseline, same run, same sink: raw smtplib over one connection sending the exact bytes
       the pipeline sent (captured by the sink). pipeline/raw is the figure to watch: it
       says how much of what the machine can push through SMTP at all the application's
       own work (database, rendering, MIME, bookkeeping per message, RQ) leaves over.
       Target >= 0.6 with one worker.
    3. The same with two workers on a fresh database; its ratio against the same baseline.
    4. Peak memory of the worker while it sends a whole edition of 10,000 and of 100,000
       readers: resident set size summed over the worker process and any children it has,
       sampled every 50 ms with psutil. `newsletter worker` runs its jobs and RQ's
       scheduler in its own process (worker/in_process.py), so the sum is one process's
       RSS; should it ever fork again, a child's RSS counts pages it shares with its
       parent in both, so the proportional set size (PSS, shared pages split between the
       sharers) is printed next to it. Targets: <= 80 MB, and the 100k peak <= 1.2 x the
       10k peak (memory must not grow with the edition).
    5. Planning 1,000,000 deliveries on PostgreSQL: planning.create_edition with its commit,
       on 1M confirmed readers loaded with COPY. Target <= 30 s. Planned twice: readers with
       text searches, then readers with job-alert searches (a radius around their place,
       remote wishes, job types; listings with coordinates, some remote, some in the
       neighbouring towns), in the order text, radius, radius, text; the radius runs may
       take at most 1.10 x the text runs on average. Skipped with a
       message when PostgreSQL does not answer (or with --skip-plan).

Why a ratio
    Absolute messages per second say more about the machine (and about aiosmtpd, which is
    slow and runs on the same two cores) than about the code. The baseline runs through
    the same sink in the same run, so the ratio cancels both out.

Reading the figures
    SMTP is a conversation: worker and sink take turns, so with one worker the time per
    message is about the worker's CPU plus the sink's. CPU milliseconds per message
    (worker with any children; sink; the raw client) are printed next to each rate:
    on a shared machine they move less from run to run than the rates do (here, about
    +-15% for the rates). bench/digest_profile.py shows where the worker's time goes.

Self-contained
    A temporary directory holds the SQLite files, the sink's captures and the worker logs.
    With --database-url a PostgreSQL server is used instead, on which a database
    bench_digest_<pid> is created and dropped again for every phase; nothing else on the
    server is touched. A Redis database number of its own is claimed (the same lock keys
    as tests/conftest.py, so a test run and this benchmark never share one) and flushed
    before and after. The sink is aiosmtpd in a process of its own (bench/digest_sink.py).
    Every host is 127.0.0.1; every wait has a deadline. Processes, files, the Redis
    database and the PostgreSQL database are cleaned up on exit, Ctrl-C and SIGTERM.

Run: .venv/bin/python bench/digest.py [--quick] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
Exit status: 0 when the run worked (whatever the figures), 1 when mail went missing or was
doubled, 2 when it could not be set up.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import secrets
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import digest_data
import digest_sink
from common import (
    BENCH_OPERATOR,
    BenchError,
    claimed_redis,
    free_port,
    postgres_database,
    stop_on_sigterm,
    venv_script,
)

TARGET_RATIO = 0.6
TARGET_RSS_MB = 80.0
TARGET_RSS_GROWTH = 1.2
TARGET_RADIUS_RATIO = 1.10  # issue 12: radius search within 10 % of text search
TARGET_PLAN_SECONDS = 30.0
REDIS_SERVER = "redis://127.0.0.1:6379"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PREFERRED_REDIS_DB = 12  # test runs claim theirs from 15 down, bench/signup.py 14
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "")
SAMPLE_SECONDS = 0.05
MB = 1024 * 1024


# -- surroundings ---------------------------------------------------------------------------

def postgres_answers(admin_url: str) -> bool:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means: not usable here
        return False
    finally:
        engine.dispose()


class Databases:
    """Fresh, migrated, loaded databases, one per phase: a copy of a migrated SQLite file in
    the temporary directory, or bench_digest_<pid> on PostgreSQL."""

    def __init__(self, tmp: Path, admin_url: str | None, data: digest_data.Dataset) -> None:
        self.tmp = tmp
        self.admin_url = admin_url
        self.data = data
        self._template: Path | None = None

    @property
    def backend(self) -> str:
        return "postgresql" if self.admin_url else "sqlite"

    @contextlib.contextmanager
    def fresh(self, label: str, subscribers: int) -> Iterator[str]:
        from newsletter.db import Database
        from newsletter.migrate import upgrade

        with contextlib.ExitStack() as stack:
            if self.admin_url:
                url = stack.enter_context(postgres_database(self.admin_url, "bench_digest"))
                upgrade(url)
            else:
                if self._template is None:
                    self._template = self.tmp / "template.db"
                    upgrade(f"sqlite:///{self._template}")
                path = self.tmp / f"{label}.db"
                shutil.copy(self._template, path)
                url = f"sqlite:///{path}"
                stack.callback(_remove_sqlite, path)
            database = Database(url)
            try:
                digest_data.load(database.engine, self.data, subscribers)
            finally:
                database.dispose()
            yield url


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def make_settings(tmp: Path, database_url: str, redis_url: str, smtp_port: int, chunk_size: int | None) -> Any:
    from newsletter.config import load_settings

    overrides: dict[str, Any] = {
        "env": "production",
        "database_url": database_url,
        "redis_url": redis_url,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "base_url": "https://newsletter.example.org",
        "secret_key": secrets.token_urlsafe(48),
        "instance_path": str(tmp / "instance"),
        **BENCH_OPERATOR,  # production refuses the built-in example operator
    }
    if chunk_size:
        overrides["send_chunk_size"] = chunk_size
    return load_settings(environ={}, dotenv_path=None, **overrides)


def env_for(settings: Any) -> dict[str, str]:
    """The environment that gives `newsletter worker` these settings (as tests/conftest.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    for name in type(settings).__dataclass_fields__:
        if name == "extra":
            continue
        value = getattr(settings, name)
        if isinstance(value, tuple):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env["NEWSLETTER_" + name.upper()] = str(value)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@contextlib.contextmanager
def workers(settings: Any, count: int, tmp: Path, label: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` real `newsletter worker` processes, yielded once all are registered and idle."""
    from redis import Redis
    from rq import Worker

    env = env_for(settings)
    logs = [tmp / f"worker-{label}-{n}.log" for n in range(count)]
    processes: list[subprocess.Popen[bytes]] = []
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=10)
    try:
        for log in logs:
            with open(log, "wb") as out:
                # Own session: the group is stopped as a whole, Ctrl-C is ours to handle.
                processes.append(subprocess.Popen([venv_script("newsletter"), "worker"], cwd=tmp, env=env,
                                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 60
        while True:
            idle = [w for w in Worker.all(connection=redis) if w.get_state() == "idle"]
            if len(idle) >= count:
                break
            if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
                raise BenchError(f"the workers did not come up:\n{_tails(logs)}")
            time.sleep(0.1)
        yield processes
    except Exception as exc:
        if not isinstance(exc, BenchError):  # which carries the tails already
            print(_tails(logs), file=sys.stderr)
        raise
    finally:
        for process in processes:
            _stop(process)
        redis.close()


def _tails(logs: Sequence[Path]) -> str:
    return "\n".join(f"-- {log.name} --\n{log.read_text(errors='replace')[-1500:]}" for log in logs if log.exists())


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # RQ's warm shutdown: the current job finishes
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# -- one edition -----------------------------------------------------------------------------

class CpuMeter:
    """CPU seconds used by some processes, their live children and their reaped ones (once
    waited for), should a worker fork any. Unlike msg/s this
    hardly depends on what else the machine is doing."""

    def __init__(self, pids: Sequence[int]) -> None:
        import psutil

        self._processes = [psutil.Process(pid) for pid in pids]

    def seconds(self) -> float:
        import psutil

        total = 0.0
        for process in self._processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
                for child in process.children(recursive=True):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        own = child.cpu_times()
                        total += own.user + own.system
            except psutil.NoSuchProcess:
                continue
        return total


@dataclass
class EditionRun:
    planned: int
    variants: int
    plan_seconds: float  # create_edition + commit
    seconds: float  # edition created .. last message at the sink
    received: int
    worker_cpu: float = float("nan")  # seconds, all workers with their children
    sink_cpu: float = float("nan")
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.planned / self.seconds if self.seconds > 0 else 0.0

    def cpu_line(self) -> str:
        n = max(self.planned, 1)
        return f"worker {self.worker_cpu / n * 1000:.2f}, sink {self.sink_cpu / n * 1000:.2f}"


def wait_idle(redis_url: str, count: int, timeout: float = 15.0) -> None:
    """Until `count` workers are idle: the last job has then finished."""
    from redis import Redis
    from rq import Worker

    redis = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(w.get_state() == "idle" for w in Worker.all(connection=redis)) >= count:
                return
            time.sleep(0.05)
    finally:
        redis.close()


def send_edition(settings: Any, sink: digest_sink.Sink, min_rate: float,
                 worker_pids: Sequence[int] = ()) -> EditionRun:
    """Create and queue an edition as `newsletter digest send` does; wait for the sink."""
    from sqlalchemy import func, select

    from newsletter.editions import planning
    from newsletter.editions import state as edition_state
    from newsletter.models import Edition, EditionVariant
    from newsletter import job_context, queueing

    ctx = job_context.configure(settings)  # before the clock: the CLI has this ready too
    worker_meter, sink_meter = CpuMeter(worker_pids), CpuMeter([sink.pid])
    try:
        worker_before, sink_before = worker_meter.seconds(), sink_meter.seconds()
        start = time.monotonic()
        with ctx.database.session_scope() as session:
            edition = planning.create_edition(session, settings, "bench")
            edition_id, planned = edition.id, edition.planned
        planned_at = time.monotonic()
        with ctx.database.session_scope() as session:
            queueing.queue_edition(session, ctx.redis, edition_id, settings.send_chunk_size)
        arrived = sink.wait_for(planned, start + 60 + planned / min_rate)
        end = sink.last_at if arrived else time.monotonic()
        run = EditionRun(planned, 0, planned_at - start, end - start, sink.count)
        if not arrived:
            run.problems.append(f"only {sink.count} of {planned} messages arrived in time")
        # Late arrivals would be doubled mail; the edition must also end up done.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with ctx.database.session_scope() as session:
                counts = edition_state.counts(session, edition_id)
                state = session.get(Edition, edition_id).state  # type: ignore[union-attr]
                run.variants = int(session.scalar(
                    select(func.count()).select_from(EditionVariant).where(EditionVariant.edition_id == edition_id)) or 0)
            if state == "done" or not arrived:
                break
            time.sleep(0.1)
        time.sleep(0.3)
        run.received = sink.count
        if run.received > planned:
            run.problems.append(f"{run.received - planned} messages more than planned arrived (doubled mail)")
        if counts["sent"] != planned or state != "done":
            run.problems.append(f"edition {edition_id} is {state} with {counts}")
        wait_idle(settings.redis_url, len(worker_pids))
        run.worker_cpu = worker_meter.seconds() - worker_before
        run.sink_cpu = sink_meter.seconds() - sink_before
        return run
    finally:
        ctx.database.dispose()
        ctx.redis.close()


@dataclass
class RawRun:
    messages: int
    seconds: float
    client_cpu: float
    sink_cpu: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def cpu_line(self) -> str:
        n = max(self.messages, 1)
        return f"client {self.client_cpu / n * 1000:.2f}, sink {self.sink_cpu / n * 1000:.2f}"


def raw_send(port: int, records: Sequence[digest_sink.Captured], sink: digest_sink.Sink, timeout: float) -> RawRun:
    """Send the captured messages with bare smtplib over one connection, timed from the
    connect to the last message at the sink."""
    sink_meter = CpuMeter([sink.pid])
    sink_before, client_before = sink_meter.seconds(), time.thread_time()
    start = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo()
        for record in records:
            # smtplib adds SIZE= itself when the server offers it, as it did for the worker.
            options = [o for o in record.mail_options if not o.upper().startswith("SIZE=")]
            smtp.sendmail(record.mail_from, record.rcpt_tos, record.data, mail_options=options)
    client_cpu = time.thread_time() - client_before
    if not sink.wait_for(len(records), start + timeout):
        raise BenchError(f"raw smtplib: only {sink.count} of {len(records)} messages arrived")
    return RawRun(len(records), sink.last_at - start, client_cpu, sink_meter.seconds() - sink_before)


# -- memory ---------------------------------------------------------------------------------

@dataclass
class MemoryPeak:
    rss_sum: int = 0  # the brief's figure: RSS of the worker plus all its children
    pss_sum: int = 0  # shared pages split between the processes sharing them
    parent_rss: int = 0
    child_rss: int = 0  # the largest single child, if the worker ever forks one
    idle_rss_sum: int = 0
    samples: int = 0


class TreeSampler(threading.Thread):
    """Samples the memory of a process and its descendants every SAMPLE_SECONDS."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        import psutil

        self._root = psutil.Process(pid)
        self._halt = threading.Event()
        self.peak = MemoryPeak()

    def sample(self) -> tuple[int, int]:
        import psutil

        rss = pss = 0
        try:
            family = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0, 0
        for process in family:
            try:
                # memory_full_info reads /proc/PID/smaps_rollup: ~0.2 ms, cheap enough.
                info = process.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue  # a child that just exited
            rss += info.rss
            pss += info.pss
            if process.pid == self._root.pid:
                self.peak.parent_rss = max(self.peak.parent_rss, info.rss)
            else:
                self.peak.child_rss = max(self.peak.child_rss, info.rss)
        self.peak.rss_sum = max(self.peak.rss_sum, rss)
        self.peak.pss_sum = max(self.peak.pss_sum, pss)
        self.peak.samples += 1
        return rss, pss

    def run(self) -> None:
        while not self._halt.wait(SAMPLE_SECONDS):
            self.sample()

    def stop(self) -> MemoryPeak:
        self._halt.set()
        self.join(timeout=5)
        return self.peak


@dataclass
class MemoryRun:
    subscribers: int
    edition: EditionRun
    peak: MemoryPeak


def memory_run(databases: Databases, subscribers: int, tmp: Path, redis_url: str, sink: digest_sink.Sink,
               args: argparse.Namespace) -> MemoryRun:
    with databases.fresh(f"rss-{subscribers}", subscribers) as url:
        settings = make_settings(tmp, url, redis_url, sink.port, args.chunk_size)
        with workers(settings, 1, tmp, f"rss-{subscribers}") as (worker,):
            sampler = TreeSampler(worker.pid)
            sampler.peak.idle_rss_sum = sampler.sample()[0]
            sampler.start()
            sink.reset()
            try:
                run = send_edition(settings, sink, args.min_rate, [worker.pid])
            finally:
                peak = sampler.stop()
    return MemoryRun(subscribers, run, peak)


# -- planning a million ------------------------------------------------------------------------

@dataclass
class PlanRun:
    subscribers: int
    load_seconds: float
    plan_seconds: float
    planned: int
    variants: int


def plan_run(admin_url: str, subscribers: int, data: digest_data.Dataset, tmp: Path, redis_url: str) -> PlanRun:
    from sqlalchemy import func, select

    from newsletter.editions import planning
    from newsletter.db import Database
    from newsletter.migrate import upgrade
    from newsletter.models import EditionVariant

    with postgres_database(admin_url, "bench_digest") as url:
        upgrade(url)
        database = Database(url)
        try:
            started = time.monotonic()
            digest_data.load(database.engine, data, subscribers)
            loaded = time.monotonic()
            settings = make_settings(tmp, url, redis_url, free_port(), None)
            with database.session_scope() as session:
                edition = planning.create_edition(session, settings, "bench")
                edition_id, planned = edition.id, edition.planned
            planned_at = time.monotonic()
            with database.session_scope() as session:
                variants = int(session.scalar(
                    select(func.count()).select_from(EditionVariant).where(EditionVariant.edition_id == edition_id)) or 0)
        finally:
            database.dispose()
    return PlanRun(subscribers, loaded - started, planned_at - loaded, planned, variants)


# -- the run ------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "met" if ok else "below target"


@dataclass
class Results:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, key: str, value: str) -> None:
        self.lines.append(f"{key}: {value}")
        print(f"{key}: {value}", flush=True)  # as it comes: a long run shows progress


def throughput(args: argparse.Namespace, databases: Databases, tmp: Path, redis_url: str,
               sink: digest_sink.Sink, out: Results) -> None:
    n = args.subscribers
    with databases.fresh("one-worker", n) as url:
        settings = make_settings(tmp, url, redis_url, sink.port, args.chunk_size)
        out.add("chunk_size", str(settings.send_chunk_size))
        with workers(settings, 1, tmp, "one") as processes:
            sink.reset(capture=1)
            one = send_edition(settings, sink, args.min_rate, [p.pid for p in processes])
    out.problems += [f"one worker: {p}" for p in one.problems]
    out.add("variants", str(one.variants))
    out.add("messages_per_edition", str(one.planned))

    records = digest_sink.read_captured(digest_sink.capture_path(sink.capture_dir, 1), args.raw_max)
    sizes = [len(r.data) for r in records]
    out.add("message_bytes", f"avg {sum(sizes) / max(len(sizes), 1):.0f}, min {min(sizes, default=0)}, max {max(sizes, default=0)}")
    out.add("pipeline_1_worker_seconds", f"{one.seconds:.2f} (create_edition + commit {one.plan_seconds:.2f} s)")
    out.add("pipeline_1_worker_msg_per_s", f"{one.rate:.1f}")
    out.add("pipeline_1_worker_cpu_ms_per_msg", one.cpu_line())

    sink.reset(capture=2)  # the sink does the same work as for the pipeline
    raw = raw_send(sink.port, records, sink, 60 + len(records) / args.min_rate)
    raw_rate = raw.rate
    del records
    out.add("raw_smtplib_msg_per_s", f"{raw_rate:.1f} ({raw.messages} captured messages, one connection)")
    out.add("raw_smtplib_cpu_ms_per_msg", raw.cpu_line())
    out.add("ratio_1_worker", f"{one.rate / raw_rate:.3f} (target >= {TARGET_RATIO}: {verdict(one.rate / raw_rate >= TARGET_RATIO)})")

    with databases.fresh("two-workers", n) as url:
        settings = make_settings(tmp, url, redis_url, sink.port, args.chunk_size)
        with workers(settings, args.workers, tmp, "many") as processes:
            sink.reset(capture=3)
            many = send_edition(settings, sink, args.min_rate, [p.pid for p in processes])
    out.problems += [f"{args.workers} workers: {p}" for p in many.problems]
    out.add(f"pipeline_{args.workers}_workers_msg_per_s", f"{many.rate:.1f} ({many.seconds:.2f} s; "
                                                          f"cpu ms/msg {many.cpu_line()})")
    out.add(f"ratio_{args.workers}_workers", f"{many.rate / raw_rate:.3f}")
    for generation in (1, 2, 3):
        digest_sink.capture_path(sink.capture_dir, generation).unlink(missing_ok=True)


def memory(args: argparse.Namespace, databases: Databases, tmp: Path, redis_url: str,
           sink: digest_sink.Sink, out: Results) -> None:
    runs = []
    for size in args.rss_sizes:
        run = memory_run(databases, size, tmp, redis_url, sink, args)
        runs.append(run)
        out.problems += [f"memory run {size}: {p}" for p in run.edition.problems]
        peak = run.peak
        out.add(
            f"rss_peak_{size}_mb",
            f"{peak.rss_sum / MB:.1f} (target <= {TARGET_RSS_MB:.0f}: {verdict(peak.rss_sum / MB <= TARGET_RSS_MB)}); "
            f"pss {peak.pss_sum / MB:.1f}; worker {peak.parent_rss / MB:.1f}, "
            f"{f'largest child {peak.child_rss / MB:.1f}' if peak.child_rss else 'no child process'}; "
            f"idle sum {peak.idle_rss_sum / MB:.1f}; {peak.samples} samples; "
            f"{run.edition.planned} messages at {run.edition.rate:.0f} msg/s",
        )
    if len(runs) >= 2 and runs[0].peak.rss_sum:
        small, large = runs[0], runs[-1]
        growth = large.peak.rss_sum / small.peak.rss_sum
        pss_growth = large.peak.pss_sum / small.peak.pss_sum if small.peak.pss_sum else float("nan")
        out.add(f"rss_growth_{large.subscribers}_vs_{small.subscribers}",
                f"{growth:.3f} (target <= {TARGET_RSS_GROWTH}: {verdict(growth <= TARGET_RSS_GROWTH)}); pss {pss_growth:.3f}")


def planning(args: argparse.Namespace, data: digest_data.Dataset, tmp: Path, redis_url: str, out: Results) -> None:
    """A million readers planned twice in one run: with text searches (keywords and a place
    matched as text), then with job-alert searches (radius, remote, job types, listings with
    coordinates); their ratio is the price of radius search (target <= 1.10)."""
    key = f"plan_{args.plan_subscribers}_seconds"
    admin = args.database_url or PG_ADMIN_URL
    if not postgres_answers(admin):
        out.add(key, f"skipped: PostgreSQL does not answer at {_hide_password(admin)}")
        return
    # Text, radius, radius, text: a drift of the machine during the four runs weighs on
    # both kinds alike.
    runs: dict[str, list[PlanRun]] = {"text": [], "radius": []}
    for search in ("text", "radius", "radius", "text"):
        searches = data if search == "text" else digest_data.dataset(args.preference_sets, args.listings, search)
        run = plan_run(admin, args.plan_subscribers, searches, tmp, redis_url)
        runs[search].append(run)
        if run.planned != run.subscribers:
            out.problems.append(f"planning ({search} searches): {run.planned} deliveries for {run.subscribers} readers")
    for search, label in (("text", key), ("radius", f"plan_{args.plan_subscribers}_radius_seconds")):
        done = runs[search]
        worst = max(run.plan_seconds for run in done)
        target = f"target <= {TARGET_PLAN_SECONDS:.0f}: {verdict(worst <= TARGET_PLAN_SECONDS)}"
        out.add(label, f"{' and '.join(f'{run.plan_seconds:.2f}' for run in done)} ({target}); "
                       f"{done[0].planned} deliveries, {done[0].variants} variants; loading the readers with COPY "
                       f"took {done[0].load_seconds:.1f} s")
    mean = {search: sum(run.plan_seconds for run in done) / len(done) for search, done in runs.items()}
    ratio = mean["radius"] / mean["text"]
    out.add("plan_radius_vs_text", f"{ratio:.3f} (target <= {TARGET_RADIUS_RATIO:.2f}: {verdict(ratio <= TARGET_RADIUS_RATIO)})")


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=None, help="readers for the throughput runs (default 5000)")
    parser.add_argument("--preference-sets", type=int, default=50, help="distinct (keywords, location) (default 50)")
    parser.add_argument("--listings", type=int, default=200, help="listings in the window (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="workers for the second run (default 2)")
    parser.add_argument("--chunk-size", type=int, default=None, help="NEWSLETTER_SEND_CHUNK_SIZE (default: the app's)")
    parser.add_argument("--skip-throughput", action="store_true", help="no throughput runs (1, 2 and 3)")
    parser.add_argument("--rss-sizes", default=None, help="comma-separated edition sizes for the memory runs "
                                                            "(default 10000,100000)")
    parser.add_argument("--skip-rss", action="store_true", help="no memory runs")
    parser.add_argument("--plan-subscribers", type=int, default=None, help="readers to plan on PostgreSQL (default 1000000)")
    parser.add_argument("--skip-plan", action="store_true", help="no planning run on PostgreSQL")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server (postgresql+psycopg://postgres@127.0.0.1:5432/postgres) to create "
                             "bench_digest_<pid> on; default: SQLite files in the temporary directory")
    parser.add_argument("--redis-server", default=REDIS_SERVER, help=f"without a database number (default {REDIS_SERVER})")
    parser.add_argument("--raw-max", type=int, default=20_000, help="captured messages the baseline replays at most")
    parser.add_argument("--min-rate", type=float, default=10.0,
                        help="msg/s below which a phase counts as stuck: its deadline is 60 s + messages / this")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (worker logs)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1000 readers, memory at 1000 and 5000, planning 50000")
    args = parser.parse_args(argv)
    args.subscribers = args.subscribers or (1000 if args.quick else 5000)
    args.plan_subscribers = args.plan_subscribers or (50_000 if args.quick else 1_000_000)
    sizes = args.rss_sizes or ("1000,5000" if args.quick else "10000,100000")
    try:
        args.rss_sizes = [int(part) for part in sizes.split(",") if part.strip()]
    except ValueError:
        parser.error("--rss-sizes takes numbers like 10000,100000")
    if args.subscribers < 1 or args.workers < 1 or args.min_rate <= 0 or args.raw_max < 1:
        parser.error("--subscribers, --workers, --raw-max must be >= 1 and --min-rate > 0")
    if not 1 <= args.preference_sets <= len(digest_data.JOBS) * (len(digest_data.CITIES) + 1):
        parser.error("--preference-sets is out of range")
    if args.listings < args.preference_sets:
        parser.error("--listings must be at least --preference-sets (one listing per set is made to match)")
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url takes a postgresql:// URL (SQLite is the default)")
    for option, url in (("--database-url", args.database_url), ("--redis-server", args.redis_server)):
        if url and (urlsplit(url).hostname or "") not in LOCAL_HOSTS:
            parser.error(f"{option}: this benchmark only talks to 127.0.0.1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    if args.database_url and not postgres_answers(args.database_url):
        print(f"error: PostgreSQL does not answer at {_hide_password(args.database_url)}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-digest-"))
    out = Results()
    try:
        with contextlib.ExitStack() as stack:
            redis_url = stack.enter_context(claimed_redis(args.redis_server, "bench-digest", PREFERRED_REDIS_DB)).url
            data = digest_data.dataset(args.preference_sets, args.listings)
            databases = Databases(tmp, args.database_url, data)
            load = " ".join(f"{v:.2f}" for v in os.getloadavg())
            out.add("machine", f"nproc {os.cpu_count()}, {platform.python_implementation()} {platform.python_version()}, "
                               f"{platform.system()} {platform.machine()}, load average {load} at start")
            out.add("backend", f"{databases.backend}; Redis {redis_url}")
            out.add("subscribers", f"{args.subscribers} confirmed, {args.preference_sets} preference sets, "
                                   f"{args.listings} listings in the window")
            sink = stack.enter_context(digest_sink.Sink(free_port(), tmp))
            if not args.skip_throughput:
                throughput(args, databases, tmp, redis_url, sink, out)
            if not args.skip_rss:
                memory(args, databases, tmp, redis_url, sink, out)
            if not args.skip_plan:
                planning(args, data, tmp, redis_url, out)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    finally:
        if args.keep_temp:
            print(f"kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    for problem in out.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if out.problems else 0


if __name__ == "__main__":
    sys.exit(main())
