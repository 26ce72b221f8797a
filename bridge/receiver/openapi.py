"""The receiver's OpenAPI 3.1 document, generated from its routes, its models and its errors.

It describes the callback port: what Catapult calls, and the bare ``/healthz`` a load balancer
asks. Readiness and metrics are on the operations port (``bridge.operations``), not here.

``openapi_document()`` builds the receiver app (no socket, no broker: the app is only built) and
describes every route it serves: the operation of each handler, the callback's JSON Schema from
``MessageCallback`` (as a JSON body, a form body and GET query parameters), the answers from the
receiver's own answer and problem models, and one problem response per ``ReceiverError`` status.
A route whose handler is not described here fails the generation, so the document cannot miss
an endpoint. ``schemas/receiver-openapi.json`` is this document, kept for consumers and tools
(``bridge schemas`` rewrites it; a test fails when it drifts) and used to fuzz a running
receiver.

No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal

from aiohttp import hdrs, web
from pydantic import BaseModel, ConfigDict, Field

from bridge import operations
from bridge.events.callbacks import MessageCallback
from bridge.receiver import errors, handlers
from bridge.receiver.app import create_receiver_app
from bridge.receiver.auth import REALM
from bridge.receiver.handlers import FORM
from bridge.receiver.problems import PROBLEM_JSON, TYPE_PREFIX
from bridge.receiver.publishing import Disposition
from bridge.settings import Settings, load_settings

OPENAPI_VERSION = "3.1.0"
FILE_NAME = "receiver-openapi.json"
REF = "#/components/schemas/"


class CallbackAnswer(BaseModel):
    """The answer to a callback the receiver stored (or had stored already)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Disposition = Field(
        description="published: confirmed by RabbitMQ; spooled: on disk, published once RabbitMQ "
        "is back; duplicate: the same event was stored within the dedup window"
    )
    id: str = Field(description="The event id (the AMQP message_id and CloudEvents id)")


class FieldError(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(description="The callback field (or '(body)', '(callback)')")
    problem: str = Field(description="What is wrong with its value")
    value: Any = Field(default=None, description="The value as received, cut short")


class Problem(BaseModel):
    """An RFC 9457 problem document: every refusal of the receiver."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(description=f"{TYPE_PREFIX}<code>")
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(
        default=None, description="One entry per bad field (invalid-callback only)"
    )


class Health(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Literal["ok"]


MODELS: tuple[type[BaseModel], ...] = (CallbackAnswer, FieldError, Problem, Health)


def _error_classes() -> list[type[errors.ReceiverError]]:
    found: list[type[errors.ReceiverError]] = []
    pending: list[type[errors.ReceiverError]] = [errors.ReceiverError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _problem_responses() -> dict[str, Any]:
    """One response per status of the receiver's error tree, listing its problem codes."""
    by_status: dict[int, list[type[errors.ReceiverError]]] = {}
    for cls in _error_classes():
        if cls is not errors.ReceiverError:  # the base is the 500 that input never gets
            by_status.setdefault(cls.status, []).append(cls)
    responses: dict[str, Any] = {}
    for status, classes in sorted(by_status.items()):
        codes = sorted({c.code for c in classes})
        titles = sorted({c.title for c in classes})
        response: dict[str, Any] = {
            "description": f"{' / '.join(titles)}: problem type "
            + ", ".join(f"{TYPE_PREFIX}{code}" for code in codes),
            "content": {PROBLEM_JSON: {"schema": {"$ref": REF + "Problem"}}},
        }
        if status == errors.Unauthorized.status:
            response["headers"] = {
                "WWW-Authenticate": {
                    "description": f'Basic realm="{REALM}", charset="UTF-8"',
                    "schema": {"type": "string"},
                }
            }
        responses[str(status)] = response
    return responses


# What the parser's validators check beyond the model's types, for the fields where a pattern can
# say it: the canonical forms of a number (E.164, ten NANP digits, 11 to 15 digits whose + was
# lost, a short code). Separators such as "(919) 555-0100" are accepted too.
PHONE_NUMBER = r"^(\+[1-9][0-9]{6,14}|[0-9]{3,8}|[2-9][0-9]{9}|[1-9][0-9]{10,14})$"
FIELD_PATTERNS = {"from": PHONE_NUMBER, "to": PHONE_NUMBER}


def _callback_schema() -> dict[str, Any]:
    schema = MessageCallback.model_json_schema(mode="validation", by_alias=True)
    for name, pattern in FIELD_PATTERNS.items():
        schema["properties"][name]["pattern"] = pattern
    schema["description"] = (
        "One Catapult v1 message callback. Phone numbers may be E.164, ten NANP digits or a short "
        "code; media one URL, a comma-separated list, '[a, b]' or a list; deliveryCode and "
        "segmentCount an integer or a string of digits. Unknown fields are kept in the event."
    )
    return schema


def _query_parameters(callback: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(callback.get("required", ()))
    parameters = []
    for name, schema in callback["properties"].items():
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": schema,
        }
        if schema.get("type") == "array":
            parameter |= {"style": "form", "explode": True}
        parameters.append(parameter)
    return parameters


@dataclass(frozen=True)
class Operation:
    summary: str
    build: Callable[[str, dict[str, Any]], dict[str, Any]]


def _callback_operation(method: str, callback: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": "A Catapult v1 message callback",
        "description": "Validated, turned into a CloudEvent and answered 200 only once RabbitMQ "
        "confirmed it (or it is in the spool). A refusal names each bad field.",
        "security": [{"basicAuth": []}],
        "responses": {
            "200": {
                "description": "Stored",
                "content": {"application/json": {"schema": {"$ref": REF + "CallbackAnswer"}}},
            },
            **_problem_responses(),
        },
    }
    if method == hdrs.METH_GET:
        operation["operationId"] = "getCallback"
        operation["parameters"] = _query_parameters(callback)
    else:
        operation["operationId"] = "postCallback"
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF + "MessageCallback"}},
                FORM: {"schema": {"$ref": REF + "MessageCallback"}},
            },
        }
    return operation


def _json_operation(
    operation_id: str, summary: str, answers: dict[str, tuple[str, type[BaseModel]]]
) -> Operation:
    """A GET answering JSON: ``answers`` maps a status to its description and model."""

    def build(_method: str, _callback: dict[str, Any]) -> dict[str, Any]:
        responses = {
            status: {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": REF + model.__name__}}},
            }
            for status, (description, model) in answers.items()
        }
        return {"operationId": operation_id, "summary": summary, "responses": responses}

    return Operation(summary, build)


OPERATIONS: dict[Callable[..., Any], Operation] = {
    handlers.handle_callback: Operation("A Catapult v1 message callback", _callback_operation),
    operations.healthz: _json_operation(
        "getHealth",
        "Liveness, for a load balancer in front of the callback port (readiness and metrics are "
        "on the operations port)",
        {"200": ("Serving", Health)},
    ),
}


def documented_settings() -> Settings:
    """Settings whose app has every route: Basic credentials and a path token."""
    return load_settings(
        receiver={"username": "catapult", "password": "documented", "path_token": "documented"}
    )


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """The document of the receiver app ``settings`` build (every route by default)."""
    return describe(create_receiver_app(settings or documented_settings()))


def describe(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s routes; ``LookupError`` for a route not described."""
    callback = _callback_schema()
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        if route.method == hdrs.METH_HEAD:
            continue  # aiohttp answers HEAD on every GET route by itself
        resource = route.resource
        assert resource is not None
        operation = OPERATIONS.get(route.handler)
        if operation is None:
            raise LookupError(
                f"{route.method} {resource.canonical} is served but not described in "
                "bridge/receiver/openapi.py"
            )
        path = paths.setdefault(resource.canonical, {})
        built = operation.build(route.method, callback)
        if "{token}" in resource.canonical:
            built["operationId"] += "WithPathToken"
            built["parameters"] = [
                {
                    "name": "token",
                    "in": "path",
                    "required": True,
                    "description": "The secret path token (receiver.path_token), when set",
                    "schema": {"type": "string"},
                },
                *built.get("parameters", []),
            ]
        path[route.method.lower()] = built
    schemas: dict[str, Any] = {"MessageCallback": callback}
    for model in MODELS:
        schema = model.model_json_schema(ref_template=REF + "{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "catapult-bridge receiver",
            "version": version("catapult-bridge"),
            "description": "The callback port: Catapult v1 message callbacks in, CloudEvents on "
            "RabbitMQ out, and liveness. Generated from the code by `bridge schemas`.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"}},
        },
    }


def render_openapi(settings: Settings | None = None) -> str:
    return (
        json.dumps(openapi_document(settings), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )
