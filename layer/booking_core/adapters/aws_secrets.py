"""Secrets from AWS Secrets Manager: the database credentials (the RDS secret JSON: host, port, username,
password, dbname) and the payment provider's API key.

A secret is read once per warm container and kept for SECRET_CACHE_TTL_S (default 300 s), so a rotated
password is picked up within minutes without a Secrets Manager call per connection.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

from booking_core import config
from booking_core.config import MySqlSettings

_cache: dict[str, tuple[float, str]] = {}
_lock = threading.Lock()


def _fetch(secret_arn: str) -> str:
    import boto3

    client = boto3.client("secretsmanager", region_name=_region_of(secret_arn))
    return str(client.get_secret_value(SecretId=secret_arn)["SecretString"])


def _region_of(secret_arn: str) -> str:
    # arn:aws:secretsmanager:<region>:<account>:secret:<name>; a bare name uses the configured region.
    parts = secret_arn.split(":")
    return parts[3] if len(parts) > 3 and parts[0] == "arn" and parts[3] else config.aws_region()


def secret_string(secret_arn: str) -> str:
    """The secret's string, fetched on first use and cached for SECRET_CACHE_TTL_S."""
    with _lock:
        cached = _cache.get(secret_arn)
        if cached is not None and time.monotonic() - cached[0] < config.secret_cache_ttl_s():
            return cached[1]
        value = _fetch(secret_arn)
        _cache[secret_arn] = (time.monotonic(), value)
        return value


def db_secret(secret_arn: str) -> dict:
    """The database secret's JSON (cached like every secret)."""
    secret: dict = json.loads(secret_string(secret_arn))
    return secret


def forget_secret(secret_arn: str) -> None:
    """Drop one cached secret (after the service refused it: the next use re-reads a rotated value)."""
    with _lock:
        _cache.pop(secret_arn, None)


def forget_db_secret() -> None:
    """Drop cached secrets (tests; or after an authentication failure, to re-read a rotated password)."""
    with _lock:
        _cache.clear()


def apply_db_secret(settings: MySqlSettings, secret_arn: str) -> MySqlSettings:
    """Settings with host, port, user, password (and database when the secret names one) from the secret."""
    secret = db_secret(secret_arn)
    return replace(
        settings,
        host=secret.get("host") or settings.host,
        port=int(secret.get("port") or settings.port),
        user=secret.get("username") or settings.user,
        password=secret.get("password", settings.password),
        database=secret.get("dbname") or settings.database,
    )
