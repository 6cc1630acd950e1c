"""Stripe as the payment provider of deployed stages: PaymentIntents for charges, Refunds for cancellations.

One charge is one `POST /v1/payment_intents` that creates and confirms the intent (`confirm=true`) with the
booking key as `Idempotency-Key`: a redelivered request gets Stripe's stored answer and never a second intent.
Outcomes:
- status `succeeded` → ChargeResult succeeded, provider_ref = the PaymentIntent id;
- HTTP 402 card_error → declined with Stripe's decline_code (or its error code when it gives none);
- other 400s for the request itself → declined with Stripe's error code (`amount_too_small`...), or
  `invalid_payment_method` when the payment method is unknown: the same key can never succeed;
- 429, 409 (the same key in flight), 5xx, timeouts and refused connections → TransientPaymentError, so
  decide_booking retries and then parks the request. Stripe keeps a 5xx it returned after starting the
  request for the key (24 h), so a parked 5xx may stay parked: its retry row ends `dead` for a person;
- 401/403 → TransientPaymentError after dropping the cached key, so a rotated key is read again;
- 400 idempotency_error (the key was used with other parameters) → StripeRequestRefused: retrying cannot
  clear it and declining could release dates someone paid for; payment_fn parks it as internal_error.
There is no 3-D Secure flow (the customer is not in the loop when payment_fn decides): an intent that comes
back `requires_action` is declined `authentication_required` and never completes; other non-final statuses
are declined `payment_intent_<status>`, except `processing`, which is transient (it may still succeed).

The secret key comes from Secrets Manager (STRIPE_SECRET_ARN: the raw key or JSON {"secret_key": ...}),
cached per warm container like the database secret. Neither the key, the payment method id nor Stripe's
free-text messages (they can quote the payment method) are ever logged or put into an error: only HTTP
status, error type and code. The library's own logger (DEBUG writes request bodies) is kept at WARNING.

Why the official `stripe` library rather than urllib: it owns the form encoding of nested parameters, maps
Stripe's HTTP answers to typed errors (CardError with decline_code and payment_intent, IdempotencyError,
RateLimitError, APIConnectionError), pins the API version header, and its RequestsClient takes separate
connect/read timeouts. Its network retries are off: decide_booking is the one place that retries.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

from booking_core import config
from booking_core.ports import (
    DECLINED,
    SUCCEEDED,
    Charge,
    ChargeResult,
    RefundResult,
    TransientPaymentError,
    charge_one_by_one,
)

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0
REFUND_KEY_PREFIX = "refund-"


class StripeRequestRefused(RuntimeError):
    """Stripe refused the request in a way no retry can fix and that is no answer about the card."""


def refund_idempotency_key(booking_key: str) -> str:
    return REFUND_KEY_PREFIX + booking_key


def parse_secret_key(secret_string: str) -> str:
    """The key from a secret string: the raw key, or JSON {"secret_key": ...}."""
    text = secret_string.strip()
    if text.startswith("{"):
        text = str(json.loads(text).get("secret_key") or "").strip()
    if not text.startswith(("sk_", "rk_")):
        # Never echo the value: say only what shape was expected.
        raise config.ConfigurationError(
            "STRIPE_SECRET_ARN: the secret must hold a Stripe secret key (sk_... or rk_...), raw or as"
            ' JSON {"secret_key": ...}')
    return text


def _secret_key_from_secrets_manager(secret_arn: str) -> str:
    from booking_core.adapters import aws_secrets as secrets

    return parse_secret_key(secrets.secret_string(secret_arn))


def _forget_secret(secret_arn: str) -> None:
    from booking_core.adapters import aws_secrets as secrets

    secrets.forget_secret(secret_arn)


def _described(exc: Exception) -> str:
    """What an error from Stripe may say in our logs and retry rows: status, type, code; never its message."""
    error = getattr(exc, "error", None)
    parts = [type(exc).__name__, f"http_status={getattr(exc, 'http_status', None)}"]
    for field in ("type", "code", "decline_code"):
        value = getattr(error, field, None) if error is not None else None
        if value:
            parts.append(f"{field}={value}")
    return " ".join(parts)


class StripePaymentProvider:
    """PaymentProvider on Stripe's PaymentIntents and Refunds APIs (see the module docstring)."""

    name = "stripe"

    def __init__(self, secret_key: str | None = None, *, secret_arn: str | None = None, api_base: str | None = None,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S, read_timeout_s: float = READ_TIMEOUT_S):
        """`secret_key` (tests) or `secret_arn` (Secrets Manager, read on first use and cached)."""
        if not secret_key and not secret_arn:
            raise config.ConfigurationError("PAYMENT_PROVIDER=stripe needs STRIPE_SECRET_ARN")
        self._secret_key = secret_key
        self._secret_arn = secret_arn
        self._api_base = (api_base or config.stripe_api_base()).rstrip("/")
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._client: Any = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> StripePaymentProvider:
        return cls(secret_arn=config.stripe_secret_arn(), api_base=config.stripe_api_base())

    # ---- PaymentProvider ---------------------------------------------------------------------------------

    def charge(self, idempotency_key: str, amount_cents: int, currency: str, token: str) -> ChargeResult:
        stripe = _stripe()
        params = {
            "amount": _minor_units(amount_cents),
            "currency": currency.lower(),
            "payment_method": token,
            # Cards only: a card confirms synchronously and needs no return_url (no redirect flow here).
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": {"booking_key": idempotency_key},
        }
        try:
            intent = self._stripe_client().v1.payment_intents.create(params, self._options(idempotency_key))
        except stripe.CardError as exc:
            return ChargeResult(DECLINED, _intent_id(exc), _decline_code(exc))
        except stripe.IdempotencyError as exc:
            raise StripeRequestRefused(f"idempotency key reused with other parameters: {_described(exc)}") from None
        except stripe.InvalidRequestError as exc:
            # The request itself can never succeed (no such payment method, amount below Stripe's minimum...).
            code = "invalid_payment_method" if getattr(exc, "param", None) == "payment_method" else exc.code
            return ChargeResult(DECLINED, _intent_id(exc), code or "invalid_request")
        except stripe.StripeError as exc:
            raise self._transient(exc) from None
        return self._charge_result(intent)

    def charge_many(self, charges: Sequence[Charge]) -> list[ChargeResult | Exception]:
        """One PaymentIntent per booking, each keyed by its booking key (Stripe has no batch of intents)."""
        return charge_one_by_one(self.charge, charges)

    def refund(self, idempotency_key: str, provider_ref: str, amount_cents: int) -> RefundResult:
        """Refund `amount_cents` of the booking's PaymentIntent `provider_ref`, keyed `refund-<booking key>`
        (a second call for the booking returns the first refund)."""
        stripe = _stripe()
        params = {
            "payment_intent": provider_ref,
            "amount": _minor_units(amount_cents),
            "metadata": {"booking_key": idempotency_key},
        }
        try:
            refund = self._stripe_client().v1.refunds.create(
                params, self._options(refund_idempotency_key(idempotency_key)))
        except stripe.IdempotencyError as exc:
            raise StripeRequestRefused(f"idempotency key reused with other parameters: {_described(exc)}") from None
        except (stripe.InvalidRequestError, stripe.CardError) as exc:
            return RefundResult("failed", "", getattr(exc, "code", None) or "invalid_request")
        except stripe.StripeError as exc:
            raise self._transient(exc) from None
        status = refund.status
        if status in ("succeeded", "pending"):
            return RefundResult(status, refund.id)
        return RefundResult("failed", refund.id, getattr(refund, "failure_reason", None) or f"refund_{status}")

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        """The booking's PaymentIntent, found by its metadata (Stripe's Search API: seconds behind writes, which is
        fine for what asks — a charge call that ended in an unexplained error, a hold minutes old)."""
        stripe = _stripe()
        try:
            found = self._stripe_client().v1.payment_intents.search(
                {"query": f"metadata['booking_key']:'{idempotency_key}'", "limit": 10},
                {"api_key": self._key()})
        except stripe.StripeError as exc:
            raise self._transient(exc) from None
        intents = list(getattr(found, "data", []) or [])
        succeeded = [i for i in intents if i.status == SUCCEEDED]
        if succeeded:
            return ChargeResult(SUCCEEDED, succeeded[0].id, amount_cents=getattr(succeeded[0], "amount", None))
        return ChargeResult(DECLINED, intents[0].id, "not_captured") if intents else None

    # ---- internals ---------------------------------------------------------------------------------------

    def _charge_result(self, intent: Any) -> ChargeResult:
        status = intent.status
        if status == SUCCEEDED:
            return ChargeResult(SUCCEEDED, intent.id)
        if status == "processing":
            # Not an answer yet: it may still succeed, so the dates must not be released as declined.
            raise TransientPaymentError("stripe: payment_intent processing (outcome not known yet)")
        if status == "requires_action":
            # A 3-D Secure challenge the customer never sees here: the intent stays unconfirmed, nothing is taken.
            return ChargeResult(DECLINED, intent.id, "authentication_required")
        return ChargeResult(DECLINED, intent.id, f"payment_intent_{status}")

    def _transient(self, exc: Exception) -> TransientPaymentError:
        stripe = _stripe()
        if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)) and self._secret_arn:
            _forget_secret(self._secret_arn)  # a rotated key is read again on the next attempt
        return TransientPaymentError(f"stripe: {_described(exc)}")

    def _options(self, idempotency_key: str) -> dict:
        return {"api_key": self._key(), "idempotency_key": idempotency_key}

    def _key(self) -> str:
        key = self._secret_key or _secret_key_from_secrets_manager(self._secret_arn or "")
        if config.stage() == "prod" and "_test_" in key:
            # Test mode accepts test cards without taking money: as wrong on prod as the sandbox.
            raise config.ConfigurationError("STRIPE_SECRET_ARN holds a test-mode key where STAGE=prod")
        return key

    def _stripe_client(self) -> Any:
        """One client (and its HTTP connection pool) per provider; the key is passed with each request so a
        rotated one is used without rebuilding it."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    stripe = _stripe()
                    self._client = stripe.StripeClient(
                        "sk_unset",  # placeholder: every request passes the current key in its options
                        base_addresses={"api": self._api_base},
                        max_network_retries=0,
                        http_client=stripe.RequestsClient(timeout=self._timeouts),
                    )
        return self._client


def _stripe() -> Any:
    """The library, imported on first use (only stages that charge through Stripe pay for the import)."""
    import stripe

    # At DEBUG the library logs request bodies (the payment method) and whole responses.
    logging.getLogger("stripe").setLevel(logging.WARNING)
    return stripe


def _minor_units(amount_cents: object) -> int:
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
        raise ValueError("amount must be a positive integer in the currency's minor unit")
    return amount_cents


def _intent_id(exc: Exception) -> str:
    intent = getattr(getattr(exc, "error", None), "payment_intent", None)
    return getattr(intent, "id", None) or ""


def _decline_code(exc: Exception) -> str:
    error = getattr(exc, "error", None)
    return getattr(error, "decline_code", None) or getattr(exc, "code", None) or "card_declined"
