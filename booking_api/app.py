"""booking_api: the booking API (Chalice). Routes parse, call booking_core, and shape the answer.

POST /v1/bookings is the one write entry point: it publishes the request to Kafka and waits for the decision
in the shared decision store. Every read is served from the Redis read model only.
Deployed as the Lambda handler `app.app` for API Gateway REST proxy events (payload v1).

Private routes carry `authorizer=signed_in`: API Gateway's Cognito authorizer (locally infra/local/gateway.py)
lets only requests with a valid ID token through and hands its claims to the app in
`requestContext.authorizer.claims`; the user is always the token's `custom:user_id`, never the body's. Another
user's profile answers 403; another user's booking or booking request answers 404 (no enumeration).
"""
import functools
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from chalice import Chalice, CognitoUserPoolAuthorizer, Response
from chalice.app import Request
from redis.exceptions import RedisError

from booking_core import bootstrap, config, logs
from booking_core.domain import model
from booking_core.domain.model import ForeignUser, ValidationError, parse_users_booking_request
from booking_core.domain.queries import positive_id
from booking_core.logs import correlated
from booking_core.ports import BrokerUnavailable, DatabaseUnavailable, NotFound, StoreUnavailable
from booking_core.services.submit import (
    AlreadyDecided,
    IdempotencyKeyReused,
    TooManyPending,
    cancel_request,
    request_status,
    submit_booking,
    valid_booking_key,
)

logs.setup("booking_api")
log = logging.getLogger(__name__)

class BookingApi(Chalice):
    """Chalice with the two things this app needs of it beyond routing:

    - every route answers the errors all routes share in one place, wrapped as it is registered (no route can be
      added without it): unknown id → 404, bad input → 400 naming each field, a valid token without a user → 403,
      a store or the broker unreachable → 503 with Retry-After, never a 500 for a dependency problem. (Chalice
      turns any exception a view raises into its own 500 before an http middleware sees it: chalice/app.py,
      RestAPIEventHandler._get_view_function_response; aws/chalice#1884.)
    - the request being served (and its Lambda context) is kept per thread. Chalice keeps them on the app object;
      Lambda runs one request per container at a time, but the local API server runs one per thread, and a request
      arriving while another is still in its view would otherwise hand that view its own body, headers and caller.
    """

    _local = threading.local()

    @property
    def current_request(self) -> Request | None:
        return getattr(self._local, "request", None)

    @current_request.setter
    def current_request(self, request: Request | None) -> None:
        self._local.request = request

    @property
    def lambda_context(self) -> Any:
        return getattr(self._local, "lambda_context", None)

    @lambda_context.setter
    def lambda_context(self, context: Any) -> None:
        self._local.lambda_context = context

    def route(self, path: str, **kwargs: Any) -> Callable[..., Any]:
        register = super().route(path, **kwargs)
        return lambda view: register(_answering_shared_errors(view))


def _answering_shared_errors(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def answered(**kwargs: Any) -> Any:
        try:
            return view(**kwargs)
        except NotFound as exc:
            return _error(404, "not_found", str(exc))
        except ValidationError as exc:
            return _error(400, "invalid_request", "the request has invalid input", exc.errors)
        except NoUserProfile:
            return _forbidden("this account has no user profile yet; confirm the sign-up first")
        except DEPENDENCY_ERRORS as exc:
            log.error("dependency unavailable", extra={"error": repr(exc)})
            return _error(503, "service_unavailable", "a backing service is unavailable; retry later",
                          headers={"Retry-After": "1"})
    return answered


# Chalice's own stdout handler would print its records (and ours, under "booking_api") as plain text without
# their fields; without it they reach the JSON root handler of logs.setup().
app = BookingApi(app_name="booking_api", configure_logs=False)
app.log.setLevel(logging.WARNING)

# The name matches the template's authorizer; the ARN is the template's business (Chalice does not deploy this).
signed_in = CognitoUserPoolAuthorizer("CognitoAuthorizer", provider_arns=[])

STATUS_PATH = "/v1/bookings/requests/{}"
USER_ID_CLAIM = "custom:user_id"


@app.middleware("all")
def lambda_keys_on_every_line(event, get_response):
    """Powertools' request id and cold start on this invocation's log lines (the app object is the handler)."""
    logs.bind_lambda_context(app.lambda_context)
    return get_response(event)


class NoUserProfile(Exception):
    """A valid token whose identity has no MySQL user yet (its sign-up trigger has not stored one)."""


DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (RedisError, StoreUnavailable, DatabaseUnavailable, BrokerUnavailable)


def _error(status: int, error: str, message: str, fields: dict[str, str] | None = None,
           headers: dict[str, str | list[str]] | None = None) -> Response:
    body: dict[str, Any] = {"error": error, "message": message}
    if fields:
        body["fields"] = fields
    return Response(body=body, status_code=status, headers=headers or {})


def _decision_body(decision: model.Decision) -> dict[str, Any]:
    return {**decision.to_dict(), "status_url": STATUS_PATH.format(decision.booking_key)}


def _decision_response(decision: model.Decision, status_code: int | None = None) -> Response:
    body = _decision_body(decision)
    code = status_code or model.http_status_for(decision)
    headers: dict[str, str | list[str]] = {"Location": body["status_url"]} if code == 202 else {}
    return Response(body=body, status_code=code, headers=headers)


def _request() -> Request:
    return cast(Request, app.current_request)  # set by Chalice before it calls a route


def _caller() -> int:
    """The signed-in user: the token's custom:user_id, as the authorizer passed it."""
    claims = ((_request().context or {}).get("authorizer") or {}).get("claims") or {}
    try:
        return positive_id(claims.get(USER_ID_CLAIM, ""), USER_ID_CLAIM)
    except ValidationError:
        raise NoUserProfile() from None


def _forbidden(message: str) -> Response:
    return _error(403, "forbidden", message)


def _json_body(max_bytes: int) -> object:
    raw = _request().raw_body or b""
    if len(raw) > max_bytes:
        raise ValidationError({"body": f"must be at most {max_bytes} bytes"})
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValidationError({"body": "is nested too deeply"}) from None
    except (ValueError, UnicodeDecodeError):
        raise ValidationError({"body": "must be valid JSON"}) from None


@app.route("/v1/bookings", methods=["POST"], content_types=["application/json", "text/plain"],
           authorizer=signed_in)
def create_booking():
    user_id = _caller()
    headers = _request().headers
    try:
        idempotency_key = valid_booking_key(headers.get("idempotency-key"))
        request = parse_users_booking_request(_json_body(config.max_body_bytes()), user_id)
    except ForeignUser:
        return _forbidden("a booking is made for the signed-in user; leave user_id out or name yourself")
    try:
        submission = submit_booking(
            request, idempotency_key,
            store=bootstrap.decision_store(), publisher=bootstrap.publisher(),
            retry_table=bootstrap.retry_table(), requests_topic=config.requests_topic(),
            timeout_s=config.decision_timeout_s(), max_pending=config.max_pending_per_user(),
        )
    except IdempotencyKeyReused:
        return _error(422, model.IDEMPOTENCY_KEY_REUSED,
                      "this Idempotency-Key was already used with a different request body")
    except TooManyPending:
        return _error(429, "too_many_pending", f"at most {config.max_pending_per_user()} booking requests may await"
                      " a decision at once; retry when one is decided", headers={"Retry-After": "2"})
    return _decision_response(submission.decision)


@app.route("/v1/bookings/requests/{booking_key}", methods=["GET"], authorizer=signed_in)
def booking_request_status(booking_key):
    user_id = _caller()
    decision = None
    if model.owner_of_booking_key(booking_key) == user_id:
        decision = request_status(booking_key, bootstrap.decision_store(), bootstrap.request_log())
    if decision is None:
        return _error(404, "not_found", "no booking request of yours with this key")
    return _decision_response(decision, 200)


@app.route("/v1/bookings/requests/{booking_key}", methods=["DELETE"], authorizer=signed_in)
def cancel_booking_request(booking_key):
    decision = None
    try:
        if model.owner_of_booking_key(booking_key) == _caller():
            with correlated(booking_key):
                decision = cancel_request(booking_key, bootstrap.decision_store(), bootstrap.request_log(),
                                          bootstrap.booking_repository())
    except AlreadyDecided as decided:
        return Response(body={"error": "already_decided", "message": "the request was decided already",
                              "decision": _decision_body(decided.decision)}, status_code=409)
    if decision is None:
        return _error(404, "not_found", "no booking request of yours with this key")
    return _decision_response(decision, 200)


# ---- reads (served from the Redis read model only) -------------------------------------------------------


@app.route("/health", methods=["GET"])
def health():
    bootstrap.read_views().ping()
    return {"status": "ok"}


# The API described once (every route, parameter, body and answer); shipped beside this file.
OPENAPI_DOCUMENT = json.loads(Path(__file__).with_name("openapi.json").read_text())


@app.route("/openapi.json", methods=["GET"])
def openapi_document():
    return OPENAPI_DOCUMENT


def _query() -> dict[str, str]:
    return dict(_request().query_params or {})


@app.route("/v1/listings", methods=["GET"])
def search_listings():
    # JSON text (each listing's stored JSON, joined in Redis), sent as it is (as availability below)
    return Response(body=bootstrap.read_views().search_listings_json(_query()))


@app.route("/v1/listings/{listing_id}", methods=["GET"])
def get_listing(listing_id):
    return bootstrap.read_views().get_listing(listing_id)


@app.route("/v1/listings/{listing_id}/availability", methods=["GET"])
def listing_availability(listing_id):
    # JSON text, sent as it is (as user_bookings below)
    return Response(body=bootstrap.read_views().listing_availability_json(listing_id, _query()))


def _own_profile(user_id: str) -> Response | None:
    """403 unless the path names the caller (a user's profile, bookings and payments are theirs alone)."""
    if positive_id(user_id, "user_id") == _caller():
        return None
    return _forbidden("this is another user's data")


@app.route("/v1/me", methods=["GET"], authorizer=signed_in)
def me():
    return bootstrap.read_views().get_user(str(_caller()))


@app.route("/v1/users/{user_id}", methods=["GET"], authorizer=signed_in)
def get_user(user_id):
    return _own_profile(user_id) or bootstrap.read_views().get_user(user_id)


@app.route("/v1/users/{user_id}/bookings", methods=["GET"], authorizer=signed_in)
def user_bookings(user_id):
    # The view answers the page as JSON text (what json.dumps would make of the dict): sent as it is, not
    # re-encoded. Content-Type as every route's: Chalice's default, application/json.
    return _own_profile(user_id) or Response(body=bootstrap.read_views().user_bookings_json(user_id, _query()))


@app.route("/v1/users/{user_id}/payments", methods=["GET"], authorizer=signed_in)
def user_payments(user_id):
    return _own_profile(user_id) or Response(body=bootstrap.read_views().user_payments_json(user_id, _query()))


@app.route("/v1/bookings/{booking_id}", methods=["GET"], authorizer=signed_in)
def get_booking(booking_id):
    booking = bootstrap.read_views().get_booking(booking_id)
    if booking.get("user_id") != _caller():
        raise NotFound(f"no booking with id {booking['id']}")
    return booking
