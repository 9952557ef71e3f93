"""Regenerates Paddle Serving 0.9's `*_pb2.py` modules for the installed protobuf.

Why: the 0.9 wheels ship `_pb2` modules written by protoc 3.x, which build their descriptors
field by field (`_descriptor.FieldDescriptor(...)`). protobuf 4 and later (the upb runtime)
refuse that ("Descriptors cannot be created directly"), so these wheels tied the service to
protobuf 3.20, which runs as pure Python on 3.11 and carries the recursion denial of service
fixed in 4.25.8 / 5.29.5 / 6.31.1. The wheels do not ship their `.proto` sources, but every old
module holds its file's serialized FileDescriptorProto (`serialized_pb=...`): that literal is
read with `ast` (the module is never imported: it cannot be, on the new runtime), handed to the
protoc of grpcio-tools as a descriptor set, and protoc writes the module again for the runtime
it belongs to. Only `_pb2` modules change; the `_pb2_grpc` stubs only call SerializeToString /
FromString and work unchanged. A module already regenerated is left alone, so this is safe to
run again.

Usage: python regen_serving_pb2.py SITE_PACKAGES   (install.sh runs it)
"""
from __future__ import annotations

import ast
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

PACKAGES = ("paddle_serving_server", "paddle_serving_client", "paddle_serving_app")
OLD_STYLE_MARKER = "_descriptor.FieldDescriptor("


def serialized_descriptor(module_source: str) -> bytes:
    """The `serialized_pb=` argument of an old-style module: a bytes literal, or protoc 2's
    `_b('...')` (a str that the module encodes as latin-1)."""
    for node in ast.walk(ast.parse(module_source)):
        if isinstance(node, ast.keyword) and node.arg == "serialized_pb":
            value = node.value
            if isinstance(value, ast.Call) and len(value.args) == 1:
                value = value.args[0]
            literal = ast.literal_eval(value)
            return literal.encode("latin-1") if isinstance(literal, str) else literal
    raise ValueError("no serialized_pb literal found")


def regenerate(module: Path) -> bool:
    """Rewrites one old-style module in place; False when it needs nothing."""
    source = module.read_text(encoding="utf-8")
    if OLD_STYLE_MARKER not in source:
        return False
    proto = descriptor_pb2.FileDescriptorProto.FromString(serialized_descriptor(source))
    with tempfile.TemporaryDirectory() as work:
        descriptor_set = Path(work) / "set.pb"
        descriptor_set.write_bytes(
            descriptor_pb2.FileDescriptorSet(file=[proto]).SerializeToString())
        status = protoc.main(["protoc", f"--descriptor_set_in={descriptor_set}",
                              f"--python_out={work}", proto.name])
        if status != 0:
            raise RuntimeError(f"protoc failed ({status}) on {module}")
        generated = Path(work) / (proto.name[:-len(".proto")] + "_pb2.py")
        module.write_text(generated.read_text(encoding="utf-8"), encoding="utf-8")
    return True


def main(site_packages: str) -> int:
    root = Path(site_packages)
    modules = sorted(path for package in PACKAGES for path in (root / package).rglob("*_pb2.py"))
    if not modules:
        print(f"regen_serving_pb2: no Paddle Serving modules under {root}", file=sys.stderr)
        return 1
    changed = [module for module in modules if regenerate(module)]
    for module in changed:
        for stale in module.parent.glob(f"__pycache__/{module.stem}.*.pyc"):
            stale.unlink()
    print(f"regen_serving_pb2: {len(changed)} of {len(modules)} modules regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
