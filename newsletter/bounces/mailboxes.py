"""Where returned mail is read from on disk: a Maildir, an mbox file or single .eml files.

A Maildir's processed messages move to cur/ with the Seen flag (never deleted: the
operator's mail client or a cleanup job owns them); messages already there with that flag
are not read again. An mbox or an .eml file is left as it is: the database's record of
each message's digest keeps a second run from acting twice.
"""

from __future__ import annotations

import logging
import mailbox
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# A bounce carries at most the original's headers or the original itself; anything larger
# is no bounce of ours and would only cost memory (every byte is hashed and parsed).
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
SKIPPED = "skipped"  # too large, or unreadable: left where it is


class SourceError(Exception):
    """A path that is no Maildir, mbox or message file."""


def kind_of(path: Path) -> str:
    """The kind of source: "maildir", "mbox" or "eml"; SourceError for anything else."""
    if path.is_dir():
        if all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            return "maildir"
        raise SourceError(f"{path}: a directory but no Maildir (no cur/, new/ and tmp/)")
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory")
    if not path.is_file():
        raise SourceError(f"{path}: neither a file nor a Maildir")
    try:
        with path.open("rb") as fh:
            start = fh.read(5)
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return "mbox" if start == b"From " else "eml"


def process(path: Path, handle: Callable[[bytes], str]) -> Counter[str]:
    """Hand every unprocessed message under `path` to `handle` (which records it and
    returns its verdict); count the verdicts."""
    counts: Counter[str] = Counter()
    kind = kind_of(path)
    if kind == "maildir":
        for file in _maildir_unseen(path):
            verdict = _handle_file(file, handle)
            counts[verdict] += 1
            if verdict != SKIPPED:
                _mark_seen(path, file)
    elif kind == "mbox":
        box = mailbox.mbox(path, create=False)
        try:
            for key in box.keys():
                raw = box.get_bytes(key)
                counts[handle(raw) if len(raw) <= MAX_MESSAGE_BYTES else SKIPPED] += 1
        finally:
            box.close()
    else:
        counts[_handle_file(path, handle)] += 1
    return counts


def _handle_file(file: Path, handle: Callable[[bytes], str]) -> str:
    try:
        # Opened without following a link and checked to be a plain file: a Maildir is
        # written by others, and a link to a secret or a FIFO (which would block the read)
        # is no message. The size is checked on what was opened, not on the name.
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                log.warning("%s: not a plain file: left as it is", file)
                return SKIPPED
            if info.st_size > MAX_MESSAGE_BYTES:
                log.warning("%s: larger than %d bytes, no bounce of ours: left as it is", file, MAX_MESSAGE_BYTES)
                return SKIPPED
            raw = fh.read(MAX_MESSAGE_BYTES + 1)
    except OSError as exc:
        log.warning("%s: cannot be read (%s): left as it is", file, exc.strerror or exc)
        return SKIPPED
    if len(raw) > MAX_MESSAGE_BYTES:
        return SKIPPED
    return handle(raw)


def _flags(name: str) -> str:
    # "unique:2,FLAGS" (the Maildir convention; "!" instead of ":" where ":" is not allowed)
    for separator in (":2,", "!2,"):
        if separator in name:
            return name.rpartition(separator)[2]
    return ""


def _maildir_unseen(root: Path) -> Iterator[Path]:
    for sub in ("new", "cur"):
        for name in sorted(os.listdir(root / sub)):
            if name.startswith("."):
                continue
            if sub == "cur" and "S" in _flags(name):
                continue
            yield root / sub / name


def _mark_seen(root: Path, file: Path) -> None:
    name = file.name
    for separator in (":2,", "!2,"):
        if separator in name:
            base, _, flags = name.rpartition(separator)
            break
    else:
        base, separator, flags = name, ":2,", ""
    target = root / "cur" / f"{base}{separator}{''.join(sorted(set(flags) | {'S'}))}"
    try:
        os.rename(file, target)
    except FileNotFoundError:
        pass  # another reader moved it meanwhile; it was recorded by then


