"""HTTP load against the API: keep-alive http.client connections, one per worker thread.

Booking bodies are generated so that requests do not collide unless asked to: request n books listing
n % 40 + 1 for one night in slot n // 40 of a year that is unique to the run (two days per slot), so
every run starts on empty calendar nights and most requests succeed.
"""
from __future__ import annotations

import datetime as dt
import http.client
import json
import threading
import time
from typing import NamedTuple

from bench.auth import headers_for

LISTINGS = 40  # the demo data (infra/seed.py)
USERS = 24


class Connection:
    """One keep-alive HTTP/1.1 connection, reopened after an error."""

    def __init__(self, host: str, port: int, timeout: float = 30):
        self.host, self.port, self.timeout = host, port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self._conn.request(method, path, body, headers or {})
            response = self._conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def run_year() -> int:
    """A pair of calendar years no earlier run used, so stays never overlap an old run's: distinct stays go
    in the first year, contended ones in the second.

    Each run goes two years *earlier* than the last (from 9990 down): the overlap check scans the listing's
    bookings with check_in before the new stay's check_out, so older runs' rows stay out of that scan."""
    from booking_core.adapters.mysql import connect

    conn = connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT YEAR(MIN(check_in)) AS y FROM bookings WHERE check_in >= '2200-01-01'")
            earliest = (cur.fetchone() or {}).get("y")
    finally:
        conn.close()
    return 9990 if earliest is None else int(earliest) - 2


class BookingRequest(NamedTuple):
    """A booking's body and the user it is made for (whose headers the request carries)."""

    user_id: int
    body: bytes


class BookingBodies:
    """Distinct (listing, night) per request across the whole run, or a contended mix on purpose."""

    def __init__(self, year: int | None = None):
        self.start = dt.date(year or run_year(), 1, 1)
        self._next = 0
        self._lock = threading.Lock()

    def _take(self, count: int = 1) -> int:
        with self._lock:
            n = self._next
            self._next += count
            return n

    def distinct(self, _n: int | None = None) -> BookingRequest:
        n = self._take()
        check_in = self.start + dt.timedelta(days=2 * (n // LISTINGS))
        return self._body(n % LISTINGS + 1, n % USERS + 1, check_in, 1)

    def contended(self, n: int, listings: int = 4, group: int = 32) -> BookingRequest:
        """`group` consecutive requests ask for the same 2 nights on `listings` listings: one wins per listing.

        Contended stays are in the year after the distinct ones."""
        check_in = self.start.replace(year=self.start.year + 1) + dt.timedelta(days=3 * (n // group))
        return self._body(n % listings + 1, n % USERS + 1, check_in, 2)

    @staticmethod
    def _body(listing: int, user: int, check_in: dt.date, nights: int) -> BookingRequest:
        return BookingRequest(user, json.dumps({
            "user_id": user, "listing_id": listing, "check_in": check_in.isoformat(),
            "check_out": (check_in + dt.timedelta(days=nights)).isoformat(), "guests": 1,
            "payment_token": "tok_visa"}).encode())


JSON = {"Content-Type": "application/json"}


def post_booking(conn: Connection, booking: BookingRequest, samples: list | None = None) -> str:
    """POST one booking as its user; the outcome is the HTTP status (201 confirmed, 409 taken, ...).

    With `samples`, (booking_key, sent, answered) in epoch seconds is appended for the stage breakdown."""
    headers = {**JSON, **headers_for(booking.user_id)}
    sent = time.time()
    status, payload = conn.request("POST", "/v1/bookings", booking.body, headers)
    if samples is not None and status in (201, 409):
        samples.append((json.loads(payload)["booking_key"], sent, time.time()))
    return str(status)


def get(conn: Connection, path: str, user_id: int) -> str:
    """GET `path` as `user_id`; the outcome is the HTTP status."""
    status, _ = conn.request("GET", path, headers=headers_for(user_id))
    return str(status)
