"""The HTTP API v1: the aiohttp application (:mod:`.app`), endpoint declarations
(:mod:`.endpoints`), routes by resource next to their declarations (:mod:`.routes`), wire
types (:mod:`.wire`), errors — domain errors to problem+json in one table — (:mod:`.errors`),
authentication (:mod:`.auth`), the OpenAPI document (:mod:`.openapi`), metrics
(:mod:`.metrics`) and the guarded HTTP server (:mod:`.httpserver`).

Handlers translate between the wire and :mod:`services.commands`; nothing is decided here.
"""
