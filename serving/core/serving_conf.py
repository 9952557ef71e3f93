"""Writes Paddle Serving's model description files for an exported model.

Paddle Serving 0.9's own converter (`paddle_serving_client.io.inference_model_to_serving`)
imports `paddle.fluid`, which Paddle 3 no longer has, so the exporter writes
`serving_server/serving_server_conf.prototxt` and `serving_client/serving_client_conf.prototxt`
itself. They are built with the protobuf message class `GeneralModelConfig` and `text_format`
(never string templates) so that they are exactly what Paddle Serving parses, and they keep
the model directory usable by stock Paddle Serving tools (e.g. a brpc `Client`).
"""
from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format

from serving.core.metadata import MetadataError, ModelMeta

SERVER_CONF = Path("serving_server") / "serving_server_conf.prototxt"
CLIENT_CONF = Path("serving_client") / "serving_client_conf.prototxt"
FLOAT32_TYPE = 1  # Paddle Serving's code for float32 in feed_type / fetch_type


def _model_config_class():
    """Imported lazily: the generated module pulls in `paddle_serving_server`'s package init."""
    from paddle_serving_server.proto.general_model_config_pb2 import GeneralModelConfig

    return GeneralModelConfig


def build_model_config(meta: ModelMeta):
    """The `GeneralModelConfig` message for `meta`: one float32 input [T, 3, S, S] and one float32
    output [num_classes]; shapes exclude the batch dimension, as Paddle Serving expects."""
    inference = meta.inference
    if not inference.output_name:
        raise MetadataError("inference.output_name: empty; the exporter must record it before "
                            "the serving confs are written")
    config = _model_config_class()()
    feed = config.feed_var.add()
    feed.name = feed.alias_name = inference.input_name
    feed.is_lod_tensor = False
    feed.feed_type = FLOAT32_TYPE
    feed.shape.extend(int(d) for d in inference.input_shape[1:])
    fetch = config.fetch_var.add()
    fetch.name = fetch.alias_name = inference.output_name
    fetch.is_lod_tensor = False
    fetch.fetch_type = FLOAT32_TYPE
    fetch.shape.extend(int(d) for d in inference.output_shape[1:])
    return config


def write_serving_confs(model_dir: str | Path, meta: ModelMeta) -> tuple[Path, Path]:
    """Writes both prototxt files (identical content, as Paddle Serving's converter does);
    returns (server conf path, client conf path)."""
    text = text_format.MessageToString(build_model_config(meta))
    written = []
    for relative in (SERVER_CONF, CLIENT_CONF):
        path = Path(model_dir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written[0], written[1]

