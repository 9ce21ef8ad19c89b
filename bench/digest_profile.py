"""Where a digest worker's time goes: the set-up of bench/digest.py (same data, same sink in
its own process), but the chunk jobs run in this process by an RQ SimpleWorker under
cProfile, so every function of the job (claim, compose, render, MIME, SMTP, bookkeeping)
shows up, as in `newsletter worker`, which runs its jobs in-process too; bench/digest.py
measures the real worker process.

Run: .venv/bin/python bench/digest_profile.py [--subscribers 2000] [--database-url ...] [--top 40]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import digest
import digest_data
import digest_sink


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--preference-sets", type=int, default=50)
    parser.add_argument("--listings", type=int, default=200)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server, as for bench/digest.py")
    parser.add_argument("--redis-server", default=digest.REDIS_SERVER)
    parser.add_argument("--top", type=int, default=35, help="rows of each table")
    parser.add_argument("--output", default=None, help="also write the raw profile (pstats) here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-digest-profile-"))
    try:
        with contextlib.ExitStack() as stack:
            redis_url = stack.enter_context(digest.claimed_redis(args.redis_server, "bench-digest-profile", digest.PREFERRED_REDIS_DB)).url
            data = digest_data.dataset(args.preference_sets, args.listings)
            databases = digest.Databases(tmp, args.database_url, data)
            sink = stack.enter_context(digest_sink.Sink(digest.free_port(), tmp))
            url = stack.enter_context(databases.fresh("profile", args.subscribers))
            settings = digest.make_settings(tmp, url, redis_url, sink.port, args.chunk_size)
            return profile(settings, sink, args)
    except digest.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def profile(settings: object, sink: digest_sink.Sink, args: argparse.Namespace) -> int:
    from rq import SimpleWorker

    from newsletter.editions import planning
    from newsletter import job_context, queueing

    ctx = job_context.configure(settings)  # type: ignore[arg-type]
    profiler = cProfile.Profile()
    start = time.monotonic()
    profiler.enable()
    with ctx.database.session_scope() as session:
        edition = planning.create_edition(session, settings, "bench")  # type: ignore[arg-type]
        edition_id, planned = edition.id, edition.planned
    with ctx.database.session_scope() as session:
        queueing.queue_edition(session, ctx.redis, edition_id, settings.send_chunk_size)  # type: ignore[attr-defined]
    SimpleWorker(list(queueing.ALL), connection=ctx.redis).work(burst=True, with_scheduler=False, logging_level="WARNING")
    profiler.disable()
    arrived = sink.wait_for(planned, time.monotonic() + 30)
    seconds = sink.last_at - start
    ctx.database.dispose()
    print(f"messages: {sink.count} of {planned}; {seconds:.2f} s under the profiler ({planned / seconds:.0f} msg/s)")
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    if args.output:
        stats.dump_stats(args.output)
    stats.strip_dirs().sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    print(stream.getvalue())
    return 0 if arrived else 1


if __name__ == "__main__":
    sys.exit(main())
