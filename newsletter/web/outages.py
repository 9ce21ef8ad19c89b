"""What counts as the database being away: the errors that answer 503 with Retry-After
(errors.py renders them) instead of 500. A refused or dropped connection is an outage, the
operator's news, logged in one line; an error that means the code or the schema is wrong
(a missing table, bad SQL, a violated constraint) is a bug, and stays 500 with its
traceback in the log."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from newsletter.config import mask_url

# A PostgreSQL restart or a failover is over within seconds to a minute.
RETRY_AFTER_SECONDS = 30

# SQLAlchemy's wrappers for "no answer": a refused or dropped connection, a pool that found
# none alive (DisconnectionError) or waited in vain for a free one (TimeoutError).
OUTAGE_ERRORS = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)

# sqlite3 raises OperationalError for SQL the database does not understand too ("no such
# table", a syntax error: SQLITE_ERROR), which DB-API calls a ProgrammingError. Only these
# primary result codes mean the file cannot be used right now.
_SQLITE_UNAVAILABLE = frozenset({
    5,   # SQLITE_BUSY: another writer held the lock past the busy timeout
    6,   # SQLITE_LOCKED
    7,   # SQLITE_NOMEM
    8,   # SQLITE_READONLY: the file or its folder cannot be written
    10,  # SQLITE_IOERR
    13,  # SQLITE_FULL: the disk is full
    14,  # SQLITE_CANTOPEN
    15,  # SQLITE_PROTOCOL
})


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached or used for now (503), rather
    than that the code or the schema is wrong (500)."""
    if not isinstance(exc, OUTAGE_ERRORS):
        return False
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_UNAVAILABLE
    return True


def reason(exc: BaseException) -> str:
    """The driver's error class and first line, for the log: without the SQL and parameters
    SQLAlchemy appends (they may hold a reader's address), any password in a URL masked."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {mask_url(lines[0] if lines else '')[:200]}"
