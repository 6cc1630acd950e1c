"""The one place the bench gets per-client request headers (authentication).

Every HTTP request of the bench carries `headers_for(user_id)`, the user being the one the request acts for:
bookings (closed and open loop, ours and the seed design's) and reads (wrk's Lua script and the Python
fallback). No route needs authentication yet, so `auth_headers` returns {}. When one wants
`Authorization: Bearer <token>`, make `auth_headers` return it for demo user `user_id` (1..24): it is called
once per user and process, before the load starts, and its answer is reused for every request of that user.
"""
from __future__ import annotations

import functools


def auth_headers(user_id: int) -> dict[str, str]:
    """Headers that let a request act as `user_id`; {} while no route asks for them."""
    return {}


@functools.cache
def headers_for(user_id: int) -> dict[str, str]:
    """`auth_headers(user_id)`, asked once per user (a sign-in costs milliseconds: not inside the load)."""
    return dict(auth_headers(user_id))
