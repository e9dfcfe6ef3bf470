"""PostgreSQL functions the warehouse answers as PostgreSQL does, as DuckDB macros.

oVirt's DWH reports and Grafana dashboards are written for PostgreSQL; most of what they
call (``coalesce``, ``date_trunc``, ``date_part``, ``now``, ``round``, ``least``, casts
to ``numeric``) DuckDB has already. What it lacks is defined here:

- ``to_char(timestamp, format)``: PostgreSQL's template patterns for date and time
  (``YYYY YYY YY Y IYYY CC``, ``MM Month MONTH month Mon MON mon``, ``DD DDD D ID``,
  ``Day DAY day Dy DY dy``, ``HH HH12 HH24 MI SS MS US SSSS``, ``AM PM am pm A.M. P.M.``,
  ``Q WW IW W J``, the ``FM`` prefix that drops padding, and double-quoted literal
  text). Other characters are copied. Month and day names are English and, as in
  PostgreSQL, blank-padded to nine characters unless ``FM`` is given.
- ``initcap(text)``: PostgreSQL's capitalisation of each word.

``MACROS`` are plain SQL; ``register(con)`` creates them in the warehouse file (the
writer, so every connection to the file sees them) and ``register_temp(con)`` on a
read-only connection (a file written before they existed). Both are idempotent.
"""

from __future__ import annotations

from typing import Any

# One template pattern (longest first), an FM prefix, a quoted literal, or one character.
_TOKEN_RE = (
    r"(FM|fm)?(HH24|HH12|HH|hh24|hh12|hh|MI|mi|SSSS|ssss|SS|ss|MS|ms|US|us|"
    r"IYYY|iyyy|YYYY|yyyy|YYY|yyy|YY|yy|Y|y|CC|cc|"
    r"MONTH|Month|month|MON|Mon|mon|MM|mm|DAY|Day|day|DY|Dy|dy|DDD|ddd|DD|dd|D|d|"
    r"ID|id|IW|iw|WW|ww|W|w|Q|q|J|j|A\.M\.|P\.M\.|a\.m\.|p\.m\.|AM|PM|am|pm|"
    r"\"[^\"]*\"|.)"
)


def _pad(expr: str, width: int) -> str:
    return f"lpad(CAST({expr} AS VARCHAR), {width}, '0')"


# token (upper-case numeric patterns stand for their lower-case spelling too) -> SQL of
# its text for timestamp ``ts``
_NUMERIC: dict[str, str] = {
    "HH24": "strftime(ts, '%H')",
    "HH12": "strftime(ts, '%I')",
    "HH": "strftime(ts, '%I')",
    "MI": "strftime(ts, '%M')",
    "SSSS": "CAST(hour(ts) * 3600 + minute(ts) * 60 + second(ts) AS VARCHAR)",
    "SS": "strftime(ts, '%S')",
    "MS": _pad("microsecond(ts) // 1000 % 1000", 3),
    "US": _pad("microsecond(ts) % 1000000", 6),
    "IYYY": _pad("isoyear(ts)", 4),
    "YYYY": _pad("year(ts)", 4),
    "YYY": _pad("year(ts) % 1000", 3),
    "YY": _pad("year(ts) % 100", 2),
    "Y": "CAST(year(ts) % 10 AS VARCHAR)",
    "CC": _pad("(year(ts) - 1) // 100 + 1", 2),
    "MM": "strftime(ts, '%m')",
    "DDD": _pad("dayofyear(ts)", 3),
    "DD": "strftime(ts, '%d')",
    "D": "CAST(dayofweek(ts) + 1 AS VARCHAR)",
    "ID": "CAST(isodow(ts) AS VARCHAR)",
    "IW": _pad("weekofyear(ts)", 2),
    "WW": _pad("(dayofyear(ts) - 1) // 7 + 1", 2),
    "W": "CAST((day(ts) - 1) // 7 + 1 AS VARCHAR)",
    "Q": "CAST(quarter(ts) AS VARCHAR)",
    "J": "CAST(CAST(julian(CAST(ts AS DATE)) AS BIGINT) AS VARCHAR)",
}
_TEXT: dict[str, str] = {
    "Month": "rpad(strftime(ts, '%B'), 9, ' ')",
    "MONTH": "rpad(upper(strftime(ts, '%B')), 9, ' ')",
    "month": "rpad(lower(strftime(ts, '%B')), 9, ' ')",
    "Mon": "strftime(ts, '%b')",
    "MON": "upper(strftime(ts, '%b'))",
    "mon": "lower(strftime(ts, '%b'))",
    "Day": "rpad(strftime(ts, '%A'), 9, ' ')",
    "DAY": "rpad(upper(strftime(ts, '%A')), 9, ' ')",
    "day": "rpad(lower(strftime(ts, '%A')), 9, ' ')",
    "Dy": "strftime(ts, '%a')",
    "DY": "upper(strftime(ts, '%a'))",
    "dy": "lower(strftime(ts, '%a'))",
    "AM": "strftime(ts, '%p')",
    "PM": "strftime(ts, '%p')",
    "am": "lower(strftime(ts, '%p'))",
    "pm": "lower(strftime(ts, '%p'))",
    "A.M.": "CASE WHEN hour(ts) < 12 THEN 'A.M.' ELSE 'P.M.' END",
    "P.M.": "CASE WHEN hour(ts) < 12 THEN 'A.M.' ELSE 'P.M.' END",
    "a.m.": "CASE WHEN hour(ts) < 12 THEN 'a.m.' ELSE 'p.m.' END",
    "p.m.": "CASE WHEN hour(ts) < 12 THEN 'a.m.' ELSE 'p.m.' END",
}


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _pattern_case(value_of_fm: bool) -> str:
    """CASE over the pattern ``p`` (FM already split off): its text for ``ts``."""
    arms = []
    for tok, sql in _NUMERIC.items():
        text = f"coalesce(nullif(ltrim({sql}, '0'), ''), '0')" if value_of_fm else sql
        spellings = {tok, tok.lower()}
        arms.append(f"WHEN p IN ({', '.join(_q(s) for s in sorted(spellings))}) THEN {text}")
    for tok, sql in _TEXT.items():
        text = f"rtrim({sql}, ' ')" if value_of_fm else sql
        arms.append(f"WHEN p = {_q(tok)} THEN {text}")
    arms.append("WHEN p LIKE '\"%' THEN substr(p, 2, length(p) - 2)")
    return "CASE " + " ".join(arms) + " ELSE p END"


MACROS: tuple[str, ...] = (
    # the text of one pattern p of the template for ts; fm: the FM prefix was given
    f"MACRO pg_to_char_pattern(ts, p, fm) AS CASE WHEN fm THEN {_pattern_case(True)} "
    f"ELSE {_pattern_case(False)} END",
    "MACRO to_char(ts, fmt) AS CASE WHEN ts IS NULL OR fmt IS NULL THEN NULL ELSE "
    "array_to_string(list_transform("
    f"regexp_extract_all(fmt, {_q(_TOKEN_RE)}, 0), "
    "lambda t: pg_to_char_pattern(CAST(ts AS TIMESTAMP), "
    "CASE WHEN t ILIKE 'fm_%' THEN substr(t, 3) ELSE t END, t ILIKE 'fm_%')), '') END",
    "MACRO initcap(s) AS array_to_string(list_transform("
    r"regexp_extract_all(lower(s), '[a-z0-9]+|[^a-z0-9]+'), "
    "lambda w: upper(substr(w, 1, 1)) || substr(w, 2)), '')",
)
FUNCTION_NAMES = ("to_char", "initcap", "pg_to_char_pattern")


def register(con: Any) -> None:
    """Creates (or replaces) the macros in the database ``con`` writes."""
    for m in MACROS:
        con.execute(f"CREATE OR REPLACE {m}")


def register_temp(con: Any) -> None:
    """Creates the macros for this connection only (a read-only one may do this)."""
    for m in MACROS:
        con.execute(f"CREATE OR REPLACE TEMP {m}")
