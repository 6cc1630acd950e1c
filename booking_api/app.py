"""booking_api: the booking API (Chalice). Routes parse, call booking_core, and shape the answer.

POST /v1/bookings is the one write entry point: it publishes the request to Kafka and waits for the decision
in the shared decision store. Every read is served from the Redis read model only.
Deployed as the Lambda handler `app.app` for API Gateway REST proxy events (payload v1).
"""
import json
import logging
from typing import Any, cast

from chalice import Chalice, Response
from chalice.app import Request

from booking_core import bootstrap, config, logs
from booking_core.domain import model
from booking_core.domain.model import ValidationError, parse_booking_request
from booking_core.ports import NotFound
from booking_core.services.submit import IdempotencyKeyReused, submit_booking, valid_booking_key

logs.setup("booking_api")
log = logging.getLogger(__name__)

app = Chalice(app_name="booking_api")
app.log.setLevel(logging.WARNING)

STATUS_PATH = "/v1/bookings/requests/{}"


@app.middleware("all")
def lambda_keys_on_every_line(event, get_response):
    """Powertools' request id and cold start on this invocation's log lines (the app object is the handler)."""
    logs.bind_lambda_context(app.lambda_context)
    return get_response(event)


@app.middleware("http")
def answer_outages_with_503(event, get_response):
    """A store we depend on is down: say so (503, retryable) instead of an opaque 500."""
    from redis.exceptions import RedisError

    from booking_core.ports import DatabaseUnavailable

    try:
        return get_response(event)
    except (RedisError, DatabaseUnavailable) as exc:
        log.error("dependency unavailable", extra={"error": repr(exc)})
        return _error(503, "service_unavailable", "a backing service is unavailable; retry later",
                      headers={"Retry-After": "1"})


def _error(status: int, error: str, message: str, fields: dict[str, str] | None = None,
           headers: dict[str, str | list[str]] | None = None) -> Response:
    body: dict[str, Any] = {"error": error, "message": message}
    if fields:
        body["fields"] = fields
    return Response(body=body, status_code=status, headers=headers or {})


def _decision_response(decision: model.Decision, status_code: int | None = None) -> Response:
    body = decision.to_dict()
    status_url = STATUS_PATH.format(decision.booking_key)
    body["status_url"] = status_url
    code = status_code or model.http_status_for(decision)
    headers: dict[str, str | list[str]] = {"Location": status_url} if code == 202 else {}
    return Response(body=body, status_code=code, headers=headers)


def _request() -> Request:
    return cast(Request, app.current_request)  # set by Chalice before it calls a route


def _json_body(max_bytes: int) -> object:
    raw = _request().raw_body or b""
    if len(raw) > max_bytes:
        raise ValidationError({"body": f"must be at most {max_bytes} bytes"})
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError({"body": "must be valid JSON"}) from None


@app.route("/v1/bookings", methods=["POST"], content_types=["application/json", "text/plain"])
def create_booking():
    headers = _request().headers
    try:
        idempotency_key = valid_booking_key(headers.get("idempotency-key"))
        request = parse_booking_request(_json_body(config.max_body_bytes()))
    except ValidationError as exc:
        return _error(400, "invalid_request", "the request has invalid fields", exc.errors)
    try:
        submission = submit_booking(
            request, idempotency_key,
            store=bootstrap.decision_store(), publisher=bootstrap.publisher(),
            retry_table=bootstrap.retry_table(), requests_topic=config.requests_topic(),
            timeout_s=config.decision_timeout_s(),
        )
    except IdempotencyKeyReused:
        return _error(422, model.IDEMPOTENCY_KEY_REUSED,
                      "this Idempotency-Key was already used with a different request body")
    return _decision_response(submission.decision)


@app.route("/v1/bookings/requests/{booking_key}", methods=["GET"])
def booking_request_status(booking_key):
    decision = bootstrap.decision_store().get(booking_key)
    if decision is None:
        return _error(404, "not_found", f"no booking request with key {booking_key!r}")
    return _decision_response(decision, 200)


# ---- reads (served from the Redis read model only) -------------------------------------------------------


@app.route("/health", methods=["GET"])
def health():
    bootstrap.read_views().ping()
    return {"status": "ok"}


def _read(view, *args):
    """Run a read view: 404 for an unknown id, 400 naming each bad parameter."""
    try:
        return view(*args)
    except NotFound as exc:
        return _error(404, "not_found", str(exc))
    except ValidationError as exc:
        return _error(400, "invalid_request", "the request has invalid parameters", exc.errors)


def _query() -> dict[str, str]:
    return dict(_request().query_params or {})


@app.route("/v1/listings", methods=["GET"])
def search_listings():
    return _read(bootstrap.read_views().search_listings, _query())


@app.route("/v1/listings/{listing_id}", methods=["GET"])
def get_listing(listing_id):
    return _read(bootstrap.read_views().get_listing, listing_id)


@app.route("/v1/listings/{listing_id}/availability", methods=["GET"])
def listing_availability(listing_id):
    return _read(bootstrap.read_views().listing_availability, listing_id, _query())


@app.route("/v1/users/{user_id}", methods=["GET"])
def get_user(user_id):
    return _read(bootstrap.read_views().get_user, user_id)


@app.route("/v1/users/{user_id}/bookings", methods=["GET"])
def user_bookings(user_id):
    return _read(bootstrap.read_views().user_bookings, user_id, _query())


@app.route("/v1/users/{user_id}/payments", methods=["GET"])
def user_payments(user_id):
    return _read(bootstrap.read_views().user_payments, user_id, _query())


@app.route("/v1/bookings/{booking_id}", methods=["GET"])
def get_booking(booking_id):
    return _read(bootstrap.read_views().get_booking, booking_id)
