"""Known secrets, found and replaced in every form a server could echo them back in.

A ``Redactor`` holds the secret values one request carries (the API token and secret, the
``Authorization`` value built from them, an import's Dashboard account id, user name and password)
and replaces each with ``***`` wherever it appears in a text taken from an answer: as it is,
URL-encoded (``quote`` and ``quote_plus``), JSON-escaped (ASCII-only or not), HTML-escaped, and in
base64 (the value alone, and ``user:pass`` pairs, standard and URL-safe alphabets, also
URL-encoded), so an error page that echoes the request, its headers or its body gives nothing
away. A form cut short (a prefix of at least ``MIN_PREFIX_CHARS`` right before the end of the text
or an ellipsis, where a server or a truncation stopped) is replaced too.

Callers redact before they fold or truncate a text, and again after: folding whitespace can join
a secret split over lines, and cutting can leave the start of one at the end. Values shorter than
``MIN_SECRET_CHARS`` are not searched: replacing every "ab" of a message would hide the message and
protect nothing. Pure code; no I/O here.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable
from functools import cached_property
from urllib.parse import quote, quote_plus

REDACTED = "***"
MIN_SECRET_CHARS = 4
MIN_PREFIX_CHARS = 4
# Where a text may have been cut: its end, or an ellipsis a server or a truncation left.
_CUT = r"(?=…|\.\.\.|$)"


def _b64_forms(raw: bytes) -> set[str]:
    forms = set()
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms.update({encoded, encoded.rstrip("="), quote(encoded, safe="")})
    return forms


def forms_of(value: str) -> set[str]:
    """Every form of ``value`` that a server could echo (see the module docstring)."""
    if len(value) < MIN_SECRET_CHARS:
        return set()
    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        html.escape(value),
        html.escape(value, quote=False),
        " ".join(value.split()),  # as an error text shows it, whitespace folded
    }
    forms |= _b64_forms(value.encode())
    return {f for f in forms if len(f) >= MIN_SECRET_CHARS}


def pair_forms(user: str, password: str) -> set[str]:
    """The forms of ``user:password`` in base64, as HTTP Basic carries them."""
    if not user or not password:
        return set()
    return _b64_forms(f"{user}:{password}".encode())


class Redactor:
    """Replaces the known secrets in a text; an empty one leaves texts as they are."""

    def __init__(
        self, values: Iterable[str] = (), *, pairs: Iterable[tuple[str, str]] = ()
    ) -> None:
        self._values = tuple(v for v in values if v)
        self._pairs = tuple(pairs)
        forms: set[str] = set()
        for value in self._values:
            forms |= forms_of(value)
        for user, password in self._pairs:
            forms |= pair_forms(user, password)
        # Longest first: a form that contains another is replaced whole.
        self._forms = tuple(sorted(forms, key=lambda f: (-len(f), f)))

    def __repr__(self) -> str:
        return f"Redactor({len(self._forms)} forms)"

    def __bool__(self) -> bool:
        return bool(self._forms)

    def extended(
        self, values: Iterable[str] = (), *, pairs: Iterable[tuple[str, str]] = ()
    ) -> Redactor:
        """This redactor with more secrets (a request's own credentials)."""
        return Redactor((*self._values, *values), pairs=(*self._pairs, *pairs))

    @cached_property
    def _whole(self) -> re.Pattern[str] | None:
        if not self._forms:
            return None
        return re.compile("|".join(re.escape(f) for f in self._forms))

    @cached_property
    def _cut(self) -> re.Pattern[str] | None:
        # Per form, its first MIN_PREFIX_CHARS characters and then each further one optional
        # (a(?:b(?:c)?)?): any prefix of the form, matched only right before a cut.
        prefixes = []
        for form in self._forms:
            if len(form) <= MIN_PREFIX_CHARS:
                continue
            tail = ""
            for char in reversed(form[MIN_PREFIX_CHARS:-1]):
                tail = f"(?:{re.escape(char)}{tail})?"
            prefixes.append(re.escape(form[:MIN_PREFIX_CHARS]) + tail)
        if not prefixes:
            return None
        return re.compile("(?:" + "|".join(prefixes) + ")" + _CUT)

    @property
    def longest(self) -> int:
        """Characters of the longest form: how far past a cut a secret can reach."""
        return len(self._forms[0]) if self._forms else 0

    def redact(self, text: str) -> str:
        """``text`` with every form of every secret, whole or cut short, replaced."""
        whole = self._whole
        if whole is None:
            return text
        text = whole.sub(REDACTED, text)
        cut = self._cut
        return text if cut is None else cut.sub(REDACTED, text)

    def clip(self, text: str, limit: int) -> str:
        """The first ``limit`` characters of ``text``, redacted (``…`` marks a cut).

        Only what is kept (and the longest secret's reach past it) is searched, so a huge text
        costs no more than a short one; a secret across the cut is in that reach and replaced
        whole before the cut is made.
        """
        head = self.redact(text[: limit + self.longest])
        if len(head) <= limit and len(text) <= limit + self.longest:
            return head
        return self.redact(head[:limit] + "…")


NO_SECRETS = Redactor()

__all__ = [
    "MIN_PREFIX_CHARS",
    "MIN_SECRET_CHARS",
    "NO_SECRETS",
    "REDACTED",
    "Redactor",
    "forms_of",
    "pair_forms",
]
