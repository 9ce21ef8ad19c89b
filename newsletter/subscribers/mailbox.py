"""The mailbox behind an address, for the budgets of confirmation and link mails (STANDARDS 28).

Many spellings deliver to one inbox: anna+1@x.de and Anna@x.de, and at Gmail a.n.n.a@gmail.com
and anna@googlemail.com. A form that mails each spelling once would still bomb one person,
so the budget is kept per mailbox, as a hash: it must outlive an erasure of the address.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, text

# Providers that deliver a.b@ and ab@ to the same inbox; the value is the domain they share.
_DOTS_IGNORED = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def mailbox(email: str) -> str:
    """The inbox `email` delivers to: lower-cased, without its +tag, and without dots where
    the provider ignores them."""
    local, _, domain = email.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in _DOTS_IGNORED:
        local, domain = local.replace(".", ""), _DOTS_IGNORED[domain]
    return f"{local}@{domain}"


def mailbox_hash(email: str) -> str:
    """SHA-256 (hex) of the inbox `email` delivers to."""
    return hashlib.sha256(mailbox(email).encode("utf-8")).hexdigest()


# A transaction-scoped lock per mailbox: a budget read and then written (confirmation mails,
# link mails) must not be read by two requests at once, or a script sending them side by
# side gets a mail for each. SQLite needs none: its BEGIN IMMEDIATE (db.py) serialises
# every writing transaction already.
_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:mailbox, 0))")


def lock_mailbox(conn: Connection, hashed_mailbox: str) -> None:
    """Hold the budget of the mailbox `hashed_mailbox` (a mailbox_hash) until this
    transaction ends; take it before reading the budget. One round trip on PostgreSQL,
    nothing on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK, {"mailbox": hashed_mailbox})
