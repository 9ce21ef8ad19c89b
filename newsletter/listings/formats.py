"""Reading listing feeds: JSON array, JSON Lines, CSV with a header row and schema.org
`JobPosting` JSON-LD, turned into plain records with the contract's field names.

This module only parses; whether a record is acceptable is `listings.clean_listing`'s
business. A file that cannot be read as any of the formats raises FeedError (the whole file
is refused); a single broken record (a JSON Lines line that is not JSON, an array item that
is not an object) becomes a Record with `problem` set, so that the rest of the file still
counts.

The format is decided by the content: a file starting with `[` or `{` is JSON (an array,
JSON-LD, or JSON Lines when the whole text is not one JSON document); anything else is CSV.
The extension is only a hint: a `.json`/`.jsonl`/`.jsonld` file that does not start like
JSON is refused as "not JSON" rather than guessed to be CSV.

JSON numbers are read as the API reads them (`json_number`): a whole number written with a
fraction (`1921580.0`) is that whole number, so an id exported that way is the same key
in a file as in a request. JSON nested deeper than the parser goes refuses the file (or
the JSON Lines line) with a reason; walking a JobPosting looks at a bounded number of
places and types, so a huge or deep node costs no more than a plain one.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

from newsletter.listings.feed_fields import EMPLOYMENT_WORDS, FROM_JOB_POSTING, MAX_TYPES, employment_word

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson", ".jsonld")
REQUIRED_COLUMNS = ("id", "title", "url", "published_at")
MAX_PLACES = 50  # jobLocation entries looked at for a postal code and coordinates
MAX_ID_DEPTH = 5  # identifier nested as lists / PropertyValues
SALARY_UNITS = ("YEAR", "MONTH", "HOUR")  # QuantitativeValue.unitText we can store


class FeedError(ValueError):
    """The file as a whole cannot be read; str() says why in one line."""


@dataclass(frozen=True)
class Record:
    """One listing as found in a feed. `where` names it for people: `line 4` (JSON Lines,
    CSV) or `item 3` (0-based index into a JSON array or a JSON-LD array / @graph)."""

    where: str
    index: int
    data: Mapping[str, Any]
    problem: str | None = None


def decode(raw: bytes) -> str:
    """UTF-8 text (a BOM is dropped) or FeedError naming the first bad byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start:exc.start + 1].hex()
        line = raw.count(b"\n", 0, exc.start) + 1
        raise FeedError(
            f"not UTF-8 text (byte 0x{bad} on line {line}, offset {exc.start}); convert the file to UTF-8"
        ) from None


def parse_feed(raw: bytes, filename: str = "") -> list[Record]:
    """Every record of a feed file, in file order, or FeedError."""
    text = decode(raw)
    stripped = text.lstrip()
    if not stripped:
        raise FeedError("the file is empty")
    if stripped[0] in "[{":
        return _parse_json_family(text)
    if filename.lower().endswith(JSON_SUFFIXES):
        raise FeedError("not JSON: the file does not start with '[' or '{'")
    return _parse_csv(text)


# -- JSON, JSON Lines, JSON-LD -------------------------------------------------------------

TOO_DEEP = "nested too deeply"


def json_number(literal: str) -> int | float:
    """A JSON number as Python reads it, except that a whole one written with a fraction or
    exponent (`1921580.0`, `1e3`) is that int: JSON and JSON Schema's `integer` count it as
    a whole number, and an id may be one. Decimal, not float, so a long id keeps every
    digit; an exponent beyond Decimal's range is float's inf (or 0.0), never an error."""
    try:
        value = Decimal(literal)
    except ArithmeticError:
        return float(literal)
    if value.is_finite() and value.adjusted() < 100 and value == value.to_integral_value():
        return int(value)
    return float(literal)


def json_int(literal: str) -> int | float:
    """A JSON integer; one of more than 1000 digits is float's inf. Python refuses to read
    an int of more than 4300 digits (a ValueError, not a JSON error): as inf, every
    numeric field refuses it with a reason and the rest of the file still counts."""
    return int(literal) if len(literal) <= 1000 else float(literal)


def loads(text: str) -> Any:
    """One JSON document with numbers as `json_number` reads them; JSONDecodeError, or
    RecursionError when it is nested deeper than the parser goes."""
    return json.loads(text, parse_float=json_number, parse_int=json_int)


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"


def _parse_json_family(text: str) -> list[Record]:
    try:
        document = loads(text)
    except RecursionError:
        raise FeedError(f"not valid JSON: {TOO_DEEP}") from None
    except json.JSONDecodeError as whole:
        # Not one document: JSON Lines, if its first record parses on its own.
        first = next((line for line in _lines(text) if line.strip()), "")
        try:
            loads(first)
        except RecursionError:
            raise FeedError(f"not valid JSON: {TOO_DEEP}") from None
        except json.JSONDecodeError:
            raise FeedError(_json_error(whole)) from None
        return _parse_json_lines(text)
    if isinstance(document, dict) and not _is_json_ld(document):
        return [Record("line 1", 0, document)]  # JSON Lines with a single line
    return records_from_json(document)


def records_from_json(document: object) -> list[Record]:
    """The records of a parsed JSON document: an array of listings, or JSON-LD (one
    JobPosting, an array of them, or an @graph). Used by the file import and the API."""
    if isinstance(document, dict) and _is_json_ld(document):
        return _parse_json_ld(document)
    if isinstance(document, list):
        if any(isinstance(item, dict) and _is_json_ld(item) for item in document):
            # Each item by its own kind: a plain listing next to JobPosting nodes is a listing.
            return _parse_json_ld(document)
        return [_array_item(i, item) for i, item in enumerate(document)]
    raise FeedError("expected a JSON array of listings, JSON Lines or JSON-LD")


def _array_item(index: int, item: object) -> Record:
    if isinstance(item, dict):
        return Record(f"item {index}", index, item)
    return Record(f"item {index}", index, {}, "listing: expected a JSON object")


def _lines(text: str) -> list[str]:
    """Lines split at LF only: str.splitlines() would also split at U+2028, U+0085 ...,
    which JSON allows raw inside strings."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _parse_json_lines(text: str) -> list[Record]:
    records = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            value = loads(line)
        except json.JSONDecodeError as exc:
            records.append(Record(where, len(records), {}, f"listing: not valid JSON ({exc.msg})"))
            continue
        except RecursionError:
            records.append(Record(where, len(records), {}, f"listing: not valid JSON ({TOO_DEEP})"))
            continue
        if isinstance(value, dict):
            records.append(Record(where, len(records), value))
        else:
            records.append(Record(where, len(records), {}, "listing: expected a JSON object"))
    return records


# -- CSV -----------------------------------------------------------------------------------

def _delimiter(header: str) -> str:
    """`,` unless the header line has more `;` or tabs (German spreadsheet exports)."""
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    return max(counts, key=lambda d: (counts[d], d == ","))


def _parse_csv(text: str) -> list[Record]:
    header_line = text.lstrip("\r\n").split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(header_line))
    records: list[Record] = []
    columns: list[str] | None = None
    read_so_far = 0
    try:
        for row in reader:
            start = read_so_far + 1  # the record's first line, even when a cell spans lines
            read_so_far = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if columns is None:
                columns = [cell.strip().lower() for cell in row]
                missing = [c for c in REQUIRED_COLUMNS if c not in columns]
                if missing:
                    raise FeedError(
                        f"not a listings CSV: the header row (line {start}) lacks the column(s) "
                        f"{', '.join(missing)}"
                    )
                continue
            data = {name: value for name, value in zip(columns, row, strict=False) if name}
            records.append(Record(f"line {start}", len(records), data))
    except csv.Error as exc:
        raise FeedError(f"not valid CSV: line {reader.line_num}: {exc}") from None
    if columns is None:
        raise FeedError("not a listings CSV: no header row")
    return records


# -- schema.org JobPosting JSON-LD ---------------------------------------------------------

def _types(node: Mapping[str, Any]) -> list[str]:
    value = node.get("@type")
    values = value if isinstance(value, list) else [value]
    # "JobPosting", "schema:JobPosting" and "https://schema.org/JobPosting" are one type.
    # Compared in lower case: "jobPosting" and "jobposting" turn up in real feeds.
    return [re.split(r"[:/#]", v)[-1].lower() for v in values if isinstance(v, str)]


def _is_json_ld(node: Mapping[str, Any]) -> bool:
    return "@graph" in node or "@context" in node or "@type" in node


def _parse_json_ld(document: object) -> list[Record]:
    """JobPosting nodes of a single object, an array or an @graph; other nodes (the site's
    Organization, a BreadcrumbList ...) are not listings and are passed over."""
    if isinstance(document, dict) and "@graph" in document:
        nodes = document["@graph"]
        if isinstance(nodes, dict):
            nodes = [nodes]
        if not isinstance(nodes, list):
            raise FeedError("JSON-LD: @graph is neither an object nor an array")
    elif isinstance(document, list):
        nodes = document
    else:
        nodes = [document]
    records = []
    for index, node in enumerate(nodes):
        where = f"item {index}"
        if not isinstance(node, dict):
            records.append(Record(where, index, {}, "listing: expected a JSON-LD object"))
        elif isinstance(document, list) and not _is_json_ld(node):
            records.append(_array_item(index, node))
        elif "jobposting" in _types(node):
            records.append(Record(where, index, job_posting_fields(node)))
    if not records:
        raise FeedError("JSON-LD without any JobPosting")
    return records


def _first(value: object) -> object:
    return value[0] if isinstance(value, list) and value else value


def _name(value: object) -> object:
    """A plain value, or the `name` of an object (Organization, DefinedTerm ...)."""
    value = _first(value)
    if isinstance(value, dict):
        return value.get("name")
    return value


def _identifier(value: object, depth: int = 0) -> object:
    """`identifier` as text: a string, a number or a PropertyValue's `value`."""
    if depth > MAX_ID_DEPTH:
        return None  # a hostile nest: "id: missing" rather than a RecursionError
    if isinstance(value, list):
        for item in value:
            found = _identifier(item, depth + 1)
            if found not in (None, ""):
                return found
        return None
    if isinstance(value, dict):
        return _identifier(value.get("value"), depth + 1)
    return value


def _locality(value: object) -> str | None:
    """The towns of `jobLocation` (one Place or several), comma-separated."""
    places = value if isinstance(value, list) else [value]
    towns: dict[str, None] = {}  # ordered and O(1) to look up: 100,000 places stay cheap
    for place in places:
        address = place.get("address") if isinstance(place, dict) else place
        address = _first(address)
        town = address.get("addressLocality") if isinstance(address, dict) else address
        if isinstance(town, str) and town.strip():
            towns.setdefault(town.strip())
    return ", ".join(towns) if towns else None


def _given(value: object) -> bool:
    return value is not None and value != ""


def _place_facts(value: object) -> dict[str, Any]:
    """postal_code, latitude and longitude of the first of `jobLocation`'s places that has
    any of them (PostalAddress.postalCode; GeoCoordinates, or the Place's own latitude and
    longitude). Values are passed on as found: the store checks them."""
    places = value if isinstance(value, list) else [value]
    for place in places[:MAX_PLACES]:
        if not isinstance(place, dict):
            continue
        address = _first(place.get("address"))
        postal_code = address.get("postalCode") if isinstance(address, dict) else None
        geo = _first(place.get("geo"))
        where = geo if isinstance(geo, dict) else place
        latitude, longitude = where.get("latitude"), where.get("longitude")
        if _given(postal_code) or _given(latitude) or _given(longitude):
            return {"postal_code": postal_code, "latitude": latitude, "longitude": longitude}
    return {}


def _remote(node: Mapping[str, Any]) -> bool:
    """Google's two ways of saying "work from home": TELECOMMUTE, or the places an
    applicant may live in."""
    kinds = node.get("jobLocationType")
    kinds = kinds[:MAX_TYPES] if isinstance(kinds, list) else [kinds]
    telecommute = any(isinstance(kind, str) and kind.strip().upper() == "TELECOMMUTE" for kind in kinds)
    return telecommute or node.get("applicantLocationRequirements") not in (None, "", [], {})


def _employment_types(value: object) -> list[str]:
    """`employmentType` (text, comma-separated text or a list) as criteria types. Words we
    cannot map are passed over: schema.org leaves the value free, so they are not errors."""
    items = value[:MAX_TYPES] if isinstance(value, list) else [value]
    words = [word for item in items if isinstance(item, str) for word in item.split(",")[:MAX_TYPES]]
    types = (EMPLOYMENT_WORDS.get(employment_word(word)) for word in words)
    return [kind for kind in types if kind is not None]


def _salary(value: object) -> dict[str, Any]:
    """`baseSalary` (a MonetaryAmount whose `value` is a QuantitativeValue or a number)
    in the contract's fields. A unit other than YEAR, MONTH or HOUR (WEEK, DAY, none at
    all) leaves the salary out: schema.org allows it, and a figure without a unit we
    store could not be compared. The amounts are passed on as found: the store checks
    them (a wrong type is a reason, not a guess)."""
    amount = _first(value)
    if not isinstance(amount, dict):
        return {}
    quantity = _first(amount.get("value"))
    if isinstance(quantity, dict):
        unit = quantity.get("unitText", amount.get("unitText"))
        low, high = quantity.get("minValue"), quantity.get("maxValue")
        if not _given(low) and not _given(high):
            low = high = quantity.get("value")  # a single figure
    else:
        unit, low, high = amount.get("unitText"), quantity, quantity
    if not (isinstance(unit, str) and unit.strip().upper() in SALARY_UNITS):
        return {}
    if not _given(low) and not _given(high):
        return {}
    return {"salary_min": low, "salary_max": high, "salary_currency": amount.get("currency"),
            "salary_unit": unit.strip()}


def _category(node: Mapping[str, Any]) -> object:
    for key in ("occupationalCategory", "industry"):
        value = node.get(key)
        if isinstance(value, list):
            names = [n for n in (_name(v) for v in value) if isinstance(n, str) and n.strip()]
            value = ", ".join(names) if names else None
        else:
            value = _name(value)
        if value not in (None, ""):
            return value
    return None


def job_posting_fields(node: Mapping[str, Any]) -> dict[str, Any]:
    """A JobPosting node in the contract's field names (description as plain text)."""
    description = node.get("description")
    location = _locality(node.get("jobLocation"))
    if location is None and _first(node.get("jobLocationType")) == "TELECOMMUTE":
        location = "Remote"
    return {
        "id": _identifier(node.get("identifier")),
        "title": node.get("title"),
        "url": node.get("url"),
        "published_at": node.get("datePosted"),
        "valid_through": node.get("validThrough"),
        "company": _name(node.get("hiringOrganization")),
        "location": location,
        "category": _category(node),
        "description": html_to_text(description) if isinstance(description, str) else description,
        **_place_facts(node.get("jobLocation")),
        "remote": _remote(node),
        "employment_type": _employment_types(node.get("employmentType")),
        **_salary(node.get("baseSalary")),
        FROM_JOB_POSTING: True,  # type: ignore[dict-item]
    }


class _TextExtractor(HTMLParser):
    BLOCK = {"p", "div", "br", "li", "ul", "ol", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
             "section", "article", "header", "footer", "table", "blockquote", "pre", "dd", "dt"}
    HIDDEN = {"script", "style", "template", "head", "noscript"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCK:
            self.parts.append("\n- " if tag == "li" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCK and tag != "li":  # the next item's "- " starts the line
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(value: str) -> str:
    """Text of an HTML fragment: tags dropped, entities decoded, blocks as line breaks;
    script and style content dropped. Plain text passes through unchanged."""
    if "<" not in value and "&" not in value:
        return value
    parser = _TextExtractor()
    parser.feed(value)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()

