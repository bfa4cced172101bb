"""Typed keys of the aiohttp application's shared objects, and what the app is made of."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from eventstore import EventStore
from projections.runner import ProjectionProgress, ProjectionRunner
from projections.watch import all_projections

from .accounts import AccountService
from .config import Settings
from .errors import DatabaseHealth
from .limits import StreamSlots
from .metrics import Metrics
from .servers import ServerService

# Packages owning tables, in the order their migrations apply.
MIGRATION_PACKAGES = ("eventstore", "projections", "services")
PROJECTION_NAMES = tuple(p.name for p in all_projections())

SETTINGS = web.AppKey("settings", Settings)
POOL: web.AppKey[asyncpg.Pool[Any]] = web.AppKey("pool", asyncpg.Pool)
STORE = web.AppKey("store", EventStore)
ACCOUNTS = web.AppKey("accounts", AccountService)
SERVERS = web.AppKey("servers", ServerService)
METRICS = web.AppKey("metrics", Metrics)
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)
RUNNERS: web.AppKey[list[ProjectionRunner]] = web.AppKey("runners", list)
PROGRESS = web.AppKey("progress", ProjectionProgress)
DATABASE_HEALTH = web.AppKey("database_health", DatabaseHealth)
STREAM_SLOTS = web.AppKey("stream_slots", StreamSlots)
