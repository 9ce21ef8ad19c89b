"""A private Postfix of a test's own: Debian's package (.ci/install-postfix) run from a
config directory in a temporary directory, with its own queue and data directory, listening
on 127.0.0.1 at a free port. It never touches the system's Postfix (port 25, /etc/postfix,
/var/spool/postfix), and two tests side by side each get their own.

What it does with mail:
- `bounces@jobs.example.org` (and `bounces+TAG@...`, recipient_delimiter `+`) and
  `ok@jobs.example.org` go into a Maildir each, delivered by virtual(8) as `nobody`;
- anything for `dead.example` fails at once with `5.1.1 mailbox unavailable`, so Postfix
  sends its own DSN to the envelope sender;
- anything else fails too: the relay never sends mail off the machine.
The mail directory lives under /tmp rather than pytest's tmp_path, because virtual(8) runs
as `nobody` and pytest's directories are readable by their owner only."""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .smtp_sink import free_port

POSTFIX = Path("/usr/sbin/postfix")
DOMAIN = "jobs.example.org"
DEAD_DOMAIN = "dead.example"
MAILBOXES = ("bounces", "ok")
MAIL_USER = "nobody"  # virtual(8) refuses uids below virtual_minimum_uid (100)

# Every service unchrooted: Debian's master.cf chroots most of them into the queue
# directory, which would need copies of /etc files there.
MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
local      unix  - n n -     - local
virtual    unix  - n n -     - virtual
lmtp       unix  - - n -     - lmtp
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


def postfix_installed() -> bool:
    return POSTFIX.is_file() and os.access(POSTFIX, os.X_OK)


class PostfixError(RuntimeError):
    pass


class PostfixRelay:
    """`start()` it, send to `127.0.0.1:port`, read `maildir(name)`, `stop()` it."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.port = 0

    # -- paths -----------------------------------------------------------------------------

    def _path(self, *parts: str) -> Path:
        if self.root is None:
            raise PostfixError("the relay is not started")
        return self.root.joinpath(*parts)

    @property
    def config_dir(self) -> Path:
        return self._path("config")

    def maildir(self, name: str = "bounces") -> Path:
        return self._path("mail", name)

    def log(self) -> str:
        """Postfix's own log of this instance (maillog_file), for failure messages."""
        try:
            return self._path("maillog").read_text(errors="replace")
        except (OSError, PostfixError):
            return "(no log)"

    # -- life cycle ------------------------------------------------------------------------

    def start(self, attempts: int = 3) -> PostfixRelay:
        if not postfix_installed():
            raise PostfixError(f"{POSTFIX} is missing (.ci/install-postfix installs it)")
        # The port is free when chosen but may be taken before master binds it (another
        # test process): try again with a new one.
        for attempt in range(attempts):
            self._prepare(free_port())
            atexit.register(self.stop)  # a test run stopped by Ctrl-C leaves nothing running
            try:
                self._postfix("start")
                self._wait_for_banner()
                return self
            except PostfixError as error:
                log = self.log()
                self.stop()
                if attempt == attempts - 1:
                    raise PostfixError(f"private Postfix did not start: {error}\n{log}") from None
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the instance and remove its directory; safe to call twice."""
        if self.root is None:
            return
        pid = self._master_pid()
        if pid is not None:
            subprocess.run(self._command("stop"), capture_output=True, timeout=30)
            if not self._wait_gone(pid, 15):
                subprocess.run(self._command("abort"), capture_output=True, timeout=30)
                if not self._wait_gone(pid, 5):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)  # our own master, by its pid file
                    self._wait_gone(pid, 5)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
        atexit.unregister(self.stop)

    def __enter__(self) -> PostfixRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- waiting for mail --------------------------------------------------------------------

    def wait_for_mail(self, name: str = "bounces", count: int = 1, timeout: float = 30) -> list[Path]:
        """The files in Maildir `name`'s new/ once there are `count` of them, oldest first."""
        new = self.maildir(name) / "new"
        deadline = time.monotonic() + timeout
        while True:
            found = sorted(new.iterdir(), key=lambda p: p.stat().st_mtime) if new.is_dir() else []
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(found)} of {count} mails in {new} after {timeout} s; Postfix log:\n{self.log()}"
                )
            time.sleep(0.2)

    def wait_until_idle(self, timeout: float = 30) -> None:
        """Return once this instance's queue is empty: every mail delivered or bounced, and
        every DSN that caused delivered too."""
        deadline = time.monotonic() + timeout
        while True:
            result = subprocess.run(
                ["/usr/sbin/postqueue", "-c", str(self.config_dir), "-j"],
                capture_output=True, text=True, timeout=30,
            )
            if result.returncode == 0 and not result.stdout.strip():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"Postfix queue not empty after {timeout} s: {result.stdout}{result.stderr}")
            time.sleep(0.2)

    # -- internals -------------------------------------------------------------------------

    def _prepare(self, port: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="newsletter-postfix-"))
        self.root.chmod(0o755)  # virtual(8), as nobody, walks down to the mail directory
        self.port = port
        for name in ("config", "queue", "data"):
            self._path(name).mkdir()
        owner = pwd.getpwnam("postfix")  # master takes its lock in the data directory as postfix
        os.chown(self._path("data"), owner.pw_uid, owner.pw_gid)
        nobody = pwd.getpwnam(MAIL_USER)
        mail = self._path("mail")
        mail.mkdir()
        os.chown(mail, nobody.pw_uid, nobody.pw_gid)
        root = self.root
        (root / "config" / "vmailbox").write_text("".join(f"{m}@{DOMAIN} {m}/\n" for m in MAILBOXES))
        (root / "config" / "transport").write_text(f"{DEAD_DOMAIN} error:5.1.1 mailbox unavailable\n")
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": root / "queue",
            "data_directory": root / "data",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "syslog_name": "postfix-newsletter-test",
            "maillog_file": root / "maillog",
            "maillog_file_prefixes": root,
            "myhostname": f"mx.{DOMAIN}",
            "mydomain": DOMAIN,
            "mydestination": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_reject_unlisted_recipient": "no",
            "recipient_delimiter": "+",
            "virtual_mailbox_domains": DOMAIN,
            "virtual_mailbox_base": mail,
            "virtual_mailbox_maps": f"texthash:{root / 'config' / 'vmailbox'}",
            "virtual_uid_maps": f"static:{nobody.pw_uid}",
            "virtual_gid_maps": f"static:{nobody.pw_gid}",
            "transport_maps": f"texthash:{root / 'config' / 'transport'}",
            # Nothing leaves this machine: any other destination fails like dead.example.
            "default_transport": "error:5.7.1 the test relay delivers nowhere else",
            "relay_transport": "error:5.7.1 the test relay delivers nowhere else",
            "smtpd_banner": "$myhostname ESMTP test relay",
            "biff": "no",
        }
        (root / "config" / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        (root / "config" / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{port}"))

    def _command(self, action: str) -> list[str]:
        return [str(POSTFIX), "-c", str(self.config_dir), action]

    def _postfix(self, action: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        result = subprocess.run(self._command(action), capture_output=True, text=True, timeout=60, env=env)
        if result.returncode != 0:
            raise PostfixError(f"postfix {action}: {result.stderr.strip() or result.stdout.strip()}")

    def _wait_for_banner(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    if sock.recv(512).startswith(b"220"):
                        sock.sendall(b"QUIT\r\n")
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise PostfixError(f"no SMTP banner on 127.0.0.1:{self.port}")

    def _master_pid(self) -> int | None:
        try:
            return int(self._path("queue", "pid", "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return True
            if state == "Z":  # exited; waiting for an init that may never reap it
                return True
            time.sleep(0.1)
        return False
