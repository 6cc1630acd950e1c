"""`make chaos`: the local stack under load while faults are injected, then the guarantees checked.

    CHAOS_SECONDS=180 python -m infra.chaos        # CHAOS_CLIENTS (12), CHAOS_FAULTS_PER_KIND, CHAOS_SEED

A stack of its own on private MariaDB, Redis and broker instances (free ports, a folder under .local/chaos/), never
the machine's shared services. For CHAOS_SECONDS, CHAOS_CLIENTS signed-in users book (contended and free listings,
declined cards, transient failures, the same Idempotency-Key again after a timeout, cancellations) and read, while
faults of every kind are injected at random moments (infra/chaos/faults.py). Then it settles (faults off, the retry
run and the maintenance sweeps run until nothing is left to finish, replication catches up), checks the invariants
(infra/chaos/invariants.py), prints a report and writes it as JSON under .local/chaos/. Exit status 1 on any
violation (or if the stack itself stopped).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from infra.chaos import invariants
from infra.chaos.faults import DURABLE_KINDS, KINDS, Injector, Targets, restore_outbox
from infra.chaos.load import Load
from infra.local import services

ROOT = services.ROOT
CHAOS_DIR = services.LOCAL_DIR / "chaos"
HOLD_LIMIT_S = 30  # short, so the run meets the sweep that releases a hold whose payment_fn died
log = logging.getLogger("chaos")


@dataclass
class Settings:
    seconds: float = 180.0
    clients: int = 12
    per_kind: int = 0  # 0: one per 45 s of run, at least one
    seed: int = 0
    settle_s: float = 150.0
    durable_broker: bool = False
    kinds: tuple[str, ...] = KINDS
    extra_env: dict = field(default_factory=dict)

    @classmethod
    def from_environment(cls) -> Settings:
        seconds = float(os.environ.get("CHAOS_SECONDS", "180"))
        return cls(seconds=seconds, clients=int(os.environ.get("CHAOS_CLIENTS", "12")),
                   per_kind=int(os.environ.get("CHAOS_FAULTS_PER_KIND", "0")),
                   seed=int(os.environ.get("CHAOS_SEED", "0")) or random.randint(1, 1 << 30),
                   settle_s=float(os.environ.get("CHAOS_SETTLE_S", "150")),
                   durable_broker=os.environ.get("CHAOS_DURABLE_BROKER", "0") == "1")

    def faults_per_kind(self) -> int:
        return self.per_kind or max(1, round(self.seconds / 45))


class ChaosRun:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.work = CHAOS_DIR / self.run_id
        self.outbox = self.work / "outbox"
        self.ports = {name: services.free_port() for name in ("mysql", "redis", "kafka", "api", "s3")}
        self.mysql = self.redis = self.kafka = self.s3 = None
        self.stack: subprocess.Popen | None = None
        self.stack_log = self.work / "stack.log"
        self.base_url = f"http://127.0.0.1:{self.ports['api']}"
        self.run_dir = services.LOCAL_DIR / "run" / f"stack-{self.ports['api']}"
        self.timeline: dict[str, float] = {}

    # -- services of its own -------------------------------------------------------------------------
    def start_mysql(self):
        return services.start_private_mariadb(self.ports["mysql"], self.work / "mysql")

    def start_redis(self):
        return services.start_private_redis(self.ports["redis"], self.work / "redis")

    def start_kafka(self):
        if not self.settings.durable_broker:
            return services.start_tansu(self.ports["kafka"], self.work / "tansu.log")
        storage, storage_env = services.s3_storage(f"http://127.0.0.1:{self.ports['s3']}")
        return services.start_tansu(self.ports["kafka"], self.work / "tansu.log", storage, storage_env)

    def start_s3(self):
        """moto's server as the durable broker's S3 (the stack's own AWS endpoint starts after the broker)."""
        with open(self.work / "s3.log", "ab") as out:
            process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                        str(self.ports["s3"])], stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        if not services.wait_port("127.0.0.1", self.ports["s3"], 30, process):
            process.kill()
            raise RuntimeError(f"moto's server did not start; see {self.work / 's3.log'}")
        return services.Started("s3", process)

    def restart_mysql(self):
        self.mysql.stop()
        time.sleep(random.uniform(0.5, 2))
        self.mysql = self.start_mysql()
        return self.mysql

    def restart_redis(self):
        self.redis.stop()
        time.sleep(random.uniform(0.5, 2))
        self.redis = self.start_redis()
        return self.redis

    def restart_kafka(self):
        """SIGKILL (nothing flushed on the way out) and a start on the same storage."""
        os.kill(self.kafka.process.pid, signal.SIGKILL)
        self.kafka.process.wait(10)
        time.sleep(random.uniform(0.5, 2))
        self.kafka = self.start_kafka()
        return self.kafka

    def env(self) -> dict[str, str]:
        from infra.local.stack import child_env_base

        env = child_env_base()
        for name in ("LOCAL_AWS_PORT", "AWS_ENDPOINT_URL", "COGNITO_ENDPOINT", "DB_SECRET_ARN"):
            env.pop(name, None)
        env.update({
            "API_PORT": str(self.ports["api"]), "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.ports['kafka']}",
            "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(self.ports["mysql"]), "MYSQL_DATABASE": "booking_chaos",
            "MYSQL_USER": "root", "MYSQL_PASSWORD": "",
            "REDIS_URL": f"redis://127.0.0.1:{self.ports['redis']}/0", "REDIS_PREFIX": "chaos:",
            "MAIL_MODE": "outbox", "MAIL_OUTBOX_DIR": str(self.outbox), "STACK_START_PRIVATE": "0",
            # The sweeps at a pace the run can meet: a hold older than 30 s is finished or released, a request
            # stranded 20 s is published again, a mailer's claim 20 s old is taken over.
            "HOLD_LIMIT_S": str(HOLD_LIMIT_S), "PENDING_REDRIVE_S": "20", "EMAIL_STALE_CLAIM_S": "20",
            # The run kills processes on purpose, a few per minute each: only a real crash loop stops the stack.
            "LOCAL_CRASH_LOOP_DEATHS": "12", "LOCAL_CRASH_LOOP_WINDOW_S": "60",
            "LOG_LEVEL": os.environ.get("CHAOS_LOG_LEVEL", "WARNING"),
            **self.settings.extra_env,
        })
        return env

    # -- the run ---------------------------------------------------------------------------------------
    def sql(self, query: str, *args) -> list[dict]:
        """A query on the run's database, on a fresh connection (sees every commit; survives a restart)."""
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=self.ports["mysql"], user="root", password="",
                               database="booking_chaos", autocommit=True, connect_timeout=5, read_timeout=30,
                               cursorclass=pymysql.cursors.DictCursor)
        try:
            with conn.cursor() as cur:
                cur.execute(query, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def set_outage(self, on: bool) -> None:
        self.sql("UPDATE sandbox_state SET outage=%s WHERE id=1", 1 if on else 0)

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        if self.settings.durable_broker:
            self.s3 = self.start_s3()
        self.mysql, self.redis, self.kafka = self.start_mysql(), self.start_redis(), self.start_kafka()
        env = self.env()
        with open(self.stack_log, "wb") as out:
            self.stack = subprocess.Popen([sys.executable, "-m", "infra.local.stack", "run"], cwd=ROOT, env=env,
                                          stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while "stack up in" not in self.stack_log.read_text():
            if self.stack.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the chaos stack did not start:\n" + self.stack_log.read_text()[-3000:])
            time.sleep(0.2)

    def tokens(self) -> dict[int, str]:
        from infra.local.token import id_token

        return {user: id_token(f"user{user}@example.com", base_url=self.base_url)
                for user in range(1, self.settings.clients + 1)}

    def trigger(self, function: str) -> dict:
        result = subprocess.run([sys.executable, "-m", "infra.local.scheduler", "--trigger", function], cwd=ROOT,
                                env=self.env(), capture_output=True, text=True, timeout=120)
        try:
            return json.loads(result.stdout) if result.returncode == 0 else {"error": result.stderr[-500:]}
        except ValueError:
            return {"error": result.stdout[-500:]}

    def unsettled(self, load: Load) -> dict[str, int]:
        """What is still being finished: requests taken but neither decided nor parked, holds, unapplied changes,
        emails not yet sent."""
        decided = {r["booking_key"] for r in self.sql(
            "SELECT booking_key FROM decisions WHERE status IN ('confirmed', 'rejected')"
            " UNION SELECT booking_key FROM booking_retries WHERE status IN ('pending', 'in_flight', 'dead')")}
        open_requests = sum(1 for key, r in load.requests.items() if r.accepted() and key not in decided)
        return {
            "requests": open_requests,
            "holds": self.sql("SELECT COUNT(*) AS n FROM bookings WHERE status='held'")[0]["n"],
            "changes": self.sql("SELECT COUNT(*) AS n FROM change_log")[0]["n"],
            "emails": self.sql("SELECT COUNT(*) AS n FROM email_outbox WHERE status IN ('pending', 'sending')")[0]["n"],
        }

    def settle(self, load: Load) -> dict:
        """Faults off; the retry run and the sweeps until nothing is left to finish (or settle_s passes)."""
        started = time.monotonic()
        deadline = started + self.settings.settle_s
        wait_healthy(self.base_url)
        rounds = 0
        left: dict[str, int] = {}
        while time.monotonic() < deadline:
            try:
                left = self.unsettled(load)
            except Exception as exc:  # noqa: BLE001 - MySQL was restarted a moment ago
                left = {"error": 1}
                log.warning("settle: %r", exc)
            if not any(left.values()):
                break
            rounds += 1
            self.trigger("RetryFunction")  # re-drives due retry rows and sends pending emails
            self.trigger("MaintenanceFunction")  # stale holds, stranded requests
            time.sleep(3)
        return {"seconds": round(time.monotonic() - started, 1), "rounds": rounds, "left": left}

    def reconcile(self) -> dict:
        result = subprocess.run([sys.executable, "-m", "replication_fn.reconcile"], cwd=ROOT, env=self.env(),
                                capture_output=True, text=True, timeout=120)
        try:
            return json.loads(result.stdout)
        except ValueError:
            return {"error": (result.stdout + result.stderr)[-500:]}

    def topic_keys(self, topic: str = "booking-requests") -> set[str]:
        """Every key on the topic now, read from the start of each partition by a client of no group."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=[f"127.0.0.1:{self.ports['kafka']}"], enable_auto_commit=False,
                                 bootstrap_timeout_ms=5000, request_timeout_ms=10000)
        try:
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            ends = consumer.end_offsets(partitions)
            keys: set[str] = set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in partitions):
                for records in consumer.poll(timeout_ms=500, max_records=5000).values():
                    keys.update(r.key.decode() for r in records if r.key)
            return keys
        finally:
            consumer.close()

    def restarts(self) -> dict:
        counts: dict[str, int] = {}
        try:
            for entry in json.loads((self.run_dir / "restarts.json").read_text()).values():
                counts[entry["function"]] = counts.get(entry["function"], 0) + entry["restarts"]
            workers = json.loads((self.run_dir / "api-workers.json").read_text())
            counts["BookingApiFunction workers"] = workers["restarts"]
        except (OSError, ValueError, KeyError):
            pass
        return counts

    def stop(self) -> None:
        if self.stack is not None and self.stack.poll() is None:
            self.stack.send_signal(signal.SIGTERM)
            try:
                self.stack.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.stack.pid, signal.SIGKILL)
        for handle in (self.kafka, self.redis, self.mysql, self.s3):
            if handle is not None:
                try:
                    os.kill(handle.process.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                handle.stop()
        for data in ("mysql", "redis"):  # the data is the run's alone; the logs and the report stay
            shutil.rmtree(self.work / data, ignore_errors=True)

    def run_and_report(self) -> tuple[dict, Path]:
        """The run, its stack stopped whatever happened, its report written to .local/chaos/<run>.json."""
        try:
            report = self.run()
        finally:
            self.stop()
        path = CHAOS_DIR / f"{self.run_id}.json"
        path.write_text(json.dumps(report, indent=2, default=str))
        return report, path

    def run(self) -> dict:
        s = self.settings
        rng = random.Random(s.seed)
        self.start()
        load = Load(self.base_url, self.tokens(), seed=rng.randint(0, 1 << 30))
        kinds = s.kinds + (DURABLE_KINDS if s.durable_broker else ())
        targets = Targets(self.run_dir, self.outbox, self.mysql, self.redis, self.kafka, self.restart_mysql,
                          self.restart_redis, self.restart_kafka if s.durable_broker else None, self.sql,
                          self.set_outage)
        injector = Injector(targets, s.seconds, s.faults_per_kind(), rng, kinds)
        began = time.monotonic()
        load.start()
        injector.start()
        time.sleep(s.seconds)
        injector.finish()
        load.finish()
        load_s = time.monotonic() - began
        # Faults off (each restores itself; these are for one cut short).
        os.kill(targets.kafka.process.pid, signal.SIGCONT)  # type: ignore[attr-defined]
        restore_outbox(self.outbox)
        self.set_outage(False)
        settled = self.settle(load)
        report_reconcile = self.reconcile()
        stack_alive = self.stack is not None and self.stack.poll() is None
        checks = [
            invariants.no_overlapping_confirmed_bookings(self.sql),
            invariants.charges_match_confirmed_bookings(self.sql),
        ]
        final, request_counts = invariants.every_request_decided_or_parked(self.sql, load.requests)
        checks += [
            final,
            invariants.answers_never_contradicted(self.sql, load.requests),
            invariants.one_email_per_confirmed_booking(self.sql, self.outbox),
            invariants.no_hold_past_the_limit(self.sql, HOLD_LIMIT_S),
            invariants.read_model_equals_mysql(report_reconcile),
            invariants.acknowledged_requests_on_the_broker(self.topic_keys(), load.requests),
        ]
        if not stack_alive:
            checks.append(invariants.Result("stack_alive", "the stack kept running (healed every death)",
                                            ["the stack stopped: see " + str(self.stack_log)]))
        outcomes = {r["status"] + (f" {r['reason']}" if r["reason"] else ""): r["n"] for r in self.sql(
            "SELECT status, reason, COUNT(*) AS n FROM decisions GROUP BY status, reason ORDER BY n DESC")}
        return {
            "run_id": self.run_id, "seed": s.seed, "seconds": round(load_s, 1), "clients": s.clients,
            "durable_broker": s.durable_broker,
            "requests": {"sent": len(load.requests), **request_counts},
            "answers": load.answers_by_kind(), "reads": load.reads, "decisions": outcomes,
            "faults": {kind: injector.by_kind().get(kind, 0) for kind in kinds},
            "fault_log": [vars(f) for f in injector.injected], "fault_errors": injector.errors,
            "restarts": self.restarts(), "settle": settled, "reconcile": report_reconcile,
            "invariants": {c.name: c.to_dict() for c in checks},
            "violations": sum(len(c.violations) for c in checks),
            "load_average": list(os.getloadavg()),
        }


def print_report(report: dict, path: Path) -> None:
    def table(title: str, rows: dict) -> None:
        print(f"\n{title}")
        width = max((len(str(k)) for k in rows), default=10)
        for key, value in rows.items():
            print(f"  {str(key):<{width}}  {value}")

    print(f"chaos run {report['run_id']} (seed {report['seed']}): {report['seconds']} s, {report['clients']} clients,"
          f" durable broker: {report['durable_broker']}, load average {report['load_average']}")
    table("requests", report["requests"])
    table("requests by the last answer their client got", report["answers"])
    table("decisions in MySQL", report["decisions"])
    table("faults injected", report["faults"])
    table("restarts", report["restarts"])
    print(f"\nsettled in {report['settle']['seconds']} s ({report['settle']['rounds']} rounds of retry run + sweeps);"
          f" left: {report['settle']['left']}")
    print("\ninvariant                violations  keys")
    for name, result in report["invariants"].items():
        print(f"  {name:<22} {result['violations']:>10}  {', '.join(result['keys'][:5])}")
    print(f"\n{report['violations']} violations; report: {path}")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    settings = Settings.from_environment()
    chaos = ChaosRun(settings)
    print(f"chaos: {settings.seconds:.0f} s, {settings.clients} clients, {settings.faults_per_kind()} faults of each"
          f" kind, seed {settings.seed}; working in {chaos.work}", flush=True)
    report, path = chaos.run_and_report()
    print_report(report, path)
    return 1 if report["violations"] else 0


def wait_healthy(base_url: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url + "/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


if __name__ == "__main__":
    sys.exit(main())
