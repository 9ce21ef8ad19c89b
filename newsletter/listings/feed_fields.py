"""A feed row's job-alert fields: where the job is (`postal_code`, `latitude`,
`longitude`), whether it is `remote`, its `employment_type` and its salary
(`salary_min`, `salary_max`, `salary_currency`, `salary_unit`). All are optional; a row
without them stores the defaults, so a feed of the time before these fields imports
exactly as it did.

Rules (what the operator reads in a rejection line, always "field: why"):
- Absent, null and empty (after trimming) mean "not given"; CSV has nothing but text, so
  every number and flag is also read from text.
- `postal_code`: text (a JSON number would lose a leading zero: 01067), 4-10 ASCII
  letters, digits, spaces and hyphens, starting and ending with a letter or digit.
- `latitude`, `longitude`: numbers, or text of plain digits with an optional decimal
  point (`52.52`; the German `52,52` is refused rather than guessed); finite, in range
  (-90..90, -180..180), and both or neither.
- `remote`: true/false, 1/0, yes/no, ja/nein (any case); not given is false.
- `employment_type`: comma-separated text or a list of words from
  criteria.EMPLOYMENT_TYPES, their schema.org JobPosting names (FULL_TIME, PART_TIME,
  INTERN, CONTRACTOR; TEMPORARY, VOLUNTEER, PER_DIEM and OTHER have no counterpart and are
  passed over) or German (Vollzeit, Teilzeit, Werkstudent, Praktikum, Ausbildung,
  Freiberuflich). Case, `-` and spaces do not matter (`Full-Time`). Any other word refuses
  the row: a type we cannot read would silently drop the listing out of every alert.
- A JobPosting (JSON-LD) is kept whatever its facts: a fact we cannot read there (a
  postalCode as a number, "52.000", a currency "€") is left out, not the posting.
- Salary: `salary_min` and `salary_max` are numbers >= 0 and at most MAX_SALARY, or
  text of plain digits with at most two decimals after a point (`52000`, `13.50`):
  `52.000` could be 52 or 52,000 and is refused. Either may be missing (an open range);
  both given, the minimum may not exceed the maximum. With an amount, `salary_unit`
  (year, month, hour; Jahr, Monat, Stunde) is required: a figure without it cannot be
  compared, and guessing "per year" from its size would be wrong for a monthly one. The
  currency is an ISO 4217 code Babel knows (stored upper case), EUR when not given. Without an
  amount, currency and unit are ignored (a CSV column filled for every row is common).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from babel.numbers import list_currencies

from newsletter.listings import criteria
from newsletter.validation import InvalidInput

MAX_SALARY = 10_000_000  # per year, month or hour: a bigger figure is a broken feed
MAX_TYPES = 20  # words in one employment_type: the six types, their synonyms, some slack
MAX_NUMBER_TEXT = 40
DEFAULT_CURRENCY = "EUR"

POSTAL_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{2,8}[A-Za-z0-9]")
COORDINATE = re.compile(r"[+-]?[0-9]{1,3}(?:\.[0-9]{1,15})?")
AMOUNT = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,2})?")
THOUSANDS = re.compile(r"[0-9]{1,3}(?:[.,][0-9]{3})+(?:,[0-9]{1,2})?")
# ISO 4217 codes Babel can print; XXX ("no currency") and XTS (testing) are none to show.
CURRENCIES = frozenset(list_currencies()) - {"XXX", "XTS"}

REMOTE_WORDS = {
    "true": True, "1": True, "yes": True, "ja": True,
    "false": False, "0": False, "no": False, "nein": False,
}

# A feed's word for a job type (lower case, `-` and spaces as `_`) -> criteria's type, or
# None for a schema.org JobPosting value that has no counterpart (passed over, not refused).
EMPLOYMENT_WORDS: dict[str, str | None] = {
    **{kind: kind for kind in criteria.EMPLOYMENT_TYPES},
    # schema.org JobPosting employmentType (FULL_TIME and PART_TIME are the types above)
    "intern": "internship",
    "contractor": "freelance",
    "temporary": None,
    "volunteer": None,
    "per_diem": None,
    "other": None,
    # German
    "vollzeit": "full_time",
    "teilzeit": "part_time",
    "werkstudent": "student",
    "werkstudentin": "student",
    "praktikum": "internship",
    "ausbildung": "apprenticeship",
    "freiberuflich": "freelance",
}

# salary_unit as written (lower case) -> the stored unit.
UNIT_WORDS = {
    **{unit: unit for unit in criteria.SALARY_UNITS},
    "jahr": "year",
    "monat": "month",
    "stunde": "hour",
}


def employment_word(word: str) -> str:
    """The key of `word` in EMPLOYMENT_WORDS: `Full-Time`, `FULL_TIME` and `full time`
    are one word."""
    return "_".join(word.strip().lower().replace("-", " ").replace("_", " ").split())


def _given(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _shown(value: str) -> str:
    return repr(value[:MAX_NUMBER_TEXT]) + ("..." if len(value) > MAX_NUMBER_TEXT else "")


def clean_postal_code(value: object) -> str:
    if not _given(value):
        return ""
    if not isinstance(value, str):
        raise InvalidInput("postal_code", "postal_code: expected text (a number would lose a leading zero)")
    text = value.strip()
    if not POSTAL_CODE.fullmatch(text):
        raise InvalidInput(
            "postal_code", f"postal_code: expected 4 to 10 letters, digits, spaces or hyphens (got {_shown(text)})"
        )
    return text


def _number(name: str, value: object, pattern: re.Pattern[str], text_rule: str) -> float:
    """A JSON number or a plain decimal text as a finite float, or InvalidInput."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(name, f"{name}: expected a number")
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_NUMBER_TEXT or not pattern.fullmatch(text):
            if pattern.fullmatch(text.replace(",", ".", 1)):
                raise InvalidInput(name, f"{name}: {_shown(text)} has a decimal comma; write a point ({text_rule})")
            raise InvalidInput(name, f"{name}: not a number: {_shown(text)} ({text_rule})")
        value = text
    try:
        number = float(value)
    except OverflowError:  # an int of hundreds of digits
        number = math.inf
    if not math.isfinite(number):
        raise InvalidInput(name, f"{name}: not a finite number")
    return number


def clean_coordinates(latitude: object, longitude: object) -> tuple[float | None, float | None]:
    """Both or neither, each finite and in range."""
    rule = "digits with an optional decimal point, e.g. 52.52"
    found: list[float | None] = []
    for name, value, limit in (("latitude", latitude, 90), ("longitude", longitude, 180)):
        if not _given(value):
            found.append(None)
            continue
        number = _number(name, value, COORDINATE, rule)
        if not -limit <= number <= limit:
            raise InvalidInput(name, f"{name}: must lie between -{limit} and {limit} (got {number:g})")
        found.append(number)
    lat, lon = found
    if (lat is None) != (lon is None):
        missing = "longitude" if lon is None else "latitude"
        raise InvalidInput(missing, f"{missing}: missing (latitude and longitude come together)")
    return lat, lon


def clean_remote(value: object) -> bool:
    if not _given(value):
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        flag = REMOTE_WORDS.get(value.strip().lower())
        if flag is not None:
            return flag
        raise InvalidInput("remote", f"remote: expected true or false (got {_shown(value.strip())})")
    raise InvalidInput("remote", "remote: expected true or false")


def clean_employment_type(value: object) -> str:
    """The stored form (criteria.join_types) of a feed's job types."""
    if not _given(value):
        return ""
    if isinstance(value, str):
        words = value.split(",")
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        words = value
    else:
        raise InvalidInput("employment_type", "employment_type: expected comma-separated text or a list of texts")
    words = [word for word in words if word.strip()]
    if len(words) > MAX_TYPES:
        raise InvalidInput("employment_type", f"employment_type: at most {MAX_TYPES} types (got {len(words)})")
    types: list[str] = []
    for word in words:
        key = employment_word(word)
        if key not in EMPLOYMENT_WORDS:
            raise InvalidInput(
                "employment_type",
                f"employment_type: unknown type {_shown(word.strip())}; expected any of "
                + ", ".join(criteria.EMPLOYMENT_TYPES),
            )
        kind = EMPLOYMENT_WORDS[key]
        if kind is not None:
            types.append(kind)
    return criteria.parse_types(types)


def clean_salary(data: Mapping[str, Any]) -> dict[str, Any]:
    """salary_min, salary_max, salary_currency and salary_unit as stored."""
    rule = "plain digits with an optional '.' before 1 or 2 decimals, e.g. 52000 or 13.50"
    amounts: dict[str, float | None] = {}
    for name in ("salary_min", "salary_max"):
        value = data.get(name)
        if not _given(value):
            amounts[name] = None
            continue
        if isinstance(value, str) and THOUSANDS.fullmatch(value.strip()):
            raise InvalidInput(
                name, f"{name}: {_shown(value.strip())} is ambiguous (a thousands separator?); write {rule}"
            )
        number = _number(name, value, AMOUNT, rule)
        if not 0 <= number <= MAX_SALARY:
            raise InvalidInput(name, f"{name}: must lie between 0 and {MAX_SALARY} (got {number:g})")
        amounts[name] = number
    low, high = amounts["salary_min"], amounts["salary_max"]
    if low is None and high is None:
        return {"salary_min": None, "salary_max": None, "salary_currency": "", "salary_unit": ""}
    if low is not None and high is not None and low > high:
        raise InvalidInput("salary_max", "salary_max: lies below salary_min")
    currency = data.get("salary_currency")
    if not _given(currency):
        currency = DEFAULT_CURRENCY
    elif not isinstance(currency, str) or currency.strip().upper() not in CURRENCIES:
        shown = f" (got {_shown(currency.strip())})" if isinstance(currency, str) else ""
        raise InvalidInput("salary_currency", f"salary_currency: expected a 3-letter ISO 4217 code like EUR{shown}")
    unit = data.get("salary_unit")
    if not _given(unit):
        raise InvalidInput("salary_unit", "salary_unit: required with a salary (year, month or hour)")
    stored_unit = UNIT_WORDS.get(unit.strip().lower()) if isinstance(unit, str) else None
    if stored_unit is None:
        shown = f" (got {_shown(unit.strip())})" if isinstance(unit, str) else ""
        raise InvalidInput("salary_unit", f"salary_unit: expected year, month or hour{shown}")
    return {"salary_min": low, "salary_max": high, "salary_currency": currency.strip().upper(),
            "salary_unit": stored_unit}


# Marks a row made from a schema.org JobPosting (formats.job_posting_fields). Not a string,
# so no feed can set it.
FROM_JOB_POSTING = object()


def clean_feed_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The job-alert columns of a feed row, cleaned, or InvalidInput for the first bad one.
    A JobPosting's facts are optional extras of a format that was imported before they
    were read: one we cannot read is left out, and the posting is kept as it always was."""
    lenient = bool(data.get(FROM_JOB_POSTING))  # type: ignore[call-overload]
    facts: dict[str, Any] = {}
    for clean in (_place, _remote, _types, clean_salary):
        try:
            facts |= clean(data)
        except InvalidInput:
            if not lenient:
                raise
            facts |= _NOT_GIVEN[clean]
    return facts


def _place(data: Mapping[str, Any]) -> dict[str, Any]:
    postal_code = clean_postal_code(data.get("postal_code"))
    latitude, longitude = clean_coordinates(data.get("latitude"), data.get("longitude"))
    return {"postal_code": postal_code, "latitude": latitude, "longitude": longitude}


def _remote(data: Mapping[str, Any]) -> dict[str, Any]:
    return {"remote": clean_remote(data.get("remote"))}


def _types(data: Mapping[str, Any]) -> dict[str, Any]:
    return {"employment_type": clean_employment_type(data.get("employment_type"))}


_NOT_GIVEN: dict[Any, dict[str, Any]] = {
    _place: {"postal_code": "", "latitude": None, "longitude": None},
    _remote: {"remote": False},
    _types: {"employment_type": ""},
    clean_salary: {"salary_min": None, "salary_max": None, "salary_currency": "", "salary_unit": ""},
}
