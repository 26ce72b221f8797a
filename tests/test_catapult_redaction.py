"""Secrets found in every form a server could echo them in, whole or cut short (pure, no I/O)."""

from __future__ import annotations

import base64
import html
import json
from urllib.parse import quote, quote_plus

import pytest

from bridge.catapult.redaction import REDACTED, Redactor

SECRET = 'se/cr+et "pass" & <word> é'
USER = "dash-user"
TOKEN = "t-api-token-123"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote(SECRET, safe=""),
        quote(SECRET),
        quote_plus(SECRET),
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        html.escape(SECRET),
        b64(SECRET),
        base64.urlsafe_b64encode(SECRET.encode()).decode(),
        b64(f"{USER}:{SECRET}"),
        quote(b64(f"{USER}:{SECRET}"), safe=""),
        b64(f"{TOKEN}:{SECRET}").rstrip("="),
        " ".join(SECRET.split()),
    ],
)
def test_every_form_is_replaced(form: str) -> None:
    redactor = Redactor((SECRET, USER, TOKEN), pairs=((USER, SECRET), (TOKEN, SECRET)))
    text = f"before {form} after"
    assert redactor.redact(text) == f"before {REDACTED} after"


@pytest.mark.parametrize("cut", [4, 7, len(SECRET) - 1])
@pytest.mark.parametrize("marker", ["", "…", "...", "... more"])
def test_a_secret_cut_short_is_replaced_where_the_text_was_cut(cut: int, marker: str) -> None:
    redactor = Redactor((SECRET,))
    redacted = redactor.redact(f"echo: {SECRET[:cut]}{marker}")
    assert redacted == f"echo: {REDACTED}{marker}"


def test_a_prefix_inside_a_text_is_left_alone() -> None:
    # Only a cut (the end, or an ellipsis) makes a prefix suspicious.
    redactor = Redactor(("transport-secret-value",))
    assert redactor.redact("transport error on /v1/users") == "transport error on /v1/users"


def test_clip_redacts_before_it_cuts() -> None:
    redactor = Redactor((SECRET,))
    for padding in range(180, 200):
        text = "x" * padding + SECRET + " trailing words"
        clipped = redactor.clip(text, 200)
        assert len(clipped) <= 201
        assert SECRET[:4] not in clipped.replace(REDACTED, "")
        assert clipped.endswith(("…", REDACTED + " trailing words")) or REDACTED in clipped


def test_clip_of_a_huge_text_reads_only_its_head() -> None:
    redactor = Redactor((SECRET,))
    clipped = redactor.clip(SECRET + "y" * 5_000_000, 50)
    assert clipped.startswith(REDACTED)
    assert clipped.endswith("…")
    assert len(clipped) == 51


def test_short_values_are_not_searched_and_an_empty_redactor_changes_nothing() -> None:
    assert Redactor(("ab", "")).redact("ab cab abab") == "ab cab abab"
    assert not Redactor()
    assert Redactor().clip("text", 2) == "te…"


def test_extended_keeps_the_first_secrets() -> None:
    redactor = Redactor((TOKEN,)).extended((SECRET,), pairs=((USER, SECRET),))
    assert redactor.redact(f"{TOKEN} {SECRET} {b64(f'{USER}:{SECRET}')}") == " ".join(
        [REDACTED] * 3
    )
    assert SECRET not in repr(redactor)
