"""Settings that carry secrets: no error line shows a password, every signing key is strong,
SMTP AUTH goes in clear only to a relay on this host, and a development key file holds a
real key. Through load_settings and the `newsletter` command as operators run it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.config import ConfigError, load_settings
from tests.helpers import PRODUCTION
from tests.conftest import env_for, make_settings

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
PASSWORD = "S3cretPw"
SMTP_AUTH = {"NEWSLETTER_SMTP_USERNAME": "newsletter", "NEWSLETTER_SMTP_PASSWORD": PASSWORD}

# Each refused at start; each once quoted its password in the error line.
BAD_URLS = [
    ("NEWSLETTER_DATABASE_URL", f"postgres://app:{PASSWORD}@db.example.org/newsletter"),
    ("NEWSLETTER_DATABASE_URL", f"postgresql//app:{PASSWORD}@db.example.org/newsletter"),
    ("NEWSLETTER_DATABASE_URL", f"postgresql://app:{PASSWORD}@db.example.org:notaport/newsletter"),
    ("NEWSLETTER_DATABASE_URL", f"postgresql://app:{PASSWORD}@db.example.org:99999/newsletter"),
    ("NEWSLETTER_DATABASE_URL", f"postgresql+psycopg:/app:{PASSWORD}@db.example.org/newsletter"),
    ("NEWSLETTER_REDIS_URL", f"http://:{PASSWORD}@redis.example.org:6379/0"),
    ("NEWSLETTER_REDIS_URL", f"redis://:{PASSWORD}@redis.example.org:notaport/0"),
    ("NEWSLETTER_REDIS_URL", f"redis://:{PASSWORD}@redis.example.org:70000/0"),
    # An unescaped '#' ends the authority early: the password is read as the port.
    ("NEWSLETTER_REDIS_URL", f"redis://:{PASSWORD}#x@redis.example.org:6379/0"),
    ("NEWSLETTER_REDIS_URL", f"redis://redis.example.org:6379/0?password={PASSWORD}&db=x"),
    ("NEWSLETTER_BASE_URL", f"ftp://user:{PASSWORD}@jobs.example.org"),
    ("NEWSLETTER_BASE_URL", f"https://user:{PASSWORD}@jobs.example.org/?from=mail"),
    ("NEWSLETTER_BASE_URL", f"https://user:{PASSWORD}@jöbs.example.org:port/"),
    ("NEWSLETTER_BOARD_URL", f"ftp://user:{PASSWORD}@jobs.example.org"),
    ("NEWSLETTER_BOARD_URL", f"https://user:{PASSWORD}@jöbs.example.org:99999/"),
    ("NEWSLETTER_BOARD_SEARCH_URL", f"//user:{PASSWORD}@jobs.example.org/suche?q={{keywords}}"),
    ("NEWSLETTER_PRIVACY_URL", f"mailto:user:{PASSWORD}@jobs.example.org"),
    ("NEWSLETTER_PRIVACY_URL", f"https://user:{PASSWORD}@jöbs.example.org:port/datenschutz"),
]


def run(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NEWSLETTER, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def sqlite_env(sqlite_template: Path, redis_conn: object, tmp_path: Path) -> dict[str, str]:
    target = tmp_path / "newsletter.db"
    shutil.copy(sqlite_template, target)
    return env_for(make_settings(database_url=f"sqlite:///{target}", instance_path=str(tmp_path / "instance")))


# -- 1. no password in an error line -----------------------------------------------------------

@pytest.mark.parametrize("variable, value", BAD_URLS)
def test_a_bad_url_is_named_without_its_password(tmp_path, variable, value):
    with pytest.raises(ConfigError) as refused:
        load_settings({variable: value, "NEWSLETTER_INSTANCE_PATH": str(tmp_path)}, dotenv_path=None)
    message = str(refused.value)
    assert message.startswith(f"{variable}: ") and "\n" not in message
    assert PASSWORD not in message and "S3c" not in message


def test_production_names_a_plain_http_base_url_without_its_password(tmp_path):
    env = PRODUCTION | {"NEWSLETTER_BASE_URL": f"http://user:{PASSWORD}@jobs.example.org"}
    with pytest.raises(ConfigError, match="^NEWSLETTER_BASE_URL: must be https") as refused:
        load_settings(env | {"NEWSLETTER_INSTANCE_PATH": str(tmp_path)}, dotenv_path=None)
    assert PASSWORD not in str(refused.value)


@pytest.mark.parametrize("variable, value", [
    BAD_URLS[0], BAD_URLS[2], BAD_URLS[6], BAD_URLS[8], BAD_URLS[12], BAD_URLS[14], BAD_URLS[15], BAD_URLS[17],
])
def test_the_command_line_names_a_bad_url_without_its_password(sqlite_env, tmp_path, variable, value):
    for args in (("subscribers", "stats"), ("worker", "--burst")):
        result = run(sqlite_env | {variable: value}, *args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"error: {variable}: ") and result.stderr.count("\n") == 1
        assert PASSWORD not in result.stderr + result.stdout


def test_a_redis_with_a_password_that_does_not_answer_is_named_without_it(sqlite_env, tmp_path):
    from tests.smtp_sink import free_port

    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    result = run(sqlite_env | {"NEWSLETTER_REDIS_URL": url}, "worker", "--burst", cwd=tmp_path)
    assert result.returncode == 1 and "Redis at redis://:***@127.0.0.1" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


@pytest.mark.parametrize("url, masked", [
    ("postgresql://app:pw@db/newsletter", "postgresql://app:***@db/newsletter"),
    ("rediss://:pw@redis:6380/0?ssl_ca_certs=/etc/ca.pem", "rediss://:***@redis:6380/0?ssl_ca_certs=/etc/ca.pem"),
    ("redis://redis/0?password=pw&db=1", "redis://redis/0?password=***&db=1"),
    ("redis://:p@w#d/@redis/0", "redis://:***@redis/0"),
    ("app:pw@db", "app:***@db"),
    ("https://user@jobs.example.org/", "https://user@jobs.example.org/"),
    ("sqlite:///instance/newsletter.db", "sqlite:///instance/newsletter.db"),
    ("http://[::1", "http://[::1"),
])
def test_mask_url_hides_the_password_of_any_text(url, masked):
    from newsletter.config import mask_url

    assert mask_url(url) == masked


# -- 2. fallback keys as strong as the key -----------------------------------------------------

def test_production_refuses_a_short_fallback_key_without_printing_it(tmp_path):
    env = PRODUCTION | {"NEWSLETTER_SECRET_KEY_FALLBACKS": f"{'o' * 40},abc", "NEWSLETTER_INSTANCE_PATH": str(tmp_path)}
    with pytest.raises(ConfigError, match="^NEWSLETTER_SECRET_KEY_FALLBACKS: entry 2 ") as refused:
        load_settings(env, dotenv_path=None)
    assert "abc" not in str(refused.value) and "o" * 40 not in str(refused.value)
    env["NEWSLETTER_SECRET_KEY_FALLBACKS"] = f"{'o' * 40},{'p' * 32}"
    assert load_settings(env, dotenv_path=None).secret_key_fallbacks == ("o" * 40, "p" * 32)


# -- 3. SMTP AUTH in clear only on loopback ---------------------------------------------------

def test_production_refuses_smtp_auth_without_tls(tmp_path):
    env = PRODUCTION | SMTP_AUTH | {"NEWSLETTER_SMTP_HOST": "mail.example.org", "NEWSLETTER_INSTANCE_PATH": str(tmp_path)}
    with pytest.raises(ConfigError, match="^NEWSLETTER_SMTP_SECURITY: ") as refused:
        load_settings(env, dotenv_path=None)
    assert PASSWORD not in str(refused.value)
    assert load_settings(env | {"NEWSLETTER_SMTP_SECURITY": "starttls"}, dotenv_path=None).smtp_username
    loopback = env | {"NEWSLETTER_SMTP_HOST": "127.0.0.1", "NEWSLETTER_SMTP_PLAINTEXT_AUTH_ON_LOOPBACK": "true"}
    with pytest.raises(ConfigError, match="^NEWSLETTER_SMTP_SECURITY: "):
        load_settings(loopback | {"NEWSLETTER_SMTP_PLAINTEXT_AUTH_ON_LOOPBACK": "false"}, dotenv_path=None)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"])
def test_plaintext_auth_may_be_allowed_for_a_relay_on_loopback(tmp_path, host):
    env = PRODUCTION | SMTP_AUTH | {"NEWSLETTER_SMTP_HOST": host, "NEWSLETTER_SMTP_PLAINTEXT_AUTH_ON_LOOPBACK": "true"}
    settings = load_settings(env | {"NEWSLETTER_INSTANCE_PATH": str(tmp_path)}, dotenv_path=None)
    assert settings.smtp_plaintext_auth_on_loopback and settings.smtp_security == "none"


@pytest.mark.parametrize("host", ["mail.example.org", "10.0.0.1", "::2", "localhost.example.org", "128.0.0.1"])
def test_plaintext_auth_on_loopback_is_refused_for_any_other_relay(tmp_path, host):
    env = SMTP_AUTH | {"NEWSLETTER_SMTP_HOST": host, "NEWSLETTER_SMTP_PLAINTEXT_AUTH_ON_LOOPBACK": "true",
                       "NEWSLETTER_INSTANCE_PATH": str(tmp_path)}
    with pytest.raises(ConfigError, match="^NEWSLETTER_SMTP_PLAINTEXT_AUTH_ON_LOOPBACK: "):
        load_settings(env, dotenv_path=None)
    with pytest.raises(ConfigError, match="^NEWSLETTER_SMTP_PLAINTEXT_AUTH_ON_LOOPBACK: "):
        load_settings(env | PRODUCTION, dotenv_path=None)


# -- 4. the development key file ---------------------------------------------------------------

@pytest.mark.parametrize("content", ["", "\n", "short-key"])
def test_an_empty_or_short_development_key_file_is_refused_naming_it(tmp_path, content):
    (tmp_path / "secret_key").write_text(content)
    with pytest.raises(ConfigError, match="^NEWSLETTER_SECRET_KEY: ") as refused:
        load_settings({"NEWSLETTER_INSTANCE_PATH": str(tmp_path)}, dotenv_path=None)
    assert str(tmp_path / "secret_key") in str(refused.value) and "delete it" in str(refused.value)
    assert "short-key" not in str(refused.value)


def test_a_development_key_is_made_once_and_kept(tmp_path):
    env = {"NEWSLETTER_INSTANCE_PATH": str(tmp_path / "instance")}
    first = load_settings(env, dotenv_path=None).secret_key
    assert len(first) >= 32 and load_settings(env, dotenv_path=None).secret_key == first
    assert [p.name for p in (tmp_path / "instance").iterdir()] == ["secret_key"]


@pytest.mark.parametrize("env, fragment", [
    (PRODUCTION | {"NEWSLETTER_SECRET_KEY_FALLBACKS": "abc"}, "NEWSLETTER_SECRET_KEY_FALLBACKS"),
    (PRODUCTION | SMTP_AUTH, "NEWSLETTER_SMTP_SECURITY"),
    ({"NEWSLETTER_ENV": "development", "NEWSLETTER_SECRET_KEY": ""}, "secret_key"),
])
def test_the_command_line_refuses_weak_secrets_in_one_line(sqlite_env, tmp_path, env, fragment):
    instance = Path(sqlite_env["NEWSLETTER_INSTANCE_PATH"])
    instance.mkdir()
    (instance / "secret_key").write_text("")
    result = run(sqlite_env | env, "subscribers", "stats", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and fragment in result.stderr, result.stderr
    assert PASSWORD not in result.stderr and "abc" not in result.stderr
