"""Realistic, reproducible data for bench/digest.py: German listings, ~50 distinct preference
sets spread over the readers like real signups (a few popular searches, a long tail), and
fast bulk loading of subscribers (executemany on SQLite, COPY on PostgreSQL).

Two kinds of searches: `text` ones (keywords and a place matched as text, no radius: the
matching the newsletter had before radius search) and `radius` ones (job-alert searches: a
radius around the place, remote wishes and job types; listings with coordinates, some in
the towns around the cities, some remote, most with a job type).

Everything is drawn from a seeded random generator, so two runs send the same mail.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

SEED = 20261127

# keyword preference -> (category, title templates). The first title of each always
# matches its keyword (newsletter.listings.matching), so every preference set finds something.
JOBS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Python": ("IT", ("Python-Entwickler (m/w/d)", "Senior Python Developer (m/w/d)",
                      "Backend-Entwicklerin Python / Django (m/w/d)")),
    "Java Entwickler": ("IT", ("Java Entwickler (m/w/d) Spring Boot", "Java-Softwareentwicklerin (m/w/d)")),
    "Pflege": ("Gesundheit", ("Pflegefachkraft (m/w/d) Intensivstation",
                              "Gesundheits- und Krankenpfleger (m/w/d)", "Pflegehelfer (m/w/d) in Teilzeit")),
    "Data, Analytics": ("IT", ("Data Analyst (m/w/d)", "Data Engineer (m/w/d) Cloud-Plattform",
                               "Analytics Consultant (m/w/d)")),
    "Vertrieb": ("Vertrieb", ("Mitarbeiter Vertrieb Innendienst (m/w/d)", "Vertriebsleiterin DACH (m/w/d)",
                              "Key Account Manager Vertrieb (m/w/d)")),
    "Buchhaltung": ("Finanzen", ("Sachbearbeiter Buchhaltung (m/w/d)", "Finanzbuchhalterin (m/w/d)")),
    "Elektriker": ("Handwerk", ("Elektriker (m/w/d) Gebäudetechnik", "Elektrikerin für Schaltanlagen (m/w/d)")),
    "Erzieher": ("Soziales", ("Erzieherin (m/w/d) für unsere Kita", "Staatlich anerkannter Erzieher (m/w/d)")),
    "Marketing": ("Marketing", ("Online Marketing Manager (m/w/d)", "Content-Marketing-Spezialistin (m/w/d)")),
    "Projektmanagement": ("Management", ("Projektmanagement Office (PMO) Lead (m/w/d)",
                                         "Junior Projektmanagement Bau (m/w/d)")),
    "SAP": ("IT", ("SAP Berater FI/CO (m/w/d)", "SAP-Basis-Administratorin (m/w/d)")),
    "Logistik": ("Logistik", ("Fachkraft für Lagerlogistik (m/w/d)", "Teamleitung Logistik (m/w/d)")),
    "Lehrer": ("Bildung", ("Lehrer Mathematik und Physik (m/w/d)", "Lehrerin für Deutsch als Fremdsprache (m/w/d)")),
    "Ingenieur Maschinenbau": ("Technik", ("Ingenieur Maschinenbau (m/w/d) Konstruktion",
                                           "Entwicklungsingenieurin Maschinenbau (m/w/d)")),
    "DevOps, Kubernetes": ("IT", ("DevOps Engineer (m/w/d) Kubernetes", "Platform Engineer Kubernetes (m/w/d)")),
    "Steuerfachangestellte": ("Finanzen", ("Steuerfachangestellter (m/w/d) in Vollzeit",
                                           "Steuerfachangestellte (m/w/d) – auch Teilzeit")),
    "Kundenservice": ("Service", ("Mitarbeiterin Kundenservice (m/w/d)", "Teamleiter Kundenservice (m/w/d)")),
    "Werkstudent": ("Studium", ("Werkstudent (m/w/d) Softwareentwicklung", "Werkstudentin Marketing (m/w/d)")),
    "Personal, HR": ("Personal", ("Personalreferentin (m/w/d)", "HR Business Partner (m/w/d)")),
    "Koch": ("Gastronomie", ("Koch / Köchin (m/w/d) Frühschicht", "Jungkoch (m/w/d) Hotelrestaurant")),
    "UX Design": ("IT", ("UX Designer (m/w/d) Web-Apps", "Senior UX Design Lead (m/w/d)")),
}
CITIES = ("München", "Berlin", "Hamburg", "Köln", "Frankfurt am Main", "Stuttgart", "Leipzig",
          "Düsseldorf", "Nürnberg", "Dresden", "Hannover", "Bremen")
# A listing's location as the board publishes it; the reader's preference is just the city.
LOCATION_FORMS = ("{city}", "{city}", "{city}", "{city} (Hybrid)", "{city}, Remote möglich")
COMPANIES = (
    "Stadtwerke Musterstadt GmbH", "Datenwerk Analytics GmbH", "Klinikum am Park gGmbH",
    "Nordlicht Logistik GmbH & Co. KG", "Brezel & Byte GmbH", "Müller Maschinenbau AG",
    "Sonnenschein Kita gGmbH", "Fischer & Partner Steuerberatung PartG mbB", "Alpenblick Hotel GmbH",
    "Rheinland Versicherungen AG", "Elbe Energie GmbH", "Schwarzwald Software GmbH",
    "Kaiser Elektrotechnik GmbH", "Volkshochschule Musterstadt", "Hanse Handel GmbH",
    "Zukunftsbank eG", "Weißwurst Digital GmbH", "Pflegedienst Lebensfreude GmbH",
    "Spree Solutions GmbH", "Isar Consulting GmbH", "Main Medien GmbH", "Ostsee Reisen GmbH",
    "Grünwerk Bau AG", "Lichtblick Immobilien GmbH",
)
ADJECTIVES = ("familiengeführtes", "international tätiges", "wachsendes", "mittelständisches",
              "innovatives", "traditionsreiches", "gemeinnütziges")
TASKS = ("die Planung und Umsetzung neuer Projekte", "die Betreuung unserer Kundinnen und Kunden",
         "die Abstimmung mit internen Fachabteilungen", "die Weiterentwicklung bestehender Prozesse",
         "die Dokumentation und Qualitätssicherung", "die Einarbeitung neuer Kolleginnen und Kollegen",
         "die Erstellung von Auswertungen und Berichten", "die Zusammenarbeit mit externen Partnern")
REQUIREMENTS = ("eine abgeschlossene Ausbildung oder ein Studium in einem passenden Bereich",
                "erste Berufserfahrung und Freude an der Arbeit im Team",
                "sehr gute Deutschkenntnisse und gute Englischkenntnisse",
                "eine strukturierte, selbstständige Arbeitsweise", "Zuverlässigkeit und Kommunikationsstärke")
BENEFITS = ("30 Tage Urlaub", "flexible Arbeitszeiten", "ein Jobticket", "betriebliche Altersvorsorge",
            "Weiterbildungsbudget", "mobiles Arbeiten an bis zu drei Tagen pro Woche",
            "einen unbefristeten Arbeitsvertrag", "Zuschüsse zu Kita und Fitnessstudio")
FIRST_NAMES = ("anna", "lukas", "lea", "felix", "marie", "jonas", "sophie", "paul", "emma", "leon",
               "hannah", "ben", "mia", "elias", "lena", "noah", "laura", "finn", "julia", "max",
               "katharina", "tobias", "sabine", "juergen", "oezlem", "mehmet", "olga", "thi")
LAST_NAMES = ("mueller", "schmidt", "schneider", "fischer", "weber", "meyer", "wagner", "becker",
              "schulz", "hoffmann", "koch", "richter", "klein", "wolf", "schroeder", "neumann",
              "schwarz", "braun", "zimmermann", "krueger", "yilmaz", "nguyen", "kowalski")
DOMAINS = ("example.org", "example.com", "example.net", "mail.example.org", "post.example.com")


# Where the cities are, and a town within 10-30 km of each, where radius readers find more.
COORDINATES = {
    "München": (48.137, 11.575), "Berlin": (52.524, 13.411), "Hamburg": (53.551, 9.994),
    "Köln": (50.933, 6.950), "Frankfurt am Main": (50.116, 8.684), "Stuttgart": (48.782, 9.177),
    "Leipzig": (51.340, 12.375), "Düsseldorf": (51.222, 6.776), "Nürnberg": (49.454, 11.077),
    "Dresden": (51.051, 13.738), "Hannover": (52.374, 9.738), "Bremen": (53.075, 8.808),
}
NEIGHBOURS = {
    "München": ("Garching bei München", 48.249, 11.651), "Berlin": ("Potsdam", 52.399, 13.066),
    "Hamburg": ("Norderstedt", 53.686, 9.980), "Köln": ("Leverkusen", 51.030, 6.984),
    "Frankfurt am Main": ("Offenbach am Main", 50.100, 8.766), "Stuttgart": ("Esslingen am Neckar", 48.739, 9.311),
    "Leipzig": ("Markkleeberg", 51.278, 12.369), "Düsseldorf": ("Neuss", 51.198, 6.685),
    "Nürnberg": ("Fürth", 49.477, 10.989), "Dresden": ("Radebeul", 51.107, 13.661),
    "Hannover": ("Langenhagen", 52.447, 9.740), "Bremen": ("Delmenhorst", 53.051, 8.632),
}
TYPES = ("full_time", "part_time", "student", "internship", "apprenticeship", "freelance")
TYPE_CHOICES = ("", "", "full_time", "full_time,part_time", "part_time", "student", "freelance")
RADII = (10, 25, 25, 25, 50, 100)


@dataclass(frozen=True)
class PreferenceSet:
    keywords: str
    location: str
    radius: int = 0
    remote: str = "also"
    employment_type: str = ""


def preference_sets(count: int, rng: random.Random, search: str = "text") -> list[PreferenceSet]:
    """`count` distinct searches: the catch-all and a few broad searches first (the popular
    ones), then keyword x city pairs; `radius` ones add a radius, remote and job types."""
    fixed = [PreferenceSet("", ""), PreferenceSet("Python", ""), PreferenceSet("Pflege", "Berlin"),
             PreferenceSet("Data, Analytics", "München"), PreferenceSet("Vertrieb", ""), PreferenceSet("", "Hamburg")]
    pairs = [PreferenceSet(k, c) for k in JOBS for c in (*CITIES, "")]
    rng.shuffle(pairs)
    chosen = list(dict.fromkeys([*fixed, *pairs]))[:count]
    if search == "text":
        return chosen
    searches = []
    for n, plain in enumerate(chosen):
        remote = "only" if n % 11 == 7 else ("no" if n % 5 == 3 else "also")
        types = TYPE_CHOICES[n % len(TYPE_CHOICES)] if n >= 6 else ""
        radius = RADII[n % len(RADII)] if plain.location else 0
        searches.append(PreferenceSet(plain.keywords, plain.location, radius, remote, types))
    return list(dict.fromkeys(searches))


def listing_rows(count: int, sets: Sequence[PreferenceSet], now: datetime, rng: random.Random,
                 search: str = "text") -> list[dict[str, Any]]:
    """`count` listings published in the last 13 days (inside the default 14-day window).
    One per preference set first, made to match it, so no reader is left without mail."""
    keywords = list(JOBS)
    rows = []
    for n in range(count):
        if n < len(sets):
            wanted = sets[n]
            keyword = wanted.keywords or rng.choice(keywords)
            first_title = True
            city = wanted.location or rng.choice(CITIES)
        else:
            keyword, first_title, city = rng.choice(keywords), False, rng.choice(CITIES)
        category, titles = JOBS[keyword]
        title = titles[0] if first_title else rng.choice(titles)
        company = rng.choice(COMPANIES)
        location = rng.choice(LOCATION_FORMS).format(city=city)
        facts = {} if search == "text" else _radius_facts(n, sets[n] if n < len(sets) else None, city, rng)
        if facts.get("town"):
            location = facts["town"]
        facts.pop("town", None)
        rows.append({
            **facts,
            "external_id": f"bench-{n + 1}",
            "title": title,
            "url": f"https://jobs.example.org/stellen/{n + 1}-{_slug(title)}",
            "company": company,
            "location": location,
            "category": category,
            "description": description(title, company, city, keyword, rng),
            "published_at": now - timedelta(minutes=rng.uniform(30, 13 * 24 * 60)),
            "valid_through": None if rng.random() < 0.5 else now + timedelta(days=rng.randint(14, 60)),
            "withdrawn_at": None,
            "created_at": now,
            "updated_at": now,
        })
    return rows


def _radius_facts(n: int, wanted: PreferenceSet | None, city: str, rng: random.Random) -> dict[str, Any]:
    """Coordinates (a third in the neighbouring town), remote for some, a job type for most,
    a salary for many; the listing made for a search fits that search's type and remote wish."""
    town, (lat, lon) = None, COORDINATES[city]
    if rng.random() < 0.33 and not (wanted and wanted.location):
        town, lat, lon = NEIGHBOURS[city]
    wanted_types = [kind for kind in (wanted.employment_type if wanted else "").split(",") if kind]
    kind = wanted_types[0] if wanted_types else ("" if wanted or rng.random() < 0.2 else rng.choice(TYPES))
    # The listing made for a search suits its remote wish; the others are remote at random.
    remote = wanted.remote == "only" if wanted else rng.random() < 0.15
    low = rng.randrange(40, 80) * 1000
    salary = ({"salary_min": float(low), "salary_max": float(low + 12000), "salary_currency": "EUR",
               "salary_unit": "year"} if rng.random() < 0.6
              else {"salary_min": None, "salary_max": None, "salary_currency": "", "salary_unit": ""})
    return {"town": town, "latitude": lat, "longitude": lon, "remote": remote, "employment_type": kind,
            "postal_code": "", **salary}


def description(title: str, company: str, city: str, keyword: str, rng: random.Random) -> str:
    """300-600 characters of the usual German job ad prose."""
    tasks = rng.sample(TASKS, 3)
    sentences = [
        (f"{company} ist ein {rng.choice(ADJECTIVES)} Unternehmen mit {rng.randint(20, 4000)} Mitarbeitenden "
         f"am Standort {city}."),
        f"Für unser Team suchen wir ab sofort Verstärkung als {title.split(' (')[0]}.",
        f"Zu Ihren Aufgaben gehören {tasks[0]}, {tasks[1]} und {tasks[2]}.",
        f"Sie bringen {rng.choice(REQUIREMENTS)} mit; Kenntnisse im Bereich {keyword} sind ein Plus.",
        f"Wir bieten {', '.join(rng.sample(BENEFITS, 3))} sowie ein kollegiales Umfeld.",
        "Bewerben Sie sich jetzt mit Ihrem Lebenslauf – wir freuen uns auf Sie!",
    ]
    text = ""
    for sentence in sentences:
        if len(text) + len(sentence) > 600:
            break
        text = f"{text} {sentence}".strip()
    return text


_UMLAUTS: dict[str, str | int | None] = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"}
_TRANSLIT = str.maketrans(_UMLAUTS)


def _slug(title: str) -> str:
    plain = title.lower().translate(_TRANSLIT)
    return "-".join("".join(ch if ch.isalnum() else " " for ch in plain).split())


def weights(count: int) -> list[float]:
    """Zipf-like popularity of the preference sets: rank 1 is searched most."""
    return [1.0 / (rank ** 0.9) for rank in range(1, count + 1)]


SUBSCRIBER_COLUMNS = ("public_id", "email", "email_hash", "language", "keywords", "location", "radius", "remote",
                      "employment_type", "status", "created_at", "confirmed_at")


def subscriber_rows(count: int, sets: Sequence[PreferenceSet], now: datetime,
                    seed: int = SEED) -> Iterator[tuple[Any, ...]]:
    """Confirmed readers, one tuple per row in SUBSCRIBER_COLUMNS order. Preference sets are
    interleaved over the ids (signups arrive mixed), ~80% German and ~20% English."""
    rng = random.Random(seed)
    cumulative = _cumulative(weights(len(sets)))
    pick = rng.choices
    created = now - timedelta(days=400)
    for n in range(1, count + 1):
        # Every set gets at least one reader; the rest follow the popularity curve.
        chosen = sets[n - 1] if n <= len(sets) else pick(sets, cum_weights=cumulative)[0]
        email = f"{FIRST_NAMES[n % len(FIRST_NAMES)]}.{LAST_NAMES[(n // 7) % len(LAST_NAMES)]}{n}@{DOMAINS[n % len(DOMAINS)]}"
        yield (
            base64.urlsafe_b64encode(rng.randbytes(16)).decode("ascii").rstrip("="),
            email,
            hashlib.sha256(email.encode("ascii")).hexdigest(),
            "en" if rng.random() < 0.2 else "de",
            chosen.keywords,
            chosen.location,
            chosen.radius,
            chosen.remote,
            chosen.employment_type,
            "confirmed",
            created,
            created + timedelta(minutes=5),
        )


def _cumulative(values: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for value in values:
        total += value
        out.append(total)
    return out


@dataclass(frozen=True)
class Dataset:
    sets: list[PreferenceSet]
    listings: list[dict[str, Any]]
    now: datetime


def dataset(set_count: int, listing_count: int, search: str = "text") -> Dataset:
    rng = random.Random(SEED)
    now = datetime.now(UTC).replace(tzinfo=None)
    sets = preference_sets(set_count, rng, search)
    return Dataset(sets, listing_rows(listing_count, sets, now, rng, search), now)


def load(engine: Engine, data: Dataset, subscribers: int) -> None:
    """Insert the listings and `subscribers` readers into a migrated, empty database."""
    with engine.begin() as conn:
        conn.execute(_table("listings").insert(), data.listings)
    rows = subscriber_rows(subscribers, data.sets, data.now)
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "postgresql":
            _copy_postgres(raw.driver_connection, rows)
        else:
            _insert_sqlite(raw.driver_connection, rows)
        raw.commit()
    finally:
        raw.close()
    if engine.dialect.name == "postgresql":
        # A production database has statistics; a freshly bulk-loaded one has none until
        # autovacuum gets to it, and planning would then be measured with a blind planner.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # VACUUM too: a table of a million fresh inserts is what autovacuum visits next
            # (its insert threshold), and it would do so in the middle of the planning
            # being timed. And the load's WAL written out now, not by a checkpoint then.
            # Either made runs of the same plan differ by a third.
            conn.exec_driver_sql("VACUUM ANALYZE")
            conn.exec_driver_sql("CHECKPOINT")


def _table(name: str) -> Any:
    from newsletter.models import Base

    return Base.metadata.tables[name]


def _copy_postgres(conn: Any, rows: Iterator[tuple[Any, ...]]) -> None:
    columns = ", ".join(SUBSCRIBER_COLUMNS)
    with conn.cursor() as cursor, cursor.copy(f"COPY subscribers ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _insert_sqlite(conn: Any, rows: Iterator[tuple[Any, ...]], batch: int = 20_000) -> None:
    sql = (f"INSERT INTO subscribers ({', '.join(SUBSCRIBER_COLUMNS)}) "
           f"VALUES ({', '.join('?' for _ in SUBSCRIBER_COLUMNS)})")
    cursor = conn.cursor()
    # The app's connections run with isolation_level=None (db.py issues BEGIN itself).
    cursor.execute("BEGIN")
    pending: list[tuple[Any, ...]] = []
    for row in rows:
        # SQLAlchemy's SQLite DateTime format: times compare as strings there.
        pending.append(tuple(v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for v in row))
        if len(pending) >= batch:
            cursor.executemany(sql, pending)
            pending.clear()
    if pending:
        cursor.executemany(sql, pending)
    cursor.execute("COMMIT")
    cursor.close()
