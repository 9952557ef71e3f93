"""Errors the service reports to its clients, each with a stable numeric code.

Paddle Serving 0.9 forwards an op's "product error" to the client as the response's `err_no`
and `err_msg` and reserves the range 51-99 for them (0 is success, 3000 and above are the
framework's own failures), so our codes live in that range and a client can tell a bad upload
from a broken server:

| code | class                 | outcome        | meaning                                           |
|------|-----------------------|----------------|---------------------------------------------------|
| 51   | InvalidInputError     | invalid_input  | the request is malformed (missing key, bad base64, bad option) |
| 52   | DecodeError           | decode_error   | the payload is not a decodable video              |
| 53   | LimitExceededError    | limit_exceeded | the payload is valid but larger than a configured limit |
| 54   | InternalError         | internal_error | the server failed; the request may be fine (retry later, report it) |
| 55   | DeadlineExceededError | timeout        | a stage took longer than its configured timeout   |

51-53 are the sender's to fix; 54 and 55 are worth a retry. Messages are written for the person
who sent the request: they name the offending field ("video: ...") and never carry a stack
trace. An internal error's message names only the stage and the request id
(`internal_error_message`); its detail goes to the server log. `outcome_of` gives the short
name metrics and request logs group answers by.

Every error this project raises on purpose derives from `PPTSMError`, whose message is written to
be shown as it is: a caller (the service, a command line, the trainer) catches that one class to
tell "refused, and here is why" from a bug. The coded errors above derive from `CodedError`,
and the two that mean "this video cannot be used" (52, 53) from `VideoInputError`, which is what
training catches to skip an unreadable clip.
"""
from __future__ import annotations

from typing import ClassVar


class PPTSMError(Exception):
    """Base of every error this project raises on purpose. The message names the problem for
    the person who reads it (a client, a command-line user, a trainer's log), so handlers print
    it as it is, without a traceback."""


class CodedError(PPTSMError):
    """An error answered to a client as (err_no, message): the code is fixed by the class (the
    table above), so raise sites only write the message, and the pipeline answers any subclass
    the same way."""

    CODE: ClassVar[int]
    OUTCOME: ClassVar[str]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = self.CODE
        self.message = message


class InvalidInputError(CodedError):
    """The request itself is malformed."""

    CODE = 51
    OUTCOME = "invalid_input"


class VideoInputError(CodedError):
    """The upload (a video file, raw frames, or the request that carries them) cannot be used:
    it does not decode, or it is larger than a limit. The sender's to fix; training catches this
    class to skip an unreadable clip."""


class DecodeError(VideoInputError):
    """The payload cannot be decoded as a video (not a container, no video stream, corrupt)."""

    CODE = 52
    OUTCOME = "decode_error"


class LimitExceededError(VideoInputError):
    """The payload exceeds a configured limit; `limit_name` is the configuration key."""

    CODE = 53
    OUTCOME = "limit_exceeded"

    def __init__(self, message: str, *, limit_name: str, limit: float) -> None:
        super().__init__(message)
        self.limit_name = limit_name
        self.limit = limit


class InternalError(CodedError):
    """Something failed inside the server (a bug, a failing inference); not the request's fault."""

    CODE = 54
    OUTCOME = "internal_error"


def internal_error_message(stage: str | None, request_id: object) -> str:
    """What a client learns of a failure inside the server: where it happened and the id to
    report. The exception's text stays in the server log, under that id: it may name temp
    files, paths or Paddle's C++ internals, none of which is the client's business."""
    where = f" in the {stage} stage" if stage else ""
    return f"internal error{where} (request {request_id}); reported in the server log"


class DeadlineExceededError(CodedError):
    """A stage ran past its configured timeout; its answer was abandoned."""

    CODE = 55
    OUTCOME = "timeout"


OK_OUTCOME = "ok"
# err_no (and HTTP status) of a request the service had no room for: stopping, no free pipeline
# slot in time, or too many connections. Worth a retry, like 54 and 55.
UNAVAILABLE_CODE = 503
UNAVAILABLE_OUTCOME = "unavailable"
class BusyError(CodedError):
    """The service has no room for this request now (a bounded resource is taken); a retry
    later may succeed."""

    CODE = UNAVAILABLE_CODE
    OUTCOME = UNAVAILABLE_OUTCOME


# Any other non-zero err_no comes from Paddle Serving itself (3000 and above).
FRAMEWORK_OUTCOME = "framework_error"
_OUTCOMES = {error.CODE: error.OUTCOME for error in (
    InvalidInputError, DecodeError, LimitExceededError, InternalError, DeadlineExceededError)}
_OUTCOMES[UNAVAILABLE_CODE] = UNAVAILABLE_OUTCOME


def outcome_of(err_no: int) -> str:
    """The outcome name of a response's err_no: 'ok', one of the table's outcomes,
    'unavailable' or 'framework_error'."""
    if err_no == 0:
        return OK_OUTCOME
    return _OUTCOMES.get(err_no, FRAMEWORK_OUTCOME)
