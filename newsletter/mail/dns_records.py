"""The DNS records a sender must publish (SPF, DKIM, DMARC) for the configured settings, and
what DNS publishes for them: `newsletter dns-records [--check]` and `newsletter doctor`.

The DKIM public key is derived from the configured private key with what the service
already depends on (dkimpy's key parser for RSA, PyNaCl for Ed25519), so that a server
without the `cryptography` package can print it too.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from newsletter.config import Settings, aligned

TTL = 3600
# A TXT record is made of strings of at most 255 octets each (RFC 1035 3.3.14).
TXT_CHUNK = 255
DNS_TIMEOUT_SECONDS = 3.0
# Last labels of names no resolver on the internet answers for (RFC 2606, 6761, 6762,
# 8375 and the usual private ones): a relay called so is no host SPF can name.
_PRIVATE_SUFFIXES = ("local", "localhost", "localdomain", "internal", "lan", "home", "corp", "intranet",
                     "test", "example", "invalid", "arpa")


class DkimKeyError(ValueError):
    """The DKIM key file holds no key this service can sign with."""


@dataclass(frozen=True)
class Record:
    """One TXT record: its kind (SPF, DKIM, DMARC), owner name (no final dot) and value."""

    kind: str
    name: str
    value: str

    def zone_line(self) -> str:
        """The record as a zone-file line: long values as several quoted strings."""
        chunks = [self.value[i:i + TXT_CHUNK] for i in range(0, len(self.value), TXT_CHUNK)] or [""]
        return f"{self.name}. {TTL} IN TXT " + " ".join(f'"{chunk}"' for chunk in chunks)


@dataclass(frozen=True)
class Plan:
    """Every record to publish, with the zone-file comments that explain them."""

    records: list[Record]
    comments: dict[str, list[str]]  # by kind: printed before that kind's record
    dkim_note: str  # why there is no DKIM record, when there is none
    key: DkimKey | None
    key_error: str  # the configured key does not load: why

    def lines(self) -> list[str]:
        """The plan as zone-file text: comment lines start with ';'."""
        out: list[str] = []
        for record in self.records:
            out += [f"; {text}" for text in self.comments.get(record.kind, [])]
            out.append(record.zone_line())
            if record.kind == "SPF" and self.dkim_note:
                out.append(f"; DKIM: {self.dkim_note}")
        return out


# -- the DKIM key ----------------------------------------------------------------------------

def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _der_integer(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 0 keeps it positive
    return _der(0x02, raw)


# rsaEncryption (1.2.840.113549.1.1.1) with its NULL parameters.
_RSA_ALGORITHM = _der(0x30, bytes.fromhex("06092a864886f70d010101") + b"\x05\x00")


def _rsa_public_key(pem: bytes) -> str:
    """The SubjectPublicKeyInfo of a PEM RSA private key, base64: what `p=` holds."""
    from dkim.crypto import UnparsableKeyError, parse_pem_private_key

    try:
        key = parse_pem_private_key(pem.replace(b"\r\n", b"\n"))
    except (UnparsableKeyError, ValueError, IndexError) as exc:
        raise DkimKeyError(f"not an RSA private key in PEM (PKCS#1 or PKCS#8): {' '.join(str(exc).split())}") from None
    rsa_key = _der(0x30, _der_integer(key["modulus"]) + _der_integer(key["publicExponent"]))
    spki = _der(0x30, _RSA_ALGORITHM + _der(0x03, b"\x00" + rsa_key))
    return base64.b64encode(spki).decode("ascii")


def _ed25519_public_key(text: bytes) -> str:
    import binascii

    import nacl.encoding
    import nacl.exceptions
    import nacl.signing

    try:
        key = nacl.signing.SigningKey(text.strip(), encoder=nacl.encoding.Base64Encoder)
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, binascii.Error, TypeError, ValueError):
        raise DkimKeyError("not an Ed25519 private key (32 bytes, base64) nor a PEM RSA key") from None
    return key.verify_key.encode(encoder=nacl.encoding.Base64Encoder).decode("ascii")


@dataclass(frozen=True)
class DkimKey:
    """The configured key's public half, as DNS publishes it."""

    algorithm: str  # "rsa" or "ed25519", as in k=
    public: str  # base64, as in p=

    @property
    def record_value(self) -> str:
        return f"v=DKIM1; k={self.algorithm}; p={self.public}"


def dkim_key(settings: Settings) -> DkimKey | None:
    """The public key of NEWSLETTER_DKIM_KEY_FILE (None when signing is off); DkimKeyError or
    OSError when the file holds no usable key. Reads the file as dkim.py does."""
    if not settings.dkim_key_file:
        return None
    raw = Path(settings.dkim_key_file).read_bytes().strip()
    if b"-----BEGIN" in raw:
        return DkimKey("rsa", _rsa_public_key(raw))
    return DkimKey("ed25519", _ed25519_public_key(raw))


def dkim_name(settings: Settings) -> str:
    return f"{settings.dkim_selector}._domainkey.{settings.dkim_domain}".rstrip(".")


# -- the plan ------------------------------------------------------------------------------

def envelope_domain(settings: Settings) -> str:
    """Where SPF is looked up: the domain of the (VERP-tagged) envelope sender."""
    return settings.effective_bounce_address.rpartition("@")[2].lower()


def _spf_mechanism(host: str) -> str | None:
    """How SPF can name the relay itself: `ip4:`/`ip6:` for a public address, `a:` for a
    public host name; None for anything the internet cannot see (loopback, a LAN name)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.lower().rstrip(".")
        if "." not in name or name.rsplit(".", 1)[1] in _PRIVATE_SUFFIXES:
            return None
        return f"a:{name}"
    if not address.is_global:
        return None
    return f"ip{address.version}:{address}"


def plan(settings: Settings) -> Plan:
    """The records to publish for these settings. A configured DKIM key that does not load
    leaves out its record and is named in `key_error`; the other records stay printable."""
    from_domain = settings.mail_domain.lower()
    bounce_domain = envelope_domain(settings)
    mechanism = _spf_mechanism(settings.smtp_host)
    comments: dict[str, list[str]] = {}
    if mechanism is not None:
        spf = f"v=spf1 {mechanism} -all"
        comments["SPF"] = [
            f"SPF for the envelope sender's domain {bounce_domain}: allows the relay {settings.smtp_host}.",
            "If that relay is a provider's submission server, put the include: its documentation names instead.",
        ]
    else:
        spf = "v=spf1 include:YOUR-PROVIDER-SPF-DOMAIN -all"
        comments["SPF"] = [
            f"SPF for the envelope sender's domain {bounce_domain}. NEWSLETTER_SMTP_HOST={settings.smtp_host} is not a "
            "public host name,",
            "so replace include:YOUR-PROVIDER-SPF-DOMAIN with the include: your mail provider documents, or with "
            "ip4:ADDRESS of the host that hands the mail to the internet.",
        ]
    if not aligned(bounce_domain, from_domain):
        comments["SPF"].append(f"The envelope domain {bounce_domain} does not align with the From domain "
                               f"{from_domain}: SPF alone does not pass DMARC.")
    records = [Record("SPF", bounce_domain, spf)]

    dkim_note = key_error = ""
    try:
        key = dkim_key(settings)
    except (DkimKeyError, OSError) as exc:
        key = None
        key_error = f"the key in NEWSLETTER_DKIM_KEY_FILE cannot be used: {exc}"
    if key is None:
        dkim_note = key_error or ("no DKIM key configured (NEWSLETTER_DKIM_KEY_FILE, _SELECTOR, _DOMAIN): "
                                  "no DKIM record to publish.")
    else:
        alignment = ("aligns with" if aligned(settings.dkim_domain, from_domain) else "does NOT align with")
        comments["DKIM"] = [f"DKIM key {settings.dkim_selector} of {settings.dkim_domain} ({key.algorithm}); "
                            f"d={settings.dkim_domain} {alignment} the From domain {from_domain} (DMARC)."]
        records.append(Record("DKIM", dkim_name(settings), key.record_value))

    comments["DMARC"] = [
        f"DMARC for the From domain {from_domain}; aggregate reports go to the rua= address (make sure it exists).",
        "Start with p=none; once the reports show only your own mail passing, move to p=quarantine, then p=reject.",
    ]
    records.append(Record("DMARC", f"_dmarc.{from_domain}", f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{from_domain}"))
    return Plan(records, comments, dkim_note, key, key_error)


# -- what DNS publishes ------------------------------------------------------------------

class Outcome(StrEnum):
    OK = "ok"
    FAIL = "fail"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Found:
    """What a look-up found for one record: the outcome and a line saying why."""

    record: Record
    outcome: Outcome
    detail: str


class Unreachable(Exception):
    """DNS did not answer (no resolver, a timeout, every server failed)."""


class Missing(Exception):
    """DNS answered: there is no such name, or no TXT record at it."""


def parse_resolver(value: str) -> tuple[str, int]:
    """`HOST[:PORT]` (an IPv6 address in brackets when a port follows) as (address, port);
    ValueError for anything else."""
    host, port = value, 53
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(value)
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, number = value.partition(":")
        port = int(number)
    ipaddress.ip_address(host)  # dnspython asks addresses only
    if not 1 <= port <= 65535:
        raise ValueError(value)
    return host, port


class Lookup:
    """TXT look-ups through the system's resolver, or through one server (`resolver`)."""

    def __init__(self, resolver: tuple[str, int] | None = None, timeout: float = DNS_TIMEOUT_SECONDS) -> None:
        self.server = resolver
        self.timeout = timeout
        # One timeout is enough to know: the next look-ups would each wait as long.
        self._unreachable: Unreachable | None = None

    def _resolver(self):  # type: ignore[no-untyped-def]
        import dns.resolver

        if self.server is None:
            try:
                resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration as exc:
                self._unreachable = Unreachable(f"no resolver configured: {exc}")
                raise self._unreachable from None
        else:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [self.server[0]]
            resolver.port = self.server[1]
        resolver.timeout = resolver.lifetime = self.timeout
        return resolver

    def txt(self, name: str) -> list[str]:
        """Every TXT record at `name`, each its strings joined. Missing or Unreachable."""
        import dns.exception
        import dns.resolver

        if self._unreachable is not None:
            raise self._unreachable
        try:
            answer = self._resolver().resolve(name + ".", "TXT", raise_on_no_answer=True)
        except dns.resolver.NXDOMAIN:
            raise Missing(f"no such name {name}") from None
        except dns.resolver.NoAnswer:
            raise Missing(f"no TXT record at {name}") from None
        except dns.exception.DNSException as exc:
            self._unreachable = Unreachable(" ".join(str(exc).split()) or type(exc).__name__)
            raise self._unreachable from None
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]


def _tags(value: str) -> dict[str, str]:
    tags = {}
    for part in value.split(";"):
        key, sep, content = part.partition("=")
        if sep:
            tags[key.strip().lower()] = re.sub(r"\s+", "", content)
    return tags


def _same_dkim_key(published: dict[str, str], key: DkimKey) -> bool:
    if published.get("k", "rsa").lower() != key.algorithm or not published.get("p"):
        return False
    if key.algorithm == "ed25519":
        return published["p"] == key.public
    # An RSA key may be published as SubjectPublicKeyInfo (openssl's form) or bare RSAPublicKey.
    from dkim.crypto import UnparsableKeyError, parse_public_key

    try:
        theirs = parse_public_key(base64.b64decode(published["p"]))
        ours = parse_public_key(base64.b64decode(key.public))
    except (UnparsableKeyError, ValueError, IndexError):
        return False
    return bool(theirs == ours)


def _quoted(values: list[str]) -> str:
    """TXT values for the operator's terminal, each in double quotes. DNS answers are anyone's
    to spoof: escape codes, CR/LF and other characters that are not printable are shown
    escaped as Python writes them ("\\x1b", "\\r"), and so is a backslash, so that what is
    printed stays one line and means one thing."""
    return ", ".join(f'"{_printable(value)}"' for value in values)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() and c != "\\" else repr(c)[1:-1] for c in text)


def _judge_spf(record: Record, txts: list[str]) -> Found:
    spf = [t for t in txts if t.lower().startswith("v=spf1")]
    if not spf:
        return Found(record, Outcome.FAIL, f"no SPF record at {record.name} (TXT: {_quoted(txts) or 'none'})")
    if len(spf) > 1:
        return Found(record, Outcome.FAIL, f"{len(spf)} SPF records at {record.name} (RFC 7208 allows one): {_quoted(spf)}")
    terms = spf[0].split()[1:]
    if not any(t.lstrip("+").split(":")[0].split("/")[0].lower() in ("a", "mx", "ip4", "ip6", "include", "exists")
               for t in terms):
        return Found(record, Outcome.FAIL, f"the SPF record allows no sender: {_quoted(spf)}")
    return Found(record, Outcome.OK, f"published {_quoted(spf)}")


def _judge_dkim(record: Record, txts: list[str], key: DkimKey) -> Found:
    dkim = [t for t in txts if "p=" in t]
    if not dkim:
        return Found(record, Outcome.FAIL, f"no DKIM key at {record.name} (TXT: {_quoted(txts) or 'none'})")
    if any(_same_dkim_key(_tags(t), key) for t in dkim):
        return Found(record, Outcome.OK, f"published {_quoted(dkim)}")
    return Found(record, Outcome.FAIL, f"the published key is not the configured key: {_quoted(dkim)}")


def _judge_dmarc(record: Record, txts: list[str], where: str) -> Found:
    dmarc = [t for t in txts if t.replace(" ", "").lower().startswith("v=dmarc1")]
    if len(dmarc) != 1:
        return Found(record, Outcome.FAIL, f"{len(dmarc)} DMARC records at {where} (one needed): {_quoted(txts) or 'none'}")
    policy = _tags(dmarc[0]).get("p", "")
    if policy.lower() not in ("none", "quarantine", "reject"):
        return Found(record, Outcome.FAIL, f"the DMARC record at {where} has no valid p= policy: {_quoted(dmarc)}")
    inherited = f" (at {where})" if where != record.name else ""
    return Found(record, Outcome.OK, f"published{inherited} {_quoted(dmarc)}")


def check(record: Record, lookup: Lookup, key: DkimKey | None = None) -> Found:
    """Look `record` up and judge what is published."""
    try:
        if record.kind == "DMARC":
            return _check_dmarc(record, lookup)
        txts = lookup.txt(record.name)
    except Unreachable as exc:
        return Found(record, Outcome.UNKNOWN, f"DNS not reachable: {exc}")
    except Missing as exc:
        return Found(record, Outcome.FAIL, f"nothing published: {exc}")
    if record.kind == "SPF":
        return _judge_spf(record, txts)
    assert key is not None
    return _judge_dkim(record, txts, key)


def _check_dmarc(record: Record, lookup: Lookup) -> Found:
    """A receiver that finds no DMARC record at a subdomain asks its parent domains too (the
    organisational domain, RFC 7489 6.6.3): so do we, short of the top-level domain."""
    domain = record.name.removeprefix("_dmarc.")
    labels = domain.split(".")
    first_miss: Missing | None = None
    for start in range(0, max(len(labels) - 1, 1)):
        where = "_dmarc." + ".".join(labels[start:])
        try:
            return _judge_dmarc(record, lookup.txt(where), where)
        except Missing as exc:
            first_miss = first_miss or exc
    return Found(record, Outcome.FAIL, f"nothing published: {first_miss}")
