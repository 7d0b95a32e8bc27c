"""The docs pages, `/docs` (Swagger UI) and `/redoc`, with assets served by the service itself.

The assets come from the `fastapi-offline` package's bundled files, so the pages work with no internet.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/docs/static"
ASSETS = Path(str(files("fastapi_offline") / "static"))

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    """Swagger UI for `/openapi.json`."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="peering API",
        swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
        swagger_favicon_url=f"{STATIC_URL}/favicon.png",
    )


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    """ReDoc for `/openapi.json` (without web fonts, which would come from the internet)."""
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="peering API",
        redoc_js_url=f"{STATIC_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{STATIC_URL}/favicon.png",
        with_google_fonts=False,
    )


def install(app: FastAPI) -> None:
    """Serve the docs pages and their assets."""
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=ASSETS), name="docs-static")
