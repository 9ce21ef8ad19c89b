"""`newsletter listings import`, run as the real console script: every feed format, the
upsert, hostile feeds, and what the operator reads on stdout and stderr."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.models import Listing, utcnow
from tests.conftest import env_for

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "listings-sample.json"


def run_import(settings, *files: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NEWSLETTER, "listings", "import", *map(str, files)],
        env=env_for(settings), capture_output=True, text=True, timeout=120,
    )


def counts(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split(": ") for line in result.stdout.splitlines())}


def listings(database) -> dict[str, Listing]:
    with database.session_scope() as session:
        return {row.external_id: row for row in session.scalars(select(Listing))}


def listing_count(database) -> int:
    with database.session_scope() as session:
        return session.scalar(select(func.count()).select_from(Listing))


def row(n: int, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": f"job-{n}",
        "title": f"Python-Entwickler:in {n} (m/w/d)",
        "url": f"https://jobs.example.org/stellen/job-{n}",
        "published_at": "2026-11-20T09:30:00+01:00",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# -- the formats -----------------------------------------------------------------------------

FULL = {
    "id": "job-1",
    "title": "Data Scientist (w/m/d)",
    "url": "https://jobs.example.org/stellen/job-1-data-scientist",
    "published_at": "2026-11-20T09:30:00+01:00",
    "company": "Rheinblick Versicherung AG",
    "location": "Köln",
    "category": "IT",
    "description": "Sie analysieren Schadensdaten. 65.000–80.000 € brutto/Jahr.",
    "valid_through": "2026-12-31",
}
# What FULL looks like stored: times in naive UTC; the date-only valid_through covers the
# whole day, so it ends at the next midnight in Berlin (23:00 UTC in winter).
FULL_STORED = {
    "title": "Data Scientist (w/m/d)",
    "url": "https://jobs.example.org/stellen/job-1-data-scientist",
    "published_at": datetime(2026, 11, 20, 8, 30),
    "company": "Rheinblick Versicherung AG",
    "location": "Köln",
    "category": "IT",
    "description": "Sie analysieren Schadensdaten. 65.000–80.000 € brutto/Jahr.",
    "valid_through": datetime(2026, 12, 31, 23, 0),
}


def _csv(delimiter: str) -> str:
    # Columns in another order than the contract, one unknown column, quoted delimiter.
    columns = ["title", "id", "url", "published_at", "company", "location", "category",
               "description", "valid_through", "salary_band"]
    values = [FULL[c] if c in FULL else "E13" for c in columns]
    return (delimiter.join(columns) + "\n"
            + delimiter.join(f'"{v}"' if delimiter in str(v) or " " in str(v) else str(v) for v in values) + "\n")


def _json_ld(node_extra: dict[str, object] | None = None) -> dict[str, object]:
    node: dict[str, object] = {
        "@context": "https://schema.org/",
        "@type": "JobPosting",
        "identifier": {"@type": "PropertyValue", "name": "Rheinblick", "value": "job-1"},
        "title": "Data Scientist (w/m/d)",
        "url": "https://jobs.example.org/stellen/job-1-data-scientist",
        "datePosted": "2026-11-20T09:30:00+01:00",
        "validThrough": "2026-12-31",
        "hiringOrganization": {"@type": "Organization", "name": "Rheinblick Versicherung AG",
                               "sameAs": "https://rheinblick.example"},
        "jobLocation": [{"@type": "Place", "address": {"@type": "PostalAddress", "addressLocality": "Köln",
                                                       "addressCountry": "DE"}}],
        "occupationalCategory": "IT",
        "description": "<p>Sie analysieren <b>Schadensdaten</b>.</p> <p>65.000&ndash;80.000 &euro; brutto/Jahr.</p>"
                       "<script>track()</script>",
    }
    node.update(node_extra or {})
    return node


FORMATS = {
    "feed.json": json.dumps([FULL], ensure_ascii=False),
    "feed.jsonl": json.dumps(FULL, ensure_ascii=False) + "\n",
    "feed.csv": _csv(","),
    "feed-semicolon.csv": _csv(";"),
    "posting.jsonld": json.dumps(_json_ld(), ensure_ascii=False),
    "postings.json": json.dumps([_json_ld()], ensure_ascii=False),
    "graph.json": json.dumps({
        "@context": "https://schema.org",
        "@graph": [{"@type": "WebSite", "name": "Jobs"}, {k: v for k, v in _json_ld().items() if k != "@context"}],
    }, ensure_ascii=False),
    # No extension: the content decides.
    "feed": json.dumps(FULL, ensure_ascii=False) + "\n",
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_format_imports_the_same_listing(settings, database, tmp_path, name):
    path = tmp_path / name
    path.write_text(FORMATS[name], encoding="utf-8")
    result = run_import(settings, path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == ["added: 1", "updated: 0", "unchanged: 0", "rejected: 0"]
    stored = listings(database)["job-1"]
    expected = dict(FULL_STORED)
    if "json" in name and ("posting" in name or "graph" in name):
        # The HTML description of JSON-LD arrives as text: tags and script gone, blocks as lines.
        expected["description"] = "Sie analysieren Schadensdaten.\n\n65.000–80.000 € brutto/Jahr."
    assert {k: getattr(stored, k) for k in expected} == expected
    assert stored.withdrawn_at is None


def test_json_ld_graph_with_number_ids_several_places_and_industry(settings, database, tmp_path):
    graph = {
        "@context": "https://schema.org",
        "@graph": [
            {"@type": "Organization", "name": "Jobbörse"},
            {"@type": "JobPosting", "identifier": 4711, "title": "Pflegefachkraft (m/w/d)",
             "url": "https://jobs.example.org/stellen/4711", "datePosted": "2026-11-19",
             "hiringOrganization": "Klinikum Lübeck gGmbH",
             "jobLocation": [{"@type": "Place", "address": {"addressLocality": "Lübeck"}},
                             {"@type": "Place", "address": {"addressLocality": "Bad Schwartau"}}],
             "industry": {"@type": "DefinedTerm", "name": "Gesundheit"},
             "description": "<p>Ihre Aufgaben:</p><ul><li>Grundpflege</li><li>Dokumentation &amp; \u00dcbergabe</li></ul>"},
            {"@type": ["JobPosting"], "identifier": [{"@type": "PropertyValue", "value": "ext-9"}],
             "title": "Remote-Entwickler:in", "url": "https://jobs.example.org/stellen/ext-9",
             "datePosted": "2026-11-21T10:00:00Z", "jobLocationType": "TELECOMMUTE",
             "jobLocation": {"@type": "Place", "address": {"addressLocality": ""}}},
        ],
    }
    path = tmp_path / "graph.jsonld"
    path.write_text(json.dumps(graph, ensure_ascii=False), encoding="utf-8")
    result = run_import(settings, path)
    assert result.returncode == 0, result.stderr
    assert counts(result)["added"] == 2
    stored = listings(database)
    care, remote = stored["4711"], stored["ext-9"]
    assert (care.company, care.location, care.category) == ("Klinikum Lübeck gGmbH", "Lübeck, Bad Schwartau", "Gesundheit")
    assert care.description == "Ihre Aufgaben:\n\n- Grundpflege\n- Dokumentation & Übergabe"
    # A date alone is midnight in Berlin: 23:00 UTC the day before (winter time).
    assert care.published_at == datetime(2026, 11, 18, 23, 0)
    assert (remote.location, remote.published_at) == ("Remote", datetime(2026, 11, 21, 10, 0))


def test_json_ld_without_a_job_posting_is_refused(settings, database, tmp_path):
    path = tmp_path / "site.jsonld"
    path.write_text(json.dumps({"@context": "https://schema.org", "@type": "Organization", "name": "X"}))
    result = run_import(settings, path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"{path}: cannot import: JSON-LD without any JobPosting"]


def test_a_plain_listing_next_to_job_posting_nodes_is_imported_too(settings, database, tmp_path):
    """An array mixing the two: before, the plain item vanished, reported nowhere."""
    posting = {"@type": "jobPosting", "identifier": "ld-1", "title": "Elektriker (m/w/d)",
               "url": "https://jobs.example.org/stellen/ld-1", "datePosted": "2026-11-19"}
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([row(1), posting, row(3, title=None)]))
    result = run_import(settings, path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"{path}: item 2: title: missing"]
    assert sorted(listings(database)) == ["job-1", "ld-1"]


def test_a_lone_surrogate_in_a_field_rejects_that_row_only(settings, database, tmp_path):
    path = tmp_path / "feed.json"
    path.write_text('[' + json.dumps(row(1)) + ', {"id": "job-2", "title": "\\ud800", '
                    '"url": "https://jobs.example.org/stellen/2", "published_at": "2026-11-20"}]')
    result = run_import(settings, path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"{path}: item 1: title: not valid Unicode text"]
    assert sorted(listings(database)) == ["job-1"]


def test_a_link_that_is_not_ascii_is_stored_as_an_ascii_link(settings, database, tmp_path):
    """Text mail clients end a link at its first character that is not ASCII."""
    path = jsonl(tmp_path / "feed.jsonl", [row(1, url="https://jöbs.example/stellen/straße?q=ä&ort=Köln#top")])
    result = run_import(settings, path)
    assert result.returncode == 0, result.stderr
    assert listings(database)["job-1"].url == (
        "https://xn--jbs-sna.example/stellen/stra%C3%9Fe?q=%C3%A4&ort=K%C3%B6ln#top")
    v6 = jsonl(tmp_path / "v6.jsonl", [row(3, url="http://[2001:db8::1]:8080/stellen/ä")])
    assert run_import(settings, v6).returncode == 0
    assert listings(database)["job-3"].url == "http://[2001:db8::1]:8080/stellen/%C3%A4"
    long = jsonl(tmp_path / "long.jsonl", [row(2, url="https://jobs.example.org/" + "ü" * 400)])
    result = run_import(settings, long)  # 425 characters typed, 2425 encoded: over the column
    assert result.returncode == 1
    assert result.stderr.strip().endswith("url: at most 2000 characters once percent-encoded (got 2425)")


# -- upsert ----------------------------------------------------------------------------------

def test_second_import_updates_changed_rows_and_leaves_identical_ones(settings, database, tmp_path):
    path = jsonl(tmp_path / "feed.jsonl", [row(1), row(2), row(3)])
    first = run_import(settings, path)
    assert counts(first) == {"added": 3, "updated": 0, "unchanged": 0, "rejected": 0}
    before = listings(database)

    jsonl(path, [row(1), row(2, title="Python-Entwickler:in 2 (m/w/d) – Teilzeit"), row(3), row(4)])
    second = run_import(settings, path)
    assert second.returncode == 0, second.stderr
    assert counts(second) == {"added": 1, "updated": 1, "unchanged": 2, "rejected": 0}
    after = listings(database)
    assert after["job-2"].title == "Python-Entwickler:in 2 (m/w/d) – Teilzeit"
    assert after["job-2"].updated_at > before["job-2"].updated_at
    assert after["job-2"].created_at == before["job-2"].created_at
    assert after["job-1"].updated_at == before["job-1"].updated_at
    assert listing_count(database) == 4

    third = run_import(settings, path)
    assert counts(third) == {"added": 0, "updated": 0, "unchanged": 4, "rejected": 0}


def test_an_id_twice_in_one_file_keeps_the_first_and_rejects_the_second(settings, database, tmp_path):
    path = jsonl(tmp_path / "feed.jsonl", [row(1, title="Erste Fassung"), row(2), row(1, title="Zweite Fassung")])
    result = run_import(settings, path)
    assert result.returncode == 1
    assert counts(result) == {"added": 2, "updated": 0, "unchanged": 0, "rejected": 1}
    assert result.stderr.splitlines() == [f"{path}: line 3: id: 'job-1' appears again (first at line 1)"]
    assert listings(database)["job-1"].title == "Erste Fassung"


# -- hostile and broken feeds ------------------------------------------------------------------

def test_hostile_rows_are_named_by_line_and_field_and_good_rows_kept(settings, database, tmp_path):
    future = (utcnow() + timedelta(days=3)).isoformat(timespec="seconds") + "Z"
    rows = [
        row(1),                                                                   # line 1 ok
        row(2, url="javascript:alert(document.cookie)"),                         # line 2
        row(3, url="ftp://jobs.example.org/stellen/3"),                          # line 3
        row(4, url="https://admin:geheim@jobs.example.org/stellen/4"),           # line 4
        row(5, title=None),                                                      # line 5
        row(6, published_at="2026-02-30"),                                       # line 6
        row(7, published_at=future),                                             # line 7
        row(8, description="x" * (10 * 1024 * 1024)),                            # line 8
        row(9, valid_through="2026-11-01"),                                      # line 9
        row(10, id="x" * 101),                                                   # line 10
        row(11, title="=?utf-8?b?QmNjOiB2aWN0aW1AZXhhbXBsZS5vcmc=?="),          # line 11
        row(12, title="Senior\r\nBcc: victim@example.org Entwickler (m/w/d)"),  # line 12
        row(13, url="https://jobs.example.org/stellen/13\r\nX-Injected: 1"),     # line 13
        row(14, url="/stellen/14"),                                              # line 14
        row(15, published_at="gestern"),                                         # line 15
        row(16, company="\u202eHbmG\x00 evil\u202c\x07 Muster\tGmbH", location="Köln"),  # line 16 ok, cleaned
        row(17, url='https://jobs.example.org/"><script>alert(1)</script>'),   # line 17
        row(18, location="Köln\u2028Deutz"),                                    # line 18
    ]
    path = jsonl(tmp_path / "hostile.jsonl", rows)
    result = run_import(settings, path)
    assert result.returncode == 1
    assert counts(result) == {"added": 2, "updated": 0, "unchanged": 0, "rejected": 16}
    assert result.stderr.splitlines() == [
        f"{path}: line 2: url: only absolute http and https links are allowed (got 'javascript')",
        f"{path}: line 3: url: only absolute http and https links are allowed (got 'ftp')",
        f"{path}: line 4: url: must not contain a user name or password",
        f"{path}: line 5: title: missing",
        f"{path}: line 6: published_at: no such date: 2026-02-30",
        f"{path}: line 7: published_at: lies more than a day in the future",
        f"{path}: line 8: description: at most 20000 characters (got 10485760)",
        f"{path}: line 9: valid_through: lies before published_at",
        f"{path}: line 10: id: at most 100 characters (got 101)",
        f"{path}: line 11: title: '=?' encoded words are not allowed",
        f"{path}: line 12: title: line breaks are not allowed in a single-line field",
        f"{path}: line 13: url: spaces and control characters are not allowed",
        f"{path}: line 14: url: only absolute http and https links are allowed",
        f"{path}: line 15: published_at: not an ISO 8601 date or date-time: 'gestern'",
        f"{path}: line 17: url: the character '\"' must be percent-encoded",
        f"{path}: line 18: location: line breaks are not allowed in a single-line field",
    ]
    stored = listings(database)
    assert sorted(stored) == ["job-1", "job-16"]
    # Line breaks are refused (STANDARDS 27); other control characters are dropped.
    assert (stored["job-16"].company, stored["job-16"].location) == ("HbmG evil Muster GmbH", "Köln")


def test_three_good_and_two_bad_csv_rows_add_exactly_three(settings, database, tmp_path):
    path = tmp_path / "feed.csv"
    path.write_text(
        "id,title,url,published_at,description\n"
        "job-1,Buchhalter/in,https://jobs.example.org/stellen/1,2026-11-20T09:00:00+01:00,\"Zeile eins\r\n"
        "Zeile zwei\"\n"
        "job-2,Lagerlogistiker (m/w/d),mailto:jobs@example.org,2026-11-20,\n"
        "\n"
        "job-3,Erzieher (m/w/d),https://jobs.example.org/stellen/3,2026-11-21,\n"
        "job-4,,https://jobs.example.org/stellen/4,2026-11-21,\n"
        "job-5,Altenpfleger (m/w/d),https://jobs.example.org/stellen/5,2026-11-22T07:15:00,\n",
        encoding="utf-8",
    )
    result = run_import(settings, path)
    assert result.returncode == 1
    assert counts(result) == {"added": 3, "updated": 0, "unchanged": 0, "rejected": 2}
    # Line numbers are the file's: the quoted cell spans lines 2-3, line 5 is blank.
    assert result.stderr.splitlines() == [
        f"{path}: line 4: url: only absolute http and https links are allowed (got 'mailto')",
        f"{path}: line 7: title: missing",
    ]
    stored = listings(database)
    assert sorted(stored) == ["job-1", "job-3", "job-5"]
    assert stored["job-1"].description == "Zeile eins\nZeile zwei"
    # A time without an offset is Berlin time (CET in November: UTC+1).
    assert stored["job-5"].published_at == datetime(2026, 11, 22, 6, 15)


def test_json_array_rows_are_named_by_their_index(settings, database, tmp_path):
    path = tmp_path / "feed.json"
    path.write_text(json.dumps([row(1), "kein Objekt", row(3, url="https://jobs.example.org:99999/x")]))
    result = run_import(settings, path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}: item 1: listing: expected a JSON object",
        f"{path}: item 2: url: invalid port",
    ]
    assert sorted(listings(database)) == ["job-1"]


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("garbage.bin", b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
         "not UTF-8 text (byte 0x89 on line 1, offset 0); convert the file to UTF-8"),
        ("latin1.csv", "id,title,url,published_at\njob-1,Bäcker (m/w/d),https://x.example/1,2026-11-20\n".encode("latin-1"),
         "not UTF-8 text (byte 0xe4 on line 2, offset 33); convert the file to UTF-8"),
        ("notes.txt", b"Liebe Kolleginnen,\nanbei die Stellen.\n",
         "not a listings CSV: the header row (line 1) lacks the column(s) id, title, url, published_at"),
        ("broken.json", b'[{"id": "job-1", "title": "A", "url": "https://x.example/1", "published_at": "2026-11-20"},\n {"id": ',
         "not valid JSON: Expecting value at line 2 column 9"),
        ("feed.json", b"id,title\n1,2\n", "not JSON: the file does not start with '[' or '{'"),
        ("empty.csv", b"  \n", "the file is empty"),
        ("number.json", b"42", "not JSON: the file does not start with '[' or '{'"),
        ("object.json", b'{"oops": ', "not valid JSON: Expecting value at line 1 column 10"),
    ],
)
def test_a_file_that_cannot_be_parsed_is_one_line_and_adds_nothing(settings, database, tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    result = run_import(settings, path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"{path}: cannot import: {reason}"]
    assert counts(result) == {"added": 0, "updated": 0, "unchanged": 0, "rejected": 0}
    assert listing_count(database) == 0


def test_a_broken_file_does_not_stop_the_others(settings, database, tmp_path):
    good = jsonl(tmp_path / "good.jsonl", [row(1), row(2)])
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    missing = tmp_path / "missing.csv"
    result = run_import(settings, good, bad, missing)
    assert result.returncode == 1
    assert counts(result)["added"] == 2
    errors = result.stderr.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"{bad}: cannot import: not valid JSON")
    assert errors[1].startswith(f"{missing}: cannot read:")
    assert sorted(listings(database)) == ["job-1", "job-2"]


# -- times and text ----------------------------------------------------------------------------

def test_times_become_naive_utc(settings, database, tmp_path):
    path = jsonl(tmp_path / "times.jsonl", [
        row(1, published_at="2026-07-01"),                      # summer: midnight CEST
        row(2, published_at="2026-11-20"),                      # winter: midnight CET
        row(3, published_at="2026-11-20T10:00:00Z"),
        row(4, published_at="2026-11-20T10:00:00-05:00"),
        row(5, published_at="2026-07-01T12:00:00"),             # no offset: Berlin
        row(6, published_at="2026-11-20", valid_through="2026-11-20T18:00:00+01:00"),
    ])
    result = run_import(settings, path)
    assert result.returncode == 0, result.stderr
    stored = listings(database)
    assert {k: v.published_at for k, v in stored.items()} == {
        "job-1": datetime(2026, 6, 30, 22, 0),
        "job-2": datetime(2026, 11, 19, 23, 0),
        "job-3": datetime(2026, 11, 20, 10, 0),
        "job-4": datetime(2026, 11, 20, 15, 0),
        "job-5": datetime(2026, 7, 1, 10, 0),
        "job-6": datetime(2026, 11, 19, 23, 0),
    }
    assert stored["job-6"].valid_through == datetime(2026, 11, 20, 17, 0)
    assert stored["job-1"].valid_through is None


def test_text_is_stored_cleaned_but_otherwise_exactly(settings, database, tmp_path):
    decomposed = unicodedata.normalize("NFD", "Müller & Söhne GmbH")
    path = jsonl(tmp_path / "text.jsonl", [row(
        1,
        title="  Elektroniker   für\tBetriebstechnik (m/w/d)  ",
        company=decomposed,
        location="Düsseldorf",
        category="Technik",
        description="Erste Zeile\r\nZweite Zeile\rDritte\u2028Vierte\n\n\n\nNach Leerzeilen <b>bleibt</b> & so\x1b[31m",
    ), row(2, description="Raw U+2028 and U+0085 inside a JSON line:\u2028a\x85b")])
    result = run_import(settings, path)
    assert result.returncode == 0, result.stderr
    stored = listings(database)["job-1"]
    assert stored.title == "Elektroniker für Betriebstechnik (m/w/d)"
    assert stored.company == "Müller & Söhne GmbH" and stored.company != decomposed  # NFC
    assert stored.location == "Düsseldorf"
    # Descriptions outside JSON-LD are text: tags stay text (escaped wherever shown).
    assert stored.description == "Erste Zeile\nZweite Zeile\nDritte\nVierte\n\nNach Leerzeilen <b>bleibt</b> & so[31m"
    # JSON allows those separators raw in a string: they do not split a JSON Lines record.
    assert listings(database)["job-2"].description == "Raw U+2028 and U+0085 inside a JSON line:\na\nb"


# -- the sample feed ---------------------------------------------------------------------------

def test_the_sample_feed_imports_without_rejections(settings, database):
    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    assert len(data) >= 50
    result = run_import(settings, SAMPLE)
    assert result.returncode == 0, result.stderr
    assert counts(result) == {"added": len(data), "updated": 0, "unchanged": 0, "rejected": 0}
    stored = listings(database)
    assert {r["location"] for r in data} >= {"München", "Köln", "Düsseldorf", "Nürnberg", "Lübeck", "Remote"}
    assert stored["job-10001"].title == data[0]["title"]
    assert all(v.url.startswith("https://jobs.example.org/stellen/job-") for v in stored.values())
