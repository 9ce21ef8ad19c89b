"""The job-alert fields of a listing feed (postal code, coordinates, remote, employment type,
salary) through every format: the real console script and the store's own import on
SQLite and PostgreSQL, the API, and the OpenAPI description that states the same rules.
Old feeds without the fields import exactly as the code before them did
(tests/listings/data/old-feed.stored.json was written by that code)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from sqlalchemy import select

from newsletter.listings import store
from newsletter.models import Listing
from newsletter.operators import api_tokens
from newsletter.web.openapi import OPENAPI
from tests.conftest import env_for

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
DATA = Path(__file__).resolve().parent / "data"
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "listings-sample.json"
FIELDS = ("postal_code", "latitude", "longitude", "remote", "employment_type",
          "salary_min", "salary_max", "salary_currency", "salary_unit")
DEFAULTS = {"postal_code": "", "latitude": None, "longitude": None, "remote": False, "employment_type": "",
            "salary_min": None, "salary_max": None, "salary_currency": "", "salary_unit": ""}


def run_import(settings: Any, *files: Path | str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NEWSLETTER, "listings", "import", *map(str, files)],
        env=env_for(settings), capture_output=True, text=True, timeout=120, cwd=cwd,
    )


def counts(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split(": ") for line in result.stdout.splitlines())}


def listings(database: Any) -> dict[str, Listing]:
    with database.session_scope() as session:
        return {row.external_id: row for row in session.scalars(select(Listing))}


def facts(row: Listing) -> dict[str, Any]:
    return {name: getattr(row, name) for name in FIELDS}


def row(n: int | str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": f"job-{n}",
        "title": f"Werkstudent:in Data {n} (m/w/d)",
        "url": f"https://jobs.example.org/stellen/job-{n}",
        "published_at": "2026-11-20T09:30:00+01:00",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def import_bytes(database: Any, raw: bytes, name: str) -> store.ImportResult:
    """The store's own import (what the CLI, the admin upload and the API call)."""
    with database.session_scope() as session:
        return store.import_feed(session, raw, name)


# -- every flat format -----------------------------------------------------------------------

STUDENT_JOB = {
    "postal_code": "80331", "latitude": 48.1374, "longitude": 11.5755, "remote": True,
    "employment_type": "part_time,student", "salary_min": 15.5, "salary_max": 18.0,
    "salary_currency": "EUR", "salary_unit": "hour",
}
FLAT_FEEDS = {
    # CSV has only text: German words, a lower-case currency, a quoted list.
    "feed.csv": (
        "id,title,url,published_at,postal_code,latitude,longitude,remote,employment_type,"
        "salary_min,salary_max,salary_currency,salary_unit\n"
        "job-1,Werkstudent:in Data (m/w/d),https://jobs.example.org/stellen/job-1,2026-11-20,"
        ' 80331 ,48.1374,11.5755,Ja,"Werkstudent, Teilzeit",15.50,18,eur,Stunde\n'
    ),
    "feed.json": json.dumps([row(1, postal_code="80331", latitude=48.1374, longitude=11.5755, remote=True,
                                 employment_type=["student", "PART_TIME"], salary_min=15.5, salary_max=18,
                                 salary_currency="EUR", salary_unit="hour")]),
    "feed.jsonl": json.dumps(row(1, postal_code="80331", latitude="48.1374", longitude="+11.5755", remote="true",
                                 employment_type="part-time,student", salary_min="15.5", salary_max="18.00",
                                 salary_unit="HOUR")) + "\n",
}


@pytest.mark.parametrize("name", sorted(FLAT_FEEDS))
def test_each_flat_format_stores_every_field(settings, database, tmp_path, name):
    path = tmp_path / name
    path.write_text(FLAT_FEEDS[name], encoding="utf-8")
    result = run_import(settings, path)
    assert result.returncode == 0, result.stderr
    assert counts(result) == {"added": 1, "updated": 0, "unchanged": 0, "rejected": 0}
    assert facts(listings(database)["job-1"]) == STUDENT_JOB


def test_flat_words_numbers_and_defaults_are_read_as_documented(database):
    header = "id,title,url,published_at,remote,employment_type,salary_min,salary_max,salary_currency,salary_unit\n"
    lines = {
        "empty": ",,,,,",
        "nein": "NEIN,Vollzeit,,,EUR,year",             # currency and unit without a salary: ignored
        "yes": "yes,FULL_TIME,52000,,,Jahr",             # only a minimum; EUR when no currency
        "one": "1,INTERN,,2400,CHF,Monat",               # only a maximum
        "zero": "0,\"contractor, Freiberuflich\",52000,52000,usd,YEAR",
        "false": "False,Ausbildung;,0,,,month",          # ";" is no separator: see below
        "others": "ja,\" TEMPORARY , Praktikum,volunteer,per_diem,OTHER \",13.5,,,hour",
        "types": "true,full time;part_time,,,,",
    }
    raw = header + "".join(
        f"{key},Stelle {key},https://jobs.example.org/stellen/{key},2026-11-20,{rest}\n" for key, rest in lines.items()
    )
    result = import_bytes(database, raw.encode(), "feed.csv")
    assert [(r.where, r.reason) for r in result.rejected] == [
        ("line 7", "employment_type: unknown type 'Ausbildung;'; expected any of "
                   "full_time, part_time, student, internship, apprenticeship, freelance"),
        ("line 9", "employment_type: unknown type 'full time;part_time'; expected any of "
                   "full_time, part_time, student, internship, apprenticeship, freelance"),
    ]
    stored = {key: facts(value) for key, value in listings(database).items()}
    assert stored == {
        "empty": DEFAULTS,
        "nein": {**DEFAULTS, "employment_type": "full_time"},
        "yes": {**DEFAULTS, "remote": True, "employment_type": "full_time", "salary_min": 52000.0,
                "salary_currency": "EUR", "salary_unit": "year"},
        "one": {**DEFAULTS, "remote": True, "employment_type": "internship", "salary_max": 2400.0,
                "salary_currency": "CHF", "salary_unit": "month"},
        "zero": {**DEFAULTS, "employment_type": "freelance", "salary_min": 52000.0, "salary_max": 52000.0,
                 "salary_currency": "USD", "salary_unit": "year"},
        # Schema.org types without a counterpart are passed over, not refused.
        "others": {**DEFAULTS, "remote": True, "employment_type": "internship", "salary_min": 13.5,
                   "salary_currency": "EUR", "salary_unit": "hour"},
    }


# -- schema.org JobPosting -------------------------------------------------------------------

def posting(identifier: str, **extra: object) -> dict[str, object]:
    return {"@type": "JobPosting", "identifier": identifier, "title": f"Stelle {identifier} (m/w/d)",
            "url": f"https://jobs.example.org/stellen/{identifier}", "datePosted": "2026-11-19", **extra}


JOB_POSTINGS = {
    "@context": "https://schema.org",
    "@graph": [
        {"@type": "Organization", "name": "Jobbörse"},
        posting("ld-1",
                jobLocation=[{"@type": "Place",
                              "address": {"@type": "PostalAddress", "postalCode": "50667", "addressLocality": "Köln"},
                              "geo": {"@type": "GeoCoordinates", "latitude": "50.9375", "longitude": "6.9603"}},
                             {"@type": "Place", "address": {"postalCode": "53111", "addressLocality": "Bonn"}}],
                applicantLocationRequirements={"@type": "Country", "name": "DE"},
                employmentType=["FULL_TIME", "TEMPORARY", "INTERN"],
                baseSalary={"@type": "MonetaryAmount", "currency": "EUR", "value": {
                    "@type": "QuantitativeValue", "minValue": 52000, "maxValue": 64000, "unitText": "YEAR"}}),
        posting("ld-2", jobLocationType="TELECOMMUTE", employmentType="PART_TIME",
                baseSalary={"@type": "MonetaryAmount", "currency": "EUR",
                            "value": {"@type": "QuantitativeValue", "value": 16.5, "unitText": "HOUR"}}),
        posting("ld-3",
                jobLocation={"@type": "Place", "latitude": 53.5511, "longitude": 9.9937,
                             "address": {"postalCode": "20095", "addressLocality": "Hamburg"}},
                employmentType="Vollzeit",
                baseSalary={"@type": "MonetaryAmount", "currency": "EUR",
                            "value": {"@type": "QuantitativeValue", "minValue": 900, "unitText": "WEEK"}}),
        posting("ld-4", jobLocationType=["ONSITE", "telecommute"], employmentType=["VOLUNTEER", "Minijob", 7],
                baseSalary={"@type": "MonetaryAmount", "value": 4200, "unitText": "MONTH"}),
        posting("ld-5", jobLocation={"@type": "Place", "geo": {"latitude": "abc", "longitude": 6.9}}),
        posting("ld-6", baseSalary={"@type": "MonetaryAmount", "currency": "EUR",
                                    "value": {"minValue": "viel", "unitText": "YEAR"}}),
        posting("ld-7", jobLocation={"@type": "Place", "address": {"postalCode": 1067}}),
        posting("ld-8", baseSalary={"@type": "MonetaryAmount", "value": {"value": 3000}}),
        posting("ld-9", jobLocation={"@type": "Place", "geo": {"latitude": "52,52", "longitude": "13,40"}},
                baseSalary={"@type": "MonetaryAmount", "currency": "€",
                            "value": {"minValue": 52000, "unitText": "YEAR"}}),
        posting("ld-10", baseSalary={"@type": "MonetaryAmount", "currency": "EUR",
                                     "value": {"minValue": "52.000", "maxValue": 40000, "unitText": "YEAR"}},
                employmentType="FULL_TIME"),
    ],
}


def test_job_posting_fields_are_read_from_their_schema_org_places(settings, database, tmp_path):
    path = tmp_path / "postings.jsonld"
    path.write_text(json.dumps(JOB_POSTINGS, ensure_ascii=False), encoding="utf-8")
    result = run_import(settings, path)
    # A posting is kept whatever its facts: JobPosting feeds imported before these were read.
    assert result.returncode == 0, result.stderr
    assert counts(result) == {"added": 10, "updated": 0, "unchanged": 0, "rejected": 0}
    stored = listings(database)
    # A fact we cannot read is left out, the rest of the posting kept.
    for unreadable in ("ld-5", "ld-6", "ld-7", "ld-9"):
        assert facts(stored[unreadable]) == DEFAULTS, unreadable
    assert facts(stored["ld-10"]) == {**DEFAULTS, "employment_type": "full_time"}
    assert facts(stored["ld-1"]) == {
        # The first place's postal code and coordinates; remote from applicantLocationRequirements.
        "postal_code": "50667", "latitude": 50.9375, "longitude": 6.9603, "remote": True,
        "employment_type": "full_time,internship", "salary_min": 52000.0, "salary_max": 64000.0,
        "salary_currency": "EUR", "salary_unit": "year",
    }
    assert stored["ld-1"].location == "Köln, Bonn"
    # A single figure: minimum and maximum alike.
    assert facts(stored["ld-2"]) == {**DEFAULTS, "remote": True, "employment_type": "part_time",
                                     "salary_min": 16.5, "salary_max": 16.5, "salary_currency": "EUR",
                                     "salary_unit": "hour"}
    assert stored["ld-2"].location == "Remote"
    # Per week: no unit we store, so the salary is left out and the listing kept.
    assert facts(stored["ld-3"]) == {**DEFAULTS, "postal_code": "20095", "latitude": 53.5511,
                                     "longitude": 9.9937, "employment_type": "full_time"}
    # Words we cannot map are passed over; a plain number as the value, EUR by default.
    assert facts(stored["ld-4"]) == {**DEFAULTS, "remote": True, "salary_min": 4200.0, "salary_max": 4200.0,
                                     "salary_currency": "EUR", "salary_unit": "month"}
    assert facts(stored["ld-8"]) == DEFAULTS  # no unitText at all: left out


# -- old feeds -----------------------------------------------------------------------------

def stored_columns(database: Any) -> list[dict[str, Any]]:
    rows = []
    for external_id, listing in sorted(listings(database).items()):
        values = {column.name: getattr(listing, column.name) for column in Listing.__table__.columns
                  if column.name not in ("id", "created_at", "updated_at")}
        values["external_id"] = external_id
        rows.append({k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()})
    return rows


def test_an_old_feed_imports_exactly_as_before(settings, database, tmp_path):
    """old-feed.stored.json is what the code before these fields made of the same files:
    the same counts, the same rejection lines, the same stored values, column by column."""
    before = json.loads((DATA / "old-feed.stored.json").read_text(encoding="utf-8"))
    names = ["old-feed.jsonl", "old-feed.csv", "old-feed.jsonld"]
    for name in names:
        shutil.copy(DATA / name, tmp_path / name)
    result = run_import(settings, *names, cwd=tmp_path)
    assert result.returncode == before["exit_status"]
    assert result.stdout.splitlines() == before["stdout"]
    assert result.stderr.splitlines() == before["stderr"]
    assert stored_columns(database) == sorted(before["listings"], key=lambda r: r["external_id"])
    again = run_import(settings, *names, cwd=tmp_path)
    assert counts(again) == {"added": 0, "updated": 0, "unchanged": 8, "rejected": 6}


def test_a_row_sent_again_without_the_fields_resets_them(settings, database, tmp_path):
    """The feed is the truth: a field the board dropped is dropped here too."""
    path = jsonl(tmp_path / "feed.jsonl", [
        row(1, postal_code="04109", latitude=51.34, longitude=12.37, remote=True, employment_type="full_time",
            salary_min=48000, salary_max=56000, salary_unit="year"),
        row(2, remote=True),
    ])
    assert counts(run_import(settings, path))["added"] == 2
    assert listings(database)["job-1"].postal_code == "04109"
    jsonl(path, [row(1), row(2, remote=True)])
    result = run_import(settings, path)
    assert counts(result) == {"added": 0, "updated": 1, "unchanged": 1, "rejected": 0}
    stored = listings(database)
    assert facts(stored["job-1"]) == DEFAULTS
    assert stored["job-2"].remote is True
    assert counts(run_import(settings, path))["unchanged"] == 2


# -- what is refused, and how it is named -----------------------------------------------------

TYPES = "full_time, part_time, student, internship, apprenticeship, freelance"
DIGITS = "plain digits with an optional '.' before 1 or 2 decimals, e.g. 52000 or 13.50"
HOSTILE = [
    # (the row's fields, the reason)
    ({"salary_min": float("nan"), "salary_unit": "year"}, "salary_min: not a finite number"),
    ({"salary_max": 1e309, "salary_unit": "year"}, "salary_max: not a finite number"),
    ({"salary_min": -5, "salary_unit": "hour"}, "salary_min: must lie between 0 and 10000000 (got -5)"),
    ({"salary_min": 64000, "salary_max": 52000, "salary_unit": "year"}, "salary_max: lies below salary_min"),
    ({"salary_min": "52.000", "salary_unit": "year"},
     f"salary_min: '52.000' is ambiguous (a thousands separator?); write {DIGITS}"),
    ({"salary_min": "13,50", "salary_unit": "hour"}, f"salary_min: '13,50' has a decimal comma; write a point ({DIGITS})"),
    ({"salary_min": "1e5", "salary_unit": "year"}, f"salary_min: not a number: '1e5' ({DIGITS})"),
    ({"salary_min": True, "salary_unit": "year"}, "salary_min: expected a number"),
    ({"salary_min": 52000}, "salary_unit: required with a salary (year, month or hour)"),
    ({"salary_min": 52000, "salary_unit": "week"}, "salary_unit: expected year, month or hour (got 'week')"),
    ({"salary_min": 52000, "salary_unit": "year", "salary_currency": "Euro"},
     "salary_currency: expected a 3-letter ISO 4217 code like EUR (got 'Euro')"),
    ({"salary_min": 52000, "salary_unit": "year", "salary_currency": "ABC"},
     "salary_currency: expected a 3-letter ISO 4217 code like EUR (got 'ABC')"),
    ({"latitude": 91, "longitude": 10}, "latitude: must lie between -90 and 90 (got 91)"),
    ({"latitude": 50, "longitude": -180.5}, "longitude: must lie between -180 and 180 (got -180.5)"),
    ({"latitude": "52,52", "longitude": "13,40"},
     "latitude: '52,52' has a decimal comma; write a point (digits with an optional decimal point, e.g. 52.52)"),
    ({"latitude": 52.52}, "longitude: missing (latitude and longitude come together)"),
    ({"longitude": "13.4", "latitude": ""}, "latitude: missing (latitude and longitude come together)"),
    ({"latitude": [52], "longitude": 13}, "latitude: expected a number"),
    ({"employment_type": "Vollzeit,Minijob"}, f"employment_type: unknown type 'Minijob'; expected any of {TYPES}"),
    ({"employment_type": {"full_time": True}},
     "employment_type: expected comma-separated text or a list of texts"),
    ({"employment_type": ",".join(["full_time"] * 21)}, "employment_type: at most 20 types (got 21)"),
    ({"remote": "vielleicht"}, "remote: expected true or false (got 'vielleicht')"),
    ({"remote": 2}, "remote: expected true or false"),
    ({"postal_code": "1"}, "postal_code: expected 4 to 10 letters, digits, spaces or hyphens (got '1')"),
    ({"postal_code": "80331\r\nBcc: x@example.org"},
     "postal_code: expected 4 to 10 letters, digits, spaces or hyphens (got '80331\\r\\nBcc: x@example.org')"),
]


def test_each_rejection_names_the_line_and_the_reason(settings, database, tmp_path):
    rows = [row(0, postal_code="10115", remote="nein")] + [row(n, **fields) for n, (fields, _) in enumerate(HOSTILE, 1)]
    path = jsonl(tmp_path / "hostile.jsonl", rows)
    result = run_import(settings, path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"{path}: line {n}: {reason}" for n, (_, reason) in enumerate(HOSTILE, 2)]
    assert counts(result) == {"added": 1, "updated": 0, "unchanged": 0, "rejected": len(HOSTILE)}
    assert list(listings(database)) == ["job-0"]


def test_csv_and_json_array_rows_are_named_by_line_and_index(settings, database, tmp_path):
    csv_path = tmp_path / "feed.csv"
    csv_path.write_text(
        "id;title;url;published_at;latitude;longitude;salary_min;salary_unit\n"
        "a;Koch (m/w/d);https://jobs.example.org/a;2026-11-20;53,55;9,99;;\n"
        "b;Koch (m/w/d);https://jobs.example.org/b;2026-11-20;53.55;9.99;38.000;year\n"
        "c;Koch (m/w/d);https://jobs.example.org/c;2026-11-20;53.55;9.99;38000;Jahr\n",
        encoding="utf-8",
    )
    json_path = tmp_path / "feed.json"
    json_path.write_text(json.dumps([row(1), row(2, remote="kaum"), row(3, salary_max=-1, salary_unit="month")]))
    result = run_import(settings, csv_path, json_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{csv_path}: line 2: latitude: '53,55' has a decimal comma; write a point "
        "(digits with an optional decimal point, e.g. 52.52)",
        f"{csv_path}: line 3: salary_min: '38.000' is ambiguous (a thousands separator?); write {DIGITS}",
        f"{json_path}: item 1: remote: expected true or false (got 'kaum')",
        f"{json_path}: item 2: salary_max: must lie between 0 and 10000000 (got -1)",
    ]
    assert sorted(listings(database)) == ["c", "job-1"]


def test_json_nested_10000_deep_is_refused_in_one_line(settings, database, tmp_path):
    deep = "[" * 10_000 + "]" * 10_000
    posting_file = tmp_path / "deep.jsonld"
    posting_file.write_text('{"@context": "https://schema.org", "@type": "JobPosting", "jobLocation": ' + deep + "}")
    lines_file = jsonl(tmp_path / "lines.jsonl", [row(1)])
    with lines_file.open("a") as out:
        out.write('{"id": "job-2", "geo": ' + deep + "}\n" + json.dumps(row(3)) + "\n")
    result = run_import(settings, posting_file, lines_file)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{posting_file}: cannot import: not valid JSON: nested too deeply",
        f"{lines_file}: line 2: listing: not valid JSON (nested too deeply)",
    ]
    assert sorted(listings(database)) == ["job-1", "job-3"]


def test_huge_and_odd_job_postings_cost_no_more_than_plain_ones(settings, database, tmp_path):
    """Before, 100,000 places took quadratic time (the towns were de-duplicated in a list).
    A nested identifier is read to a few levels only."""
    towns = [f"Ort {n}" for n in range(100_000)]
    places = [{"@type": "Place", "address": {"addressLocality": town}} for town in towns]
    nested_id: object = "tief"
    for _ in range(300):
        nested_id = [{"value": nested_id}]
    graph = {"@context": "https://schema.org", "@graph": [
        posting("wide", jobLocation=places, employmentType=["FULL_TIME"] * 100_000 + ["INTERN"],
                jobLocationType=["ONSITE"] * 100_000),
        {**posting("deep"), "identifier": nested_id},
        posting("odd", jobLocation="Köln", geo=None, employmentType={"name": "FULL_TIME"}, baseSalary=[[52000]],
                applicantLocationRequirements=[]),
    ]}
    path = tmp_path / "odd.jsonld"
    path.write_text(json.dumps(graph))
    result = run_import(settings, path)  # run_import gives up after 120 s
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"{path}: item 0: location: at most 200 characters (got {len(', '.join(towns))})",
        f"{path}: item 1: id: missing",
    ]
    assert facts(listings(database)["odd"]) == DEFAULTS
    assert listings(database)["odd"].location == "Köln"


@pytest.mark.parametrize("number, reason", [
    ("1e999999999999999999999999", "id: expected text or a whole number"),
    ("1" * 5000, "id: expected text or a whole number"),
    ("2.5", "id: expected text or a whole number"),
])
def test_an_odd_json_number_is_a_reason_not_a_traceback(database, number, reason):
    raw = ('[{"id": ' + number + ', "title": "Koch", "url": "https://jobs.example.org/1", '
           '"published_at": "2026-11-20"}]').encode()
    result = import_bytes(database, raw, "feed.json")
    assert [(r.where, r.reason) for r in result.rejected] == [("item 0", reason)]


def test_a_whole_number_id_written_with_a_fraction_is_that_number_in_a_file(settings, database, tmp_path):
    """As the API reads it (tests/web/test_openapi_schemathesis.py): JSON Schema's integer
    counts 1921580.0 as a whole number; a long one keeps every digit."""
    body = ('[{"id": 1921580.0, "title": "Koch (m/w/d)", "url": "https://jobs.example.org/1", '
            '"published_at": "2026-11-20"}, {"id": 12345678901234567891.0, "title": "Koch (m/w/d)", '
            '"url": "https://jobs.example.org/2", "published_at": "2026-11-20"}]')
    path = tmp_path / "feed.json"
    path.write_text(body)
    result = run_import(settings, path)
    assert result.returncode == 0, result.stderr
    assert sorted(listings(database)) == ["12345678901234567891", "1921580"]
    same = jsonl(tmp_path / "feed.jsonl", [{"id": 1921580, "title": "Koch (m/w/d)",
                                            "url": "https://jobs.example.org/1", "published_at": "2026-11-20"}])
    assert counts(run_import(settings, same))["unchanged"] == 1


# -- the API and its description ---------------------------------------------------------------

LISTING_INPUT = jsonschema_rs.validator_for(
    {**json.loads(json.dumps(OPENAPI)), "$ref": "#/components/schemas/ListingInput"}, validate_formats=True
)


def test_the_api_takes_the_same_fields_with_the_same_reasons(client, database):
    with database.session_scope() as session:
        secret = api_tokens.create(session, "jobboard", ["listings"]).secret
    good = row("api", postal_code="20095", latitude=53.5511, longitude=9.9937, remote="ja",
               employment_type=["Werkstudent"], salary_min="14.00", salary_max=16, salary_unit="Stunde")
    body = [good] + [row(n, **fields) for n, (fields, _) in enumerate(HOSTILE, 1)]
    response = client.post("/api/v1/listings", json=body, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200
    assert response.get_json()["added"] == 1
    assert [(r["index"], r["reason"]) for r in response.get_json()["rejected"]] == [
        (n, reason) for n, (_, reason) in enumerate(HOSTILE, 1)]
    assert facts(listings(database)["job-api"]) == {
        "postal_code": "20095", "latitude": 53.5511, "longitude": 9.9937, "remote": True,
        "employment_type": "student", "salary_min": 14.0, "salary_max": 16.0, "salary_currency": "EUR",
        "salary_unit": "hour",
    }
    # 1e309 is inf to the API's parser too: refused with a reason, not a 500.
    huge = client.post("/api/v1/listings", data='[{"id": "x", "title": "Koch", "url": "https://x.example/1", '
                       '"published_at": "2026-11-20", "salary_max": 1e309, "salary_unit": "year"}]',
                       headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
    assert huge.get_json()["rejected"] == [{"index": 0, "id": "x", "reason": "salary_max: not a finite number"}]


def test_the_description_refuses_what_the_server_refuses_and_takes_what_it_takes():
    """ListingInput states the rules the server enforces: the rows the server stores match
    it, the rows it refuses do not (salary_max below salary_min is the one rule stated in
    words; NaN and inf cannot be sent as JSON at all)."""
    takes = [row(1, **{k: v for k, v in STUDENT_JOB.items()}), row(2, remote="NEIN", employment_type="Full-Time, OTHER"),
             row(3, salary_max="60000", salary_unit="Jahr", salary_currency="chf"), row(4, latitude=None, longitude="")]
    assert [LISTING_INPUT.is_valid(r) for r in takes] == [True] * len(takes)
    stated = [fields for fields, reason in HOSTILE if reason != "salary_max: lies below salary_min"
              and not any(isinstance(v, float) and v != v or v == 1e309 for v in fields.values())]
    assert [fields for fields in stated if LISTING_INPUT.is_valid(row(1, **fields))] == []


# -- the demo's sample feed ------------------------------------------------------------------

def test_the_sample_feed_carries_the_job_alert_fields(database):
    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    result = import_bytes(database, SAMPLE.read_bytes(), SAMPLE.name)
    assert result.rejected == [] and result.added == len(data)
    rows = [facts(r) for r in listings(database).values()]
    placed = [r for r in rows if r["latitude"] is not None]
    assert len(placed) >= len(rows) // 2
    assert all(47.2 < r["latitude"] < 55.1 and 5.8 < r["longitude"] < 15.1 for r in placed)  # in Germany
    assert all(len(r["postal_code"]) == 5 and r["postal_code"].isdigit() for r in rows if r["postal_code"])
    assert 3 <= sum(r["remote"] for r in rows) < len(rows) // 2
    assert {t for r in rows for t in r["employment_type"].split(",") if t} == {
        "full_time", "part_time", "student", "internship", "apprenticeship", "freelance"}
    paid = [r for r in rows if r["salary_min"] is not None or r["salary_max"] is not None]
    assert len(paid) >= len(rows) // 3
    assert {r["salary_currency"] for r in paid} == {"EUR"}
    units = [r["salary_unit"] for r in paid]
    assert units.count("year") > len(units) // 2 and "hour" in units
