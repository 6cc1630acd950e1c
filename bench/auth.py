"""The one place the bench gets per-client request headers (authentication).

Every HTTP request of the bench carries `headers_for(user_id)`, the user being the one the request acts for:
bookings (closed and open loop, ours and the seed design's) and reads (wrk's Lua script and the Python
fallback). Private routes need `Authorization: Bearer <ID token>`: demo user `user_id` (1..24) signs in once per
process against the measured stack's Cognito endpoint (its /config.json says where), before the load starts.
"""
from __future__ import annotations

import functools


def auth_headers(user_id: int) -> dict[str, str]:
    """Headers that let a request act as `user_id`: that demo user's ID token."""
    from infra.local.token import id_token

    return {"Authorization": f"Bearer {id_token(f'user{user_id}@example.com')}"}


@functools.cache
def headers_for(user_id: int) -> dict[str, str]:
    """`auth_headers(user_id)`, asked once per user (a sign-in costs milliseconds: not inside the load)."""
    return dict(auth_headers(user_id))
