"""deploy/: the systemd units are valid and hardened and run real commands, env.example
names exactly the settings newsletter/config.py knows (with their true defaults), and the
nginx example parses when nginx is there to ask.

The units name /opt/newsletter (the checkout and its .venv); systemd-analyze verify wants
every ExecStart binary to exist, so it checks copies pointing at this checkout instead."""

from __future__ import annotations

import configparser
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest
from dotenv import dotenv_values

from newsletter.config import Settings, load_settings
from tests.conftest import env_for, make_settings
from tests.helpers import PRODUCTION
from tests.smtp_sink import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent
INSTALLED = "/opt/newsletter"
SERVICES = ["newsletter-web.service", "newsletter-worker@.service", "newsletter-scheduler.service",
            "newsletter-bounces.service"]
UNITS = [*SERVICES, "newsletter-bounces.timer"]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
NO_SYSTEMD = "systemd-analyze is not installed here"
SETTING = re.compile(r"^#?\s*(NEWSLETTER_[A-Z0-9_]+)=(.*)$")


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read(DEPLOY / name)
    return parser


def _here(text: str) -> str:
    """A unit's text pointing at this checkout and its virtualenv instead of /opt/newsletter."""
    return text.replace(f"{INSTALLED}/.venv/bin/", f"{VENV_BIN}/").replace(INSTALLED, str(ROOT))


@pytest.fixture
def units_here(tmp_path: Path) -> Path:
    for name in UNITS:
        (tmp_path / name).write_text(_here((DEPLOY / name).read_text()))
    return tmp_path


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason=NO_SYSTEMD)
@pytest.mark.parametrize("name", [*UNITS, "newsletter-worker@2.service"])
def test_every_unit_passes_systemd_analyze_verify(units_here: Path, name: str) -> None:
    # newsletter-worker@2: an instance of the template, as `systemctl start` makes one.
    target = units_here / name
    if not target.exists():
        shutil.copy(units_here / "newsletter-worker@.service", target)
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", "--generators=no", str(target)],
                            capture_output=True, text=True, cwd=units_here, timeout=60)
    # A misspelt key or a unit the timer cannot find is only a warning: stderr must be empty.
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason=NO_SYSTEMD)
@pytest.mark.parametrize("name", SERVICES)
def test_every_service_is_hardened(units_here: Path, name: str) -> None:
    service = _unit(name)["Service"]
    assert service["EnvironmentFile"] == "/etc/newsletter/env"
    assert service["User"] in ("newsletter", "bounces")  # never root
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "CapabilityBoundingSet": ""}.items():
        assert service[key] == value, key
    result = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", str(units_here / name)],
                            capture_output=True, text=True, cwd=units_here, timeout=60)
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert score, result.stdout + result.stderr
    # systemd's scale: 0 is locked down, 10 is a service with every door open.
    assert float(score.group(1)) <= 2.0, result.stdout


def _command(name: str) -> list[str]:
    """The unit's ExecStart, its binary in this checkout's virtualenv."""
    argv = shlex.split(_unit(name)["Service"]["ExecStart"])
    assert argv[0].startswith(f"{INSTALLED}/.venv/bin/"), argv[0]
    return [str(VENV_BIN / Path(argv[0]).name), *argv[1:]]


@pytest.mark.parametrize("name", ["newsletter-worker@.service", "newsletter-scheduler.service",
                                  "newsletter-bounces.service"])
def test_the_units_run_real_newsletter_commands(name: str, tmp_path: Path) -> None:
    argv = _command(name)
    words = [arg for arg in argv[1:] if not arg.startswith("/")]  # the command, not its PATH
    env = env_for(make_settings(instance_path=str(tmp_path / "instance")))
    result = subprocess.run([argv[0], *words, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage: newsletter " + " ".join(words) in result.stdout


def test_the_web_unit_serves_wsgi_app_and_stops_for_good_on_a_bad_setting(tmp_path: Path) -> None:
    """The unit's very gunicorn command line, from the checkout, on a free port: it answers
    /healthz; with a bad setting it exits 4, which the unit does not restart."""
    argv = _command("newsletter-web.service")
    port = free_port()
    argv[argv.index("-b") + 1] = f"127.0.0.1:{port}"
    argv[argv.index("-w") + 1] = "1"
    settings = make_settings(database_url=f"sqlite:///{tmp_path}/newsletter.db", instance_path=str(tmp_path))
    server = subprocess.Popen(argv, cwd=ROOT, env=env_for(settings), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        body = _get_when_up(port, "/healthz", server)
        assert '"checks"' in body
    finally:
        server.terminate()
        server.wait(timeout=30)

    bad = {**env_for(settings), "NEWSLETTER_SMTP_SECURITY": "sometimes"}
    result = subprocess.run(argv, cwd=ROOT, env=bad, capture_output=True, text=True, timeout=60)
    assert result.returncode == 4
    assert "NEWSLETTER_SMTP_SECURITY" in result.stderr
    assert _unit("newsletter-web.service")["Service"]["RestartPreventExitStatus"] == "4"


def _get_when_up(port: int, path: str, server: subprocess.Popen[str]) -> str:
    import http.client

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            return conn.getresponse().read().decode()
        except OSError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not answer within 30 s")


# -- env.example --------------------------------------------------------------------------

def _example() -> list[tuple[str, str, bool]]:
    """(variable, value, commented out) for each setting line of env.example."""
    found = []
    for line in (DEPLOY / "env.example").read_text(encoding="utf-8").splitlines():
        if match := SETTING.match(line):
            found.append((match.group(1), match.group(2), line.startswith("#")))
    return found


def test_env_example_names_exactly_the_settings_config_knows() -> None:
    known = {"NEWSLETTER_" + f.name.upper() for f in fields(Settings) if f.name != "extra"}
    named = [name for name, _, _ in _example()]
    assert sorted(set(named) - known) == [], "env.example names settings config.py does not know"
    assert sorted(known - set(named)) == [], "settings missing from env.example"
    assert len(named) == len(set(named)), "a setting named twice"


def test_env_example_comments_show_the_true_defaults(tmp_path: Path) -> None:
    defaults = Settings()
    for name, raw, commented in _example():
        if not commented:
            continue
        value = dotenv_values(stream=io.StringIO(f"{name}={raw}"))[name] or ""
        loaded = load_settings(environ={name: value, "NEWSLETTER_INSTANCE_PATH": str(tmp_path)}, dotenv_path=None)
        field = name.removeprefix("NEWSLETTER_").lower()
        assert getattr(loaded, field) == getattr(defaults, field), name


def test_env_example_is_a_production_configuration_once_its_secrets_are_filled_in(tmp_path: Path) -> None:
    """Read as `newsletter -e` and python-dotenv read it; what the operator must fill in
    (the secret key, and the DKIM key file `dknewkey` makes) refuses to start until then."""
    values = {k: v or "" for k, v in dotenv_values(DEPLOY / "env.example").items()}
    assert values["NEWSLETTER_ENV"] == "production" and values["NEWSLETTER_SECRET_KEY"] == ""
    key_file = tmp_path / "news.key"
    key_file.write_text("not checked at start")
    filled = {**values, "NEWSLETTER_SECRET_KEY": PRODUCTION["NEWSLETTER_SECRET_KEY"],
              "NEWSLETTER_DKIM_KEY_FILE": str(key_file), "NEWSLETTER_INSTANCE_PATH": str(tmp_path)}
    settings = load_settings(environ=filled, dotenv_path=None)
    assert settings.is_production and settings.trusted_proxies == 1
    assert settings.board_search_url == "https://example.org/jobs?q={keywords}&ort={location}"
    assert "connect_timeout=5" in settings.database_url
    with pytest.raises(ValueError, match="NEWSLETTER_SECRET_KEY"):
        load_settings(environ={**filled, "NEWSLETTER_SECRET_KEY": ""}, dotenv_path=None)


# -- nginx ----------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("nginx") is None,
                    reason="nginx is not installed here (and the tests install nothing)")
def test_nginx_example_passes_nginx_t(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("newsletter.example.org")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    site = (DEPLOY / "nginx.conf").read_text()
    site = re.sub(r"ssl_certificate(_key)?\s+\S+;", lambda m: f"ssl_certificate{m.group(1) or ''} {tmp_path}/cert.pem;",
                  site)
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n access_log off;\n include {tmp_path}/site.conf;\n}}\n"
    )
    result = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_nginx_example_sets_the_forwarded_headers_and_body_limits_above_the_apps(tmp_path: Path) -> None:
    """What NEWSLETTER_TRUSTED_PROXIES=1 relies on; and nginx lets through every body the app
    takes, so that the app answers a too large one with its own readable 413."""
    from newsletter import create_app
    from newsletter.web.api import MAX_BODY

    app = create_app(make_settings(database_url=f"sqlite:///{tmp_path}/n.db", instance_path=str(tmp_path)))
    app_limit = app.config["MAX_CONTENT_LENGTH"]
    app.extensions["newsletter_db"].dispose()

    site = (DEPLOY / "nginx.conf").read_text()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in site
    assert "proxy_pass http://newsletter_web;" in site and "server 127.0.0.1:8000;" in site
    limits = [int(n) * {"k": 1024, "m": 1024 * 1024}[unit] for n, unit in
              re.findall(r"client_max_body_size (\d+)([km]);", site)]
    assert len(limits) == 2 and app_limit < limits[0] < 2 * app_limit and MAX_BODY < limits[1] < 2 * MAX_BODY
    assert os.path.basename(_command("newsletter-web.service")[0]) == "gunicorn"
    assert "127.0.0.1:8000" in _command("newsletter-web.service")
