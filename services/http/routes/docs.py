"""The browsable API reference at ``/docs``: Swagger UI, vendored from its npm package
(``services/http/static/swagger-ui/VENDORED.md``), reading ``/v1/openapi.json``. Nothing is
fetched from anywhere else; the assets are cached by browsers for a day."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from services.http.endpoints import Context, Declarations

route = Declarations()

STATIC = Path(__file__).resolve().parents[1] / "static"
SWAGGER_UI_VERSION = "5.35.0"
# Path -> (file, content type) of the page's assets.
ASSETS = {
    "/docs/swagger-ui-bundle.js": (
        STATIC / "swagger-ui" / "swagger-ui-bundle.js",
        "text/javascript",
    ),
    "/docs/swagger-ui.css": (STATIC / "swagger-ui" / "swagger-ui.css", "text/css"),
    "/docs/docs.js": (STATIC / "docs.js", "text/javascript"),
}
_CACHED = {"Cache-Control": "public, max-age=86400"}


@route(
    "GET",
    "/docs",
    summary="The API reference, browsable (Swagger UI over this document).",
    operation_id="docs",
    tag="operations",
    responses={200: (None, "An HTML page.")},
    raw_response="text/html",
)
async def docs(ctx: Context[None, None]) -> web.StreamResponse:
    return web.FileResponse(
        STATIC / "docs.html", headers={"Content-Type": "text/html; charset=utf-8", **_CACHED}
    )


async def _asset(request: web.Request) -> web.StreamResponse:
    path, content_type = ASSETS[request.path]
    return web.FileResponse(path, headers={"Content-Type": content_type, **_CACHED})


def add_assets(app: web.Application) -> None:
    """The page's scripts and styles (plain files, not operations of the API)."""
    for path in ASSETS:
        app.router.add_get(path, _asset)
