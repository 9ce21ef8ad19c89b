"""Accounts of the web admin: created, re-passworded and disabled from the command line
(`newsletter admin ...`), checked at the login form.

Passwords are hashed with Argon2id (argon2-cffi's PasswordHasher, a memory-hard function:
STANDARDS 30). A password must be at least MIN_PASSWORD characters and must not contain
the local part of the account's address (the first thing a guesser tries). A login for an
unknown or disabled address still runs one hash, so the answer takes as long as a wrong
password and tells nobody which addresses have accounts.
"""

from __future__ import annotations

from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.models import AdminRole, AdminUser, utcnow
from newsletter.validation import InvalidInput, clean_email

MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # hashing a megabyte per login attempt would be a cheap denial of service
ROLES = tuple(AdminRole)

_hasher = PasswordHasher()
# Verified against for unknown accounts, so that they cost what a known one costs.
_DUMMY_HASH = _hasher.hash("no account has this password")


def normal_email(email: str) -> str:
    """The stored form of an account's address: validated, lower-cased."""
    return clean_email(email).lower()


def check_password(email: str, password: str) -> None:
    """Raise InvalidInput (field `password`) when `password` is too weak for `email`."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput("password", f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput("password", f"password: at most {MAX_PASSWORD} characters")
    local = email.split("@", 1)[0].lower()
    # A local part of one or two letters ("a@…") is in half of all passwords: it would refuse
    # strong ones and protects nothing.
    if len(local) >= 3 and local in password.lower():
        raise InvalidInput("password", "password: must not contain the address")


def _role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput("role", f"role: expected one of {', '.join(ROLES)}")
    return role


def find(session: Session, email: str) -> AdminUser | None:
    """The account of `email` (any spelling of its case), or None; also for a malformed address."""
    try:
        address = normal_email(email)
    except InvalidInput:
        return None
    return session.scalar(select(AdminUser).where(AdminUser.email == address))


def get(session: Session, user_id: int) -> AdminUser | None:
    """The account with this id, or None."""
    return session.get(AdminUser, user_id)


def create(session: Session, email: str, password: str, role: str = AdminRole.OPERATOR) -> AdminUser:
    """A new account; InvalidInput for a bad address, role or password, or an address that
    has an account already. The caller commits."""
    address = normal_email(email)
    role = _role(role)
    check_password(address, password)
    if session.scalar(select(AdminUser.id).where(AdminUser.email == address)) is not None:
        raise InvalidInput("email", f"email: an account for {address} exists; use set-password")
    user = AdminUser(email=address, password_hash=_hasher.hash(password), role=role)
    session.add(user)
    session.flush()
    return user


def _existing(session: Session, email: str) -> AdminUser:
    user = find(session, email)
    if user is None:
        raise InvalidInput("email", "email: no such account")
    return user


def set_password(session: Session, email: str, password: str) -> AdminUser:
    """Give an account a new password; every session made with the old one ends."""
    user = _existing(session, email)
    check_password(user.email, password)
    user.password_hash = _hasher.hash(password)
    user.session_generation += 1
    return user


def disable(session: Session, email: str, now: datetime | None = None) -> AdminUser:
    """Disable an account: it can no longer log in, and its sessions end."""
    user = _existing(session, email)
    if user.disabled_at is None:
        user.disabled_at = now or utcnow()
        user.session_generation += 1
    return user


def authenticate(session: Session, email: str, password: str, now: datetime | None = None) -> AdminUser | None:
    """The enabled account whose password this is, or None. Marks the login and upgrades an
    outdated hash; the caller commits."""
    user = find(session, email) if len(password) <= MAX_PASSWORD else None
    stored = user.password_hash if user is not None and user.disabled_at is None else _DUMMY_HASH
    try:
        _hasher.verify(stored, password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled_at is not None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = now or utcnow()
    return user


def list_users(session: Session) -> list[AdminUser]:
    """Every account, oldest first."""
    return list(session.scalars(select(AdminUser).order_by(AdminUser.id)))
