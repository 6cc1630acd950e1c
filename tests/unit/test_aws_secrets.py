"""Database credentials from Secrets Manager (moto), cached per warm container."""
import json

import boto3
import pytest
from moto import mock_aws

from booking_core.adapters import aws_secrets as secrets
from booking_core.adapters.mysql import mysql_settings

RDS_SECRET = {"engine": "mysql", "host": "db.internal.example", "port": 3307, "username": "booking_app",
              "password": "s3cr3t", "dbname": "booking_prod"}


@pytest.fixture
def secret_arn(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    secrets.forget_db_secret()
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = client.create_secret(Name="booking/db", SecretString=json.dumps(RDS_SECRET))["ARN"]
        yield arn
    secrets.forget_db_secret()


def test_a_configured_secret_arn_supplies_host_port_user_password_and_database(secret_arn, monkeypatch):
    monkeypatch.setenv("DB_SECRET_ARN", secret_arn)
    monkeypatch.setenv("MYSQL_USER", "root")

    settings = mysql_settings()

    assert (settings.host, settings.port, settings.user, settings.password, settings.database) == (
        "db.internal.example", 3307, "booking_app", "s3cr3t", "booking_prod")


def test_without_a_secret_arn_the_settings_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("DB_SECRET_ARN", raising=False)
    monkeypatch.setenv("MYSQL_HOST", "10.0.0.5")
    monkeypatch.setenv("MYSQL_PASSWORD", "from-env")

    settings = mysql_settings()

    assert (settings.host, settings.password) == ("10.0.0.5", "from-env")


def test_the_secret_is_read_once_per_warm_container_until_its_cache_expires(secret_arn, monkeypatch):
    calls = []
    real_fetch = secrets._fetch
    monkeypatch.setattr(secrets, "_fetch", lambda arn: calls.append(arn) or real_fetch(arn))

    secrets.db_secret(secret_arn)
    secrets.db_secret(secret_arn)
    assert len(calls) == 1

    monkeypatch.setenv("SECRET_CACHE_TTL_S", "0")
    assert secrets.db_secret(secret_arn)["password"] == "s3cr3t"
    assert len(calls) == 2


def test_a_rotated_password_is_seen_after_the_cache_is_dropped(secret_arn):
    assert secrets.db_secret(secret_arn)["password"] == "s3cr3t"
    boto3.client("secretsmanager", region_name="eu-west-1").put_secret_value(
        SecretId=secret_arn, SecretString=json.dumps({**RDS_SECRET, "password": "rotated"}))

    assert secrets.db_secret(secret_arn)["password"] == "s3cr3t"
    secrets.forget_db_secret()
    assert secrets.db_secret(secret_arn)["password"] == "rotated"
