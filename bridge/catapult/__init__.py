"""The Catapult v1 client: ``CatapultClient``, its typed requests and results, and its errors.

``client.py`` has one method per operation; ``session.py`` is the only module here that does I/O
(one aiohttp session, and the translation of aiohttp's errors); ``wire.py`` reads answers with pure
functions; ``models.py`` holds the typed requests and results; ``errors.py`` the error hierarchy.
"""

from bridge.catapult.client import CatapultClient
from bridge.catapult.errors import (
    AmbiguousError,
    ApiError,
    AuthError,
    BadRequestError,
    CatapultError,
    ConflictError,
    ErrorDetail,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    RateLimitScope,
    ServerError,
    TransportError,
)
from bridge.catapult.models import (
    Account,
    Application,
    ApplicationRef,
    BatchItem,
    Message,
    MessageRef,
    NumberRef,
    OutboundMessage,
    PhoneNumber,
)
from bridge.catapult.wire import MAX_BATCH, RATE_WINDOW_S

__all__ = [
    "MAX_BATCH",
    "RATE_WINDOW_S",
    "Account",
    "AmbiguousError",
    "ApiError",
    "Application",
    "ApplicationRef",
    "AuthError",
    "BadRequestError",
    "BatchItem",
    "CatapultClient",
    "CatapultError",
    "ConflictError",
    "ErrorDetail",
    "ForbiddenError",
    "Message",
    "MessageRef",
    "NotFoundError",
    "NumberRef",
    "OutboundMessage",
    "PhoneNumber",
    "RateLimitScope",
    "RateLimitedError",
    "ServerError",
    "TransportError",
]
