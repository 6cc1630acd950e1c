"""The chaos run's clients: signed-in users booking (contended and free listings, declined cards, transient
failures), retrying with the same Idempotency-Key after a timeout, cancelling queued or pending requests, reading.

Every answer a client got is kept per request (the scoped booking key), so the checker can hold the system to it.
"""
from __future__ import annotations

import datetime as dt
import http.client
import itertools
import json
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlparse

FINAL_HTTP = (201, 402, 409, 422)
CONTENDED_LISTINGS = (1, 2, 3)
FREE_LISTINGS = range(4, 41)
# Tokens by weight: most succeed; declines; a processing error (transient: parked for retry).
TOKENS = (("tok_visa", 70), ("tok_mastercard", 8), ("tok_chargeDeclined", 8), ("tok_insufficientFunds", 6),
          ("tok_processingError", 8))


@dataclass
class Answer:
    method: str  # POST, GET (status URL), DELETE
    http: int | str  # the HTTP status, or the error's name (timeout, connection refused)
    status: str | None = None  # the decision status in the body
    reason: str | None = None
    at: float = 0.0


@dataclass
class Request:
    scoped_key: str
    user_id: int
    body: dict
    answers: list[Answer] = field(default_factory=list)
    cancel_sent: bool = False

    def final_claims(self) -> list[Answer]:
        """Answers that told the client a final decision (201/402/409/422, a final status read, a cancellation)."""
        return [a for a in self.answers
                if (a.method == "POST" and a.http in FINAL_HTTP)
                or (a.method in ("GET", "DELETE") and a.http in (200, 409) and a.status in ("confirmed", "rejected"))]

    def accepted(self) -> bool:
        """The API took it: any answer from the booking path other than an error (202 pending/queued included)."""
        return any(isinstance(a.http, int) and (a.http in FINAL_HTTP or a.http in (200, 202)) for a in self.answers)


class Client:
    """One keep-alive HTTP connection for one signed-in user."""

    def __init__(self, base_url: str, token: str, timeout: float):
        parsed = urlparse(base_url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.token = token
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: dict | None = None, headers: dict | None = None,
             timeout: float | None = None) -> tuple[int | str, dict]:
        data = json.dumps(body).encode() if body is not None else None
        all_headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json", **(headers or {})}
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
            self.conn.timeout = timeout or self.timeout
            if self.conn.sock is not None:
                self.conn.sock.settimeout(self.conn.timeout)
            self.conn.request(method, path, body=data, headers=all_headers)
            response = self.conn.getresponse()
            payload = response.read()
            try:
                parsed = json.loads(payload) if payload else {}
            except ValueError:
                parsed = {}
            return response.status, parsed if isinstance(parsed, dict) else {}
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return ("timeout" if isinstance(exc, socket.timeout | TimeoutError) else type(exc).__name__), {}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Load:
    """`clients` threads, one demo user each, until `stop` is set."""

    def __init__(self, base_url: str, tokens: dict[int, str], seed: int, timeout_s: float = 3.0,
                 attempts: int = 4, day0: dt.date | None = None):
        self.base_url = base_url
        self.tokens = tokens
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.random = random.Random(seed)
        self.stop = threading.Event()
        self.requests: dict[str, Request] = {}
        self.reads: dict[str, int] = {}
        self._lock = threading.Lock()
        self._free_nights = itertools.count()
        self.day0 = day0 or dt.date.today() + dt.timedelta(days=200 + self.random.randint(0, 3000))
        self.threads: list[threading.Thread] = []

    # -- what a client sends ----------------------------------------------------------------------
    def _body(self, rng: random.Random) -> dict:
        token = rng.choices([t for t, _ in TOKENS], weights=[w for _, w in TOKENS])[0]
        if rng.random() < 0.4:  # contended: a few listings, overlapping stays in one fortnight
            listing = rng.choice(CONTENDED_LISTINGS)
            check_in = self.day0 + dt.timedelta(days=rng.randint(0, 12))
            nights = rng.randint(1, 3)
        else:  # free: a night of its own
            n = next(self._free_nights)
            listing = FREE_LISTINGS[n % len(FREE_LISTINGS)]
            check_in = self.day0 + dt.timedelta(days=20 + n // len(FREE_LISTINGS))
            nights = 1
        return {"listing_id": listing, "check_in": check_in.isoformat(),
                "check_out": (check_in + dt.timedelta(days=nights)).isoformat(), "guests": 1, "payment_token": token}

    def _record(self, request: Request, method: str, status: int | str, body: dict) -> None:
        decision = body.get("decision") if isinstance(body.get("decision"), dict) else body
        with self._lock:
            request.answers.append(Answer(method, status, decision.get("status"), decision.get("reason"),
                                          time.time()))

    def _book(self, client: Client, user_id: int, rng: random.Random) -> None:
        key = f"chaos-{uuid.uuid4().hex[:16]}"
        request = Request(f"{user_id}.{key}", user_id, self._body(rng))
        with self._lock:
            self.requests[request.scoped_key] = request
        cancel = rng.random() < 0.08
        for attempt in range(self.attempts):
            # A client that means to cancel gives up waiting quickly (its request is most likely still pending).
            timeout = 0.3 if cancel and attempt == 0 else self.timeout_s
            status, body = client.call("POST", "/v1/bookings", request.body, {"Idempotency-Key": key}, timeout)
            self._record(request, "POST", status, body)
            if status == 429 or status == 503:
                time.sleep(0.5)  # the answer's Retry-After is 1 s; clients here are a little impatient
                continue
            if status in FINAL_HTTP or status == 202 or (isinstance(status, int) and status < 500) or cancel:
                break
            time.sleep(0.2)  # a timeout or a broken connection: the same request again, same key
        last = request.answers[-1]
        if cancel and last.http not in FINAL_HTTP:
            request.cancel_sent = True
            status, body = client.call("DELETE", f"/v1/bookings/requests/{request.scoped_key}")
            self._record(request, "DELETE", status, body)
        elif last.http == 202 and rng.random() < 0.5:  # follow the status URL a little, as the web client does
            for _ in range(3):
                time.sleep(0.5)
                status, body = client.call("GET", f"/v1/bookings/requests/{request.scoped_key}")
                self._record(request, "GET", status, body)
                if status == 200 and body.get("status") in ("confirmed", "rejected"):
                    break

    def _read(self, client: Client, user_id: int, rng: random.Random) -> None:
        kind = rng.choice(("search", "availability", "me", "bookings"))
        start = self.day0 + dt.timedelta(days=rng.randint(0, 30))
        path = {
            "search": f"/v1/listings?city=Lisbon&check_in={start}&check_out={start + dt.timedelta(days=2)}&limit=5",
            "availability": f"/v1/listings/{rng.choice(CONTENDED_LISTINGS)}/availability?from={start}"
                            f"&to={start + dt.timedelta(days=7)}",
            "me": "/v1/me",
            "bookings": f"/v1/users/{user_id}/bookings?limit=5",
        }[kind]
        status, _ = client.call("GET", path)
        with self._lock:
            label = f"read {status}"
            self.reads[label] = self.reads.get(label, 0) + 1

    def _client(self, user_id: int, seed: int) -> None:
        rng = random.Random(seed)
        client = Client(self.base_url, self.tokens[user_id], self.timeout_s)
        try:
            while not self.stop.is_set():
                if rng.random() < 0.3:
                    self._read(client, user_id, rng)
                else:
                    self._book(client, user_id, rng)
        finally:
            client.close()

    def start(self) -> None:
        for user_id in sorted(self.tokens):
            thread = threading.Thread(target=self._client, args=(user_id, self.random.randint(0, 1 << 30)),
                                      daemon=True, name=f"chaos-client-{user_id}")
            thread.start()
            self.threads.append(thread)

    def finish(self, timeout: float = 60) -> None:
        self.stop.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))

    def answers_by_kind(self) -> dict[str, int]:
        """Requests by the last answer their client got (reads separately)."""
        counts: dict[str, int] = {}
        with self._lock:
            for request in self.requests.values():
                last = request.answers[-1] if request.answers else None
                label = "unsent" if last is None else (
                    f"{last.method} {last.http}" + (f" {last.status}" if last.status else "")
                    + (f" {last.reason}" if last.reason else ""))
                counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
