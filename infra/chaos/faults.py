"""The faults the chaos run injects, at random moments, one at a time, into its own stack and private services.

Every process signalled here is found through the chaos stack's own run folder (children.json, api-workers.json)
or is a private service the run started itself: nothing of another stack or of the machine's shared services.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("chaos")

KILLS = {  # fault kind → the stack's process names it picks from (children.json)
    "kill_payment_poller": "PaymentFunction-",
    "kill_decisions_listener": "DecisionsListenerFunction-",
    "kill_replication": "ReplicationFunction-",
}
KINDS = ("kill_payment_poller", "kill_payment_mid_batch", "kill_decisions_listener", "kill_api_worker",
         "kill_replication", "broker_stall", "mysql_restart", "redis_restart", "provider_outage", "mail_failure")
DURABLE_KINDS = ("broker_restart",)


@dataclass
class Injected:
    kind: str
    at_s: float  # seconds into the run
    took_s: float = 0.0
    detail: dict = field(default_factory=dict)


@dataclass
class Targets:
    """What the faults act on: the chaos stack's run folder and the run's private services."""
    run_dir: Path
    outbox_dir: Path
    mysql: object  # infra.local.services.Started, restartable
    redis: object
    kafka: object
    restart_mysql: Callable[[], object]
    restart_redis: Callable[[], object]
    restart_kafka: Callable[[], object] | None
    sql: Callable[..., list[dict]]  # a query on the chaos database (a fresh connection)
    set_outage: Callable[[bool], None]


class Injector:
    def __init__(self, targets: Targets, seconds: float, per_kind: int, rng: random.Random,
                 kinds: tuple[str, ...] = KINDS):
        self.targets = targets
        self.rng = rng
        # Faults start between 5% and 85% of the run, so the load meets each and the run ends with time to settle.
        self.plan = sorted((rng.uniform(0.05, 0.85) * seconds, kind) for kind in kinds for _ in range(per_kind))
        self.injected: list[Injected] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="chaos-faults")
        self.started = 0.0
        self.errors: list[str] = []

    def start(self) -> None:
        self.started = time.monotonic()
        self.thread.start()

    def finish(self, timeout: float = 60) -> None:
        self.stop.set()
        self.thread.join(timeout)

    def _run(self) -> None:
        for at_s, kind in self.plan:
            if self.stop.wait(max(0.0, self.started + at_s - time.monotonic())):
                return
            began = time.monotonic()
            fault = Injected(kind, round(began - self.started, 1))
            try:
                fault.detail = getattr(self, kind)() or {}
            except Exception as exc:  # noqa: BLE001 - a fault that could not be injected is reported, not fatal
                fault.detail = {"error": repr(exc)}
                self.errors.append(f"{kind}: {exc!r}")
            fault.took_s = round(time.monotonic() - began, 2)
            self.injected.append(fault)
            log.info("fault %s at %.1f s: %s", kind, fault.at_s, fault.detail)

    def by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for fault in self.injected:
            if "error" not in fault.detail:
                counts[fault.kind] = counts.get(fault.kind, 0) + 1
        return counts

    # -- processes of the stack -------------------------------------------------------------------
    def _children(self) -> dict[str, int]:
        return json.loads((self.targets.run_dir / "children.json").read_text())

    def _kill(self, prefix: str) -> dict:
        names = sorted(n for n in self._children() if n.startswith(prefix))
        name = self.rng.choice(names)
        for _ in range(100):  # the one picked may be dead already (killed a moment ago, not started again yet)
            pid = self._children()[name]
            if _sigkill(pid):
                return {"process": name, "pid": pid}
            time.sleep(0.1)
        raise RuntimeError(f"{name} was not running again within 10 s")

    def kill_payment_poller(self) -> dict:
        return self._kill(KILLS["kill_payment_poller"])

    def kill_decisions_listener(self) -> dict:
        return self._kill(KILLS["kill_decisions_listener"])

    def kill_replication(self) -> dict:
        return self._kill(KILLS["kill_replication"])

    def kill_api_worker(self) -> dict:
        for _ in range(100):
            workers = json.loads((self.targets.run_dir / "api-workers.json").read_text())["workers"]
            pid = self.rng.choice(workers)
            if _sigkill(pid):
                return {"process": "api worker", "pid": pid}
            time.sleep(0.1)
        raise RuntimeError("no API worker was running within 10 s")

    def kill_payment_mid_batch(self) -> dict:
        """SIGKILL every payment poller at a moment a batch is between charge and confirm: a booking still held
        whose charge the provider has already taken (watched for up to 8 s; killed anyway after that)."""
        caught = None
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                rows = self.targets.sql(
                    "SELECT b.booking_key FROM bookings b JOIN sandbox_charges c ON c.idempotency_key = b.booking_key"
                    " WHERE b.status = 'held' AND c.status = 'succeeded' LIMIT 1")
            except Exception:  # noqa: BLE001 - MySQL restarting: keep watching
                rows = []
            if rows:
                caught = rows[0]["booking_key"]
                break
            time.sleep(0.005)
        pids = {n: p for n, p in self._children().items() if n.startswith(KILLS["kill_payment_poller"])}
        killed = sorted(name for name, pid in pids.items() if _sigkill(pid))
        if not killed:
            raise RuntimeError("no payment poller was running")
        return {"processes": killed, "between_charge_and_confirm": caught}

    # -- services ---------------------------------------------------------------------------------
    def broker_stall(self) -> dict:
        pid = self.targets.kafka.process.pid  # type: ignore[attr-defined]
        seconds = round(self.rng.uniform(3, 5), 1)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        return {"stalled_s": seconds}

    def broker_restart(self) -> dict:
        assert self.targets.restart_kafka is not None
        self.targets.kafka = self.targets.restart_kafka()
        return {"pid": self.targets.kafka.process.pid}  # type: ignore[attr-defined]

    def mysql_restart(self) -> dict:
        self.targets.mysql = self.targets.restart_mysql()
        return {"pid": self.targets.mysql.process.pid}  # type: ignore[attr-defined]

    def redis_restart(self) -> dict:
        self.targets.redis = self.targets.restart_redis()
        return {"pid": self.targets.redis.process.pid, "lost": "everything"}  # type: ignore[attr-defined]

    def provider_outage(self) -> dict:
        seconds = round(self.rng.uniform(3, 6), 1)
        self.targets.set_outage(True)
        try:
            time.sleep(seconds)
        finally:
            self._retry(lambda: self.targets.set_outage(False))
        return {"outage_s": seconds}

    def mail_failure(self) -> dict:
        """The mailer fails (locally the outbox folder mailer stands in for SES): its folder is a file for a while."""
        seconds = round(self.rng.uniform(3, 6), 1)
        outbox = self.targets.outbox_dir
        away = outbox.with_name(outbox.name + ".away")
        outbox.mkdir(parents=True, exist_ok=True)
        outbox.rename(away)
        outbox.write_text("mail is failing (chaos)\n")
        try:
            time.sleep(seconds)
        finally:
            restore_outbox(outbox)
        return {"failing_s": seconds}

    def _retry(self, action: Callable[[], None], tries: int = 30) -> None:
        for attempt in range(tries):
            try:
                action()
                return
            except Exception:  # noqa: BLE001 - MySQL may be restarting right now
                if attempt == tries - 1:
                    raise
                time.sleep(0.5)


def _sigkill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


def restore_outbox(outbox: Path) -> None:
    away = outbox.with_name(outbox.name + ".away")
    if outbox.is_file():
        outbox.unlink()
    if away.is_dir():
        if outbox.is_dir():  # cannot happen while the file stood there; merge to be safe
            for item in away.iterdir():
                shutil.move(str(item), outbox / item.name)
            away.rmdir()
        else:
            away.rename(outbox)
