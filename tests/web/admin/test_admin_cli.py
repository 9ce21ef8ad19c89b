"""`newsletter admin create-user / set-password / disable`, run as the console script:
the password comes from standard input, a weak one is one line on stderr and exit 1, a
missing --password-stdin is a usage error (exit 2), and each change is audited."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.models import AdminUser, AuditEvent
from tests.conftest import env_for, make_settings
from tests.helpers import all_rows

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")


@pytest.fixture
def cli_settings(sqlite_template, tmp_path):
    """A migrated SQLite file of the test's own: these are subprocess tests; the accounts'
    rules do not depend on the database's kind (the web tests run both)."""
    target = tmp_path / "newsletter.db"
    shutil.copy(sqlite_template, target)
    return make_settings(database_url=f"sqlite:///{target}", instance_path=str(tmp_path / "instance"))


def admin(settings, tmp_path, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NEWSLETTER, "admin", *args], input=password, env=env_for(settings), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_create_user_reads_the_password_from_stdin_and_the_login_works(cli_settings, tmp_path, redis_conn):
    result = admin(cli_settings, tmp_path, "create-user", "Ada@Jobs.Example.org", "--password-stdin",
                   password="zwölf zeichen oder mehr\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["account: ada@jobs.example.org", "role: operator"]
    assert "zwölf" not in result.stdout + result.stderr
    from newsletter import create_app
    from tests.web.admin.conftest import login

    app = create_app(cli_settings)
    assert login(app.test_client(), "ada@jobs.example.org", "zwölf zeichen oder mehr").status_code == 303
    app.extensions["newsletter_db"].dispose()


def test_weak_passwords_unknown_roles_and_duplicates_are_one_line_and_exit_1(cli_settings, tmp_path):
    cases = [
        (("create-user", "bob@jobs.example.org", "--password-stdin"), "kurz\n", "password: at least 12 characters"),
        (("create-user", "bob@jobs.example.org", "--password-stdin"), "mein-bob-passwort\n",
         "password: must not contain the address"),
        (("create-user", "bob@jobs.example.org", "--password-stdin", "--role", "admin"), "x" * 20,
         "role: expected one of viewer, operator"),
        (("create-user", "kein-address", "--password-stdin"), "x" * 20, "email:"),
    ]
    for args, password, message in cases:
        result = admin(cli_settings, tmp_path, *args, password=password)
        assert result.returncode == 1, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
        assert password.strip() not in result.stderr  # never the password itself
    assert admin(cli_settings, tmp_path, "create-user", "bob@jobs.example.org", "--password-stdin", "--role", "viewer",
                 password="x" * 20).returncode == 0
    again = admin(cli_settings, tmp_path, "create-user", "BOB@jobs.example.org", "--password-stdin", password="y" * 20)
    assert again.returncode == 1 and "exists" in again.stderr
    usage = admin(cli_settings, tmp_path, "create-user", "carl@jobs.example.org")
    assert usage.returncode == 2 and len(usage.stderr.strip().splitlines()) == 1 and "--password-stdin" in usage.stderr


def test_set_password_and_disable_change_the_account_and_are_audited(cli_settings, tmp_path, redis_conn):
    from newsletter.db import Database

    assert admin(cli_settings, tmp_path, "create-user", "eve@jobs.example.org", "--password-stdin", "--role", "viewer",
                 password="erstes passwort 1").returncode == 0
    weak = admin(cli_settings, tmp_path, "set-password", "eve@jobs.example.org", "--password-stdin", password="EVE" + "x" * 12)
    assert weak.returncode == 1 and "must not contain the address" in weak.stderr
    assert admin(cli_settings, tmp_path, "set-password", "eve@jobs.example.org", "--password-stdin",
                 password="zweites passwort 2").returncode == 0
    assert admin(cli_settings, tmp_path, "disable", "eve@jobs.example.org").returncode == 0
    missing = admin(cli_settings, tmp_path, "disable", "nobody@jobs.example.org")
    assert missing.returncode == 1 and missing.stderr.strip() == "error: email: no such account"
    listed = admin(cli_settings, tmp_path, "list")
    assert listed.stdout.splitlines() == ["eve@jobs.example.org\tviewer\tdisabled"]

    database = Database(cli_settings.database_url)
    [user] = all_rows(database, AdminUser)
    events = [(e.actor, e.action, e.detail) for e in all_rows(database, AuditEvent)]
    database.dispose()
    assert user.disabled_at is not None and user.password_hash.startswith("$argon2id$")
    assert events == [("cli", "account.create", {"account": "eve@jobs.example.org", "role": "viewer"}),
                      ("cli", "account.set_password", {"account": "eve@jobs.example.org"}),
                      ("cli", "account.disable", {"account": "eve@jobs.example.org"})]


def test_a_one_letter_address_does_not_refuse_every_password_with_that_letter():
    """'a@example.org' must not forbid every password holding an 'a'; a longer local part
    in the password is still refused."""
    from newsletter.operators.accounts import check_password
    from newsletter.validation import InvalidInput

    check_password("a@example.org", "lange genug und geheim 42")
    with pytest.raises(InvalidInput):
        check_password("olga@example.org", "olga-lange-genug-42")
