"""The browsable API reference at /docs (issue "Run it for real", item 9): Swagger UI vendored
from its npm package, reading this service's OpenAPI document; nothing from a CDN; the assets
cached by browsers and revalidated cheaply."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

ASSETS = {
    "/docs/swagger-ui-bundle.js": "text/javascript",
    "/docs/swagger-ui.css": "text/css",
    "/docs/docs.js": "text/javascript",
}


async def test_the_reference_page_uses_only_its_own_assets(client: TestClient[Any, Any]) -> None:
    page = await client.get("/docs")
    assert page.status == 200
    assert page.content_type == "text/html"
    html = await page.text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from elsewhere
    linked = set(re.findall(r"(?:src|href)=\"(/docs/[^\"]+)\"", html))
    assert linked == set(ASSETS)
    for path, content_type in ASSETS.items():
        asset = await client.get(path)
        assert asset.status == 200, path
        assert asset.content_type == content_type, path
        assert asset.headers["Cache-Control"] == "public, max-age=86400"
        assert len(await asset.read()) > 0
    script = await (await client.get("/docs/docs.js")).text()
    assert 'url: "/v1/openapi.json"' in script
    bundle = await (await client.get("/docs/swagger-ui-bundle.js")).text()
    assert "SwaggerUIBundle" in bundle


async def test_an_asset_already_cached_is_not_sent_again(client: TestClient[Any, Any]) -> None:
    first = await client.get("/docs/swagger-ui-bundle.js")
    etag = first.headers["ETag"]
    again = await client.get("/docs/swagger-ui-bundle.js", headers={"If-None-Match": etag})
    assert again.status == 304


async def test_the_page_is_an_open_operation_of_the_document(client: TestClient[Any, Any]) -> None:
    document = await (await client.get("/v1/openapi.json")).json()
    operation = document["paths"]["/docs"]["get"]
    assert "text/html" in operation["responses"]["200"]["content"]
    assert not operation.get("security")
