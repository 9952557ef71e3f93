"""The dependency direction of the layout (README, "The pieces"), read from every module's
imports with `ast`, so a wrong import fails the build before it ships:

* serving.core imports nothing of ours outside itself, and no Paddle Serving module but the
  generated model-config message the model-folder writer fills in;
* nothing under serving/ imports train (the serving image ships without it);
* serving.pipeline does not import serving.tools (the tools sit on top of both);
* train imports only serving.core from serving;
* client/ imports nothing of the project (it is what users copy).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ALLOWED_SERVING_IMPORT_IN_CORE = "paddle_serving_server.proto.general_model_config_pb2"


def _imports(path: Path) -> list[str]:
    """Every module `path` imports, at any depth (lazy imports inside functions included)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _under(name: str, *packages: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def _violations(folder: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sorted((REPO_ROOT / folder).rglob("*.py")):
        for name in _imports(path):
            if _under(name, *forbidden) and not _under(name, *allowed):
                found.append(f"{path.relative_to(REPO_ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("folder, forbidden, allowed", [
    ("serving/core", ("serving.pipeline", "serving.tools", "train", "tests", "bench",
                      "paddle_serving_server", "paddle_serving_client", "paddle_serving_app"),
     (ALLOWED_SERVING_IMPORT_IN_CORE,)),
    ("serving", ("train", "tests", "bench"), ()),
    ("serving/pipeline", ("serving.tools",), ()),
    ("train", ("serving.pipeline", "serving.tools", "tests", "bench"), ()),
    ("client", ("serving", "train", "tests", "bench"), ()),
], ids=["core", "serving", "pipeline", "train", "client"])
def test_imports_point_one_way(folder: str, forbidden: tuple[str, ...],
                               allowed: tuple[str, ...]) -> None:
    assert _violations(folder, forbidden, allowed) == []


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    """The walker finds lazy imports too; a module written to break the rule is caught."""
    module = tmp_path / "wrong.py"
    module.write_text("def late():\n    from serving.pipeline import ops\n")
    assert "serving.pipeline.ops" in _imports(module)
