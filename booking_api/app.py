"""booking_api: the Read API (Chalice). Routes parse, call booking_core, and shape the answer.

POST /v1/bookings is the one write entry point: it publishes the request to Kafka and waits for the decision
in the shared decision store. Every read is served from Redis only.
Deployed as the Lambda handler `app.app` for API Gateway REST proxy events (payload v1).
"""
import functools
import json
import logging

from chalice import Chalice, Response

from booking_core import bootstrap, config, logs, views
from booking_core.adapters.redis_client import get_redis
from booking_core.domain import model
from booking_core.domain.model import ValidationError, parse_booking_request
from booking_core.services.submit import IdempotencyKeyReused, submit_booking, valid_booking_key

logs.setup("booking_api")
log = logging.getLogger(__name__)

STATUS_PATH = "/v1/bookings/requests/{}"


def _outages() -> tuple[type[Exception], ...]:
    """A backing service did not answer: the client should retry. Imported on the failure path only."""
    from redis.exceptions import RedisError

    from booking_core.adapters.kafka import BrokerUnavailable
    from booking_core.adapters.mysql import DatabaseUnavailable

    return RedisError, DatabaseUnavailable, BrokerUnavailable


def _answering_outages_with_503(view):
    @functools.wraps(view)
    def answering(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, _outages()):
                raise
            log.error("dependency unavailable", extra={"error": repr(exc)})
            return _error(503, "service_unavailable", "a backing service is unavailable; retry later",
                          headers={"Retry-After": "1"})

    return answering


class BookingApi(Chalice):
    """Chalice whose every route answers an outage of a backing service 503 with Retry-After.

    Chalice turns any exception a view raises into its own `500 InternalServerError` before an http middleware
    sees it (chalice/app.py, RestAPIEventHandler._get_view_function_response; aws/chalice#1884), so the answer
    wraps each view as it is registered: one place, and no route can be added without it.
    """

    def route(self, path: str, **kwargs):
        register = super().route(path, **kwargs)
        return lambda view: register(_answering_outages_with_503(view))


# Chalice's own stdout handler would print its records (and ours, under "booking_api") as plain text without
# their fields; without it they reach the JSON root handler of logs.setup().
app = BookingApi(app_name="booking_api", configure_logs=False)
app.log.setLevel(logging.WARNING)


def _error(status: int, error: str, message: str, fields: dict | None = None, headers=None) -> Response:
    body = {"error": error, "message": message}
    if fields:
        body["fields"] = fields
    return Response(body=body, status_code=status, headers=headers or {})


def _decision_response(decision: model.Decision, status_code: int | None = None) -> Response:
    body = decision.to_dict()
    status_url = STATUS_PATH.format(decision.booking_key)
    body["status_url"] = status_url
    code = status_code or model.http_status_for(decision)
    headers = {"Location": status_url} if code == 202 else {}
    return Response(body=body, status_code=code, headers=headers)


def _json_body(max_bytes: int):
    raw = app.current_request.raw_body or b""
    if len(raw) > max_bytes:
        raise ValidationError({"body": f"must be at most {max_bytes} bytes"})
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError({"body": "must be valid JSON"}) from None


@app.route("/v1/bookings", methods=["POST"], content_types=["application/json", "text/plain"])
def create_booking():
    headers = app.current_request.headers
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


# ---- Read API (served from the Redis read model only) ---------------------------------------------------


@app.route("/health", methods=["GET"])
def health():
    bootstrap.decision_store().redis.ping()
    return {"status": "ok"}


def _read(view, *args):
    """Run a read view on the Redis read model: 404 for an unknown id, 400 naming each bad parameter."""
    try:
        return view(get_redis(), *args)
    except views.NotFound as exc:
        return _error(404, "not_found", str(exc))
    except ValidationError as exc:
        return _error(400, "invalid_request", "the request has invalid parameters", exc.errors)


def _query() -> dict:
    return app.current_request.query_params or {}


@app.route("/v1/listings", methods=["GET"])
def search_listings():
    return _read(views.search_listings, _query())


@app.route("/v1/listings/{listing_id}", methods=["GET"])
def get_listing(listing_id):
    return _read(views.get_listing, listing_id)


@app.route("/v1/listings/{listing_id}/availability", methods=["GET"])
def listing_availability(listing_id):
    return _read(views.listing_availability, listing_id, _query())


@app.route("/v1/users/{user_id}", methods=["GET"])
def get_user(user_id):
    return _read(views.get_user, user_id)


@app.route("/v1/users/{user_id}/bookings", methods=["GET"])
def user_bookings(user_id):
    return _read(views.user_bookings, user_id, _query())


@app.route("/v1/users/{user_id}/payments", methods=["GET"])
def user_payments(user_id):
    return _read(views.user_payments, user_id, _query())


@app.route("/v1/bookings/{booking_id}", methods=["GET"])
def get_booking(booking_id):
    return _read(views.get_booking, booking_id)
