"""Redis behind a password and TLS (`rediss://:PASSWORD@host:port/db?ssl_ca_certs=FILE`), as
an operator runs it across hosts: a redis-server of the test's own with a certificate from a
private CA, reached by the web app (health, queueing, rate limits) and a real
`newsletter worker --burst`. A wrong password or an untrusted certificate fails cleanly,
and the password never shows."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import RedisError

from newsletter.config import ConfigError
from tests.conftest import env_for, make_settings
from tests.helpers import signup
from tests.processes import NEWSLETTER
from tests.smtp_sink import free_port

PASSWORD = "s3cret-redis-pw"
REDIS_SERVER = shutil.which("redis-server")


@dataclass
class TlsRedis:
    port: int
    ca_file: Path

    def url(self, password: str = PASSWORD, ca: bool = True) -> str:
        query = f"?ssl_ca_certs={self.ca_file}" if ca else ""
        return f"rediss://:{password}@127.0.0.1:{self.port}/0{query}"


def _supports_tls(binary: str) -> bool:
    """Redis is built with TLS optionally; without it the server refuses --tls-port."""
    probe = subprocess.run([binary, "--port", "0", "--tls-port", "0", "--save", ""],
                           capture_output=True, text=True, timeout=10)
    return "Bad directive" not in probe.stdout + probe.stderr


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    """redis-server with TLS only (no plain port) and a password, certificates by trustme."""
    if REDIS_SERVER is None or not _supports_tls(REDIS_SERVER):
        pytest.skip("needs a redis-server built with TLS on PATH (Debian's redis-server 7 is)")
    import trustme

    folder = tmp_path / "tls-redis"
    folder.mkdir()
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    server_cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    server_cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    server = TlsRedis(free_port(), folder / "ca.pem")
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--tls-port", str(server.port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(folder / "cert.pem"), "--tls-key-file", str(folder / "key.pem"),
         "--tls-ca-cert-file", str(folder / "ca.pem"), "--tls-auth-clients", "no",
         "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(server)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for(server: TlsRedis) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            Redis.from_url(server.url(), socket_connect_timeout=0.5).ping()
            return
        except RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def tls_settings(settings, tls_redis):
    return make_settings(database_url=settings.database_url, smtp_port=settings.smtp_port,
                         instance_path=settings.instance_path, redis_url=tls_redis.url())


@pytest.fixture
def make_app(tmp_path):
    from newsletter import create_app

    apps = []

    def build(settings):
        apps.append(create_app(settings))
        return apps[-1].test_client()

    yield build
    for app in apps:
        app.extensions["newsletter_db"].dispose()


def run_worker(settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NEWSLETTER, "worker", "--burst"], env=env_for(settings), capture_output=True,
                          text=True, timeout=120)


def test_web_and_worker_work_through_redis_with_tls_and_a_password(tls_settings, tls_redis, make_app, smtp, redis_conn):
    client = make_app(tls_settings)
    health = client.get("/healthz")
    assert (health.status_code, health.get_json()["checks"]["redis"]) == (200, "ok")

    assert signup(client, "anna@example.org").status_code == 200
    direct = Redis.from_url(tls_redis.url())
    assert direct.keys("rq:queue:*"), "the confirmation mail was not queued in the TLS Redis"
    assert direct.keys("LIMITS:LIMITER/newsletter/*"), "the signup's rate limit was not counted in the TLS Redis"
    assert redis_conn.dbsize() == 0  # nothing went to the tests' plain Redis

    worker = run_worker(tls_settings)
    assert worker.returncode == 0, worker.stderr
    assert len(smtp.wait_for(1)) == 1 and smtp.to("anna@example.org")
    assert PASSWORD not in worker.stdout + worker.stderr


@pytest.mark.parametrize("url_of", [
    lambda server: server.url(password="wrong-password"),
    lambda server: server.url(ca=False),  # the server's certificate is not trusted then
], ids=["wrong password", "untrusted certificate"])
def test_a_redis_refusing_us_fails_cleanly_without_showing_the_password(tls_settings, tls_redis, make_app, smtp, url_of):
    refused = replace(tls_settings, redis_url=url_of(tls_redis))
    client = make_app(refused)
    health = client.get("/healthz")
    assert health.status_code == 503 and health.get_json()["checks"]["redis"].startswith("error")
    assert signup(client, "anna@example.org").status_code == 200  # the reconciler sends it later

    worker = run_worker(refused)
    assert worker.returncode == 1
    lines = worker.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Redis at rediss://:***@127.0.0.1"), worker.stderr
    for secret in (PASSWORD, "wrong-password"):
        assert secret not in worker.stdout + worker.stderr + health.get_data(as_text=True)


def test_tls_files_in_the_url_are_checked_at_start(tmp_path, tls_redis):
    with pytest.raises(ConfigError, match="^NEWSLETTER_REDIS_URL: ssl_ca_certs needs a rediss://"):
        make_settings(redis_url=f"redis://127.0.0.1:6379/0?ssl_ca_certs={tls_redis.ca_file}")
    with pytest.raises(ConfigError, match="^NEWSLETTER_REDIS_URL: ssl_ca_certs: no such file"):
        make_settings(redis_url=f"rediss://:{PASSWORD}@127.0.0.1:6380/0?ssl_ca_certs={tmp_path / 'none.pem'}")
