"""Layers point one way (house style rule 1), checked by walking every module's imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "peering"

# module -> layer; a module may import only from layers with a lower or equal number,
# and adapters (layer 2) not from each other
LAYERS = {
    "errors": 1,
    "domain": 1,
    "rules": 1,
    "acl_model": 1,
    "acl_input": 1,
    "hcl": 1,
    "notifier": 2,
    "locks": 2,
    "leadership": 2,
    "tokens": 2,
    "identity": 2,
    "store": 2,
    "settings": 2,
    "logs": 2,
    "tracker": 2,
    "peer_client": 2,
    "metrics": 2,
    "acl_rules": 2,
    "cluster": 3,
    "outbound": 3,
    "inbound": 3,
    "establishing": 3,
    "service": 3,
    "links": 3,
    "acl": 3,
    "acl_caller": 3,
    "acl_cache": 3,
    "api": 4,
    "ui": 4,
    "app": 5,
    "replica": 5,
    "server": 6,
    "cli": 7,
    # packages whose modules sit on different layers: the longest dotted name wins
    "catalog": 3,  # the catalog's services (TTL timers, registrations, reads)
    "catalog.model": 1,  # nodes, instances, checks, status precedence: pure
    "catalog.exports": 1,  # the exported-services entry and what each peer receives: pure
    "peer": 3,  # replication over the peer port: wire messages, exporter, importer, links
}
ADAPTERS = {name for name, layer in LAYERS.items() if layer == 2}
# third-party packages a layer may not import
FORBIDDEN = {
    1: {"fastapi", "starlette", "pydantic", "httpx", "aiosqlite", "sqlite3", "cryptography", "uvicorn", "asyncpg"},
    3: {"fastapi", "starlette", "httpx", "aiosqlite", "sqlite3", "uvicorn", "asyncpg"},
    4: {"aiosqlite", "sqlite3", "httpx", "cryptography", "asyncpg"},
    2: {"fastapi", "starlette", "uvicorn"},
}


def _layer_key(dotted: str) -> str:
    """The LAYERS key of a module given as a dotted name under `peering` (`catalog.model`, `store.sqlite`)."""
    parts = dotted.split(".")
    for size in range(len(parts), 0, -1):
        key = ".".join(parts[:size])
        if key in LAYERS:
            return key
    return parts[0]


def _top(module: Path) -> str:
    parts = list(module.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return _layer_key(".".join(parts))


def _imports(module: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "peering":
                found.update(f"peering.{alias.name}" for alias in node.names)
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _top(p) in LAYERS)


def test_every_module_has_a_layer() -> None:
    tops = {_top(p) for p in PACKAGE.rglob("*.py")} - {"__init__", "__main__"}
    assert tops <= set(LAYERS)


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(module: Path) -> None:
    own = _top(module)
    for imported in _imports(module):
        root = imported.split(".")[0]
        if root == "peering" and imported.count(".") >= 1:
            target = _layer_key(imported.split(".", 1)[1])
            if target in ("__init__", "__version__") or target == own or target.split(".")[0] == own:
                continue
            assert LAYERS[target] <= LAYERS[own], f"{own} imports {target}"
            assert not (own in ADAPTERS and target in ADAPTERS), f"adapter {own} imports adapter {target}"
        assert root not in FORBIDDEN.get(LAYERS[own], set()), f"{own} imports {root}"


def test_modules_stay_small() -> None:
    for module in PACKAGE.rglob("*.py"):
        assert len(module.read_text().splitlines()) <= 400, module


def test_only_the_store_talks_to_postgresql() -> None:
    """asyncpg (and its types) stay inside the store package, whatever the layer (SPEC §12)."""
    for module in MODULES:
        if _top(module).split(".")[0] != "store":
            assert not any(name.split(".")[0] == "asyncpg" for name in _imports(module)), module


def test_the_api_reaches_storage_only_through_the_services() -> None:
    """Routes call services; the storage seam (`peering.store`) is theirs, never the web layer's (issue 13)."""
    for module in MODULES:
        if _top(module).split(".")[0] in ("api", "ui"):
            imported = _imports(module)
            assert not any(name == "peering.store" or name.startswith("peering.store.") for name in imported), module


def test_a_sqlite_process_loads_nothing_of_postgresql() -> None:
    """The server and the CLI with SQLite import neither asyncpg nor the PostgreSQL store (they are imported
    when a URL names PostgreSQL), nor httpx's own command line (rich, pygments): RSS is for what runs."""
    probe = (
        "import sys, peering.app, peering.server.listeners, peering.cli.serve, peering.cli.commands; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('asyncpg', 'rich', 'pygments') "
        "or m.startswith('peering.store.postgres')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout
