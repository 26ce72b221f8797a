"""Who may post callbacks: HTTP Basic credentials and an optional secret path token.

Catapult v1 has no callback signing; users put ``user:password@`` in the callback URL and
Catapult sends it as ``Authorization: Basic``. A secret path segment can be added or used alone.
Every configured part is checked on every request with constant-time comparisons, all of them
always (no early exit), and a refusal never says which part was wrong. With nothing configured
the receiver refuses to start unless ``receiver.allow_unauthenticated`` is set explicitly.
No I/O here.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from bridge.receiver.errors import Unauthorized
from bridge.settings import ReceiverSettings, SettingsError

REALM = "catapult-bridge"
CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}


class CallbackAuth:
    """Checks one request's ``Authorization`` header and path token against the settings."""

    __slots__ = ("_basic", "_token")

    def __init__(self, settings: ReceiverSettings) -> None:
        if not settings.has_credentials and not settings.allow_unauthenticated:
            raise SettingsError(
                "the receiver has no credentials: set receiver.username and receiver.password "
                "and/or receiver.path_token, or set receiver.allow_unauthenticated = true "
                "explicitly for a receiver nothing else can reach"
            )
        self._basic: bytes | None = None
        if settings.username is not None and settings.password is not None:
            self._basic = f"{settings.username}:{settings.password.get_secret_value()}".encode()
        self._token = (
            None if settings.path_token is None else settings.path_token.get_secret_value().encode()
        )

    @property
    def uses_path_token(self) -> bool:
        return self._token is not None

    def __repr__(self) -> str:
        return (
            f"CallbackAuth(basic={self._basic is not None}, path_token={self._token is not None})"
        )

    def check(self, authorization: str | None, path_token: str | None) -> None:
        """Return if the request is allowed; raise ``Unauthorized`` (with a challenge) if not."""
        allowed = True
        if self._basic is not None:
            allowed &= hmac.compare_digest(_basic_credentials(authorization), self._basic)
        if self._token is not None:
            given = b"" if path_token is None else path_token.encode("utf-8", "surrogateescape")
            allowed &= hmac.compare_digest(given, self._token)
        if not allowed:
            raise Unauthorized("valid credentials are required", headers=CHALLENGE)


def _basic_credentials(authorization: str | None) -> bytes:
    """``user:password`` from a Basic header, or ``b""`` when there is none or it is malformed."""
    if authorization is None:
        return b""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return b""
    try:
        return base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""
