"""The client's typed requests and results: wire names, tolerance when reading, secrets kept."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from bridge.catapult.errors import BadRequestError
from bridge.catapult.models import (
    Application,
    ApplicationFields,
    BatchItem,
    DashboardCredentials,
    ImportNumberRequest,
    Message,
    MessageRef,
    OutboundMessage,
    PhoneNumber,
)


def test_outbound_message_speaks_camel_case_and_leaves_unset_fields_out() -> None:
    message = OutboundMessage(
        from_="+19195550100",
        to="+19195550101",
        text="hi",
        media=("https://m/1.png",),
        receipt_requested="all",
        callback_url="https://cb",
        callback_http_method="GET",
        callback_timeout=2000,
        fallback_url="https://fb",
        tag="cbr1:x",
    )
    assert message.to_wire() == {
        "from": "+19195550100",
        "to": "+19195550101",
        "text": "hi",
        "media": ["https://m/1.png"],
        "receiptRequested": "all",
        "callbackUrl": "https://cb",
        "callbackHttpMethod": "GET",
        "callbackTimeout": 2000,
        "fallbackUrl": "https://fb",
        "tag": "cbr1:x",
    }
    assert OutboundMessage(from_="+1", to="+2", text="t").to_wire() == {
        "from": "+1",
        "to": "+2",
        "text": "t",
    }
    by_alias = OutboundMessage.model_validate(
        {"from": "+1", "to": "+2", "receiptRequested": "none"}
    )
    assert by_alias.from_ == "+1"
    assert by_alias.receipt_requested == "none"


@pytest.mark.parametrize(
    "fields",
    [
        {"callback_timeout": 10_001},
        {"callback_timeout": 0},
        {"callback_http_method": "PUT"},
        {"receipt_requested": "some"},
        {"unknown": 1},
    ],
)
def test_outbound_message_refuses_what_catapult_cannot_take(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OutboundMessage.model_validate({"from": "+1", "to": "+2", "text": "t", **fields})


def test_outbound_message_is_frozen() -> None:
    message = OutboundMessage(from_="+1", to="+2", text="t")
    with pytest.raises(ValidationError):
        message.text = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "field", "expected"),
    [
        ({"deliveryCode": "0"}, "delivery_code", 0),
        ({"deliveryCode": 720}, "delivery_code", 720),
        ({"deliveryCode": ""}, "delivery_code", None),
        ({"deliveryCode": None}, "delivery_code", None),
        ({"callbackTimeout": "2000"}, "callback_timeout", 2000),
        ({"segmentCount": 1}, "segment_count", 1),
        ({"media": None}, "media", ()),
        ({"media": "https://m/1"}, "media", ("https://m/1",)),
        ({"media": ["a", "b"]}, "media", ("a", "b")),
        ({"skipMMSCarrierValidation": False, "messageId": "m-1"}, "id", "m-1"),
    ],
)
def test_message_reading_is_tolerant(raw: dict[str, Any], field: str, expected: Any) -> None:
    message = Message.model_validate({"id": "m-1", "from": "+1", "to": "+2", **raw})
    assert getattr(message, field) == expected


def test_message_from_the_2015_capture() -> None:
    message = Message.model_validate_json(
        b"""{"direction": "out", "from": "+14155791234", "id": "m-lkb6bomtaz7z2rauff3h6by",
        "messageId": "m-lkb6bomtaz7z2rauff3h6by", "state": "sent", "text": "Test duder",
        "media": [], "time": "2015-09-14T21:32:25Z", "to": "+19713131234",
        "skipMMSCarrierValidation": false, "receiptRequested": "all",
        "deliveryState": "delivered", "deliveryCode": "0",
        "deliveryDescription": "Message delivered to carrier"}"""
    )
    assert message.from_ == "+14155791234"
    assert message.delivery_state == "delivered"
    assert message.delivery_code == 0
    assert message.time is not None
    assert message.time.year == 2015


def test_phone_number_and_application_read_camel_case() -> None:
    number = PhoneNumber.model_validate(
        {
            "id": "n-1",
            "number": "+19195550100",
            "nationalNumber": "(919) 555-0100",
            "applicationId": "a-1",
            "numberState": "enabled",
            "price": "0.60",
            "createdTime": "2024-01-01T00:00:00Z",
        }
    )
    assert (number.national_number, number.application_id, number.number_state) == (
        "(919) 555-0100",
        "a-1",
        "enabled",
    )
    app = Application.model_validate(
        {
            "id": "a-1",
            "name": "n",
            "incomingMessageUrl": "https://in",
            "incomingMessageFallbackUrl": "https://fb",
            "callbackHttpMethod": "get",
            "incomingMessageUrlCallbackTimeout": "5000",
            "incomingCallUrl": "https://ignored",
        }
    )
    assert app.incoming_message_url_callback_timeout_ms == 5000
    assert app.callback_http_method == "get"


def test_application_fields_wire_names() -> None:
    fields = ApplicationFields(
        name="n",
        incoming_message_url="https://in",
        incoming_message_fallback_url="https://fb",
        callback_http_method="POST",
        incoming_message_url_callback_timeout_ms=3000,
    )
    assert fields.to_wire() == {
        "name": "n",
        "incomingMessageUrl": "https://in",
        "incomingMessageFallbackUrl": "https://fb",
        "callbackHttpMethod": "POST",
        "incomingMessageUrlCallbackTimeout": 3000,
    }
    assert ApplicationFields(incoming_message_url="https://x").to_wire() == {
        "incomingMessageUrl": "https://x"
    }
    with pytest.raises(ValidationError):
        ApplicationFields(incoming_message_url_callback_timeout_ms=10_001)


def test_import_request_reveals_the_password_only_on_the_wire() -> None:
    request = ImportNumberRequest(
        number="+19195550100",
        application_id="a-1",
        name="tn",
        credentials=DashboardCredentials(
            account_id="9900000", user_name="user", password=SecretStr("catchThatBird")
        ),
    )
    assert "catchThatBird" not in repr(request) + str(request)
    assert "catchThatBird" not in str(request.model_dump())
    assert request.to_wire() == {
        "number": "+19195550100",
        "applicationId": "a-1",
        "name": "tn",
        "provider": {
            "providerName": "bandwidth-dashboard",
            "properties": {"accountId": "9900000", "userName": "user", "password": "catchThatBird"},
        },
    }


def test_batch_item_has_exactly_one_outcome() -> None:
    ref = MessageRef(id="m-1", location="/v1/users/u/messages/m-1")
    assert BatchItem(ref=ref).is_accepted
    assert not BatchItem(error=BadRequestError(message="no")).is_accepted
    with pytest.raises(ValueError, match="exactly one"):
        BatchItem()
    with pytest.raises(ValueError, match="exactly one"):
        BatchItem(ref=ref, error=BadRequestError(message="no"))
