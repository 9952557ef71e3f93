"""Errors the service reports to its clients, each with a stable numeric code.

Paddle Serving 0.9 forwards an op's "product error" to the client as the response's `err_no`
and `err_msg` and reserves the range 51-99 for them (0 is success, 3000 and above are the
framework's own failures), so our codes live in that range and a client can tell a bad upload
from a broken server:

| code | class                | meaning                                                     |
|------|----------------------|-------------------------------------------------------------|
| 51   | InvalidInputError    | the request is malformed (missing key, bad base64, bad option) |
| 52   | DecodeError          | the payload is not a decodable video                        |
| 53   | LimitExceededError   | the payload is valid but larger than a configured limit     |

Messages are written for the person who sent the request: they name the offending field
("video: ...") and never carry a stack trace.
"""
from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """Base of every error that is reported to a client as (code, message)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _CodedError(ServiceError):
    """A ServiceError whose code is fixed by its class, so raise sites only write the message."""

    CODE: ClassVar[int]

    def __init__(self, message: str) -> None:
        super().__init__(self.CODE, message)


class InvalidInputError(_CodedError):
    """The request itself is malformed."""

    CODE = 51


class DecodeError(_CodedError):
    """The payload cannot be decoded as a video (not a container, no video stream, corrupt)."""

    CODE = 52


class LimitExceededError(_CodedError):
    """The payload exceeds a configured limit; `limit_name` is the configuration key."""

    CODE = 53

    def __init__(self, message: str, *, limit_name: str, limit: float) -> None:
        super().__init__(message)
        self.limit_name = limit_name
        self.limit = limit
