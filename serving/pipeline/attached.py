"""A Paddle Serving Request whose payload travels beside it as bytes, within this process.

Paddle Serving's Request holds strings only (`value` is a proto3 `string`), so a video must be
base64 text to fit in one. An upload the REST front end receives as plain bytes (a `video/*`
body, a multipart file) is handed to the same servicer and DAG as an AttachedRequest instead:
the options stay in the Request's key/value lists, the video rides beside it, and
ops.KeyValueRequestOp puts it into the fields the DAG sees. Nothing is encoded or decoded on the
way, and gRPC, which always brings a real Request, is unaffected.
"""
from __future__ import annotations

from typing import Any


class AttachedRequest:
    """`request` (a pipeline_service_pb2.Request of options) plus `attachments` (key -> bytes).
    Reads and writes of the Request's fields (key, value, name, logid...) go to `request`: the
    front end sets its name, the servicer its logid."""

    _OWN = ("request", "attachments")

    def __init__(self, request: Any, attachments: dict[str, bytes]) -> None:
        shared = set(attachments) & set(request.key)
        if shared:
            raise ValueError(f"keys both attached and in the request: {sorted(shared)}")
        self.request = request
        self.attachments = attachments

    def __getattr__(self, name: str) -> Any:
        return getattr(self.request, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.request, name, value)


def request_fields(request: Any) -> tuple[list[str], list[str | bytes]]:
    """All keys and values of a Request or AttachedRequest, attachments last."""
    keys: list[str] = list(request.key)
    values: list[str | bytes] = list(request.value)
    if isinstance(request, AttachedRequest):
        keys.extend(request.attachments)
        values.extend(request.attachments.values())
    return keys, values
