"""Plain uploads on the prediction path, beside Paddle Serving's JSON form:

* a `video/*` or `application/octet-stream` body is the video file itself, options as query
  parameters (`?topk=3&mode=dense`);
* a `multipart/form-data` body (what `curl -F video=@clip.mp4 -F topk=3` sends) holds the file
  in its `video` field and options in the others, parsed by python-multipart as it arrives.

Both become an AttachedRequest (serving.pipeline.attached): the options as the Request's
key/value strings, the video as bytes beside them, so the pipeline sees the same fields as for
the JSON form, without base64 on the way. What either form may send is bounded by
request_limits.max_bytes (the caller refuses a larger Content-Length unread); anything that is
not one of these forms is refused with a 4xx that names the problem.
"""
from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from typing import BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field, File, FormParser, parse_options_header

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.pipeline.proto import pipeline_service_pb2  # noqa: E402

from serving.core.errors import InvalidInputError  # noqa: E402
from serving.pipeline.attached import AttachedRequest  # noqa: E402
from serving.pipeline.http_base import RequestRejected  # noqa: E402
from serving.pipeline.json_form import ParsedBody  # noqa: E402
from serving.pipeline.protocol import OPTION_KEYS, OPTIONS_ALLOWANCE_BYTES, quote  # noqa: E402

JSON, BINARY, MULTIPART = "json", "binary", "multipart"
VIDEO_FIELD = "video"
# Content types read as the JSON form: none (PaddleVideo's client sends none), JSON, and
# curl's `-d` default.
JSON_TYPES = ("", "application/json", "application/x-www-form-urlencoded")
# Bytes read from the socket per step of the multipart parser.
READ_CHUNK_BYTES = 1024 * 1024


def _bad(message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> RequestRejected:
    return RequestRejected(status, InvalidInputError.CODE, message)


def body_form(content_type: str | None) -> tuple[str, dict[bytes, bytes]]:
    """(JSON, BINARY or MULTIPART, the header's parameters) for a Content-Type header; any
    other type is refused with 415 listing the accepted ones."""
    media, params = parse_options_header(content_type or "")
    kind = media.decode("latin-1").lower()
    if kind in JSON_TYPES:
        return JSON, params
    if kind == "application/octet-stream" or kind.startswith("video/"):
        return BINARY, params
    if kind == "multipart/form-data":
        return MULTIPART, params
    raise _bad(f"Content-Type: {quote(kind)} is not accepted; send application/json (Paddle "
               f"Serving's key/value form), video/* or application/octet-stream (the file "
               f"itself, options as query parameters) or multipart/form-data (the file in the "
               f"'{VIDEO_FIELD}' field)", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)


def body_limit(form: str, max_bytes: int) -> int:
    """The largest body of a plain upload: the video alone, or with the multipart framing and
    option fields around it."""
    return max_bytes if form == BINARY else max_bytes + OPTIONS_ALLOWANCE_BYTES


def _option(name: str, value: str, options: dict[str, str], where: str) -> None:
    if name not in OPTION_KEYS:
        raise _bad(f"{where} {quote(name)} is not an option; options: {', '.join(OPTION_KEYS)}"
                   + (f" (the file goes in the '{VIDEO_FIELD}' field)" if where == "field" else ""))
    if name in options:
        raise _bad(f"{where} {quote(name)} is sent twice; send each option once")
    options[name] = value


def query_options(query: str) -> dict[str, str]:
    """The options of a binary upload, from its query string (each known option at most once)."""
    options: dict[str, str] = {}
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query),
                                       errors="strict", max_num_fields=len(OPTION_KEYS))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"query string: not name=value pairs of options ({exc})") from None
    for name, value in pairs:
        _option(name, value, options, "query parameter")
    return options


def attached_request(video: bytes, options: dict[str, str]) -> ParsedBody:
    """The request of a plain upload: the options as key/value strings, the video beside them."""
    if not video:
        raise _bad("request body: empty; send the video file")
    request = pipeline_service_pb2.Request(key=list(options), value=list(options.values()))
    return ParsedBody(AttachedRequest(request, {VIDEO_FIELD: video}))


def read_multipart(stream: BinaryIO, length: int, params: dict[bytes, bytes],
                   on_chunk: Callable[[], None] = lambda: None) -> ParsedBody:
    """Parses `length` bytes of multipart/form-data from `stream` as they arrive (`on_chunk`
    runs after each read: the caller checks its deadline there): one `video` file, option fields
    by name. Refuses a missing or repeated file, an unknown field and malformed framing."""
    boundary = params.get(b"boundary")
    if not boundary:
        raise _bad("Content-Type: multipart/form-data without a boundary parameter")
    options: dict[str, str] = {}
    videos: list[bytes] = []

    def on_field(field: Field) -> None:
        name = (field.field_name or b"").decode("utf-8", "replace")
        value = field.value or b""
        if name == VIDEO_FIELD:
            videos.append(value)
            return
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(f"field {quote(name)}: not UTF-8 text") from None
        _option(name, text, options, "field")

    def on_file(file: File) -> None:
        name = (file.field_name or b"").decode("utf-8", "replace")
        if name != VIDEO_FIELD:
            raise _bad(f"field {quote(name)} holds a file; send the video in the "
                       f"'{VIDEO_FIELD}' field")
        file.file_object.seek(0)
        videos.append(file.file_object.read())
        if len(videos) > 1:
            raise _bad(f"field '{VIDEO_FIELD}': {len(videos)} files; send one video per request")

    ended: list[bool] = []
    try:
        parser = FormParser("multipart/form-data", on_field, on_file,
                            on_end=lambda: ended.append(True), boundary=boundary,
                            config={"MAX_MEMORY_FILE_SIZE": float("inf"),
                                    "MAX_BODY_SIZE": length})
        remaining = length
        while remaining > 0:
            chunk = stream.read(min(READ_CHUNK_BYTES, remaining))
            if not chunk:
                raise _bad(f"request body: {length - remaining} of {length} bytes arrived")
            remaining -= len(chunk)
            on_chunk()
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise _bad(f"multipart body: {exc}") from None
    if not ended:
        raise _bad("multipart body: ends before its closing boundary")
    if len(videos) != 1:
        raise _bad(f"multipart body: no '{VIDEO_FIELD}' field; send the file as "
                   f"-F {VIDEO_FIELD}=@clip.mp4" if not videos else
                   f"field '{VIDEO_FIELD}': sent {len(videos)} times; send one video")
    return attached_request(videos[0], options)
