"""The layering rule (style.md, "As the house grows"): wire models belong to no layer above the services.

Nothing below the HTTP layer imports `managed_agents.api`, and the wire models import nothing of the platform but
each other, so a service, the harness or a trigger can be used without the ASGI app.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "managed_agents"
BELOW_THE_API = ("services", "harness", "domain", "wire", "adapters", "sandbox", "mcp_proxy")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _modules(sub: str) -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py"))


@pytest.mark.parametrize("layer", BELOW_THE_API)
def test_no_layer_below_the_api_imports_it(layer: str) -> None:
    # Given every module of a layer below the HTTP layer
    modules = _modules(layer)
    assert modules, f"managed_agents/{layer} has no modules"
    # When their imports are read
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in _imports(path) if m.startswith("managed_agents.api"))
        for path in modules
    }
    # Then none reaches up into managed_agents.api
    assert {k: v for k, v in offenders.items() if v} == {}


def test_wire_models_import_only_each_other() -> None:
    # Given the wire package
    for path in _modules("wire"):
        # When its platform imports are read
        platform = {m for m in _imports(path) if m.startswith("managed_agents")}
        # Then they are other wire modules only
        assert all(m.startswith("managed_agents.wire") for m in platform), (path.name, sorted(platform))
