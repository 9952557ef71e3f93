"""The REST front end's request parsing (serving.http_frontend.parse_request_body) on its own;
tests/test_bad_inputs.py sends the same bodies to a running service."""
from __future__ import annotations

import json
from http import HTTPStatus

import pytest

from serving.http_frontend import RequestRejected, max_body_bytes, parse_request_body


def test_the_json_form_becomes_a_request() -> None:
    body = json.dumps({"key": ["video", "topk"], "value": ["QUJD", "3"], "logid": 77}).encode()
    request = parse_request_body(body)
    assert (list(request.key), list(request.value), request.logid) == (
        ["video", "topk"], ["QUJD", "3"], 77)


@pytest.mark.parametrize("body, expected", [
    (b"", ([], [], 0)),
    (b"  \n", ([], [], 0)),
    (b"{}", ([], [], 0)),
    (b'{"key": null, "value": null, "logid": null}', ([], [], 0)),
    (b'{"key": ["ping"], "value": [""], "logid": "12", "name": "x", "other": [1]}',
     (["ping"], [""], 12)),
    (b'{"logid": -5}', ([], [], -5)),
])
def test_gateway_rules_empty_body_unknown_fields_and_int64_as_text(body, expected) -> None:
    request = parse_request_body(body)
    assert (list(request.key), list(request.value), request.logid) == expected


def test_tensors_are_counted_for_the_pipeline_to_refuse() -> None:
    assert len(parse_request_body(b'{"tensors": [{"name": "x"}, {}]}').tensors) == 2


@pytest.mark.parametrize("body, message", [
    (b"not json", "request body: not valid JSON"),
    (b'["video"]', "request body: a JSON object with 'key' and 'value' lists expected, got list"),
    (b'"text"', "got str"),
    (b'{"key": "video"}', "request body: 'key' must be a list of strings"),
    (b'{"key": ["video"], "value": [12]}', "request body: 'value' must be a list of strings"),
    (b'{"key": [null]}', "'key' must be a list of strings"),
    (b'{"logid": 1.5}', "request body: 'logid' must be a 64-bit integer"),
    (b'{"logid": true}', "'logid' must be a 64-bit integer"),
    (b'{"logid": "1e3"}', "'logid' must be a 64-bit integer"),
    (b'{"logid": 9223372036854775808}', "'logid' must be a 64-bit integer"),
    (b'{"tensors": {}}', "request body: 'tensors' must be a list"),
    (b'{"key": ""}', "'key' must be a list of strings"),
    (b'{"logid": ""}', "'logid' must be a 64-bit integer"),
])
def test_bodies_that_are_not_the_json_form_are_refused_naming_the_field(body, message) -> None:
    with pytest.raises(RequestRejected) as caught:
        parse_request_body(body)
    assert caught.value.status == HTTPStatus.BAD_REQUEST and caught.value.err_no == 51
    assert message in caught.value.message


def test_body_limit_leaves_room_for_the_pipeline_to_explain_moderate_excess() -> None:
    assert max_body_bytes(1_000) == 2_000
