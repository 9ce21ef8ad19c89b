"""`newsletter dns-records [--check]`, run as a real process: the records to paste into a zone,
and their check against a real DNS server of the test's own on 127.0.0.1 (a UDP responder
built on dnspython, asked by dnspython's real resolver through `--resolver`)."""

from __future__ import annotations

import base64
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from tests.conftest import env_for, make_settings
from tests.helpers import DkimKey
from tests.smtp_sink import free_port

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")


class DnsServer:
    """A real DNS server on 127.0.0.1 (UDP): TXT records from `records`, NXDOMAIN for any
    other name. Names are written without the final dot."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> DnsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            if name not in self.records:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.TXT:
                texts = [" ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255)) for value in self.records[name]]
                response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", "TXT", texts))
            self.sock.sendto(response.to_wire(), peer)


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer().start()
    yield server
    server.stop()


def run(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NEWSLETTER, *args], env=env_for(settings), capture_output=True, text=True, timeout=120)


def zone_records(output: str) -> dict[str, str]:
    """The non-comment lines as {owner name: TXT value with its strings joined}."""
    found = {}
    for line in output.splitlines():
        if line.startswith(";"):
            continue
        match = re.fullmatch(r"(\S+)\. 3600 IN TXT ((?:\"[^\"]*\" ?)+)", line)
        assert match, f"not a zone-file TXT line: {line!r}"
        strings = re.findall(r'"([^"]*)"', match.group(2))
        assert all(len(s) <= 255 for s in strings)
        found[match.group(1)] = "".join(strings)
    return found


@pytest.fixture
def base(tmp_path: Path):
    # dns-records reads no database: one SQLite path is enough for the settings.
    return make_settings(database_url=f"sqlite:///{tmp_path / 'n.db'}", instance_path=str(tmp_path / "instance"))


@pytest.fixture
def ed25519(tmp_path: Path) -> DkimKey:
    return DkimKey(tmp_path)


def published(settings, key: DkimKey) -> dict[str, list[str]]:
    """What a correctly configured zone holds for `settings`."""
    return {
        "jobs.example.org": ["v=spf1 a:smtp.relay.example.net -all", "google-site-verification=abc"],
        f"news._domainkey.{key.DOMAIN}": [f"v=DKIM1; k=ed25519; p={key.public}"],
        "_dmarc.jobs.example.org": ["v=DMARC1; p=none; rua=mailto:dmarc-reports@jobs.example.org"],
    }


def test_without_a_dkim_key_it_says_so_and_prints_spf_and_dmarc(base):
    result = run(base, "dns-records")
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("; DKIM: no DKIM key configured") for line in result.stdout.splitlines())
    records = zone_records(result.stdout)
    # The relay 127.0.0.1 is nothing SPF can name: a placeholder, and a comment on what to put.
    assert records == {
        "jobs.example.org": "v=spf1 include:YOUR-PROVIDER-SPF-DOMAIN -all",
        "_dmarc.jobs.example.org": "v=DMARC1; p=none; rua=mailto:dmarc-reports@jobs.example.org",
    }
    assert "include: your mail provider documents" in result.stdout
    assert "p=quarantine, then p=reject" in result.stdout


@pytest.mark.parametrize("host, mechanism", [("smtp.relay.example.net", "a:smtp.relay.example.net"),
                                             ("203.0.113.9", None), ("198.51.100.20", None),
                                             ("8.8.4.4", "ip4:8.8.4.4"), ("mail.internal", None)])
def test_spf_names_a_public_relay_and_the_bounce_domain(base, host, mechanism):
    settings = replace(base, smtp_host=host, bounce_address="bounces@return.jobs.example.org")
    records = zone_records(run(settings, "dns-records").stdout)
    spf = records["return.jobs.example.org"]
    if mechanism:
        assert spf == f"v=spf1 {mechanism} -all"
    else:  # documentation ranges and private names are nothing the internet can see
        assert "YOUR-PROVIDER-SPF-DOMAIN" in spf


def test_an_rsa_key_is_published_in_255_character_strings_and_verifies_real_signatures(base, tmp_path):
    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "rsa.pem").write_bytes(pem)
    settings = replace(base, dkim_selector="s2026", dkim_domain="jobs.example.org", dkim_key_file=str(tmp_path / "rsa.pem"))
    result = run(settings, "dns-records")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("s2026._domainkey.jobs.example.org. "))
    assert line.count('" "') >= 1  # a 2048-bit key does not fit one string
    value = zone_records(result.stdout)["s2026._domainkey.jobs.example.org"]
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert value == "v=DKIM1; k=rsa; p=" + base64.b64encode(spki).decode()
    # A receiver that reads this record verifies what the service signs with the key.
    from newsletter.mail.dkim import signer_for

    signed = signer_for(settings).sign(b"From: a@jobs.example.org\r\nTo: b@example.org\r\nSubject: x\r\n\r\nhi\r\n")
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: value.encode())
    assert "d=jobs.example.org aligns with the From domain jobs.example.org" in result.stdout


def test_an_ed25519_key_and_a_dkim_domain_that_does_not_align(base, ed25519):
    settings = replace(ed25519.settings(base), dkim_domain="mailer.example.net")
    result = run(settings, "dns-records")
    assert zone_records(result.stdout)["news._domainkey.mailer.example.net"] == f"v=DKIM1; k=ed25519; p={ed25519.public}"
    assert "d=mailer.example.net does NOT align with the From domain jobs.example.org" in result.stdout


def test_a_key_file_that_holds_no_key_is_one_error_line_and_the_rest_still_prints(base, tmp_path):
    (tmp_path / "bad.key").write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    settings = replace(base, dkim_selector="news", dkim_domain="jobs.example.org", dkim_key_file=str(tmp_path / "bad.key"))
    result = run(settings, "dns-records")
    assert result.returncode == 1
    assert result.stderr.startswith("error: the key in NEWSLETTER_DKIM_KEY_FILE cannot be used") and len(result.stderr.splitlines()) == 1
    assert set(zone_records(result.stdout)) == {"jobs.example.org", "_dmarc.jobs.example.org"}


def check_lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """--check's lines as {"SPF": "ok: SPF name: ...", ...}."""
    return {line.split(" ")[1].rstrip(":"): line for line in result.stdout.splitlines()}


def test_check_says_ok_for_matching_records(base, ed25519, dns_server):
    settings = replace(ed25519.settings(base), smtp_host="smtp.relay.example.net")
    dns_server.records = published(settings, ed25519)
    result = run(settings, "dns-records", "--check", "--resolver", dns_server.address)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = check_lines(result)
    assert lines["SPF"] == 'ok: SPF jobs.example.org: published "v=spf1 a:smtp.relay.example.net -all"'
    assert lines["DKIM"].startswith("ok: DKIM news._domainkey.jobs.example.org: published") and ed25519.public in lines["DKIM"]
    assert lines["DMARC"].startswith("ok: DMARC _dmarc.jobs.example.org: published")


def test_check_fails_on_a_wrong_dkim_key(base, ed25519, dns_server, tmp_path):
    settings = ed25519.settings(base)
    (tmp_path / "other").mkdir()
    other = DkimKey(tmp_path / "other")
    dns_server.records = published(settings, ed25519) | {
        f"news._domainkey.{ed25519.DOMAIN}": [f"v=DKIM1; k=ed25519; p={other.public}"]}
    result = run(settings, "dns-records", "--check", "--resolver", dns_server.address)
    assert result.returncode == 1
    line = check_lines(result)["DKIM"]
    assert line.startswith("fail: DKIM news._domainkey.jobs.example.org: the published key is not the configured key")
    assert other.public in line and "-- fix: publish the record `newsletter dns-records` prints" in line
    assert check_lines(result)["SPF"].startswith("ok:")


def test_check_fails_on_a_missing_record(base, ed25519, dns_server):
    settings = ed25519.settings(base)
    dns_server.records = {k: v for k, v in published(settings, ed25519).items() if not k.startswith("_dmarc")}
    result = run(settings, "dns-records", "--check", "--resolver", dns_server.address)
    assert result.returncode == 1
    assert check_lines(result)["DMARC"].startswith("fail: DMARC _dmarc.jobs.example.org: nothing published: no such name")


def test_check_finds_dmarc_at_the_parent_domain_and_refuses_two_spf_records(base, ed25519, dns_server):
    settings = replace(ed25519.settings(base), mail_from="Jobs <news@mail.jobs.example.org>",
                       bounce_address="bounces@jobs.example.org")
    dns_server.records = published(settings, ed25519) | {
        "jobs.example.org": ["v=spf1 a:smtp.relay.example.net -all", "v=spf1 mx -all"]}
    result = run(settings, "dns-records", "--check", "--resolver", dns_server.address)
    assert result.returncode == 1
    lines = check_lines(result)
    assert lines["DMARC"].startswith("ok: DMARC _dmarc.mail.jobs.example.org: published (at _dmarc.jobs.example.org)")
    assert lines["SPF"].startswith("fail: SPF jobs.example.org: 2 SPF records")


def test_check_without_a_reachable_resolver_says_unknown_and_exits_0(base, ed25519):
    result = run(ed25519.settings(base), "dns-records", "--check", "--resolver", f"127.0.0.1:{free_port()}")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = check_lines(result)
    assert set(lines) == {"SPF", "DKIM", "DMARC"}
    assert all(line.split(": ")[0] == "unknown" and "DNS not reachable" in line for line in lines.values())


def test_check_without_a_dkim_key_skips_dkim(base, dns_server):
    dns_server.records = {"jobs.example.org": ["v=spf1 ip4:192.0.2.1 -all"],
                          "_dmarc.jobs.example.org": ["v=DMARC1; p=reject"]}
    result = run(base, "dns-records", "--check", "--resolver", dns_server.address)
    assert result.returncode == 0, result.stdout
    assert check_lines(result)["DKIM"].startswith("skip: DKIM: no DKIM key configured")


def test_a_resolver_that_is_no_address_is_one_usage_line(base):
    result = run(base, "dns-records", "--check", "--resolver", "dns.example.org")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "--resolver" in result.stderr


def test_check_prints_control_characters_from_dns_escaped(base, ed25519, dns_server):
    """Anyone who can spoof a DNS answer chooses the TXT text --check prints: an escape
    sequence (here one that sets the terminal's title) and a CR/LF that would start a forged
    line of its own are shown escaped, and the output stays one line a record."""
    settings = replace(ed25519.settings(base), smtp_host="smtp.relay.example.net")
    # Zone-file escapes (\DDD, decimal) for the test server: ESC, BEL, CR, LF.
    spoofed = "v=spf1 a:smtp.relay.example.net -all\\027]0;owned\\007\\013\\010ok: DMARC forged"
    dns_server.records = published(settings, ed25519) | {"jobs.example.org": [spoofed]}
    result = subprocess.run([NEWSLETTER, "dns-records", "--check", "--resolver", dns_server.address],
                            env=env_for(settings), capture_output=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for byte in (b"\x1b", b"\x07", b"\r"):
        assert byte not in result.stdout
    lines = result.stdout.decode().splitlines()
    assert [line.split(" ")[1] for line in lines] == ["SPF", "DKIM", "DMARC"]
    assert lines[0] == ('ok: SPF jobs.example.org: published '
                        '"v=spf1 a:smtp.relay.example.net -all\\x1b]0;owned\\x07\\r\\nok: DMARC forged"')
