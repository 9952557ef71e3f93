"""Reading facts straight from exported Paddle program files, without building a predictor: the
one reader of program files (the predictor, the importer and the ONNX exporter all use it).

Paddle Inference reports neither the declared input shape (only what was last fed) nor op
attributes nor the op types, yet the importer needs the first, the ONNX exporter the second and
the predictor the third (to keep oneDNN off the ops it runs slowly). Both formats are
plain data: the legacy `.pdmodel` is a `ProgramDesc` protobuf, the PIR `.json` a JSON tree whose
operations are objects `{"#": "1.<op name>", "A": [{"N": attr name, "AT": {"D": value}}, ...]}`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object of a parsed tree, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def pir_op_attributes(program: Path, op_name: str) -> list[dict[str, Any]]:
    """{attribute name: value} of every operation `op_name` (e.g. "data", "leaky_relu") of a PIR
    JSON program, in program order."""
    tag = f"1.{op_name}"
    return [{attr.get("N"): attr.get("AT", {}).get("D") for attr in op.get("A", [])}
            for op in _objects(json.loads(program.read_text(encoding="utf-8")))
            if op.get("#") == tag]


def legacy_program(program: Path) -> Any:
    """The `ProgramDesc` message of a legacy `.pdmodel` file."""
    from paddle.base.proto import framework_pb2

    return framework_pb2.ProgramDesc.FromString(program.read_bytes())


def legacy_op_types(program: Path) -> frozenset[str]:
    """The operator types of a legacy `.pdmodel` program (feed and fetch left out)."""
    desc = legacy_program(program)
    return frozenset(op.type for block in desc.blocks for op in block.ops) - {"feed", "fetch"}
