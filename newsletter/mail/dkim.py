"""Optional DKIM signing (dkimpy), RSA or Ed25519, covering the List-* headers (STANDARDS 7).

The List-Unsubscribe headers are oversigned (named once more than they occur), so nobody
on the way can add a second one without breaking the signature.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from newsletter.config import Settings

SIGNED = [
    b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type",
    b"list-id", b"list-unsubscribe", b"list-unsubscribe-post", b"auto-submitted", b"feedback-id",
]
OVERSIGNED = [b"from", b"subject", b"list-id", b"list-unsubscribe", b"list-unsubscribe-post"]


@dataclass(frozen=True)
class Signer:
    selector: bytes
    domain: bytes
    key: bytes
    algorithm: bytes

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header in front."""
        present = {line.split(b":", 1)[0].strip().lower() for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n") if b":" in line and not line[:1].isspace()}
        import dkim  # only where signing is configured: it brings dnspython along

        headers = [h for h in SIGNED if h in present] + [h for h in OVERSIGNED if h in present]
        signature = dkim.sign(
            message, self.selector, self.domain, self.key, include_headers=headers,
            signature_algorithm=self.algorithm, linesep=b"\r\n",
        )
        return signature + message


def signer_for(settings: Settings) -> Signer | None:
    """The signer configured by NEWSLETTER_DKIM_*, or None when signing is off; its key file
    is read again only when it changes on disk. The file holds a PEM RSA private key, or an Ed25519 private
    key as dkimpy expects it (32 bytes, base64)."""
    if not settings.dkim_key_file:
        return None
    changed = os.stat(settings.dkim_key_file).st_mtime_ns
    return _cached_signer(settings.dkim_selector, settings.dkim_domain, settings.dkim_key_file, changed)


@lru_cache(maxsize=4)
def _cached_signer(selector: str, domain: str, key_file: str, _changed: int) -> Signer:
    key = Path(key_file).read_bytes().strip()
    algorithm = b"rsa-sha256" if b"-----BEGIN" in key else b"ed25519-sha256"
    return Signer(selector.encode(), domain.encode(), key, algorithm)
