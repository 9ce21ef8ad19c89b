"""The job board's listings: validation of a feed row, the upsert on the board's id, and
withdrawal. One code path for `newsletter listings import` and `POST /api/v1/listings`.

Rules (also what the operator sees in a rejection line, always "field: why"):
- `id`, `title`, `url`, `published_at` are required; unknown extra fields are ignored.
- Text is stored exactly as sent after cleaning: control characters removed, Unicode NFC.
  `title`, `company`, `location`, `category` are single lines: line breaks, tabs and runs
  of spaces collapse to one space. `description` keeps its line breaks (CR/LF and CR become
  LF, at most one blank line in a row). RFC 2047 encoded-words (`=?utf-8?b?...`) in the
  single-line fields reject the row: they must never reach a mail header (STANDARDS 27).
- `id` is kept verbatim (no cleaning: it is a key): printable characters only, at most 100.
- `url`: absolute http(s) with a host, no user name or password, no spaces, at most 2000.
- Times: ISO 8601. A date-time with an offset is converted to UTC; one without an offset is
  Europe/Berlin local time (the board's). A date alone is midnight Europe/Berlin for
  `published_at`, and the whole day for `valid_through` (stored as the following midnight,
  an exclusive end). Stored naive UTC like every timestamp. `published_at` may lie at most
  a day ahead; `valid_through` may not lie before `published_at`.
- An `id` given twice in one file (or one API request): the first valid row counts, the
  later one is rejected ("appears again"), as the subscriber import does with addresses.
- A withdrawn listing stays withdrawn when a feed brings it again (feeds lag behind a
  DELETE); it comes back only when the row's `published_at` lies after the withdrawal,
  i.e. the board posted it anew.
- The job-alert fields (postal code, coordinates, remote, employment type, salary) are
  optional; their rules are in listings.feed_fields. The feed is the truth: a row sent
  again without them resets them to their defaults.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.listings.feed_fields import clean_feed_fields
from newsletter.listings.formats import Record, parse_feed
from newsletter.models import Listing, utcnow
from newsletter.validation import InvalidInput

FEED_TIMEZONE = ZoneInfo("Europe/Berlin")
MAX_ID = 100
MAX_TITLE = 300
MAX_SHORT = 200  # company, location, category
MAX_DESCRIPTION = 20_000
MAX_URL = 2000
FUTURE_TOLERANCE = timedelta(days=1)
YEARS = range(2000, 2101)  # a job listing outside these years is a broken feed
WRITE_BATCH = 500  # rows flushed at a time when a progress bar is told

# Told how many more steps of an import are done (a command's progress bar).
Progress = Callable[[int], None]

# Control characters (C0 except the line breaks handled first, DEL, C1), the Unicode
# bidi overrides and isolates (they reorder text on screen) and stray BOMs.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_LINE_BREAK = re.compile(r"[\r\n\x0b\x0c\x85\u2028\u2029]")
_STRIP = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff]")
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\x0b\x0c\x85\u2028\u2029]")
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?", re.ASCII)
_HOST = re.compile(r"[\w-]+(\.[\w-]+)*\.?")
_IPV6 = re.compile(r"[0-9a-f:.]+")
_NOT_IN_URLS = re.compile(r'[<>"{}|^`]')
_DATE_PREFIX = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


@dataclass(frozen=True)
class ListingData:
    """One valid, cleaned listing, as it is stored."""

    external_id: str
    title: str
    url: str
    published_at: datetime
    company: str = ""
    location: str = ""
    category: str = ""
    description: str = ""
    valid_through: datetime | None = None
    # The job-alert fields; the defaults are what a row without them stores.
    postal_code: str = ""
    latitude: float | None = None
    longitude: float | None = None
    remote: bool = False
    employment_type: str = ""  # criteria.join_types form
    salary_min: float | None = None
    salary_max: float | None = None
    salary_currency: str = ""
    salary_unit: str = ""

    def values(self) -> dict[str, Any]:
        """The columns besides external_id."""
        values = asdict(self)
        del values["external_id"]
        return values


@dataclass(frozen=True)
class Rejection:
    """A refused row: where it was (`line 4`, `item 2`), its 0-based index among the
    records, its id when one could be read, and "field: why"."""

    where: str
    index: int
    id: str | None
    reason: str


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)


# -- cleaning of single fields ---------------------------------------------------------------

def _text(name: str, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(name, f"{name}: expected text")
    if _SURROGATE.search(value):  # a lone "\ud800" from JSON: no database can store it
        raise InvalidInput(name, f"{name}: not valid Unicode text")
    return value


def clean_line(name: str, value: object, max_length: int, required: bool = False) -> str:
    """A single line: control characters dropped, whitespace collapsed, NFC."""
    raw = _text(name, value)
    if _ENCODED_WORD.search(raw):
        raise InvalidInput(name, f"{name}: '=?' encoded words are not allowed")
    if _LINE_BREAK.search(raw):  # STANDARDS 27: CR/LF in listing data is refused, not tidied
        raise InvalidInput(name, f"{name}: line breaks are not allowed in a single-line field")
    text = " ".join(_STRIP.sub("", unicodedata.normalize("NFC", raw)).split())
    if required and not text:
        raise InvalidInput(name, f"{name}: missing")
    if len(text) > max_length:
        raise InvalidInput(name, f"{name}: at most {max_length} characters (got {len(text)})")
    return text


def clean_description(value: object) -> str:
    """Multi-line text: line breaks normalised to LF, control characters dropped, spaces
    collapsed within lines, at most one blank line in a row, NFC."""
    raw = _text("description", value)
    if len(raw) > 4 * MAX_DESCRIPTION:  # spare the work on a hostile 10 MB field
        raise _too_long_description(len(raw))
    text = _LINE_BREAKS.sub("\n", unicodedata.normalize("NFC", raw))
    text = _STRIP.sub("", text)
    lines = [" ".join(line.split()) for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if len(text) > MAX_DESCRIPTION:
        raise _too_long_description(len(text))
    return text


def _too_long_description(length: int) -> InvalidInput:
    return InvalidInput("description", f"description: at most {MAX_DESCRIPTION} characters (got {length})")


def clean_id(value: object) -> str:
    """The board's id: text or a whole number, kept verbatim (it is a key)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidInput("id", "id: missing")
    if not isinstance(value, str):
        raise InvalidInput("id", "id: expected text or a whole number")
    text = value.strip()
    if len(text) > MAX_ID:
        raise InvalidInput("id", f"id: at most {MAX_ID} characters (got {len(text)})")
    if not text.isprintable():
        raise InvalidInput("id", "id: only printable characters are allowed")
    return text


def clean_url(value: object) -> str:
    """An absolute http(s) link with a host and without credentials (STANDARDS 32)."""
    raw = _text("url", value).strip()
    if not raw:
        raise InvalidInput("url", "url: missing")
    if len(raw) > MAX_URL:
        raise InvalidInput("url", f"url: at most {MAX_URL} characters (got {len(raw)})")
    if any(c.isspace() or unicodedata.category(c)[0] == "C" for c in raw):
        raise InvalidInput("url", "url: spaces and control characters are not allowed")
    if "\\" in raw:  # browsers read http:\\evil.example as http://evil.example
        raise InvalidInput("url", "url: backslashes are not allowed")
    odd = _NOT_IN_URLS.search(raw)
    if odd:  # RFC 3986 has no place for them; raw they break <...> and quoting in mails
        raise InvalidInput("url", f"url: the character {odd.group(0)!r} must be percent-encoded")
    try:
        parts = urlsplit(raw)
    except ValueError:  # an unbalanced "[" or "]" in the host: "Invalid IPv6 URL"
        raise InvalidInput("url", "url: has no valid host") from None
    if parts.scheme.lower() not in ("http", "https"):
        shown = f" (got {parts.scheme[:20]!r})" if parts.scheme else ""
        raise InvalidInput("url", f"url: only absolute http and https links are allowed{shown}")
    if "@" in parts.netloc:
        raise InvalidInput("url", "url: must not contain a user name or password")
    host = parts.hostname or ""  # lower-cased, IPv6 brackets removed
    if not (_HOST.fullmatch(host) or (":" in host and _IPV6.fullmatch(host))):
        raise InvalidInput("url", "url: has no valid host")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise InvalidInput("url", "url: invalid port") from None
    if raw.isascii():
        return raw
    url = _ascii_url(parts)
    if len(url) > MAX_URL:
        raise InvalidInput("url", f"url: at most {MAX_URL} characters once percent-encoded (got {len(url)})")
    return url


def _ascii_url(parts: SplitResult) -> str:
    """The link in ASCII: an IDN host as A-labels, other characters percent-encoded as
    UTF-8. Text mail clients end a link at the first character that is not ASCII."""
    import idna

    host = parts.hostname or ""
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise InvalidInput("url", "url: has no valid host") from None
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal: hostname dropped its brackets
    netloc = host + (f":{parts.port}" if parts.port is not None else "")

    def encoded(text: str) -> str:
        return "".join(c if c.isascii() else quote(c, safe="") for c in text)

    return urlunsplit((parts.scheme, netloc, encoded(parts.path), encoded(parts.query), encoded(parts.fragment)))


def parse_time(name: str, value: object, end_of_day: bool = False) -> datetime | None:
    """An ISO 8601 date or date-time as naive UTC (see the module docstring for zones)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise InvalidInput(name, f"{name}: expected an ISO 8601 date or date-time")
    text = value.strip()
    shown = text[:40]
    if len(text) > 40:
        raise InvalidInput(name, f"{name}: not an ISO 8601 date or date-time: {shown!r}...")
    prefix = _DATE_PREFIX.match(text)
    if prefix:
        try:
            day = date(*(int(part) for part in prefix.groups()))
        except ValueError:
            raise InvalidInput(name, f"{name}: no such date: {prefix.group(0)}") from None
        if day.year not in YEARS:
            raise InvalidInput(name, f"{name}: year {day.year} is out of range")
        if prefix.end() == len(text):
            local = datetime.combine(day, time(), tzinfo=FEED_TIMEZONE)
            if end_of_day:
                local = datetime.combine(day + timedelta(days=1), time(), tzinfo=FEED_TIMEZONE)
            return local.astimezone(UTC).replace(tzinfo=None)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(name, f"{name}: not an ISO 8601 date or date-time: {shown!r}") from None
    if parsed.year not in YEARS:
        raise InvalidInput(name, f"{name}: year {parsed.year} is out of range")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=FEED_TIMEZONE)
    return parsed.astimezone(UTC).replace(tzinfo=None)


# -- a whole row -------------------------------------------------------------------------------

def clean_listing(data: Mapping[str, Any], now: datetime | None = None) -> ListingData:
    """A valid ListingData from a feed row, or InvalidInput naming the first bad field."""
    now = now or utcnow()
    external_id = clean_id(data.get("id"))
    title = clean_line("title", data.get("title"), MAX_TITLE, required=True)
    url = clean_url(data.get("url"))
    published_at = parse_time("published_at", data.get("published_at"))
    if published_at is None:
        raise InvalidInput("published_at", "published_at: missing")
    if published_at > now + FUTURE_TOLERANCE:
        raise InvalidInput("published_at", "published_at: lies more than a day in the future")
    valid_through = parse_time("valid_through", data.get("valid_through"), end_of_day=True)
    if valid_through is not None and valid_through < published_at:
        raise InvalidInput("valid_through", "valid_through: lies before published_at")
    return ListingData(
        external_id=external_id,
        title=title,
        url=url,
        published_at=published_at,
        company=clean_line("company", data.get("company"), MAX_SHORT),
        location=clean_line("location", data.get("location"), MAX_SHORT),
        category=clean_line("category", data.get("category"), MAX_SHORT),
        description=clean_description(data.get("description")),
        valid_through=valid_through,
        **clean_feed_fields(data),
    )


def _readable_id(data: Mapping[str, Any]) -> str | None:
    try:
        return clean_id(data.get("id"))
    except InvalidInput:
        return None


def validate(
    records: Iterable[Record], now: datetime | None = None, progress: Progress | None = None
) -> tuple[list[ListingData], list[Rejection]]:
    """Split records into valid listings and rejections. An id seen in an earlier valid
    row is rejected as appearing again (the first one counts). `progress(1)` per record."""
    now = now or utcnow()
    good: list[ListingData] = []
    rejected: list[Rejection] = []
    first_seen: dict[str, str] = {}
    for record in records:
        if progress is not None:
            progress(1)
        if record.problem is not None:
            rejected.append(Rejection(record.where, record.index, None, record.problem))
            continue
        try:
            listing = clean_listing(record.data, now)
        except InvalidInput as exc:
            rejected.append(Rejection(record.where, record.index, _readable_id(record.data), str(exc)))
            continue
        if listing.external_id in first_seen:
            rejected.append(Rejection(
                record.where, record.index, listing.external_id,
                f"id: {listing.external_id!r} appears again (first at {first_seen[listing.external_id]})",
            ))
            continue
        first_seen[listing.external_id] = record.where
        good.append(listing)
    return good, rejected


# -- storing -----------------------------------------------------------------------------------

def upsert(
    session: Session, items: Sequence[ListingData], now: datetime | None = None, progress: Progress | None = None
) -> ImportResult:
    """Insert new listings and update changed ones in the session (the caller commits, so
    a batch is written completely or not at all). Identical rows count as unchanged and
    keep their updated_at. With `progress`, rows are flushed every WRITE_BATCH and
    `progress(n)` told after each: the database's share of the time, not only ours."""
    now = now or utcnow()
    result = ImportResult()
    existing: dict[str, Listing] = {}
    ids = [item.external_id for item in items]
    for start in range(0, len(ids), 500):  # keep the IN list within every driver's limits
        chunk = ids[start:start + 500]
        for row in session.scalars(select(Listing).where(Listing.external_id.in_(chunk))):
            existing[row.external_id] = row
    for at, item in enumerate(items, 1):
        if progress is not None and at % WRITE_BATCH == 0:
            session.flush()
            progress(WRITE_BATCH)
        values = item.values()
        row = existing.get(item.external_id)
        if row is None:
            row = Listing(external_id=item.external_id, created_at=now, updated_at=now, **values)
            session.add(row)
            existing[item.external_id] = row
            result.added += 1
            continue
        changed = {name: value for name, value in values.items() if getattr(row, name) != value}
        reposted = row.withdrawn_at is not None and item.published_at > row.withdrawn_at
        if not changed and not reposted:
            result.unchanged += 1
            continue
        for name, value in changed.items():
            setattr(row, name, value)
        if reposted:
            row.withdrawn_at = None
        row.updated_at = now
        result.updated += 1
    session.flush()
    if progress is not None:
        progress(len(items) % WRITE_BATCH)
    return result


def import_records(
    session: Session, records: Sequence[Record], now: datetime | None = None, progress: Progress | None = None
) -> ImportResult:
    """Validate every record first, then upsert the valid ones (the caller commits).
    `progress(n)` counts 2 × len(records) steps: each record checked, then written or
    rejected (a command's progress bar)."""
    now = now or utcnow()
    good, rejected = validate(records, now, progress)
    if progress is not None:
        progress(len(rejected))
    result = upsert(session, good, now, progress)
    result.rejected = rejected
    return result


def import_feed(
    session: Session, raw: bytes, filename: str = "", now: datetime | None = None
) -> ImportResult:
    """Parse a feed file's bytes and import it; FeedError when the file cannot be parsed
    (then nothing of it is written)."""
    return import_records(session, parse_feed(raw, filename), now)


def withdraw(session: Session, external_id: str, now: datetime | None = None) -> Listing | None:
    """Mark a listing withdrawn (kept for the record, no longer mailed); None if unknown.
    Withdrawing twice keeps the first withdrawal time."""
    row = session.scalar(select(Listing).where(Listing.external_id == external_id))
    if row is not None and row.withdrawn_at is None:
        row.withdrawn_at = now or utcnow()
        row.updated_at = row.withdrawn_at
    return row
