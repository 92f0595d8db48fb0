"""What the API accepts, said once: text a column can store, ids a column can hold, numbers that are numbers,
days a calendar can reach.

Every schema and parameter uses these instead of bare `str`, `int`, `date`,
so that no input gets as far as PostgreSQL (which refuses NUL in text and
integers past its column) or date arithmetic (which overflows near year
9999) to come back as a 500. `tests/api/test_openapi.py` holds the document
to it.
"""

import re
from datetime import date, datetime, time
from typing import Annotated

from annotated_types import Interval
from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, StringConstraints

# A SERIAL / INTEGER column: ids and counts stop here.
MAX_ID = 2**31 - 1
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2100, 12, 31)

# C0 controls, DEL, C1 controls and lone surrogates (valid JSON escapes that UTF-8 cannot encode);
# prose keeps tab, line feed and carriage return.
_LINE_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_PROSE_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# The same rule as a JSON-schema pattern for the document (surrogates cannot be written in it).
LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
PROSE_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"


def _refusing(refused: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if refused.search(value):
            raise ValueError(f"must not contain {what}")
        return value

    return AfterValidator(check)


Text = Annotated[str, _refusing(_LINE_REFUSED, "control characters (NUL, line breaks, tabs ...)"),
                 Field(json_schema_extra={"pattern": LINE_PATTERN})]
"""One line of text: a name, an address, a reason, a code from a query."""

Prose = Annotated[str, _refusing(_PROSE_REFUSED, "control characters other than line breaks and tabs"),
                  Field(json_schema_extra={"pattern": PROSE_PATTERN})]
"""Multi-line text: a description, a note, tips."""

# The first row of every table: in /docs, and the id Schemathesis's examples phase tries first, so that
# its cases reach a ticket, region or technician that exists instead of a 404 (tests/api/test_fuzz.py).
_FIRST_ROW = Field(json_schema_extra={"examples": [1]})

Id = Annotated[int, Interval(ge=1, le=MAX_ID), _FIRST_ROW]
"""A row id in a path, query or header: what a SERIAL column can hold (the URL says 42 as text)."""

Count = Annotated[int, Interval(ge=0, le=MAX_ID)]


def _json_number(value: object) -> object:
    # Lax parsing takes false for 0 and "5" for 5, which the document refuses; 5.0 stays the integer 5, as in
    # JSON Schema.
    if isinstance(value, bool | str):
        raise ValueError("must be a number, not a string or true/false")
    return value


Integer = Annotated[int, BeforeValidator(_json_number)]
"""A whole number in a JSON body (URL parameters arrive as text: they use `Id` or plain `int`)."""

Number = Annotated[float, BeforeValidator(_json_number)]
"""A number in a JSON body: an integer or a fraction, not true or "43.9"."""

JsonId = Annotated[Integer, Interval(ge=1, le=MAX_ID), _FIRST_ROW]
"""A row id in a JSON body."""


def _in_calendar(value: datetime) -> datetime:
    if not FIRST_DAY <= value.date() <= LAST_DAY:
        raise ValueError(f"must lie between {FIRST_DAY} and {LAST_DAY}")
    return value


Day = Annotated[date, Interval(ge=FIRST_DAY, le=LAST_DAY)]
"""A calendar day the service can reason about (2000-01-01 .. 2100-12-31)."""

Moment = Annotated[datetime, AfterValidator(_in_calendar)]
"""An instant within the same span as `Day`."""

def _on_the_wall_clock(value: time) -> time:
    # An offset has no meaning for a time kept without a date (a TIME column drops it, PostgreSQL refuses one past
    # ±15:59): say so instead of storing another hour.
    if value.tzinfo is not None:
        raise ValueError("must be a time of day without a UTC offset, such as 08:30")
    return value


ClockTime = Annotated[time, AfterValidator(_on_the_wall_clock)]
"""A time of day on the local clock (the settings' TIMEZONE): "08:30", no offset."""

Flag = StrictBool
"""true or false, as the document says: not 0, 1 or "yes", which would switch a region's surge by accident."""

Month = Annotated[str, StringConstraints(pattern=r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])$")]
"""A month as "2026-11", within the span of `Day`."""

# A mainland mobile number (the subscriber is called back on it, the technician texted): 11 digits from
# 13 to 19, optionally after +86. A landline or a typo is refused at the door, not found on the visit.
Phone = Annotated[str, StringConstraints(strip_whitespace=True, min_length=11, max_length=14,
                                         pattern=r"^(\+86)?1[3-9][0-9]{9}$")]
