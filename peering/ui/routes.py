"""Serve the console: `/` and `/ui` redirect to `/ui/`, assets come from a fixed list, every other
`/ui/…` path gets the single page, which routes itself in the browser.

Every answer carries a Content-Security-Policy that allows only this origin (no inline script or
style, no framing), so the pages cannot load or send anything elsewhere.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import RedirectResponse

PREFIX = "/ui"
ASSETS_URL = f"{PREFIX}/assets"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (cheap with the ETag) so an upgrade shows at once
}
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Asset:
    """One static file, read once at start-up."""

    body: bytes
    media_type: str
    etag: str


def _asset(node: Traversable) -> Asset:
    body = node.read_bytes()
    suffix = "." + node.name.rpartition(".")[2]
    media_type = _TYPES.get(suffix) or mimetypes.guess_type(node.name)[0] or "application/octet-stream"
    if media_type == "text/html":
        media_type = "text/html; charset=utf-8"
    return Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def load_assets() -> dict[str, Asset]:
    """Every file under `static/` by its path there (`app.js`, `views/peerings.js`, …)."""
    found: dict[str, Asset] = {}
    pending: list[tuple[str, Traversable]] = [("", files("peering.ui") / "static")]
    while pending:
        prefix, folder = pending.pop()
        for node in folder.iterdir():
            if node.is_dir():
                pending.append((f"{prefix}{node.name}/", node))
            elif not node.name.startswith("."):
                found[prefix + node.name] = _asset(node)
    return found


ASSETS = load_assets()
PAGE = ASSETS["index.html"]


def _send(request: Request, asset: Asset) -> Response:
    headers = {**SECURITY_HEADERS, "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> Response:
    """The console is the front page."""
    return RedirectResponse(f"{PREFIX}/", status_code=307, headers=SECURITY_HEADERS)


@router.get(PREFIX)
async def ui_without_slash() -> Response:
    """`/ui` names the console too (a relative Location: nothing taken from the client's Host)."""
    return RedirectResponse(f"{PREFIX}/", status_code=307, headers=SECURITY_HEADERS)


@router.get(ASSETS_URL + "/{path:path}")
async def asset(request: Request, path: str) -> Response:
    """A file of the console; only the files it ships exist (no path is resolved on disk)."""
    found = ASSETS.get(path)
    if found is None or path == "index.html":
        return Response("404 page not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
    return _send(request, found)


@router.get(PREFIX + "/{page:path}")
async def page(request: Request, page: str) -> Response:
    """The single page for every console address (`/ui/peerings/a`, …): it routes itself."""
    return _send(request, PAGE)


def install(app: FastAPI) -> None:
    """Serve the console on `app`."""
    app.include_router(router)
