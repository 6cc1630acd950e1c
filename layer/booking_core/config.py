"""Settings, read from the environment on every call so tests and two stacks side by side can differ.

Local defaults match the local stack (infra/local). Nothing here connects to anything.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _float(name: str, default: float) -> float:
    return float(_env(name, str(default)))


@dataclass(frozen=True)
class MySqlSettings:
    host: str
    port: int
    user: str
    password: str
    database: str
    connect_timeout: float


def mysql_settings() -> MySqlSettings:
    """The MYSQL_* variables. On AWS a DB_SECRET_ARN names the secret that supplies host, user and password:
    the MySQL adapter applies it (adapters.mysql.mysql_settings), since reading it is a call to AWS."""
    return MySqlSettings(
        host=_env("MYSQL_HOST", "127.0.0.1"),
        port=_int("MYSQL_PORT", 3306),
        user=_env("MYSQL_USER", "root"),
        password=os.environ.get("MYSQL_PASSWORD", ""),
        database=_env("MYSQL_DATABASE", "booking"),
        connect_timeout=_float("MYSQL_CONNECT_TIMEOUT_S", 3.0),
    )


def db_secret_arn() -> str | None:
    """Secrets Manager secret (RDS JSON: host, port, username, password, dbname) that overrides MYSQL_*."""
    return os.environ.get("DB_SECRET_ARN") or None


def secret_cache_ttl_s() -> float:
    """How long a warm container keeps a secret before reading it again (a rotated password is seen then)."""
    return _float("SECRET_CACHE_TTL_S", 300.0)


def redis_url() -> str:
    return _env("REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_socket_timeout_s() -> float:
    """How long a Redis reply may take before the command fails (a hung Redis must not hang a request); blocking
    waits are cut into slices below it (adapters/redis_decision_store.BLOCK_SLICE_S)."""
    return max(3.0, _float("REDIS_SOCKET_TIMEOUT_S", 5.0))


def redis_prefix() -> str:
    """Every Redis key of ours starts with this, so stacks and test runs never touch each other's keys."""
    return _env("REDIS_PREFIX", "bk:")


def kafka_bootstrap_servers() -> str | None:
    """None means: no broker configured, the local stack starts its embedded one."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None


def kafka_bootstrap_or_local() -> str:
    return kafka_bootstrap_servers() or f"127.0.0.1:{kafka_port()}"


def kafka_port() -> int:
    """Port of the embedded broker when KAFKA_BOOTSTRAP_SERVERS is not set."""
    return _int("KAFKA_PORT", 9092)


def kafka_auth() -> str:
    """'plaintext' locally, 'iam' for MSK IAM (SASL_SSL + OAUTHBEARER)."""
    return _env("KAFKA_AUTH", "plaintext").lower()


def aws_region() -> str:
    return _env("AWS_REGION", _env("AWS_DEFAULT_REGION", "us-east-1"))


def requests_topic() -> str:
    return _env("BOOKING_REQUESTS_TOPIC", "booking-requests")


def decisions_topic() -> str:
    return _env("BOOKING_DECISIONS_TOPIC", "booking-decisions")


def topic_partitions() -> int:
    return _int("KAFKA_TOPIC_PARTITIONS", 6)


def topic_replication_factor() -> int:
    """Copies of each partition the booking topics are created with: 3 on MSK (KAFKA_AUTH=iam), where a rolling
    patch takes one broker down at a time and acks=all must mean something; 1 on a local single broker."""
    return _int("KAFKA_TOPIC_REPLICATION_FACTOR", 3 if kafka_auth() == "iam" else 1)


def topic_min_insync_replicas() -> int:
    """min.insync.replicas of the booking topics: with 3 copies and acks=all a write survives one broker down."""
    return _int("KAFKA_TOPIC_MIN_INSYNC_REPLICAS", 2 if kafka_auth() == "iam" else 1)


def publish_timeout_s() -> float:
    """How long the API waits for the broker to acknowledge a request before queueing it for retry."""
    return _float("PUBLISH_TIMEOUT_S", 3.0)


def decision_timeout_s() -> float:
    """How long POST /v1/bookings waits for the decision before answering 202 pending."""
    return _float("DECISION_TIMEOUT_S", 8.0)


def decision_ttl_s() -> int:
    """How long the decision store keeps a request's entry: while a client waits or polls. After that (or once
    Redis has lost it) the status URL answers from MySQL, and a repeated key is checked against MySQL's decision."""
    return _int("DECISION_TTL_S", 15 * 60)


def max_pending_per_user() -> int:
    """Requests one user may have awaiting a decision at once (queued ones do not count); 0: no limit."""
    return _int("MAX_PENDING_PER_USER", 10)


def pending_stale_s() -> float:
    """A request still awaiting a decision after this long no longer counts against its user's limit."""
    return _float("PENDING_STALE_S", 600.0)


def hold_limit_s() -> float:
    """A booking held longer than this lost its payment_fn: the maintenance sweep completes or releases it."""
    return _float("HOLD_LIMIT_S", 900.0)


def pending_redrive_s() -> float:
    """A request pending this long since its claim (or last re-drive) is published again by the sweep."""
    return _float("PENDING_REDRIVE_S", 120.0)


def max_redrives() -> int:
    """Re-drives of a stranded request before it is parked in the retry table (answered queued)."""
    return _int("MAX_REDRIVES", 3)


def queued_max_age_s() -> float:
    """A request waiting in the retry table longer than this is answered `expired` (never charged)."""
    return _float("QUEUED_MAX_AGE_S", 24 * 3600.0)


RETENTION_DEFAULT_DAYS = {"decisions": 90.0, "retries": 30.0, "emails": 30.0, "change_log": 30.0, "sandbox": 30.0,
                          "sandbox_refunds": 30.0}


def retention_days() -> dict[str, float]:
    """Days finished rows are kept, per kind (RETENTION_DAYS_DECISIONS, ... override each); a confirmed booking's
    decision is kept as long as the booking."""
    return {kind: _float(f"RETENTION_DAYS_{kind.upper()}", days) for kind, days in RETENTION_DEFAULT_DAYS.items()}


def api_port() -> int:
    return _int("API_PORT", 8000)


def api_base_path() -> str:
    return _env("API_BASE_PATH", "")


def max_body_bytes() -> int:
    return _int("MAX_BODY_BYTES", 16 * 1024)


class ConfigurationError(ValueError):
    """The settings cannot work together (raised where they are first used, naming the variable to fix)."""


def stage() -> str:
    """The deployment stage (template parameter Stage: dev, staging, prod); 'local' when unset."""
    return _env("STAGE", "local")


def payment_provider() -> str:
    """'stripe' (deployed stages) or 'sandbox' (the MySQL-backed test provider; refused where STAGE=prod)."""
    return _env("PAYMENT_PROVIDER", "sandbox")


def stripe_secret_arn() -> str | None:
    """Secrets Manager secret holding the Stripe secret key: the raw key, or JSON {"secret_key": ...}."""
    return os.environ.get("STRIPE_SECRET_ARN") or None


def stripe_api_base() -> str:
    """Stripe's API base URL; tests point it at the local stand-in."""
    return _env("STRIPE_API_BASE", "https://api.stripe.com")


def payment_quick_retries() -> int:
    """In-process retries of a transient payment failure before the request is parked for the nightly run."""
    return _int("PAYMENT_QUICK_RETRIES", 2)


def retry_max_attempts() -> int:
    return _int("RETRY_MAX_ATTEMPTS", 5)


def retry_base_delay_s() -> float:
    return _float("RETRY_BASE_DELAY_S", 60.0)


def replication_run_s() -> float:
    """How long one replication tail invocation runs; 0 means until the process stops (the local loop)."""
    return _float("REPLICATION_RUN_S", 55.0)


def mail_mode() -> str:
    """'outbox' writes .eml files to MAIL_OUTBOX_DIR, 'ses' sends through Amazon SES, 'off' sends nothing."""
    return _env("MAIL_MODE", "outbox")


def email_stale_claim_s() -> float:
    """A sender's claim on an email older than this (the sender died mid-send) may be taken by another sender."""
    return _float("EMAIL_STALE_CLAIM_S", 600.0)


def mail_outbox_dir() -> str:
    return _env("MAIL_OUTBOX_DIR", os.path.join(os.getcwd(), ".local", "outbox"))


def mail_sender() -> str:
    return _env("MAIL_SENDER", "bookings@example.com")


def log_level() -> str:
    return _env("LOG_LEVEL", "INFO")
