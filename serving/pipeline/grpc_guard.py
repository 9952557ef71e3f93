"""The gRPC request deserializer: refuses what this service cannot accept before protobuf parses
the message.

Why not parse first and check after (as the REST side's envelope check does): protobuf builds
every entry of a repeated field, so a 4 MB message of 10^6 empty `tensors` entries becomes 10^6
message objects (hundreds of MB) before any check can run, and a 100 MB `name` is copied into a
string that Paddle Serving's servicer logs in full. So the message's top level is walked first,
tag by tag, reading only tags, varints and lengths (nothing nested is parsed, no value is
copied), and a message is refused unparsed when it has:

* any `tensors` entry (Paddle Serving's tensor form, which the stock request op unpickles),
* more `key` or `value` entries than MAX_ENTRIES (the protocol has seven keys at most),
* a `name` longer than MAX_NAME_BYTES (the service's name is a few characters),
* a field number the Request message does not have, or a malformed encoding.

protobuf has no public API that scans a message without building it, hence this small walker of
the wire format (https://protobuf.dev/programming-guides/encoding/). The walk stops at the first
problem and visits at most MAX_FIELDS fields, so its cost is bounded whatever the message holds.
A refusal is not a gRPC failure: the deserializer returns a RefusedRequest, which the servicer
answers like any other bad request (err_no and a message naming the field).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.pipeline.proto import pipeline_service_pb2  # noqa: E402

from serving.core.errors import CodedError, InvalidInputError  # noqa: E402
from serving.pipeline.protocol import tensors_refused  # noqa: E402

# Request field numbers (pipeline_service.proto).
KEY, VALUE, TENSORS, NAME, METHOD, LOGID, CLIENTIP = range(1, 8)
KNOWN_FIELDS = frozenset(range(1, 8))
MAX_ENTRIES = 16
MAX_NAME_BYTES = 128
# key and value entries plus one of each scalar field; a scalar repeated past this is refused.
MAX_FIELDS = 2 * MAX_ENTRIES + 16
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_FIELD_NAMES = {KEY: "key", VALUE: "value", TENSORS: "tensors", NAME: "name", METHOD: "method",
                LOGID: "logid", CLIENTIP: "clientip"}


@dataclass
class RefusedRequest:
    """A request refused before parsing; quacks like a Request for the request observer, which
    gives it a request id of its own (the client's logid is not read: protobuf writes it after
    the fields that get a message refused)."""

    error: CodedError
    logid: int = 0
    key: list[str] = field(default_factory=list)
    value: list[str] = field(default_factory=list)


class _Malformed(Exception):
    """The bytes are not a protobuf message."""


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    """(value, next position) of the varint at `pos`; at most 10 bytes, as protobuf allows."""
    result = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise _Malformed()
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
    raise _Malformed()


def _skip(data: memoryview, pos: int, wire_type: int) -> tuple[int, int]:
    """(length or varint value, position after the field's payload)."""
    if wire_type == _VARINT:
        return _varint(data, pos)
    if wire_type == _LENGTH:
        length, pos = _varint(data, pos)
        if pos + length > len(data):
            raise _Malformed()
        return length, pos + length
    size = {_FIXED64: 8, _FIXED32: 4}.get(wire_type)
    if size is None or pos + size > len(data):
        raise _Malformed()  # groups (3, 4) and unknown wire types
    return size, pos + size


def scan(data: bytes) -> CodedError | None:
    """The first problem of a serialized Request, or None; without parsing it.
    The total size of the values is left to protocol.check_envelope: gRPC's
    max_receive_message_length already bounds the message near that limit."""
    view = memoryview(data)
    counts = dict.fromkeys(KNOWN_FIELDS, 0)
    pos = 0
    try:
        while pos < len(view):
            tag, pos = _varint(view, pos)
            number, wire_type = tag >> 3, tag & 7
            size, pos = _skip(view, pos, wire_type)
            if number not in KNOWN_FIELDS:
                return InvalidInputError(f"request: field number {number} is not part of the "
                                         "PipelineService Request message")
            counts[number] += 1
            problem = _field_problem(number, size, counts)
            if problem is not None:
                return problem
    except _Malformed:
        return InvalidInputError("request: not a valid protobuf Request message")
    return None


def _field_problem(number: int, size: int, counts: dict[int, int]) -> CodedError | None:
    """The problem of one more field `number` of `size` bytes, or None."""
    if number == TENSORS:
        return tensors_refused(None)  # the walk stops at the first one: no count
    if number in (KEY, VALUE) and counts[number] > MAX_ENTRIES:
        return InvalidInputError(f"{_FIELD_NAMES[number]}: more than {MAX_ENTRIES} entries; "
                                 "the protocol has at most 7 keys")
    if number == NAME and size > MAX_NAME_BYTES:
        return InvalidInputError(f"name: {size} bytes exceed the limit of {MAX_NAME_BYTES}; "
                                 "send the service's name or leave it empty")
    if sum(counts.values()) > MAX_FIELDS:
        return InvalidInputError(f"request: more than {MAX_FIELDS} fields")
    return None


def deserialize_request(data: bytes) -> pipeline_service_pb2.Request | RefusedRequest:
    """The gRPC request_deserializer of PipelineService/inference."""
    problem = scan(data)
    if problem is not None:
        return RefusedRequest(problem)
    try:
        return pipeline_service_pb2.Request.FromString(data)
    except (DecodeError, ValueError):  # a string that is not UTF-8 (ValueError: protobuf 3)
        return RefusedRequest(InvalidInputError("request: not a valid protobuf Request message "
                                                "(a string field that is not UTF-8?)"))
