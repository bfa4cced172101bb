"""The endpoints of the API, by resource; each module declares its endpoints on their
handlers. :data:`ENDPOINTS` is all of them, in the order the OpenAPI document lists them."""

from __future__ import annotations

from services.http.endpoints import Endpoint

from . import accounts, admin, docs, friends, meta, servers, state

ENDPOINTS: list[Endpoint] = [
    *meta.route.endpoints,
    *docs.route.endpoints,
    *accounts.route.endpoints,
    *state.route.endpoints,
    *friends.route.endpoints,
    *servers.route.endpoints,
    *admin.route.endpoints,
]
