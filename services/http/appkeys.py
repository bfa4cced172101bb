"""Typed keys of the aiohttp application's shared objects."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from eventstore import EventStore
from projections.runner import ProjectionProgress, ProjectionRunner
from services.commands.accounts import AccountService
from services.commands.deletions import Deletions
from services.commands.friends import FriendService
from services.commands.reads import Reads
from services.commands.servers import ServerService
from services.runtime.config import Settings
from services.runtime.supervisor import Supervisor

from .auth import Authenticator
from .errors import DatabaseHealth
from .limits import StreamSlots
from .metrics import Metrics
from .sampler import MetricsSampler

SETTINGS = web.AppKey("settings", Settings)
POOL: web.AppKey[asyncpg.Pool[Any]] = web.AppKey("pool", asyncpg.Pool)
STORE = web.AppKey("store", EventStore)
ACCOUNTS = web.AppKey("accounts", AccountService)
SERVERS = web.AppKey("servers", ServerService)
FRIENDS = web.AppKey("friends", FriendService)
READS = web.AppKey("reads", Reads)
DELETIONS = web.AppKey("deletions", Deletions)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
METRICS = web.AppKey("metrics", Metrics)
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)
RUNNERS: web.AppKey[list[ProjectionRunner]] = web.AppKey("runners", list)
PROGRESS = web.AppKey("progress", ProjectionProgress)
DATABASE_HEALTH = web.AppKey("database_health", DatabaseHealth)
STREAM_SLOTS = web.AppKey("stream_slots", StreamSlots)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
SAMPLER = web.AppKey("sampler", MetricsSampler)
