"""Paging of list resources and the query parameters that drive it.

Messages page with a cursor: each full page carries ``Link: <...sortKeyLT=N...>; rel="next"`` (or
``sortKeyGT`` in ascending order), so a client must tolerate a final empty page, as with the real
API. Applications, phone numbers and errors page with ``page``/``size`` and ``Link`` relations
``first``, ``previous``, ``next`` and ``last``. ``size`` defaults to 25, at most 1000. Bad
parameters are 400 ``validation-error`` naming the parameter. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import urlencode

from bridge.simulator import errors

DEFAULT_SIZE = 25
MAX_SIZE = 1000
# Longer runs of digits than any sort key or page number: refused before ``int()`` reads them.
MAX_DIGITS = 19

T = TypeVar("T")

_DATE_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[ T](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?)?(?:Z|[+-]00:?00)?$"
)


def natural(raw: str) -> int | None:
    """``raw`` as a non-negative integer when it is 1 to ``MAX_DIGITS`` ASCII digits, else None.

    ``str.isdigit`` alone is not enough: it accepts ``"²"``, which ``int()`` refuses.
    """
    if not raw or len(raw) > MAX_DIGITS or not (raw.isascii() and raw.isdigit()):
        return None
    return int(raw)


def parse_size(query: Mapping[str, str]) -> int:
    raw = query.get("size")
    if raw is None or raw == "":
        return DEFAULT_SIZE
    size = natural(raw)
    if size is None or not 1 <= size <= MAX_SIZE:
        raise errors.validation_error(
            f"The query parameter 'size' must be a number from 1 to {MAX_SIZE}, not {raw!r}"
        )
    return size


def parse_int(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    value = natural(raw)
    if value is None:
        raise errors.validation_error(f"The query parameter '{name}' must be a number, not {raw!r}")
    return value


def parse_choice(query: Mapping[str, str], name: str, values: tuple[str, ...]) -> str | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in values:
        raise errors.validation_error(
            f"The query parameter '{name}' must be one of the following values: {', '.join(values)}"
        )
    return raw


def parse_date_time_ms(query: Mapping[str, str], name: str) -> int | None:
    """``yyyy-MM-dd hh:mm:ss.sss`` (trailing parts optional, UTC) as epoch milliseconds."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    match = _DATE_TIME.match(raw.strip())
    if match is None:
        raise errors.validation_error(
            f"The query parameter '{name}' must look like 'yyyy-MM-dd hh:mm:ss.sss', not {raw!r}"
        )
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError:
        raise errors.validation_error(
            f"The query parameter '{name}' is not a valid date and time: {raw!r}"
        ) from None
    return int(moment.timestamp() * 1000)


def cursor_link(
    base_url: str, query: Mapping[str, str], *, cursor_name: str, cursor: int, size: int
) -> str:
    """``Link`` header for the next page of a cursor-paged list."""
    params = {k: v for k, v in query.items() if k not in ("sortKeyLT", "sortKeyGT", "size")}
    params[cursor_name] = str(cursor)
    params["size"] = str(size)
    return f'<{base_url}?{urlencode(params)}>; rel="next"'


def page_of(items: Sequence[T], base_url: str, query: Mapping[str, str]) -> tuple[list[T], str]:
    """One page (``page`` counts from 0) and its ``Link`` header (first/previous/next/last)."""
    size = parse_size(query)
    page = parse_int(query, "page") or 0
    last = max(0, (len(items) - 1) // size)
    chosen = list(items[page * size : (page + 1) * size])
    params = {k: v for k, v in query.items() if k not in ("page", "size")}

    def link(number: int, rel: str) -> str:
        return f'<{base_url}?{urlencode({**params, "page": number, "size": size})}>; rel="{rel}"'

    links = [link(0, "first")]
    if page > 0:
        links.append(link(min(page - 1, last), "previous"))
    if page < last:
        links.append(link(page + 1, "next"))
    links.append(link(last, "last"))
    return chosen, ", ".join(links)
