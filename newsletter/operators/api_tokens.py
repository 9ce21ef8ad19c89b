"""Bearer tokens for /api/v1/: created by an operator (`newsletter api-token create NAME`),
shown once, stored as their SHA-256 only.

A token is 32 random bytes (secrets.token_urlsafe), so its hash is looked up directly: the
unique index on token_hash finds it, and no comparison of secrets happens in Python that
could leak timing (an attacker would need a SHA-256 preimage to use what a timing
difference in the index lookup might tell). last_used_at is written at most once a minute
per token, so the API does not turn every read into a write.

Each token carries scopes (STANDARDS 36): `listings` (import and withdraw listings) and
`editions` (create, steer and read editions); a token made without naming any gets both,
as every token made before scopes existed has.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.models import ApiToken, utcnow
from newsletter.validation import InvalidInput, clean_text

LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_NAME = 100
MAX_TOKEN = 200  # anything longer is no token of ours: refuse before hashing
SCOPES = ("listings", "editions")


@dataclass(frozen=True)
class NewToken:
    """A freshly created token: the row and the secret, which exists nowhere else."""

    row: ApiToken
    secret: str


def token_hash(secret: str) -> str:
    """The hex SHA-256 stored in ApiToken.token_hash."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _active(session: Session, name: str) -> list[ApiToken]:
    query = select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
    return list(session.scalars(query))


def scopes_of(row: ApiToken) -> frozenset[str]:
    """The scopes a token grants."""
    return frozenset((row.scopes or "").split())


def _clean_scopes(scopes: Iterable[str] | None) -> str:
    """The stored form of `scopes` (both when none is named), in SCOPES' order."""
    wanted = set(scopes or SCOPES)
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise InvalidInput("scope", f"scope: unknown {unknown[0][:50]!r} (known: {', '.join(SCOPES)})")
    return " ".join(scope for scope in SCOPES if scope in wanted)


def create(session: Session, name: str, scopes: Iterable[str] | None = None) -> NewToken:
    """A new token named `name` (one line, at most 100 characters, not in use by an
    unrevoked token) granting `scopes` (all of SCOPES when None or empty). The caller
    commits and shows `secret` once."""
    clean = clean_text("name", name, MAX_NAME)
    if not clean:
        raise InvalidInput("name", "name: missing")
    granted = _clean_scopes(scopes)
    if _active(session, clean):
        raise InvalidInput("name", f"name: an active token named {clean!r} exists; revoke it first")
    secret = secrets.token_urlsafe(32)
    row = ApiToken(name=clean, token_hash=token_hash(secret), scopes=granted)
    session.add(row)
    session.flush()
    return NewToken(row, secret)


def verify(session: Session, secret: str, now: datetime | None = None) -> ApiToken | None:
    """The unrevoked token whose secret this is, or None. Marks it used (at most once a
    minute); the caller commits."""
    if not secret or len(secret) > MAX_TOKEN:
        return None
    row = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == token_hash(secret), ApiToken.revoked_at.is_(None))
    )
    if row is None:
        return None
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
    return row


def list_tokens(session: Session) -> list[ApiToken]:
    """Every token, oldest first (revoked ones too: the record of who had access)."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke(session: Session, name: str, now: datetime | None = None) -> int:
    """Revoke the active token(s) named `name`; how many were revoked. The caller commits."""
    now = now or utcnow()
    rows = _active(session, name.strip())
    for row in rows:
        row.revoked_at = now
    return len(rows)
