"""docker-compose.yml (for people with Docker): Redpanda, MySQL 8 and Redis 7 on the ports the stack expects."""
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from booking_core import config

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _host_ports(service: dict) -> set[int]:
    return {int(str(p).split(":")[-2]) for p in service.get("ports", [])}


def test_the_compose_file_runs_redpanda_mysql_8_and_redis_7_on_the_default_ports(monkeypatch):
    for name in ("KAFKA_PORT", "MYSQL_PORT", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    services = _compose()["services"]

    assert services["kafka"]["image"].startswith("docker.redpanda.com/redpandadata/redpanda:")
    assert services["mysql"]["image"].startswith("mysql:8")
    assert services["redis"]["image"].startswith("redis:7")
    assert config.kafka_port() in _host_ports(services["kafka"])
    assert config.mysql_settings().port in _host_ports(services["mysql"])
    assert urlparse(config.redis_url()).port in _host_ports(services["redis"])
    # Clients on the host reach Redpanda at the address it advertises.
    assert f"--advertise-kafka-addr=PLAINTEXT://127.0.0.1:{config.kafka_port()}" in services["kafka"]["command"]


def test_mysql_accepts_the_stacks_default_credentials_and_database(monkeypatch):
    monkeypatch.delenv("MYSQL_DATABASE", raising=False)
    env = _compose()["services"]["mysql"]["environment"]

    assert env["MYSQL_ALLOW_EMPTY_PASSWORD"] == "yes" and config.mysql_settings().password == ""
    assert env["MYSQL_DATABASE"] == "booking" == config.mysql_settings().database


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="no docker-compose binary (apt-get install docker-compose)")
def test_docker_compose_accepts_the_file():
    result = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
