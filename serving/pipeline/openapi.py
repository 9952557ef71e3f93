"""The OpenAPI 3.1 document the REST front end serves at `GET /openapi.json`: every route, the
three request forms of a prediction, and the schema of every answer, so clients can be
generated and answers checked (tests/pipeline/test_openapi.py validates the document and the
live answers against it)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from serving.pipeline.healthcheck import READY_PATH

LIVE_PATH = "/v2/health/live"
OPENAPI_PATH = "/openapi.json"
PAGE_PATH = "/"

_STRINGS = {"type": "array", "items": {"type": "string"}}
_INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
_BINARY = {"type": "string", "format": "binary"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _schemas(option_keys: Sequence[str]) -> dict[str, Any]:
    answer = {
        "type": "object",
        "description": "Paddle Serving's Response as JSON. err_no 0: `key`/`value` hold the "
                       "result (label, class_id, score, prob, topk, model, timing_ms, "
                       "request_id...); otherwise err_msg names the problem.",
        "required": ["err_no", "err_msg", "key", "value", "tensors"],
        "properties": {"err_no": {"type": "integer"}, "err_msg": {"type": "string"},
                       "key": _STRINGS, "value": _STRINGS,
                       "tensors": {"type": "array", "maxItems": 0}},
    }
    options = {key: {"type": "string"} for key in option_keys}
    return {
        "Answer": answer,
        "KeyValueRequest": {
            "type": "object",
            "description": "Paddle Serving's key/value form: `video` (base64 of the file) or "
                           "`frames` (base64 of raw RGB uint8) + `frames_shape` ('(T, H, W, 3)'),"
                           f" options {', '.join(option_keys)}; or `ping` alone.",
            "properties": {"key": _STRINGS, "value": _STRINGS,
                           "logid": {"oneOf": [_INT64, {"type": "string",
                                                        "pattern": "^-?[0-9]{1,19}$"}]},
                           "tensors": {"type": "array", "maxItems": 0}},
        },
        "MultipartUpload": {
            "type": "object", "required": ["video"],
            "properties": {"video": {**_BINARY, "description": "the video file"}, **options},
            "additionalProperties": False,
        },
        "Live": {"type": "object", "required": ["live"],
                 "properties": {"live": {"const": True}}},
        "Ready": {
            "type": "object", "required": ["ready"],
            "properties": {"ready": {"type": "boolean"},
                           "model": {"type": "object", "required": ["name", "version"],
                                     "properties": {"name": {"type": "string"},
                                                    "version": {"type": "string"}}},
                           "err_no": {"type": "integer"}, "err_msg": {"type": "string"}},
        },
        "Metadata": {
            "type": "object",
            "required": ["name", "version", "num_classes", "classes", "preprocess",
                         "engine", "precision", "limits"],
            "properties": {
                "name": {"type": "string"}, "version": {"type": "string"},
                "architecture": {"type": "string"}, "num_classes": {"type": "integer"},
                "classes": {"type": "array", "items": {
                    "type": "object", "required": ["class_id", "label"],
                    "properties": {"class_id": {"type": "integer"},
                                   "label": {"type": "string"}}}},
                "preprocess": {"type": "object"},
                "sampling_modes": _STRINGS,
                "inference": {"type": "object"},
                "engine": {"type": "string", "enum": ["paddle", "openvino"]},
                "precision": {"type": "string"},
                "limits": {"type": "object",
                           "additionalProperties": {"type": "number"}},
                "exported_at": {"type": "string"},
            },
        },
    }


def _prediction(option_keys: Sequence[str], max_bytes: int) -> dict[str, Any]:
    errors = {
        "400": _json(_ref("Answer"), "Not a request this service reads (err_no 51)."),
        "404": _json(_ref("Answer"), "No such route."),
        "408": _json(_ref("Answer"), "The request did not arrive within "
                                     "http.request_read_timeout_s."),
        "411": _json(_ref("Answer"), "A chunked body; send Content-Length."),
        "413": _json(_ref("Answer"), f"A body over the limit (request_limits.max_bytes = "
                                     f"{max_bytes} bytes of video), refused unread "
                                     "(err_no 53)."),
        "415": _json(_ref("Answer"), "A Content-Type that is none of the three forms."),
        "503": _json(_ref("Answer"), "Busy or stopping (err_no 503); retry after Retry-After."),
    }
    return {"post": {
        "summary": "Classify a video",
        "description": "Three forms, one answer: Paddle Serving's JSON key/value form (base64), "
                       "the file itself as the body (options as query parameters), or "
                       "multipart/form-data (the file in the `video` field). Errors found in "
                       "the request's values (err_no 51-55) are answered with HTTP 200 and "
                       "err_no, as Paddle Serving does.",
        "parameters": [{"name": key, "in": "query", "required": False,
                        "description": "An option of a binary upload",
                        "schema": {"type": "string"}} for key in option_keys],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref("KeyValueRequest")},
            "video/*": {"schema": _BINARY},
            "application/octet-stream": {"schema": _BINARY},
            "multipart/form-data": {"schema": _ref("MultipartUpload")},
        }},
        "responses": {"200": _json(_ref("Answer"), "The answer; err_no 0 on success."),
                      **errors},
    }}


def openapi_document(*, title: str, version: str, prediction_paths: Sequence[str],
                     metadata_path: str, option_keys: Sequence[str],
                     max_bytes: int) -> dict[str, Any]:
    """The document for a front end serving `prediction_paths` and `metadata_path`."""
    paths: dict[str, Any] = {path: _prediction(option_keys, max_bytes)
                             for path in prediction_paths}
    paths[LIVE_PATH] = {"get": {"summary": "Liveness: the front end answers",
                                "responses": {"200": _json(_ref("Live"), "Alive.")}}}
    paths[READY_PATH] = {"get": {
        "summary": "Readiness: model loaded, warm-up done, pipeline answering",
        "responses": {"200": _json(_ref("Ready"), "Ready."),
                      "503": _json(_ref("Ready"), "Not ready; err_msg says why.")}}}
    paths[metadata_path] = {"get": {
        "summary": "The model: classes, preprocessing, precision, limits",
        "responses": {"200": _json(_ref("Metadata"), "The model's metadata.")}}}
    paths[OPENAPI_PATH] = {"get": {
        "summary": "This document",
        "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")}}}
    paths[PAGE_PATH] = {"get": {
        "summary": "A page to try the model in a browser",
        "responses": {"200": {"description": "The page.",
                              "content": {"text/html": {"schema": {"type": "string"}}}},
                      "404": _json(_ref("Answer"), "No page installed.")}}}
    return {"openapi": "3.1.0",
            "info": {"title": title, "version": version,
                     "description": "PP-TSM video classification served by Paddle Serving."},
            "paths": paths,
            "components": {"schemas": _schemas(option_keys)}}
