"""The users table as the sign-up trigger sees it: one row per email address."""
from __future__ import annotations

from booking_core.adapters.mysql import ConnectionHolder


class MySqlUserAccounts:
    def __init__(self, connections: ConnectionHolder):
        self._connections = connections

    def ensure_user(self, email: str, name: str) -> int:
        with self._connections.transaction() as cur:
            # A name is kept once set. The id is read back: the insert id of an upsert that changed nothing is 0
            # on a table with triggers (users has the change-log ones), even with id=LAST_INSERT_ID(id).
            cur.execute("INSERT INTO users (email, name) VALUES (%s, %s)"
                        " ON DUPLICATE KEY UPDATE name=IF(name='', VALUES(name), name)", (email, name))
            cur.execute("SELECT id FROM users WHERE email=%s", (email,))
            return int(cur.fetchone()["id"])
