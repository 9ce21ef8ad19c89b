"""One itsdangerous serializer per purpose, each with its own salt (STANDARDS 26).

Tokens carry only a subscriber's random public_id: never the address, never the row id.
Confirmation tokens expire; unsubscribe and preference tokens do not, and every key in
NEWSLETTER_SECRET_KEY_FALLBACKS still verifies them after a rotation.

Preferences and data tokens also name the row's link generation, which a new signup after
an unsubscribe raises: the web pages open nothing for a token of another generation.
Unsubscribe tokens name none: every unsubscribe link ever mailed stops the mail.

A digest's web version ("view in the browser") link names no reader at all: it signs the
(variant id, language) of an edition's variant, the same for every reader of it. It has no
time stamp, so every worker that renders the variant makes the very same link; its life is
the edition's age, which the web version checks (editions/web_version.py).

Only the spelling we mailed is accepted: itsdangerous decodes the signature leniently
(unused low bits of the last character, padding, non-ASCII characters are ignored), so one
token would otherwise have several spellings that all verify.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from itsdangerous import (
    BadData,
    BadSignature,
    SignatureExpired,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_decode, base64_encode

CONFIRM_SALT = "newsletter.confirm.v1"
UNSUBSCRIBE_SALT = "newsletter.unsubscribe.v1"
PREFERENCES_SALT = "newsletter.preferences.v1"
# Opens a reader's data export and erasure: mailed on request, expires (STANDARDS 26).
DATA_SALT = "newsletter.data.v1"
# The List-Unsubscribe mailto: address's tag. A mail address's local part holds 64
# characters at most and may be lower-cased on its way, so it is no itsdangerous token but
# "u." + public_id + "." + a short lower-case hex HMAC of it (80 bits).
MAILTO_SALT = b"newsletter.mailto-unsubscribe.v1:"
MAILTO_PREFIX = "u."
_MAILTO_MAC_LENGTH = 20
# The VERP tag of the envelope sender, bounces+TAG@domain: public_id[.edition].HMAC (48
# bits: every guess costs the guesser a mail). Signed, so that a bounce acts only on the
# reader whose mail it returns: a made-up DSN cannot bounce a reader it names.
VERP_SALT = b"newsletter.verp.v1:"
_VERP_MAC_LENGTH = 12
_DIGITS = re.compile(r"[0-9]{1,10}")
# The web version of one digest variant in one language: no reader's data in it.
DIGEST_WEB_SALT = "newsletter.digest-web.v1"
_DIGEST_WEB_LANGUAGES = ("de", "en")
# Ours are about 40 characters; anything far longer is refused before any decoding.
_MAX_DIGEST_WEB_TOKEN = 200


_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{8,32}")
MAX_ROW_ID = 2**31 - 1  # an INTEGER primary key on PostgreSQL


class TokenInvalid(Exception):
    """The token was altered, is of another kind, or was signed with an unknown key."""


class TokenExpired(Exception):
    """A confirmation token older than its maximum age."""


@dataclass(frozen=True)
class Tokens:
    keys: list[str]
    confirm_max_age_seconds: float
    data_max_age_seconds: float = 3600.0

    def _timed(self, salt: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.keys, salt=salt)

    def _loads_timed(self, salt: str, token: str, max_age: float) -> object:
        _check_canonical(token)  # first: a respelt expired token is invalid, not expired
        try:
            return self._timed(salt).loads(token, max_age=max_age)
        except SignatureExpired:
            raise TokenExpired() from None
        except BadSignature:
            raise TokenInvalid() from None

    def _plain(self, salt: str) -> URLSafeSerializer:
        return URLSafeSerializer(self.keys, salt=salt)

    def confirm(self, public_id: str, message_id: int | None = None) -> str:
        """The link of one confirmation mail: it names the outbox row it was mailed in, so
        that the preferences asked for with that very signup are the ones it confirms."""
        return self._timed(CONFIRM_SALT).dumps(public_id if message_id is None else [public_id, message_id])

    def read_confirm(self, token: str) -> tuple[str, int | None]:
        """(public_id, outbox message id or None for a link mailed before links named it)."""
        value = self._loads_timed(CONFIRM_SALT, token, self.confirm_max_age_seconds)
        if isinstance(value, list) and len(value) == 2:
            message_id = value[1]
            # An id no outbox row can have would fail the lookup (an integer column).
            if type(message_id) is not int or not 1 <= message_id <= MAX_ROW_ID:
                raise TokenInvalid()
            return _as_public_id(value[0]), message_id
        return _as_public_id(value), None

    def data(self, public_id: str, generation: int = 0) -> str:
        """A link to the data export and erasure of the row's link `generation`."""
        return self._timed(DATA_SALT).dumps(_with_generation(public_id, generation))

    def read_data(self, token: str) -> tuple[str, int]:
        """(public_id, link generation)."""
        return _public_id_and_generation(self._loads_timed(DATA_SALT, token, self.data_max_age_seconds))

    def unsubscribe(self, public_id: str) -> str:
        return self._plain(UNSUBSCRIBE_SALT).dumps(public_id)

    def read_unsubscribe(self, token: str) -> str:
        return self._read_plain(UNSUBSCRIBE_SALT, token)

    def mailto_unsubscribe(self, public_id: str) -> str:
        """The tag of the reader's List-Unsubscribe mailto: address (bounces+TAG@domain)."""
        return f"{MAILTO_PREFIX}{public_id}.{self._mailto_mac(self.keys[-1], public_id)}"

    def mailto_public_id(self, tag: str) -> str | None:
        """The public_id a mailto tag names, as spelt in it (perhaps lower-cased on the way),
        or None when it is no mailto tag. Whether it is genuine: `mailto_valid`."""
        if not tag.lower().startswith(MAILTO_PREFIX):
            return None
        public_id, dot, mac = tag[len(MAILTO_PREFIX):].rpartition(".")
        if not dot or len(mac) != _MAILTO_MAC_LENGTH or not _PUBLIC_ID.fullmatch(public_id):
            return None
        return public_id

    def mailto_valid(self, public_id: str, tag: str) -> bool:
        """Whether `tag` is the mailto tag of the row `public_id`, signed with any key we
        hold (the tags mailed before a key rotation keep working, as unsubscribe links do)."""
        given = tag.lower().encode()
        return any(
            hmac.compare_digest(given, f"{MAILTO_PREFIX}{public_id}.{self._mailto_mac(key, public_id)}".lower().encode())
            for key in self.keys
        )

    @staticmethod
    def _mailto_mac(key: str, public_id: str) -> str:
        return _mac(key, MAILTO_SALT, public_id, _MAILTO_MAC_LENGTH)

    def verp_tag(self, public_id: str, edition_id: int | None = None) -> str:
        """The envelope sender's tag of a mail to `public_id` (of a digest of `edition_id`)."""
        signed = public_id if edition_id is None else f"{public_id}.{edition_id}"
        return f"{signed}.{_mac(self.keys[-1], VERP_SALT, signed, _VERP_MAC_LENGTH)}"

    @staticmethod
    def verp_parts(tag: str) -> tuple[str, int | None] | None:
        """(public_id as spelt in the tag, edition id or None), or None when `tag` has not the
        shape of a VERP tag. Whether it is genuine: `verp_valid`, with the row's public_id."""
        parts = tag.split(".")
        if len(parts) not in (2, 3) or len(parts[-1]) != _VERP_MAC_LENGTH or not _PUBLIC_ID.fullmatch(parts[0]):
            return None
        if len(parts) == 2:
            return parts[0], None
        if not _DIGITS.fullmatch(parts[1]) or not 1 <= int(parts[1]) <= MAX_ROW_ID:
            return None
        return parts[0], int(parts[1])

    def verp_valid(self, public_id: str, edition_id: int | None, tag: str) -> bool:
        """Whether `tag` is the VERP tag we gave a mail to the row `public_id` (any key we
        hold; compared without case, as some hops lower-case local parts)."""
        given = tag.lower().encode()
        signed = public_id if edition_id is None else f"{public_id}.{edition_id}"
        return any(
            hmac.compare_digest(given, f"{signed}.{_mac(key, VERP_SALT, signed, _VERP_MAC_LENGTH)}".lower().encode())
            for key in self.keys
        )

    def digest_web(self, variant_id: int, language: str) -> str:
        """The "view in the browser" link of one variant's digest in `language`."""
        if type(variant_id) is not int or not 1 <= variant_id <= MAX_ROW_ID or language not in _DIGEST_WEB_LANGUAGES:
            raise ValueError("a digest web link names a variant id and a language (de, en)")
        return self._plain(DIGEST_WEB_SALT).dumps([variant_id, language])

    def read_digest_web(self, token: str) -> tuple[int, str]:
        """(variant id, language) of a digest web link; TokenInvalid for anything else."""
        if len(token) > _MAX_DIGEST_WEB_TOKEN:
            raise TokenInvalid()
        value = self._loads_plain(DIGEST_WEB_SALT, token)
        if not (isinstance(value, list) and len(value) == 2):
            raise TokenInvalid()
        variant_id, language = value
        if type(variant_id) is not int or not 1 <= variant_id <= MAX_ROW_ID or language not in _DIGEST_WEB_LANGUAGES:
            raise TokenInvalid()
        return variant_id, language

    def preferences(self, public_id: str, generation: int = 0) -> str:
        """The lasting preferences link of the row's link `generation`."""
        return self._plain(PREFERENCES_SALT).dumps(_with_generation(public_id, generation))

    def read_preferences(self, token: str) -> tuple[str, int]:
        """(public_id, link generation)."""
        return _public_id_and_generation(self._loads_plain(PREFERENCES_SALT, token))

    def _read_plain(self, salt: str, token: str) -> str:
        return _as_public_id(self._loads_plain(salt, token))

    def _loads_plain(self, salt: str, token: str) -> object:
        _check_canonical(token)
        try:
            return self._plain(salt).loads(token)
        except BadSignature:
            raise TokenInvalid() from None


def _mac(key: str, salt: bytes, text: str, length: int) -> str:
    return hmac.new(key.encode(), salt + text.encode(), hashlib.sha256).hexdigest()[:length]


def _check_canonical(token: str) -> None:
    """Raise TokenInvalid unless the signature is exactly what base64 encoding its bytes gives."""
    signature = token.rpartition(".")[2]
    try:
        canonical = base64_encode(base64_decode(signature)).decode("ascii")
    except BadData:
        raise TokenInvalid() from None
    if canonical != signature:
        raise TokenInvalid()


def _as_public_id(value: object) -> str:
    # What new_public_id makes (URL-safe base64): anything else, a NUL say, is no row's id
    # and would fail the lookup on PostgreSQL rather than find nothing.
    if not isinstance(value, str) or not _PUBLIC_ID.fullmatch(value):
        raise TokenInvalid()
    return value


def _with_generation(public_id: str, generation: int) -> str | list[object]:
    """What a preferences or data token signs: the public_id alone for generation 0 (so the
    links mailed before generations existed stay valid and are spelt as before), else
    [public_id, generation]."""
    if type(generation) is not int or generation < 0:
        raise ValueError("a link generation is a whole number >= 0")
    return public_id if generation == 0 else [public_id, generation]


def _public_id_and_generation(value: object) -> tuple[str, int]:
    """The reverse of _with_generation; any other shape (a generation 0 in a list among
    them) is no token of ours."""
    if isinstance(value, list):
        if len(value) == 2 and type(value[1]) is int and value[1] >= 1:
            return _as_public_id(value[0]), value[1]
        raise TokenInvalid()
    return _as_public_id(value), 0


def tokens_for(settings: object) -> Tokens:
    """The Tokens of a Settings object."""
    from newsletter.config import Settings

    assert isinstance(settings, Settings)
    return Tokens(settings.signing_keys, settings.confirm_max_age_hours * 3600, settings.data_link_max_age_minutes * 60)
