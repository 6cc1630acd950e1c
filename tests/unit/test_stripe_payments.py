"""The Stripe adapter against the local Stripe stand-in (tests/stripe_standin.py): the requests it makes and how
it reads Stripe's answers, the secret key from Secrets Manager (moto), and the provider chosen per stage."""
import dataclasses
import datetime as dt
import json
import logging
import socket
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from booking_core import bootstrap, config
from booking_core.adapters import aws_secrets as secrets
from booking_core.adapters.sandbox_payments import MySqlSandboxProvider
from booking_core.adapters.stripe_payments import (
    StripePaymentProvider,
    StripeRequestRefused,
    parse_secret_key,
)
from booking_core.domain import messages, model
from booking_core.domain.model import RequestBooking
from booking_core.kafka_event import build_event
from booking_core.logs import JsonFormatter
from booking_core.ports import DECLINED, SUCCEEDED, TransientPaymentError
from booking_core.services.decide import decide_booking
from booking_core.services.kafka_batches import process_booking_requests
from tests.fakes import FakeBookingRepository, FakePublisher, InMemorySandboxProvider
from tests.stripe_standin import CARD_LAST4, StripeStandIn


@pytest.fixture(autouse=True)
def _no_stage(monkeypatch):
    monkeypatch.delenv("STAGE", raising=False)


@pytest.fixture
def standin():
    with StripeStandIn() as server:
        yield server


def provider_for(standin, **kw) -> StripePaymentProvider:
    return StripePaymentProvider(standin.secret_key, api_base=standin.url, **kw)


@pytest.fixture
def stripe(standin):
    return provider_for(standin)


def stay_request(token="pm_card_visa", nights=3, offset_days=400):
    check_in = dt.date.today() + dt.timedelta(days=offset_days)
    return RequestBooking(1, 7, check_in, check_in + dt.timedelta(days=nights), 2, token)


# ---- charges ----------------------------------------------------------------------------------------------

def test_a_charge_is_one_confirmed_payment_intent_in_minor_units_keyed_by_the_booking(standin, stripe):
    result = stripe.charge("bk-1", 30050, "EUR", "pm_card_visa")

    assert result.status == SUCCEEDED and result.decline_code is None
    assert result.provider_ref.startswith("pi_") and standin.payment_intents[result.provider_ref]["status"] == "succeeded"
    (sent,) = standin.requests
    assert (sent.method, sent.path) == ("POST", "/v1/payment_intents")
    assert sent.idempotency_key == "bk-1"
    assert sent.headers["authorization"] == f"Bearer {standin.secret_key}"
    assert sent.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert sent.form == {"amount": "30050", "currency": "eur", "payment_method": "pm_card_visa",
                         "payment_method_types[0]": "card", "confirm": "true", "metadata[booking_key]": "bk-1"}


@pytest.mark.parametrize("amount", [300.5, "30000", True, 0, -100])
def test_an_amount_that_is_not_a_positive_integer_of_minor_units_is_never_sent(standin, stripe, amount):
    with pytest.raises(ValueError, match="minor unit"):
        stripe.charge("bk-amount", amount, "EUR", "pm_card_visa")
    assert standin.requests == []


def test_the_same_booking_charged_twice_gets_the_first_answer_and_one_payment_intent(standin, stripe):
    first = stripe.charge("bk-twice", 20000, "EUR", "pm_card_visa")
    again = stripe.charge("bk-twice", 20000, "EUR", "pm_card_visa")

    assert again == first
    assert len(standin.payment_intents) == 1
    assert [r.idempotency_key for r in standin.requests] == ["bk-twice", "bk-twice"]


@pytest.mark.parametrize(("payment_method", "decline_code"), [
    ("pm_card_chargeDeclined", "generic_decline"),
    ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ("pm_card_chargeDeclinedStolenCard", "stolen_card"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card"),
    ("pm_card_chargeDeclinedProcessingError", "processing_error"),
])
def test_a_card_decline_is_declined_with_stripes_decline_code(standin, stripe, payment_method, decline_code):
    result = stripe.charge("bk-declined", 20000, "EUR", payment_method)

    assert (result.status, result.decline_code) == (DECLINED, decline_code)
    assert standin.payment_intents[result.provider_ref]["status"] == "requires_payment_method"


def test_an_unknown_payment_method_is_declined_as_invalid_without_a_payment_intent(standin, stripe):
    result = stripe.charge("bk-unknown-pm", 20000, "EUR", "pm_does_not_exist")
    assert (result.status, result.provider_ref, result.decline_code) == (DECLINED, "", "invalid_payment_method")
    assert standin.payment_intents == {}


def test_an_amount_below_stripes_minimum_is_declined_with_stripes_code(stripe):
    result = stripe.charge("bk-tiny", 49, "EUR", "pm_card_visa")
    assert (result.status, result.decline_code) == (DECLINED, "amount_too_small")


def test_a_card_asking_for_3d_secure_is_declined_authentication_required_as_there_is_no_3ds_flow(standin, stripe):
    result = stripe.charge("bk-3ds", 20000, "EUR", "pm_card_authenticationRequired")
    assert (result.status, result.decline_code) == (DECLINED, "authentication_required")
    assert standin.payment_intents[result.provider_ref]["status"] == "requires_action"


@pytest.mark.parametrize(("status", "decline_code"), [("requires_payment_method", "payment_intent_requires_payment_method"),
                                                    ("canceled", "payment_intent_canceled")])
def test_other_non_final_intents_are_declined_with_their_status(stripe, status, decline_code):
    # No Stripe test card ends this way after a confirm; the reading of the answer is checked on its own.
    result = stripe._charge_result(SimpleNamespace(id="pi_x", status=status))
    assert (result.status, result.provider_ref, result.decline_code) == (DECLINED, "pi_x", decline_code)


def test_a_processing_intent_is_transient_as_it_may_still_succeed(stripe):
    with pytest.raises(TransientPaymentError, match="processing"):
        stripe._charge_result(SimpleNamespace(id="pi_x", status="processing"))


# ---- transient failures -------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [500, 503, 429, 409])
def test_server_errors_rate_limits_and_key_conflicts_are_transient(standin, stripe, status):
    standin.fail_next(status)
    with pytest.raises(TransientPaymentError, match=f"http_status={status}"):
        stripe.charge("bk-transient", 20000, "EUR", "pm_card_visa")


def test_after_a_rate_limit_the_same_key_charges_normally(standin, stripe):
    standin.fail_next(429)  # the rate limiter runs before Stripe's idempotency layer: nothing stored
    with pytest.raises(TransientPaymentError):
        stripe.charge("bk-429", 20000, "EUR", "pm_card_visa")
    assert stripe.charge("bk-429", 20000, "EUR", "pm_card_visa").succeeded


def test_a_500_is_replayed_for_its_key_as_stripe_does_so_only_a_new_key_gets_a_new_answer(standin, stripe):
    standin.fail_next(500)
    for _ in range(2):
        with pytest.raises(TransientPaymentError, match="http_status=500"):
            stripe.charge("bk-500", 20000, "EUR", "pm_card_visa")
    assert standin.requests[-1].headers.get("idempotency-key") == "bk-500"
    assert stripe.charge("bk-other", 20000, "EUR", "pm_card_visa").succeeded


def test_a_refused_connection_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the charge: nothing listens there
    provider = StripePaymentProvider("sk_test_x", api_base=f"http://127.0.0.1:{port}")
    with pytest.raises(TransientPaymentError, match="APIConnectionError"):
        provider.charge("bk-refused", 20000, "EUR", "pm_card_visa")


def test_a_read_timeout_is_transient_and_the_retry_gets_the_charge_stripe_made_meanwhile(standin):
    provider = provider_for(standin, read_timeout_s=0.2)
    standin.delay_next(1.0)
    with pytest.raises(TransientPaymentError, match="APIConnectionError"):
        provider.charge("bk-slow", 20000, "EUR", "pm_card_visa")

    result = provider.charge("bk-slow", 20000, "EUR", "pm_card_visa")

    assert result.succeeded
    assert list(standin.payment_intents) == [result.provider_ref]


def test_the_default_timeouts_are_3_s_to_connect_and_10_s_to_read(standin, stripe):
    stripe.charge("bk-timeouts", 20000, "EUR", "pm_card_visa")
    assert stripe._stripe_client()._requestor._get_http_client()._timeout == (3.0, 10.0)


def test_a_key_reused_with_other_parameters_is_refused_not_declined_or_retried(standin, stripe):
    stripe.charge("bk-changed", 20000, "EUR", "pm_card_visa")
    with pytest.raises(StripeRequestRefused, match="idempotency_error"):
        stripe.charge("bk-changed", 25000, "EUR", "pm_card_visa")


# ---- through decide_booking ------------------------------------------------------------------------------

def test_decide_booking_confirms_through_stripe_after_a_rate_limited_first_attempt(standin, stripe):
    repo = FakeBookingRepository()
    standin.fail_next(429)

    decision = decide_booking("bk-decide", stay_request(nights=2), repo, stripe, retry_pause_s=0)

    assert decision.status == model.CONFIRMED and decision.amount_cents == 20000
    assert [r.form["amount"] for r in standin.posts("/v1/payment_intents")] == ["20000", "20000"]


def test_decide_booking_parks_a_request_stripe_keeps_answering_500_for(standin, stripe):
    repo = FakeBookingRepository()
    standin.fail_next(500)

    decision = decide_booking("bk-parked", stay_request(), repo, stripe, quick_retries=2, retry_pause_s=0)

    assert (decision.status, decision.reason) == (model.QUEUED, "transient_payment_failure")
    assert len(standin.posts("/v1/payment_intents")) == 3
    assert repo.bookings["bk-parked"]["status"] == "released"


def test_decide_booking_releases_the_dates_of_a_declined_card(standin, stripe):
    repo = FakeBookingRepository()
    decision = decide_booking("bk-nsf", stay_request("pm_card_chargeDeclinedInsufficientFunds"), repo, stripe)
    assert (decision.status, decision.reason, decision.detail) == (
        model.REJECTED, model.PAYMENT_DECLINED, "insufficient_funds")
    assert repo.bookings["bk-nsf"]["status"] == "released"


# ---- refunds ------------------------------------------------------------------------------------------------

def test_a_refund_goes_to_the_refunds_api_keyed_refund_and_the_booking_key(standin, stripe):
    charge = stripe.charge("bk-refund", 30000, "EUR", "pm_card_visa")

    refund = stripe.refund("bk-refund", charge.provider_ref, 10000)

    assert refund.status == "succeeded" and refund.provider_ref.startswith("re_")
    (sent,) = standin.posts("/v1/refunds")
    assert sent.idempotency_key == "refund-bk-refund"
    assert sent.form == {"payment_intent": charge.provider_ref, "amount": "10000",
                         "metadata[booking_key]": "bk-refund"}


def test_refunding_a_booking_twice_returns_the_first_refund(standin, stripe):
    charge = stripe.charge("bk-refund-twice", 30000, "EUR", "pm_card_visa")
    first = stripe.refund("bk-refund-twice", charge.provider_ref, 30000)
    assert stripe.refund("bk-refund-twice", charge.provider_ref, 30000) == first
    assert len(standin.refunds) == 1


def test_a_refund_stripe_refuses_fails_with_its_code(standin, stripe):
    charge = stripe.charge("bk-refund-big", 30000, "EUR", "pm_card_visa")
    assert stripe.refund("bk-refund-big", charge.provider_ref, 30001).failure_code == "amount_too_large"
    assert stripe.refund("bk-refund-none", "pi_unknown", 100).failure_code == "resource_missing"


def test_a_refund_meeting_a_server_error_is_transient(standin, stripe):
    charge = stripe.charge("bk-refund-500", 30000, "EUR", "pm_card_visa")
    standin.fail_next(500)
    with pytest.raises(TransientPaymentError):
        stripe.refund("bk-refund-500", charge.provider_ref, 30000)


def test_the_in_memory_sandbox_refunds_like_stripe():
    sandbox = InMemorySandboxProvider()
    charge = sandbox.charge("bk-s", 30000, "EUR", "tok_visa")
    refund = sandbox.refund("bk-s", charge.provider_ref, 30000)
    assert refund.status == "succeeded" and refund.provider_ref.startswith("re_")
    assert sandbox.refund("bk-s", charge.provider_ref, 30000) == refund
    assert sandbox.refund("bk-s-big", "ch_none", 100).failure_code == "charge_not_found"


# ---- the secret key -----------------------------------------------------------------------------------------

@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    secrets.forget_db_secret()
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="eu-west-1")
    secrets.forget_db_secret()


@pytest.mark.parametrize("as_json", [False, True])
def test_the_secret_key_comes_from_secrets_manager_once_per_warm_container(standin, aws, monkeypatch, as_json):
    value = json.dumps({"secret_key": standin.secret_key}) if as_json else standin.secret_key
    arn = aws.create_secret(Name="booking/stripe", SecretString=value)["ARN"]
    fetches = []
    real_fetch = secrets._fetch
    monkeypatch.setattr(secrets, "_fetch", lambda a: fetches.append(a) or real_fetch(a))
    monkeypatch.setenv("STRIPE_SECRET_ARN", arn)
    monkeypatch.setenv("STRIPE_API_BASE", standin.url)
    provider = StripePaymentProvider.from_environment()

    assert provider.charge("bk-sm-1", 20000, "EUR", "pm_card_visa").succeeded
    assert provider.charge("bk-sm-2", 20000, "EUR", "pm_card_visa").succeeded
    assert fetches == [arn]
    assert standin.requests[0].headers["authorization"] == f"Bearer {standin.secret_key}"


def test_a_refused_key_is_read_again_so_a_rotated_key_is_used_on_the_next_attempt(standin, aws):
    arn = aws.create_secret(Name="booking/stripe", SecretString="sk_test_before_rotation")["ARN"]
    provider = StripePaymentProvider(secret_arn=arn, api_base=standin.url)
    with pytest.raises(TransientPaymentError, match="AuthenticationError"):
        provider.charge("bk-rotated", 20000, "EUR", "pm_card_visa")

    aws.put_secret_value(SecretId=arn, SecretString=standin.secret_key)

    assert provider.charge("bk-rotated", 20000, "EUR", "pm_card_visa").succeeded


def test_a_secret_that_holds_no_stripe_key_is_a_configuration_error_that_does_not_echo_it():
    with pytest.raises(config.ConfigurationError) as raised:
        parse_secret_key('{"password": "hunter2-not-a-key"}')
    assert "hunter2" not in str(raised.value)
    assert parse_secret_key('  {"secret_key": "sk_live_abc"} ') == "sk_live_abc"


# ---- selection by stage -------------------------------------------------------------------------------------

@pytest.fixture
def fresh_bootstrap():
    bootstrap.reset()
    yield
    bootstrap.reset()


def test_the_sandbox_is_refused_on_prod(monkeypatch, fresh_bootstrap):
    monkeypatch.setenv("STAGE", "prod")
    monkeypatch.setenv("PAYMENT_PROVIDER", "sandbox")
    with pytest.raises(config.ConfigurationError, match="refused where STAGE=prod"):
        bootstrap.payment_provider()


def test_stripe_is_built_for_payment_provider_stripe_and_a_sandbox_elsewhere(monkeypatch, fresh_bootstrap):
    monkeypatch.setenv("STAGE", "prod")
    monkeypatch.setenv("PAYMENT_PROVIDER", "stripe")
    monkeypatch.setenv("STRIPE_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:booking/stripe")
    assert isinstance(bootstrap.payment_provider(), StripePaymentProvider)

    bootstrap.reset()
    monkeypatch.setenv("STAGE", "dev")
    monkeypatch.setenv("PAYMENT_PROVIDER", "sandbox")
    assert isinstance(bootstrap.payment_provider(), MySqlSandboxProvider)


def test_stripe_without_a_secret_arn_is_a_configuration_error(monkeypatch, fresh_bootstrap):
    monkeypatch.setenv("PAYMENT_PROVIDER", "stripe")
    monkeypatch.delenv("STRIPE_SECRET_ARN", raising=False)
    with pytest.raises(config.ConfigurationError, match="STRIPE_SECRET_ARN"):
        bootstrap.payment_provider()


def test_a_test_mode_key_on_prod_is_refused_before_any_request(standin, stripe, monkeypatch):
    monkeypatch.setenv("STAGE", "prod")
    with pytest.raises(config.ConfigurationError, match="test-mode key"):
        stripe.charge("bk-prod-test-key", 20000, "EUR", "pm_card_visa")
    assert standin.requests == []


# ---- nothing secret in the logs -------------------------------------------------------------------------------

def test_no_secret_key_payment_method_or_card_data_reaches_a_log_line_or_a_retry_row(standin, stripe, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="stripe")  # even if someone turns the library's logger up
    caplog.set_level(logging.DEBUG, logger="urllib3")
    repo, publisher = FakeBookingRepository(), FakePublisher()
    tokens = {"bk-log-ok": "pm_card_visa", "bk-log-declined": "pm_card_chargeDeclinedStolenCard",
              "bk-log-unknown": "pm_secret_looking_1234", "bk-log-500": "pm_card_mastercard"}
    # The 500 must hit bk-log-500: it goes first.
    order = ["bk-log-500", "bk-log-ok", "bk-log-declined", "bk-log-unknown"]
    records = [("booking-requests", 0, i, 0, key.encode(),
                messages.encode_request(key, stay_request(tokens[key], offset_days=400 + 10 * i)), [])
               for i, key in enumerate(order)]
    # A changed amount under a used key (Stripe's idempotency_error) goes through payment_fn's bug path.
    stripe.charge("bk-log-reused", 1000, "EUR", "pm_card_amex")
    tokens["bk-log-reused"] = "pm_card_amex"
    records.append(("booking-requests", 0, 9, 0, b"bk-log-reused",
                    messages.encode_request("bk-log-reused", stay_request("pm_card_amex", offset_days=500)), []))
    rejected_key = StripePaymentProvider("sk_test_wrong_key_0000", api_base=standin.url)
    standin.fail_next(500)

    summary = process_booking_requests(build_event(records), repo, stripe, publisher, "booking-decisions",
                                       quick_retries=0)
    with pytest.raises(TransientPaymentError):
        rejected_key.charge("bk-log-401", 20000, "EUR", "pm_card_visa")

    assert summary == {"queued": 1, "confirmed": 1, "rejected": 3}, (summary, repo.decisions)
    # The reused key's charge ended in an error that does not say whether money was taken: the provider's record
    # (a charge under the key) is refunded and the hold released with a final answer.
    assert repo.decisions["bk-log-reused"].reason == "processing_failed"
    assert [r.form["payment_intent"] for r in standin.posts("/v1/refunds")] == [
        i["id"] for i in standin.payment_intents.values() if i["metadata"].get("booking_key") == "bk-log-reused"]
    formatter = JsonFormatter("payment_fn")
    lines = "\n".join(formatter.format(record) for record in caplog.records)
    stored = json.dumps({key: row["error"] for key, row in repo.retries.items()})
    assert "bk-log-500" in lines and "idempotency_error" in lines  # the lines and rows checked are there
    for text in (lines, stored):
        for secret in (standin.secret_key, "sk_test_wrong_key_0000", *tokens.values(), CARD_LAST4, "last4"):
            assert secret not in text


def test_find_charge_finds_the_bookings_intent_by_its_metadata(standin, stripe):
    charged = stripe.charge("bk-find", 4200, "EUR", "pm_card_visa")
    stripe.charge("bk-find-declined", 4200, "EUR", "pm_card_chargeDeclined")
    assert stripe.find_charge("bk-find") == dataclasses.replace(charged, amount_cents=4200)  # the record says how much
    assert stripe.find_charge("bk-find-declined").succeeded is False
    assert stripe.find_charge("bk-never") is None


def test_find_charge_out_of_reach_is_transient(standin, stripe):
    standin.fail_next(500)
    with pytest.raises(TransientPaymentError):
        stripe.find_charge("bk-find")
