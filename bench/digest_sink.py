"""The SMTP sink of bench/digest.py: aiosmtpd in a process of its own on 127.0.0.1.

Its own process, so that the sink's CPU never shares a GIL with the benchmark's bookkeeping.
It counts messages in shared memory and stamps the monotonic time of the latest one (Linux
has one CLOCK_MONOTONIC for all processes), so a phase ends at the moment its last message
arrived, not at the next poll. While capturing, each message (envelope and exact bytes) is
appended to a file: the raw-smtplib baseline replays those bytes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Self

READY_TIMEOUT = 20.0


@dataclass(frozen=True)
class Captured:
    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    data: bytes


class _Handler:
    def __init__(self, shared: SinkState, capture_dir: Path) -> None:
        self.shared = shared
        self.capture_dir = capture_dir
        self._generation = 0
        self._file: BinaryIO | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        generation = self.shared.capture.value
        if generation != self._generation:
            if self._file is not None:
                self._file.close()
                self._file = None
            self._generation = generation
            if generation:
                # Blocking file calls in the event loop, on purpose: a local file in the page
                # cache costs microseconds, the same for every phase that captures.
                self._file = open(capture_path(self.capture_dir, generation), "ab")  # noqa: ASYNC230, SIM115
        if self._file is not None:
            record = Captured(str(envelope.mail_from), list(envelope.rcpt_tos), list(envelope.mail_options),
                              bytes(envelope.original_content or b""))
            pickle.dump(record, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._file.flush()  # the benchmark reads the file while this process lives on
        # One writer (this event loop); the reader only loads aligned 8-byte values.
        self.shared.last_at.value = time.monotonic()
        self.shared.count.value += 1
        return "250 2.0.0 Message accepted"


@dataclass
class SinkState:
    """Shared memory between the sink and the benchmark."""

    count: Any  # RawValue("q")
    last_at: Any  # RawValue("d"), time.monotonic() of the latest message
    capture: Any  # RawValue("i"), 0: off, else the capture file's number


def capture_path(directory: Path, generation: int) -> Path:
    return directory / f"capture-{generation}.pickles"


def _serve(port: int, state: SinkState, capture_dir: Path, ready: Any, parent: int) -> None:
    from aiosmtpd.smtp import SMTP

    handler = _Handler(state, capture_dir)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(
        # hostname given: aiosmtpd would otherwise ask socket.getfqdn(), which may do DNS.
        lambda: SMTP(handler, hostname="bench-sink.invalid", ident="bench-sink", enable_SMTPUTF8=True),
        host="127.0.0.1", port=port,
    ))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)

    async def watch_parent() -> None:
        # If the benchmark dies without cleaning up (SIGKILL), do not linger.
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        loop.stop()

    watcher = loop.create_task(watch_parent())
    ready.set()
    try:
        loop.run_forever()
    finally:
        watcher.cancel()
        server.close()
        loop.run_until_complete(asyncio.gather(watcher, server.wait_closed(), return_exceptions=True))
        loop.close()


class Sink:
    """Start with `with Sink(port, directory) as sink:`; it stops at the end of the block."""

    def __init__(self, port: int, capture_dir: Path) -> None:
        # spawn, not fork: the benchmark process holds database engines and threads.
        ctx = multiprocessing.get_context("spawn")
        self.port = port
        self.capture_dir = capture_dir
        self.state = SinkState(ctx.RawValue("q", 0), ctx.RawValue("d", 0.0), ctx.RawValue("i", 0))
        self._ready = ctx.Event()
        self._process = ctx.Process(
            target=_serve, args=(port, self.state, capture_dir, self._ready, os.getpid()),
            name="bench-digest-sink", daemon=True,
        )

    def __enter__(self) -> Self:
        self._process.start()
        if not self._ready.wait(READY_TIMEOUT):
            self.stop()
            raise RuntimeError(f"the SMTP sink did not start on 127.0.0.1:{self.port}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()

    @property
    def pid(self) -> int:
        return int(self._process.pid or 0)

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    @property
    def count(self) -> int:
        return int(self.state.count.value)

    @property
    def last_at(self) -> float:
        return float(self.state.last_at.value)

    def reset(self, capture: int = 0) -> None:
        """Zero the counter and capture into file number `capture` (0: no capture). Call it
        only while nothing is being sent."""
        self.state.count.value = 0
        self.state.last_at.value = 0.0
        self.state.capture.value = capture

    def wait_for(self, count: int, deadline: float, poll: float = 0.005) -> bool:
        """Whether `count` messages arrived before time.monotonic() passed `deadline`."""
        while self.count < count:
            if time.monotonic() > deadline or not self.alive:
                return False
            time.sleep(poll)
        return True


def read_captured(path: Path, limit: int) -> list[Captured]:
    """Up to `limit` messages of a capture file, in the order they arrived."""
    return list(_records(path, limit))


def _records(path: Path, limit: int) -> Iterator[Captured]:
    with open(path, "rb") as fh:
        for _ in range(limit):
            try:
                yield pickle.load(fh)
            except EOFError:
                return

