"""A local stand-in for the parts of Stripe's API the Stripe adapter calls, on a free port in a thread.

It behaves as Stripe documents (API v1):
- `Authorization: Bearer <secret key>`: only the stand-in's own test-mode key (sk_test_...) is accepted, 401
  otherwise; checked, like rate limits, before the idempotency layer, so these answers are never stored.
- `Idempotency-Key`: the first answer for a key is stored once the endpoint starts executing (500s included)
  and replayed (header `Idempotent-Replayed: true`) for the same method, path and parameters; the same key
  with other parameters is a 400 `idempotency_error`. A request failing parameter validation stores nothing.
- Form-encoded parameters: `amount` an integer in the currency's minor unit (at least 50), `currency` three
  lowercase letters (Stripe documents lowercase ISO codes), `confirm=true` with a `payment_method` and
  `payment_method_types[0]=card` (or a return_url / allow_redirects=never, as Stripe requires).
- Stripe's test payment methods: pm_card_visa, pm_card_mastercard, pm_card_amex succeed;
  pm_card_chargeDeclined (generic_decline), pm_card_chargeDeclinedInsufficientFunds, ...LostCard,
  ...StolenCard, ...Fraudulent answer 402 card_error `card_declined` with that decline_code;
  ...ExpiredCard, ...IncorrectCvc, ...ProcessingError answer 402 with code expired_card, incorrect_cvc,
  processing_error; pm_card_authenticationRequired leaves the intent `requires_action`; any other id is a
  400 `resource_missing` on payment_method.
- `POST /v1/refunds` (payment_intent, amount): refunds what is left of a succeeded intent.
Failures on demand: `fail_next(500)` (api_error, stored for its key as Stripe does), `fail_next(429)`
(rate_limit, never stored), `fail_next(409)` (the key in use by a concurrent request, never stored),
`delay_next(seconds)` to run past the client's read timeout. Every request received is in `requests`.
"""
from __future__ import annotations

import json
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_KEY = "sk_test_standin_" + "4eC39HqLyjWDarjtT1zdp7dc"

SUCCEEDING = {"pm_card_visa": "visa", "pm_card_mastercard": "mastercard", "pm_card_amex": "amex"}
# payment method → (code, decline_code); Stripe's test cards for declines.
DECLINING = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds"),
    "pm_card_chargeDeclinedLostCard": ("card_declined", "lost_card"),
    "pm_card_chargeDeclinedStolenCard": ("card_declined", "stolen_card"),
    "pm_card_chargeDeclinedFraudulent": ("card_declined", "fraudulent"),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", None),
    "pm_card_chargeDeclinedIncorrectCvc": ("incorrect_cvc", None),
    "pm_card_chargeDeclinedProcessingError": ("processing_error", None),
}
NEEDS_AUTHENTICATION = {"pm_card_authenticationRequired"}
CARD_LAST4 = "4242"  # what a card's payment method object shows; tests check it never reaches a log line


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    form: dict[str, str]  # flat form keys as sent, e.g. "metadata[booking_key]"
    body: str

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass
class _Stored:
    method: str
    path: str
    form: dict[str, str]
    status: int
    body: dict


@dataclass
class StripeStandIn:
    secret_key: str = DEFAULT_KEY
    requests: list[RecordedRequest] = field(default_factory=list)
    payment_intents: dict[str, dict] = field(default_factory=dict)
    refunds: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._stored: dict[str, _Stored] = {}
        self._failures: list[int] = []
        self._delays: list[float] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="stripe-standin", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- controls for tests -----------------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next `times` requests with 500 (api_error), 429 (rate_limit) or 409 (key in use)."""
        assert status in (409, 429, 500, 503), status
        with self._lock:
            self._failures.extend([status] * times)

    def delay_next(self, seconds: float) -> None:
        with self._lock:
            self._delays.append(seconds)

    def posts(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == path]

    # ---- the API ----------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: str) -> tuple[int, dict, dict]:
        """(status, JSON body, extra headers) for one request."""
        form = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
        with self._lock:
            self.requests.append(RecordedRequest(method, path, headers, form, body))
            delay = self._delays.pop(0) if self._delays else 0.0
        if delay:
            time.sleep(delay)
        with self._lock:
            return self._answer(method, path, headers, form)

    def _answer(self, method, path, headers, form):
        if headers.get("authorization") != f"Bearer {self.secret_key}":
            return 401, _error("invalid_request_error", None, "Invalid API Key provided: sk_****"), {}
        failure = self._failures.pop(0) if self._failures else None
        if failure == 429:
            return 429, _error("invalid_request_error", "rate_limit", "Too many requests hit the API too"
                               " quickly."), {}
        key = headers.get("idempotency-key")
        if failure == 409:
            return 409, _error("idempotency_error", "idempotency_key_in_use", "There is currently another"
                               " in-progress request using this idempotency key."), {"Stripe-Should-Retry": "true"}
        if key and key in self._stored:
            stored = self._stored[key]
            if (stored.method, stored.path, stored.form) != (method, path, form):
                return 400, _error("idempotency_error", None, "Keys for idempotent requests can only be used with"
                                   " the same parameters they were first used with."), {}
            return stored.status, stored.body, {"Idempotent-Replayed": "true"}
        route = {("POST", "/v1/payment_intents"): self._create_payment_intent,
                 ("POST", "/v1/refunds"): self._create_refund,
                 ("GET", "/v1/payment_intents/search"): self._search_payment_intents}.get((method, path))
        if route is None:
            return 404, _error("invalid_request_error", None, f"Unrecognized request URL ({method}: {path})."), {}
        invalid = _validate(path, form)
        if invalid:
            return 400, invalid, {}  # validation failed before execution began: nothing stored
        if failure in (500, 503):
            status, answer = failure, _error("api_error", None, "An unknown error occurred.")
        else:
            status, answer = route(form)
        if key:
            self._stored[key] = _Stored(method, path, form, status, answer)
        return status, answer, {}

    def _create_payment_intent(self, form):
        pm = form["payment_method"]
        if pm not in SUCCEEDING and pm not in DECLINING and pm not in NEEDS_AUTHENTICATION:
            return 400, _error("invalid_request_error", "resource_missing", f"No such PaymentMethod: '{pm}'",
                               param="payment_method")
        intent = {
            "id": "pi_" + secrets.token_hex(12), "object": "payment_intent", "amount": int(form["amount"]),
            "amount_received": 0, "currency": form["currency"], "capture_method": "automatic",
            "confirmation_method": "automatic", "created": int(time.time()), "livemode": False,
            "payment_method": pm, "payment_method_types": ["card"], "latest_charge": None,
            "last_payment_error": None, "next_action": None,
            "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")},
        }
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
        self.payment_intents[intent["id"]] = intent
        if pm in SUCCEEDING:
            intent.update(status="succeeded", amount_received=intent["amount"],
                          latest_charge="ch_" + secrets.token_hex(12))
            return 200, intent
        if pm in NEEDS_AUTHENTICATION:
            intent.update(status="requires_action", next_action={"type": "use_stripe_sdk", "use_stripe_sdk": {}})
            return 200, intent
        code, decline_code = DECLINING[pm]
        error = _error("card_error", code, "Your card was declined.", param="")["error"]
        if decline_code:
            error["decline_code"] = decline_code
        intent.update(status="requires_payment_method", last_payment_error=dict(error))
        error["payment_intent"] = intent
        error["payment_method"] = {"id": "pm_" + secrets.token_hex(12), "object": "payment_method", "type": "card",
                                   "card": {"brand": "visa", "last4": CARD_LAST4, "exp_month": 12, "exp_year": 2034}}
        return 402, {"error": error}

    def _search_payment_intents(self, form):
        """Stripe's Search API, for the one query the adapter makes: metadata['booking_key']:'<key>'."""
        match = re.fullmatch(r"metadata\['booking_key'\]:'([^']*)'", form.get("query", ""))
        if match is None:
            return 400, _error("invalid_request_error", None, "Unsupported search query.", param="query")
        found = [i for i in self.payment_intents.values() if i["metadata"].get("booking_key") == match.group(1)]
        return 200, {"object": "search_result", "url": "/v1/payment_intents/search", "has_more": False,
                     "data": found, "next_page": None}

    def _create_refund(self, form):
        intent = self.payment_intents.get(form["payment_intent"])
        if intent is None:
            return 400, _error("invalid_request_error", "resource_missing",
                               f"No such payment_intent: '{form['payment_intent']}'", param="payment_intent")
        if intent["status"] != "succeeded":
            return 400, _error("invalid_request_error", "charge_not_refundable",
                               "This PaymentIntent does not have a successful charge to refund.")
        refunded = sum(r["amount"] for r in self.refunds.values() if r["payment_intent"] == intent["id"])
        left = intent["amount_received"] - refunded
        amount = int(form.get("amount", left))
        if left == 0:
            return 400, _error("invalid_request_error", "charge_already_refunded",
                               "Charge has already been refunded.")
        if amount > left:
            return 400, _error("invalid_request_error", "amount_too_large", "Refund amount is greater than"
                               " the unrefunded amount on the charge.", param="amount")
        refund = {"id": "re_" + secrets.token_hex(12), "object": "refund", "amount": amount,
                  "currency": intent["currency"], "payment_intent": intent["id"], "charge": intent["latest_charge"],
                  "status": "succeeded", "created": int(time.time()),
                  "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")}}
        self.refunds[refund["id"]] = refund
        return 200, refund


def _error(type_: str, code: str | None, message: str, param: str | None = None) -> dict:
    error = {"type": type_, "message": message}
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param is not None:
        error["param"] = param
    return {"error": error}


def _validate(path: str, form: dict[str, str]) -> dict | None:
    """Stripe's parameter validation for the endpoints that create something: a 400 body, or None."""
    if path.endswith("/search"):
        return None
    if not re.fullmatch(r"\d+", form.get("amount", "0" if path == "/v1/refunds" else "")):
        return _error("invalid_request_error", "parameter_invalid_integer",
                      f"Invalid integer: {form.get('amount', '')}", param="amount")
    if path == "/v1/refunds":
        if not form.get("payment_intent"):
            return _error("invalid_request_error", "parameter_missing",
                          "One of the following params should be provided for this request: payment_intent or"
                          " charge.")
        if "amount" in form and int(form["amount"]) < 1:
            return _error("invalid_request_error", "parameter_invalid_integer", "Invalid positive integer",
                          param="amount")
        return None
    if not re.fullmatch(r"[a-z]{3}", form.get("currency", "")):
        return _error("invalid_request_error", "parameter_invalid_string",
                      f"Invalid currency: {form.get('currency', '')}", param="currency")
    if int(form["amount"]) < 50:
        return _error("invalid_request_error", "amount_too_small",
                      "Amount must be at least 50 cents", param="amount")
    if form.get("confirm") != "true" or not form.get("payment_method"):
        return _error("invalid_request_error", "parameter_missing",
                      "The stand-in only creates and confirms in one call: confirm=true and payment_method.",
                      param="payment_method")
    no_redirects = (form.get("payment_method_types[0]") == "card" and "payment_method_types[1]" not in form
                    ) or form.get("automatic_payment_methods[allow_redirects]") == "never"
    if not no_redirects and not form.get("return_url"):
        return _error("invalid_request_error", None, "This PaymentIntent is configured to accept payment methods"
                      " enabled in your Dashboard, some of which may require a full page redirect to succeed."
                      " Provide a `return_url` or disable redirect-based payment methods.")
    return None


def _handler_for(standin: StripeStandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            headers = {name.lower(): value for name, value in self.headers.items()}
            split = urllib.parse.urlsplit(self.path)
            path = split.path
            if self.command == "GET":  # a GET's parameters are its query string (handle() reads them as a form)
                body = split.query
            if self.command == "POST" and body and not headers.get("content-type", "").startswith(
                    "application/x-www-form-urlencoded"):
                status, answer, extra = 400, _error("invalid_request_error", None, "Form-encoded body expected."), {}
            else:
                status, answer, extra = standin.handle(self.command, path, headers, body)
            payload = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Request-Id", "req_" + secrets.token_hex(7))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its read timeout): as for Stripe, the answer is stored anyway

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args):  # keep test output clean
            pass

    return Handler
