"""`newsletter subscribers import` with the optional search columns radius, remote and
employment_type: checked as the signup form checks them, a bad value rejects its row with
the reason, and a file without them imports as it always did."""

from __future__ import annotations

from tests.cli.test_cli import run
from tests.helpers import find_subscriber

HEADER = "email,language,keywords,location,confirmed_at,consent_ip,consent_text"


def test_the_search_columns_are_imported(settings, database, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text(
        f"{HEADER},radius,remote,employment_type\n"
        "anna@example.org,de,Python,München,2024-03-01T09:30:00Z,203.0.113.7,Ja,50,only,\"part_time, student\"\n"
        "ben@example.org,de,,Köln,2024-03-01T09:30:00Z,203.0.113.8,Ja,,,\n"
        "cem@example.org,en,,,2024-03-01T09:30:00Z,203.0.113.9,Yes,,no,FREELANCE\n",
        encoding="utf-8",
    )
    result = run(settings, "subscribers", "import", str(path))
    assert result.returncode == 0, result.stderr
    assert "confirmed: 3" in result.stdout
    rows = {email: find_subscriber(database, email) for email in ("anna@example.org", "ben@example.org", "cem@example.org")}
    assert [(s.radius, s.remote, s.employment_type) for s in rows.values()] == [
        (50, "only", "part_time,student"),   # types in their stored order and form
        (25, "also", ""),                    # a place without a radius: the default; remote: the default
        (0, "no", "freelance"),              # no place, no radius
    ]


def test_a_bad_search_value_rejects_its_row_with_the_reason(settings, database, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text(
        f"{HEADER},radius,remote,employment_type\n"
        "a@example.org,de,,Berlin,,,,30,,\n"
        "b@example.org,de,,Berlin,,,,,sometimes,\n"
        "c@example.org,de,,Berlin,,,,,,full_time;part_time\n"
        "d@example.org,de,,,,,,7,,\n"  # no place: still only a radius the form offers
        "e@example.org,de,,Berlin,,,,100,also,internship\n",
        encoding="utf-8",
    )
    result = run(settings, "subscribers", "import", str(path))
    assert result.returncode == 1
    assert "pending: 1" in result.stdout and "rejected: 4" in result.stdout
    errors = result.stderr.strip().splitlines()
    assert errors[0] == f"{path}: line 2: radius: expected one of 10, 25, 50, 100 (km)"
    assert errors[1] == f"{path}: line 3: remote: expected one of no, also, only"
    assert errors[2].startswith(f"{path}: line 4: employment_type: unknown type 'full_time;part_time'")
    assert errors[3] == f"{path}: line 5: radius: expected one of 10, 25, 50, 100 (km)"
    assert [find_subscriber(database, f"{x}@example.org") is None for x in "abcd"] == [True] * 4
    sub = find_subscriber(database, "e@example.org")
    assert (sub.status, sub.radius, sub.remote, sub.employment_type) == ("pending", 100, "also", "internship")


def test_an_old_file_without_the_columns_imports_as_before(settings, database, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text(f"{HEADER}\nold@example.org,de,Python,Berlin,2024-03-01T09:30:00Z,203.0.113.7,Ja\n",
                    encoding="utf-8")
    result = run(settings, "subscribers", "import", str(path))
    assert result.returncode == 0, result.stderr
    sub = find_subscriber(database, "old@example.org")
    assert (sub.status, sub.location, sub.radius, sub.remote, sub.employment_type) == (
        "confirmed", "Berlin", 25, "also", "")


def test_a_misspelt_search_column_stops_the_file(settings, database, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("email,radios\nx@example.org,50\n", encoding="utf-8")
    result = run(settings, "subscribers", "import", str(path))
    assert result.returncode == 1
    assert "unknown column(s) 'radios'" in result.stderr and "radius, remote, employment_type" in result.stderr
    assert find_subscriber(database, "x@example.org") is None
