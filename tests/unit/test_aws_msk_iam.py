"""MSK IAM auth: KAFKA_AUTH=iam gives SASL_SSL + OAUTHBEARER with a token signed from the AWS credentials.

The credentials are an access key of an IAM user created in moto; token generation is local signing (no
network), so the real aws-msk-iam-sasl-signer-python code runs.
"""
import base64
import time
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from kafka import KafkaConsumer, KafkaProducer
from moto import mock_aws

from booking_core.adapters import kafka as kafka_adapter
from booking_core.adapters.kafka import MskIamTokenProvider, client_settings, producer_settings


@pytest.fixture
def moto_access_key(monkeypatch):
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_user(UserName="payment-fn")
        key = iam.create_access_key(UserName="payment-fn")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        yield key["AccessKeyId"]


def _signed_url(token: str):
    padded = token + "=" * (-len(token) % 4)
    return urlparse(base64.urlsafe_b64decode(padded).decode())


def test_a_token_is_a_presigned_kafka_cluster_connect_url_for_the_region(moto_access_key):
    token = MskIamTokenProvider("eu-central-1").token()

    url = _signed_url(token)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert url.netloc == "kafka.eu-central-1.amazonaws.com"
    assert query["Action"] == "kafka-cluster:Connect"
    assert query["X-Amz-Credential"].startswith(f"{moto_access_key}/")
    assert "/eu-central-1/kafka-cluster/aws4_request" in query["X-Amz-Credential"]
    assert query["X-Amz-Signature"]


def test_iam_auth_makes_every_client_use_sasl_ssl_with_the_oauthbearer_token_provider(moto_access_key, monkeypatch):
    monkeypatch.setenv("KAFKA_AUTH", "iam")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "b-1.booking.kafka.eu-west-1.amazonaws.com:9098")

    for settings, client in ((client_settings(), KafkaConsumer), (producer_settings(), KafkaProducer)):
        assert settings["security_protocol"] == "SASL_SSL"
        assert settings["sasl_mechanism"] == "OAUTHBEARER"
        provider = settings["sasl_oauth_token_provider"]
        assert isinstance(provider, MskIamTokenProvider)
        assert _signed_url(provider.token()).netloc == "kafka.eu-west-1.amazonaws.com"
        assert set(settings) <= set(client.DEFAULT_CONFIG), "every setting is one kafka-python knows"
    assert producer_settings()["bootstrap_servers"] == ["b-1.booking.kafka.eu-west-1.amazonaws.com:9098"]


def test_plaintext_is_the_local_default(monkeypatch):
    monkeypatch.delenv("KAFKA_AUTH", raising=False)

    settings = client_settings()

    assert "sasl_mechanism" not in settings and settings.get("security_protocol", "PLAINTEXT") == "PLAINTEXT"


def test_the_token_is_reused_until_a_minute_before_it_expires(moto_access_key, monkeypatch):
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    signed = []

    def counting_signer(region):
        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        signed.append(expiry_ms)
        return token, expiry_ms

    provider = MskIamTokenProvider("us-east-1", signer=counting_signer)
    first = provider.token()
    assert provider.token() == first and len(signed) == 1
    expires_at = signed[0] / 1000
    assert 800 < expires_at - time.time() <= 900, "MSK tokens live 15 minutes"

    monkeypatch.setattr(kafka_adapter.time, "time", lambda: expires_at - MskIamTokenProvider.REFRESH_MARGIN_S - 1)
    assert provider.token() == first and len(signed) == 1

    monkeypatch.setattr(kafka_adapter.time, "time", lambda: expires_at - MskIamTokenProvider.REFRESH_MARGIN_S + 1)
    provider.token()
    assert len(signed) == 2
