"""Real `newsletter` processes for tests: start one, stop it, or kill it with its children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.conftest import env_for

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")


def start(settings, *args: str) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    """A real `newsletter` process; its log stays in the test's tmp_path for a post-mortem."""
    with open(Path(settings.instance_path).parent / f"{args[0]}-{time.monotonic_ns()}.log", "wb") as log:
        return subprocess.Popen([NEWSLETTER, *args], env=env_for(settings), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process and any children it has."""
    victims = psutil.Process(process.pid).children(recursive=True)
    process.kill()
    for child in victims:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait()


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL after 20 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
