"""What API Gateway does in front of the Chalice app, locally: the Cognito authorizer and stage throttling.

- Routes the app marks with its `CognitoUserPoolAuthorizer` need `Authorization: Bearer <ID token>`: the token is
  checked as API Gateway's Cognito authorizer checks it (RS256 signature against the pool's JWKS, fetched from the
  local AWS endpoint and cached; `exp`; `iss`; audience = the app client; `token_use` = id). A request without a
  valid token gets 401 before the app sees it; a valid one reaches the app with its claims in
  `requestContext.authorizer.claims`, as on AWS.
- Throttling mirrors the stage's rate and burst (a token bucket; 429 with Retry-After), split across API workers.
- `GET /config.json` answers what a web client needs to sign in (on AWS the deploy writes the same file).
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt
from chalice.app import CognitoUserPoolAuthorizer
from chalice.local import (
    ChaliceRequestHandler,
    LambdaContext,
    LocalGateway,
    LocalGatewayAuthorizer,
    LocalGatewayException,
    NotAuthorizedError,
)

from booking_core import config


@dataclass(frozen=True)
class CognitoSettings:
    """The user pool the stack's local AWS endpoint serves (set by the stack in the API's environment)."""

    endpoint: str
    user_pool_id: str
    client_id: str
    region: str

    @property
    def issuer(self) -> str:
        # Tokens name the AWS-style issuer, also when a local endpoint signs them.
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}"

    @property
    def jwks_url(self) -> str:
        return f"{self.endpoint.rstrip('/')}/{self.user_pool_id}/.well-known/jwks.json"


def cognito_settings() -> CognitoSettings | None:
    """From COGNITO_ENDPOINT, COGNITO_USER_POOL_ID, COGNITO_CLIENT_ID; None when the stack runs without them."""
    endpoint, pool, client = (os.environ.get(n) for n in ("COGNITO_ENDPOINT", "COGNITO_USER_POOL_ID",
                                                          "COGNITO_CLIENT_ID"))
    if not (endpoint and pool and client):
        return None
    return CognitoSettings(endpoint, pool, client, config.aws_region())


def web_config(cognito: CognitoSettings | None) -> dict[str, str]:
    """GET /config.json: where a web client finds the API and signs in."""
    return {
        "apiUrl": os.environ.get("PUBLIC_API_URL") or f"http://127.0.0.1:{config.api_port()}",
        "region": cognito.region if cognito else config.aws_region(),
        "userPoolId": cognito.user_pool_id if cognito else "",
        "userPoolClientId": cognito.client_id if cognito else "",
        "cognitoEndpoint": cognito.endpoint if cognito else "",
    }


class InvalidToken(Exception):
    """Why a bearer token was refused (the message goes to the client, never the token)."""


class TokenVerifier:
    """Checks ID tokens of one user pool; the JWKS is fetched once and again when a token names an unknown key.

    A token's result is cached as API Gateway caches a Cognito authorizer's (keyed by the identity source, the
    Authorization header; `ReauthorizeEvery`, 300 s unless the template sets it): checking one costs ~0.3 ms of
    CPU (PyJWT decodes and validates each base64 segment in Python, twice), more than the rest of a read. Unlike
    API Gateway's cache, an entry never outlives the token's `exp` (+ leeway), so an expired token is refused at
    once. Only valid tokens are cached; a refused one is checked again each time."""

    LEEWAY_S = 5
    CACHE_TTL_S = 300.0
    CACHE_MAX_TOKENS = 10_000

    def __init__(self, cognito: CognitoSettings, clock: Callable[[], float] = time.time):
        self.cognito = cognito
        self._jwks = jwt.PyJWKClient(cognito.jwks_url, cache_keys=True, lifespan=3600, timeout=5)
        self._clock = clock
        # token -> (cached until, its exp, claims); single dict operations, atomic under the GIL across threads
        self._cache: dict[str, tuple[float, float, dict[str, Any]]] = {}

    def claims(self, authorization: str | None) -> dict[str, Any]:
        if not authorization:
            raise InvalidToken("missing Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise InvalidToken("Authorization must be 'Bearer <ID token>'")
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None:
            until, expires, claims = cached
            if now >= expires + self.LEEWAY_S:
                self._cache.pop(token, None)
                raise InvalidToken("the token has expired")
            if now < until:
                return dict(claims)
        claims, expires = self._verified(token)
        if len(self._cache) >= self.CACHE_MAX_TOKENS:
            self._evict(now)
        self._cache[token] = (now + self.CACHE_TTL_S, expires, claims)
        return dict(claims)

    def _verified(self, token: str) -> tuple[dict[str, Any], float]:
        """The token's claims as API Gateway passes them, and its `exp`; InvalidToken when it is not valid here."""
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=["RS256"], audience=self.cognito.client_id,
                issuer=self.cognito.issuer, leeway=self.LEEWAY_S,
                options={"require": ["exp", "iss", "aud", "token_use"]})
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except (jwt.PyJWTError, ValueError) as exc:
            raise InvalidToken(f"the token is not valid here ({type(exc).__name__})") from None
        if claims.get("token_use") != "id":
            raise InvalidToken("an ID token is required")
        # API Gateway hands claims to the function as strings.
        return ({name: value if isinstance(value, str) else json.dumps(value) for name, value in claims.items()},
                float(claims["exp"]))

    def _evict(self, now: float) -> None:
        """Full: drop what has lapsed, and everything when that is not enough (a bound, not an LRU)."""
        for token, (until, expires, _) in list(self._cache.items()):
            if min(until, expires + self.LEEWAY_S) <= now:
                self._cache.pop(token, None)
        if len(self._cache) >= self.CACHE_MAX_TOKENS:
            self._cache.clear()


def _error(exc_type: type[LocalGatewayException], error: str, message: str,
           headers: dict[str, str] | None = None) -> LocalGatewayException:
    body = json.dumps({"error": error, "message": message}).encode()
    return exc_type({"Content-Type": "application/json", **(headers or {})}, body)


class TooManyRequests(LocalGatewayException):
    CODE = 429


class TokenBucket:
    """rate tokens a second, at most `burst` saved up; thread-safe."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._last = burst, clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0 when a request may pass, else the seconds until one may."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate


def throttle_settings() -> tuple[float, float]:
    """The stage's throttling (template Parameters ThrottleRateLimit / ThrottleBurstLimit), locally
    THROTTLE_RATE_LIMIT and THROTTLE_BURST_LIMIT."""
    return (float(os.environ.get("THROTTLE_RATE_LIMIT", "1000")),
            float(os.environ.get("THROTTLE_BURST_LIMIT", "2000")))


class CognitoAuthorizer(LocalGatewayAuthorizer):
    """Chalice's local authorizer decodes Cognito tokens without checking them; this one checks them."""

    def __init__(self, app_object, verifier: TokenVerifier | None):
        super().__init__(app_object)
        self._verifier = verifier

    def authorize(self, raw_path, lambda_event, lambda_context):
        route = self._route_for_event(lambda_event)
        if route is None or not isinstance(route.authorizer, CognitoUserPoolAuthorizer):
            return super().authorize(raw_path, lambda_event, lambda_context)
        if self._verifier is None:
            raise _error(NotAuthorizedError, "unauthorized", "sign-in is not configured on this stack")
        headers = lambda_event.get("headers") or {}
        try:
            claims = self._verifier.claims(headers.get("authorization") or headers.get("Authorization"))
        except InvalidToken as exc:
            raise _error(NotAuthorizedError, "unauthorized", str(exc),
                         {"WWW-Authenticate": 'Bearer realm="booking"'}) from None
        lambda_event["requestContext"]["authorizer"] = {"claims": claims, "principalId": claims.get("sub", "")}
        return lambda_event, lambda_context


class ApiGateway(LocalGateway):
    """Chalice's local gateway with the Cognito authorizer, throttling and /config.json of the stage."""

    def __init__(self, app_object, config_obj, verifier: TokenVerifier | None, bucket: TokenBucket,
                 web_config_body: bytes):
        super().__init__(app_object, config_obj)
        self._authorizer = CognitoAuthorizer(app_object, verifier)
        self._bucket = bucket
        self._web_config_body = web_config_body
        # What Chalice's _generate_lambda_context looks up in its config for every request (three chained
        # lookups, ~3% of a simple read), once per gateway: the config does not change while the server runs.
        timeout_s = config_obj.lambda_timeout
        self._context_args = {"function_name": config_obj.function_name,
                              "memory_size": config_obj.lambda_memory_size,
                              "max_runtime_ms": (self.MAX_LAMBDA_EXECUTION_TIME if timeout_s is None
                                                 else timeout_s) * 1000}

    def _generate_lambda_context(self) -> LambdaContext:
        return LambdaContext(**self._context_args)

    def handle_request(self, method, path, headers, body):
        wait_s = self._bucket.take()
        if wait_s:
            raise _error(TooManyRequests, "too_many_requests", "the API is receiving more requests than it takes;"
                         " retry later", {"Retry-After": str(max(1, round(wait_s + 0.5)))})
        if method == "GET" and path.split("?", 1)[0] == "/config.json":
            return {"statusCode": 200, "headers": {"Content-Type": "application/json", "Cache-Control": "no-cache"},
                    "multiValueHeaders": {}, "body": self._web_config_body}
        return super().handle_request(method, path, headers, body)


def handler_class(base: type[ChaliceRequestHandler] = ChaliceRequestHandler):
    """A request handler class serving through ApiGateway; one verifier and one bucket per process."""
    cognito = cognito_settings()
    verifier = TokenVerifier(cognito) if cognito else None
    workers = max(1, int(os.environ.get("LOCAL_API_WORKERS", "2")))
    rate, burst = throttle_settings()
    bucket = TokenBucket(rate / workers, max(1.0, burst / workers))
    web_config_body = json.dumps(web_config(cognito)).encode()

    class Handler(base):  # type: ignore[misc, valid-type]
        def __init__(self, request, client_address, server, app_object, config):
            self.local_gateway = ApiGateway(app_object, config, verifier, bucket, web_config_body)
            BaseHTTPRequestHandler.__init__(self, request, client_address, server)

        def __getattr__(self, name: str):
            # http.server answers a method without a do_<METHOD> (Chalice's handler has seven; TRACE, QUERY...)
            # with its own 501 HTML page. Every method goes through the gateway instead, so an unrouted one gets
            # the app's JSON 405 naming the allowed methods, as PUT does.
            if name.startswith("do_"):
                return self._generic_handle
            raise AttributeError(name)

    return Handler
