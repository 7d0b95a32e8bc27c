"""The console's serving side (SPEC §16): addresses, headers, assets, `--no-ui`, packaging, and static
checks of its scripts (only this origin, no inline code, no HTML parsing, only routes the API has).
The console itself runs in a browser in tests/test_ui_browser.py."""

from __future__ import annotations

import posixpath
import re
import tomllib
from collections.abc import AsyncIterator
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

import httpx
import pytest

from peering.app import Runtime, create_app, open_runtime
from peering.cli import main, serve
from peering.settings import Settings
from peering.ui.routes import ASSETS, CSP
from tests.conftest import ADVERTISE

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "peering" / "ui" / "static"
PAGES = [
    "/ui/",
    "/ui/peerings",
    "/ui/peerings/cluster-b",
    "/ui/add-peer?tab=establish",
    "/ui/services",
    "/ui/services?peer=east",
    "/ui/services/web?peer=east",
    "/ui/exports",
    "/ui/settings",
    "/ui/nowhere",
]
pytestmark = pytest.mark.anyio

SCRIPTS = {path: asset.body.decode() for path, asset in ASSETS.items() if path.endswith(".js")}


def _security_headers(response: httpx.Response) -> None:
    assert response.headers["content-security-policy"] == CSP
    assert "default-src 'self'" in CSP
    assert "frame-ancestors 'none'" in CSP
    assert "unsafe-inline" not in CSP
    assert "unsafe-eval" not in CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/", "/ui"])
async def test_the_front_page_and_ui_redirect_to_the_console(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, headers={"Host": "evil.example"})
    assert response.status_code == 307
    assert response.headers["location"] == "/ui/"  # relative: nothing from the client's Host
    _security_headers(response)


@pytest.mark.parametrize("path", PAGES)
async def test_every_console_address_gets_the_single_page(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == ASSETS["index.html"].body
    _security_headers(response)


@pytest.mark.parametrize("path", sorted(set(ASSETS) - {"index.html"}))
async def test_assets_are_served_with_their_type_and_revalidated(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(f"/ui/assets/{path}")
    assert response.status_code == 200
    assert response.content == (STATIC / path).read_bytes()
    expected = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}[PurePosixPath(path).suffix]
    assert response.headers["content-type"].split(";")[0] == expected
    assert response.headers["cache-control"] == "no-cache"
    _security_headers(response)
    again = await client.get(f"/ui/assets/{path}", headers={"If-None-Match": response.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")


@pytest.mark.parametrize(
    "path", ["/ui/assets/nope.js", "/ui/assets/index.html", "/ui/assets/%2e%2e/routes.py", "/ui/assets/..%2Froutes.py"]
)
async def test_only_the_shipped_files_are_assets(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert (response.status_code, response.text) == (404, "404 page not found")
    _security_headers(response)


@pytest.fixture
async def no_ui_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(data_dir=tmp_path / "data", http_addr="127.0.0.1:0", peering_addr="127.0.0.1:0", ui=False)
    runtime: Runtime
    async with open_runtime(settings, advertise_addresses=[ADVERTISE], background=False) as runtime:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


async def test_no_ui_serves_no_console(no_ui_client: httpx.AsyncClient) -> None:
    for path in ["/", "/ui", "/ui/", "/ui/peerings", "/ui/assets/app.js"]:
        response = await no_ui_client.get(path)
        assert (response.status_code, response.text) == (404, "404 page not found"), path
    assert (await no_ui_client.get("/v1/peerings")).json() == []


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, True),
        (["--no-ui"], {}, False),
        (["--ui"], {"PEERING_UI": "false"}, True),
        ([], {"PEERING_UI": "0"}, False),
    ],
)
def test_serve_turns_the_console_on_and_off(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], expected: bool
) -> None:
    seen: list[Settings] = []

    def fake_run(settings: Settings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(serve, "run_cluster", fake_run)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["serve", *argv]) == 0
    assert [s.ui for s in seen] == [expected]


def test_every_static_file_ships_in_the_package() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["peering.ui"]
    files = [p.relative_to(STATIC.parent).as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert files
    assert [f for f in files if not any(fnmatch(f, pattern) for pattern in patterns)] == []
    assert sorted(ASSETS) == sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file())


def test_the_page_loads_only_its_own_files_and_no_inline_code() -> None:
    page = ASSETS["index.html"].body.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []  # no inline script
    assert "<style" not in page
    assert " style=" not in page
    assert re.search(r"\son[a-z]+=", page) is None  # no inline handlers
    for reference in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert reference.startswith(("/ui/", "/docs", "#")), reference


@pytest.mark.parametrize("path", sorted(SCRIPTS))
def test_scripts_build_text_not_html_and_import_only_shipped_modules(path: str) -> None:
    source = SCRIPTS[path]
    for forbidden in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        ".style",
    ):
        assert forbidden not in source, forbidden
    assert re.search(r"https?://", source) is None  # nothing from another origin
    for module in re.findall(r'^import .* from "([^"]+)";$', source, flags=re.MULTILINE):
        assert posixpath.normpath(posixpath.join(posixpath.dirname(path), module)) in ASSETS, module


def test_the_console_calls_only_routes_the_api_has() -> None:
    """The console and the API cannot disagree on addresses: every `/v1/…` it names is in the OpenAPI document."""
    spec = create_app().openapi()["paths"]
    routes = {re.sub(r"\{[^}]+\}", "{}", path): set(operations) for path, operations in spec.items()}
    used: dict[str, set[str]] = {}
    for source in SCRIPTS.values():
        for literal in re.findall(r'[`"](/v1/[^`"?]*)[`"]', source):
            used.setdefault(re.sub(r"\$\{[^}]+\}", "{}", literal), set())
        for method, literal in re.findall(r'request\("(GET|POST|PUT|DELETE)", [`"](/v1/[^`"?]*)[`"]', source):
            used[re.sub(r"\$\{[^}]+\}", "{}", literal)].add(method.lower())
    assert {"/v1/peerings", "/v1/peering/{}", "/v1/peering/token", "/v1/peering/establish", "/v1/peering/check"} <= set(
        used
    )
    # the services and exports screens (SPEC §13, §14)
    assert {
        "/v1/catalog/services",
        "/v1/health/service/{}",
        "/v1/exported-services",
        "/v1/imported-services",
        "/v1/config/{}/{}",
        "/v1/config",
    } <= set(used)
    assert used["/v1/config"] == {"put"}
    for path, methods in used.items():
        assert path in routes, path
        assert methods <= routes[path], (path, methods)
    # peeringPath() is read (blocking) and deleted through
    assert {"get", "delete"} <= routes["/v1/peering/{}"]
