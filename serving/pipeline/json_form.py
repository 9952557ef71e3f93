"""Paddle Serving's JSON request form, `{"key": [...], "value": [...], "logid": ...}`, read
the way its Go gateway reads it (unknown fields ignored, an int64 `logid` as number or string).

A body's JSON is pre-scanned at C speed so that no body can make json.loads allocate more than
MAX_JSON_SEPARATORS values.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.pipeline.proto import pipeline_service_pb2  # noqa: E402

from serving.core.errors import InvalidInputError  # noqa: E402
from serving.pipeline.http_base import RequestRejected  # noqa: E402

# Bytes of JSON syntax allowed around the values (key names, quotes, commas, logid, spaces)
# on top of protocol.max_request_bytes.
JSON_ENVELOPE_ALLOWANCE_BYTES = 64 * 1024
# Upper bound on the JSON values of a body: ',' '[' '{' counted in its bytes (a value after the
# first of a container needs a ',', a container a bracket). The JSON form needs a dozen; base64
# holds none of these bytes, so counting them costs a pass at C speed and nothing per value.
MAX_JSON_SEPARATORS = 10_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT64_TEXT = re.compile(r"-?[0-9]{1,19}")
# A JSON escape of a UTF-16 surrogate: only then can a parsed string hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def max_body_bytes(max_request_chars: int) -> int:
    """The largest body read for a request whose values may hold `max_request_chars` characters
    (protocol.max_request_bytes): those values plus the JSON around them. Past it, the body is
    refused unread (413), so an oversized upload costs neither the memory nor the time to
    receive it."""
    return max_request_chars + JSON_ENVELOPE_ALLOWANCE_BYTES


def _rejected(message: str) -> RequestRejected:
    return RequestRejected(HTTPStatus.BAD_REQUEST, InvalidInputError.CODE,
                           f"request body: {message}")


@dataclass
class ParsedBody:
    """A Request from the JSON form, and how many Paddle Serving `tensors` it listed (they are
    counted, never built: this service refuses them)."""

    request: Any
    tensor_count: int = 0


def _string_list(document: dict[str, Any], name: str, check_text: bool) -> list[str]:
    value = document.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _rejected(f"{name!r} must be a list of strings")
    if check_text:
        for item in value:
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _rejected(f"{name!r} holds a lone UTF-16 surrogate escape (such as "
                                f"\\ud800); send valid Unicode text") from None
    return value


def _logid(document: dict[str, Any]) -> int:
    """An int64, as a JSON number or a string of digits (protobuf's JSON form of int64)."""
    value = document.get("logid")
    if value is None:
        return 0
    if isinstance(value, str) and _INT64_TEXT.fullmatch(value):
        value = int(value)
    if (isinstance(value, bool) or not isinstance(value, int)
            or not _INT64_MIN <= value <= _INT64_MAX):
        raise _rejected("'logid' must be a 64-bit integer")
    return value


def _check_json_size(body: bytes) -> None:
    """Refuses a body that would make json.loads allocate more than MAX_JSON_SEPARATORS values,
    before it is parsed (a 4 MB body of empty objects is a million of them)."""
    separators = body.count(b",") + body.count(b"[") + body.count(b"{")
    if separators > MAX_JSON_SEPARATORS:
        raise _rejected(f"{separators} JSON separators (',' '[' '{{') exceed the limit of "
                        f"{MAX_JSON_SEPARATORS}; the JSON form needs a few: send 'key' and "
                        f"'value' lists of strings")


def _load_json(body: bytes) -> dict[str, Any]:
    _check_json_size(body)
    try:
        document = json.loads(body)
    except UnicodeDecodeError:
        raise _rejected("not UTF-8 text; send JSON") from None
    except RecursionError:
        raise _rejected("JSON nested too deeply; send a flat object with 'key' and 'value' "
                        "lists") from None
    except ValueError as exc:
        raise _rejected(f"not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise _rejected(f"a JSON object with 'key' and 'value' lists expected, got "
                        f"{type(document).__name__}")
    return document


def parse_request_body(body: bytes) -> ParsedBody:
    """A Paddle Serving Request from the JSON request body, with the Go gateway's rules: an
    empty body is an empty request, unknown fields are ignored, `logid` may be a number or a
    string. Anything else that is not the JSON form is refused with a message naming the problem.

    Written out rather than protobuf's json_format.ParseDict, which is many times slower than
    json.loads on the long base64 string of an upload."""
    request = pipeline_service_pb2.Request()
    if not body.strip():
        return ParsedBody(request)
    document = _load_json(body)
    check_text = _SURROGATE_ESCAPE.search(body) is not None  # protobuf refuses lone surrogates
    request.key.extend(_string_list(document, "key", check_text))
    request.value.extend(_string_list(document, "value", check_text))
    request.logid = _logid(document)
    tensors = document.get("tensors")
    if tensors is None:
        tensors = []
    if not isinstance(tensors, list):
        raise _rejected("'tensors' must be a list")
    return ParsedBody(request, tensor_count=len(tensors))
