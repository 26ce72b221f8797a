"""How a command id rides in Catapult's ``tag`` next to the user's own tag.

Catapult v1 echoes a message's ``tag`` in every callback of that message, so the worker puts the
command id there and the receiver reads it back without any lookup. Format::

    cbr1:<command id, percent-encoded>            (no user tag)
    cbr1:<command id, percent-encoded>:<user tag> (user tag kept verbatim, may contain anything)

Percent-encoding keeps ``:`` out of the id part, so the first ``:`` after the prefix always ends
it. A tag without the prefix is a plain user tag. Pure functions; no I/O here.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import quote, unquote

PREFIX = "cbr1:"


class ParsedTag(NamedTuple):
    command_id: str | None
    user_tag: str | None


def encode_tag(command_id: str, user_tag: str | None) -> str:
    encoded = PREFIX + quote(command_id, safe="")
    return encoded if user_tag is None else f"{encoded}:{user_tag}"


def decode_tag(tag: str | None) -> ParsedTag:
    if tag is None or not tag.startswith(PREFIX):
        return ParsedTag(None, tag)
    rest = tag[len(PREFIX) :]
    encoded_id, sep, user_tag = rest.partition(":")
    if not encoded_id:
        return ParsedTag(None, tag)
    return ParsedTag(unquote(encoded_id), user_tag if sep else None)
