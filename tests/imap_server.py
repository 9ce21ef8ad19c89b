"""A Dovecot IMAP server of a test's own (Debian's dovecot-imapd, `.ci/install-dovecot`):
its own configuration, directories, port and TLS certificate from a private CA (trustme),
one user with a password, mail kept as a Maildir. Started with `dovecot -F`, so stopping
it is ending the one process this helper started.

NEWSLETTER_TEST_DOVECOT=require (what CI sets) fails when Dovecot is missing instead of
skipping."""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import trustme

from .smtp_sink import free_port

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
SKIP_REASON = "Dovecot is not installed (.ci/install-dovecot installs it)"
USER = "bounces"

# The capabilities Dovecot 2.3 offers after login, without MOVE; `imap_capability` replaces
# the list, so a test can meet a server of the kind that lacks an extension.
_CAPABILITIES = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
                 "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
                 "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
                 "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY")


def require_dovecot() -> None:
    """Skip the test when Dovecot is missing (fail under NEWSLETTER_TEST_DOVECOT=require)."""
    if os.path.exists(DOVECOT):
        return
    if os.environ.get("NEWSLETTER_TEST_DOVECOT") == "require":
        pytest.fail(f"{SKIP_REASON}; NEWSLETTER_TEST_DOVECOT=require")
    pytest.skip(SKIP_REASON)


class DovecotServer:
    """One Dovecot instance. `without` names capabilities it does not offer ("MOVE",
    "UIDPLUS"); `tls=False` makes a server that offers no TLS at all (on `starttls_port`)."""

    def __init__(self, password: str, *, without: tuple[str, ...] = (), tls: bool = True) -> None:
        require_dovecot()
        self.password = password
        self.without = without
        self.tls = tls
        self.port = free_port()  # imaps (TLS from the first byte)
        self.starttls_port = free_port()  # imap, TLS after STARTTLS
        self.ca = trustme.CA()
        self.process: subprocess.Popen[bytes] | None = None
        # Not under pytest's tmp_path: Dovecot's login and mail processes run as other,
        # unprivileged users, and pytest's directories are open to their owner only.
        self.root = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
        self.root.chmod(0o755)

    # -- what a test needs -----------------------------------------------------------------
    def url(self, *, password: str | None = None, folder: str = "", starttls: bool = False) -> str:
        scheme, port = ("imap", self.starttls_port) if starttls else ("imaps", self.port)
        return f"{scheme}://{USER}:{password or self.password}@127.0.0.1:{port}/{folder}"

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's private CA (and nothing else)."""
        return ssl.create_default_context(cadata=self.ca.cert_pem.bytes().decode("ascii"))

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        """Put a message into `folder` as a mail server would (IMAP APPEND)."""
        with self._session() as imap:
            typ, data = imap.append(_quoted(folder), "", None, raw)
            assert typ == "OK", data

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        """The raw messages in `folder`, oldest first; [] when it does not exist. Read with
        EXAMINE, which changes nothing (no \\Seen flags)."""
        with self._session() as imap:
            typ, _ = imap.select(_quoted(folder), readonly=True)
            if typ != "OK":
                return []
            typ, data = imap.uid("SEARCH", "ALL")
            found = []
            for uid in data[0].split():
                typ, parts = imap.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
                found.extend(part[1] for part in parts if isinstance(part, tuple))
            return found

    def folders(self) -> list[str]:
        """The mailbox names as Dovecot itself lists them (decoded, not IMAP's UTF-7)."""
        result = subprocess.run([DOVEADM, "-c", str(self.config), "mailbox", "list", "-u", USER],
                                capture_output=True, text=True, timeout=30, check=True)
        return result.stdout.split("\n")[:-1]

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "dovecot.conf"

    def start(self) -> DovecotServer:
        mail = self.root / "mail"
        mail.mkdir()
        owner = _mail_owner()
        os.chown(mail, owner.pw_uid, owner.pw_gid)
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_and_cert_chain_pem.write_to_path(str(self.root / "server.pem"))
        (self.root / "server.pem").chmod(0o600)
        self.config.write_text(self._config_text(owner))
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"dovecot did not start: {error}{self.log()}")
            try:
                with self._session():
                    return self
            except (OSError, imaplib.IMAP4.error):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not answer within 20 s: {self.log()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            if self.process.stderr:
                self.process.stderr.close()
            self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def _session(self) -> imaplib.IMAP4:
        """A logged-in connection of the test's own (imaplib's context manager logs out)."""
        if self.tls:
            imap: imaplib.IMAP4 = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=self.client_context(),
                                                    timeout=10)
        else:
            imap = imaplib.IMAP4("127.0.0.1", self.starttls_port, timeout=10)
        try:
            imap.login(_quoted(USER), self.password)
        except BaseException:
            imap.shutdown()
            raise
        return imap

    def _config_text(self, owner: pwd.struct_passwd) -> str:
        root = self.root
        # A Dovecot run by root drops to these users for login and mail; run by anyone
        # else it can only be that user throughout.
        users = "" if os.geteuid() == 0 else (
            f"default_login_user = {owner.pw_name}\ndefault_internal_user = {owner.pw_name}\n")
        capability = " ".join(c for c in _CAPABILITIES.split() if c not in self.without)
        if "MOVE" not in self.without:
            capability += " MOVE"
        ssl_settings = (f"ssl = required\nssl_cert = <{root}/server.pem\nssl_key = <{root}/server.pem\n"
                        if self.tls else "ssl = no\ndisable_plaintext_auth = no\n")
        imaps = f"port = {self.port}\n    ssl = yes" if self.tls else "port = 0"
        return f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
{users}{ssl_settings}auth_mechanisms = plain login
# No pause after a failed login (Dovecot's brake on guessing): the tests try wrong ones.
auth_failure_delay = 0
first_valid_uid = {min(owner.pw_uid, 500)}
first_valid_gid = 0
passdb {{
  driver = static
  args = "password={self.password.replace('%', '%%')}"
}}
userdb {{
  driver = static
  args = uid={owner.pw_uid} gid={owner.pw_gid} home={root}/mail/%u
}}
mail_location = maildir:{root}/mail/%u
namespace inbox {{
  inbox = yes
  separator = /
}}
protocol imap {{
  imap_capability = {capability}
}}
service imap-login {{
  inet_listener imap {{
    port = {self.starttls_port}
  }}
  inet_listener imaps {{
    {imaps}
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


def _mail_owner() -> pwd.struct_passwd:
    """Whose files the mail is: as root an unprivileged user (Dovecot refuses mail access
    as root), otherwise the user running the tests."""
    return pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
