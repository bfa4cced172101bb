"""Limits on what one caller may hold open at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .auth import Principal
from .errors import ApiError


class StreamSlots:
    """How many long-held requests (long-polls, and later feed streams) each token may have
    open at once. One server or app needs one or two; a token holding hundreds is a bug or an
    attack, and each costs the process memory and a connection."""

    def __init__(self, per_token: int) -> None:
        self.per_token = per_token
        self._held: dict[Principal, int] = {}

    def held(self, principal: Principal) -> int:
        return self._held.get(principal, 0)

    @contextlib.contextmanager
    def hold(self, principal: Principal) -> Iterator[None]:
        """A slot for the request's lifetime; 429 ``rate_limited`` when the token has none."""
        held = self._held.get(principal, 0)
        if held >= self.per_token:
            raise ApiError(
                429,
                "rate_limited",
                f"this token already holds {held} long-polls or streams open (at most "
                f"{self.per_token}); wait for one to end",
                headers={"Retry-After": "1"},
            )
        self._held[principal] = held + 1
        try:
            yield
        finally:
            if self._held[principal] == 1:
                del self._held[principal]
            else:
                self._held[principal] -= 1
