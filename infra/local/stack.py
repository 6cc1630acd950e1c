"""The local stack, driven by template.yaml, without Docker.

    python -m infra.local.stack run      # foreground; Ctrl-C stops everything it started
    python -m infra.local.stack up       # background; returns once the API answers
    python -m infra.local.stack down     # stops exactly what `up` started
    python -m infra.local.stack status

It makes sure Kafka (the embedded Tansu broker unless KAFKA_BOOTSTRAP_SERVERS is set), MySQL and Redis answer
(starting private instances where they are missing), applies migrations, creates the topics, loads the demo
data, then runs every function of the template with its events: Api → the HTTP API on API_PORT;
MSK/SelfManagedKafka → a poller process (LOCAL_KAFKA_CONCURRENCY per event); Schedule → a scheduler process.
Pid files live in .local/run/, one set per API_PORT, so two stacks can run side by side.

The stack heals like Lambda: a function process that dies (any signal, any exit) is started again with the same
command line after a short back-off, and the restart is logged and counted (`status` shows the counts); only a
crash loop (LOCAL_CRASH_LOOP_DEATHS deaths of one process within LOCAL_CRASH_LOOP_WINDOW_S) stops the stack,
naming the process and how it last ended.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from booking_core import config
from infra.local import services, template
from infra.local.lifetime import stop_event_on_signals

ROOT = services.ROOT
RUN_DIR = services.LOCAL_DIR / "run"
LOG_DIR = services.LOCAL_DIR / "logs"
KAFKA_EVENT_TYPES = ("MSK", "SelfManagedKafka")
SCHEDULE_TYPES = ("Schedule", "ScheduleV2")
DEFAULT_KAFKA_CONCURRENCY = 2  # poller processes per Kafka event when LOCAL_KAFKA_CONCURRENCY is not set
RESTART_BACKOFF_S = (0.2, 5.0)  # first restart after 0.2 s, doubling with each recent death, at most 5 s


def crash_loop_limit() -> tuple[int, float]:
    """(deaths, window in seconds): that many deaths of one process within the window is a crash loop."""
    return (int(os.environ.get("LOCAL_CRASH_LOOP_DEATHS", "5")),
            float(os.environ.get("LOCAL_CRASH_LOOP_WINDOW_S", "60")))


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


@dataclass
class Supervised:
    """A function process of the stack and what it takes to start it again."""
    name: str
    function: str  # the template's logical id; it is also in the command line (pgrep -f <LogicalId>)
    args: list[str]
    process: subprocess.Popen
    restarts: int = 0
    deaths: list[float] = field(default_factory=list)  # monotonic times of recent deaths
    restart_at: float | None = None
    last_exit: str = ""


def kafka_concurrency(logical_id: str, default: int, metadata: dict | None = None) -> int:
    """Poller processes for one function's Kafka events: LOCAL_KAFKA_CONCURRENCY_<LogicalId>, else the
    function's `Metadata: {LocalPollers: n}` in the template, else the default."""
    configured = os.environ.get(f"LOCAL_KAFKA_CONCURRENCY_{logical_id}") or (metadata or {}).get("LocalPollers")
    return int(configured or default)


def stack_id() -> str:
    return f"stack-{config.api_port()}"


def pid_file() -> Path:
    return RUN_DIR / f"{stack_id()}.pid"


def api_url() -> str:
    return f"http://127.0.0.1:{config.api_port()}"


def api_healthy(timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(api_url() + "/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def child_env_base() -> dict[str, str]:
    """This environment, with the repo and the layer importable, for a process of ours."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "layer"), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def child_env() -> dict[str, str]:
    """For the stack's functions: also the broker the stack started or found, so none starts its own."""
    return {**child_env_base(), "KAFKA_BOOTSTRAP_SERVERS": config.kafka_bootstrap_or_local()}


class Stack:
    def __init__(self, template_path: Path = template.TEMPLATE):
        self.template_path = template_path
        self.services: list[services.Started] = []
        self.children: list[Supervised] = []
        self.lines: list[str] = []
        self.run_dir = RUN_DIR / stack_id()

    # -- services --------------------------------------------------------------------------------
    def start_services(self) -> None:
        from infra.demo_data import load_demo_data
        from infra.migrate import migrate
        from infra.topics import ensure_topics

        started = time.monotonic()
        durable = services.kafka_storage() == "s3" and not config.kafka_bootstrap_servers()
        if durable:  # the broker keeps its records in the local AWS endpoint's S3, so that one starts first
            self.start_aws_endpoint()
        kafka = services.ensure_kafka(s3_endpoint=os.environ["AWS_ENDPOINT_URL"] if durable else None)
        if kafka:
            self.services.append(kafka)
            os.environ["KAFKA_BOOTSTRAP_SERVERS"] = kafka.details["bootstrap"]
            where = f"durable: s3://{services.TANSU_BUCKET}/ on the local AWS endpoint" if durable else "in memory"
            self.lines.append(f"kafka   embedded Tansu on {kafka.details['bootstrap']} ({where};"
                              f" pid {kafka.process.pid})")
        else:
            self.lines.append(f"kafka   {config.kafka_bootstrap_servers()} (configured)")
        for ensure in (services.ensure_mysql, services.ensure_redis):
            handle = ensure()
            if handle:
                self.services.append(handle)
        s = config.mysql_settings()
        mysql_private = any(h.name == "mysql" for h in self.services)
        redis_private = any(h.name == "redis" for h in self.services)
        applied = migrate()
        counts = load_demo_data()
        topics = ensure_topics()
        if not durable:
            self.start_aws_endpoint()
        self.lines.append(f"mysql   {s.host}:{s.port}/{s.database} ({'private instance' if mysql_private else 'running'};"
                          f" {len(applied)} migrations applied; {counts['users']} users,"
                          f" {counts['listings']} listings)")
        self.lines.append(f"redis   {config.redis_url()} prefix {config.redis_prefix()!r}"
                          f" ({'private instance' if redis_private else 'running'})")
        self.lines.append("topics  " + ", ".join(f"{t} ({n} partitions)" for t, n in sorted(topics.items())))
        self.services_s = time.monotonic() - started

    def start_aws_endpoint(self) -> None:
        """moto's server as the stack's AWS (Cognito with the demo users): every function and the API get its
        endpoint, as a deployed function gets AWS's."""
        aws = services.start_aws_endpoint(services.local_aws_port(), self.template_path, self.run_dir, child_env(),
                                          LOG_DIR / f"{stack_id()}-aws-endpoint.log")
        self.services.append(aws)
        os.environ.update({
            "AWS_ENDPOINT_URL": aws.details["endpoint"],
            "COGNITO_ENDPOINT": aws.details["endpoint"],
            "COGNITO_USER_POOL_ID": aws.details["userPoolId"],
            "COGNITO_CLIENT_ID": aws.details["userPoolClientId"],
        })
        # moto takes any credentials; the local functions must not sign with a developer's real ones.
        os.environ.update({"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"})
        os.environ.pop("AWS_SESSION_TOKEN", None)
        self.lines.append(f"aws     {aws.details['endpoint']} (moto: Cognito pool {aws.details['userPoolId']},"
                          f" client {aws.details['userPoolClientId']}; demo users user1..24@example.com)")

    # -- functions -------------------------------------------------------------------------------
    def _popen(self, name: str, args: list[str]) -> subprocess.Popen:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_path = LOG_DIR / f"{stack_id()}-{name}.log"
        with open(log_path, "ab") as log:
            return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=child_env(),
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _spawn(self, name: str, function: str, args: list[str]) -> subprocess.Popen:
        process = self._popen(name, args)
        self.children.append(Supervised(name, function, args, process))
        self._write_children()
        return process

    def _write_children(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        pids = {c.name: c.process.pid for c in self.children}
        pids.update({h.name: h.process.pid for h in self.services if h.process})
        _write_atomically(self.run_dir / "children.json", json.dumps(pids))
        _write_atomically(self.run_dir / "restarts.json", json.dumps(
            {c.name: {"function": c.function, "restarts": c.restarts, "last_exit": c.last_exit} for c in self.children}))

    def supervise(self, now: float | None = None) -> str | None:
        """Start again every function process that died, after its back-off; the crash loop's message, if any.

        Called about four times a second by `run`. A process being started again keeps its name, logical id
        and arguments, so it takes the same partitions or schedule as the one that died."""
        now = time.monotonic() if now is None else now
        deaths_limit, window_s = crash_loop_limit()
        changed = False
        for child in self.children:
            if child.restart_at is None:
                returncode = child.process.poll()
                if returncode is None:
                    continue
                child.last_exit = describe_exit(returncode)
                child.deaths = [t for t in child.deaths if now - t < window_s] + [now]
                if len(child.deaths) >= deaths_limit:
                    return (f"{child.name} ({child.function}) died {len(child.deaths)} times within {window_s:.0f} s"
                            f" (last: {child.last_exit}): a crash loop; see {LOG_DIR}/{stack_id()}-{child.name}.log")
                backoff = min(RESTART_BACKOFF_S[1], RESTART_BACKOFF_S[0] * 2 ** (len(child.deaths) - 1))
                child.restart_at = now + backoff
                print(f"stack: {child.name} ({child.function}, pid {child.process.pid}) {child.last_exit};"
                      f" starting it again in {backoff:.1f} s", file=sys.stderr, flush=True)
            elif now >= child.restart_at:
                child.process = self._popen(child.name, child.args)
                child.restarts += 1
                child.restart_at = None
                changed = True
                print(f"stack: {child.name} ({child.function}) started again as pid {child.process.pid}"
                      f" (restart {child.restarts})", file=sys.stderr, flush=True)
        if changed:
            self._write_children()
        return None

    def _wait_ready(self, files: list[Path], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(f.exists() for f in files):
                return
            for child in self.children:
                if child.process.poll() is not None:
                    raise services.ServiceMissing(f"{child.name} exited at start; see {LOG_DIR}/{stack_id()}-"
                                                  f"{child.name}.log")
            time.sleep(0.05)
        missing = [f.name for f in files if not f.exists()]
        raise services.ServiceMissing(f"not ready after {timeout:.0f}s: {', '.join(missing)}")

    def start_functions(self) -> None:
        functions = template.functions(self.template_path)
        default_shards = int(os.environ.get("LOCAL_KAFKA_CONCURRENCY", str(DEFAULT_KAFKA_CONCURRENCY)))
        ready: list[Path] = []
        for ready_file in self.run_dir.glob("ready-*"):
            ready_file.unlink()
        api_function = None
        for function in functions.values():
            for event in function.events:
                if event.type in KAFKA_EVENT_TYPES:
                    shards = kafka_concurrency(function.logical_id, default_shards, function.metadata)
                    for i in range(shards):
                        name = f"{function.logical_id}-{event.name}-{i}"
                        ready_file = self.run_dir / f"ready-{name}"
                        ready.append(ready_file)
                        self._spawn(name, function.logical_id, [
                            "infra.local.poller", function.logical_id, event.name, "--shard", f"{i}/{shards}",
                            "--template", str(self.template_path), "--ready-file", str(ready_file)])
                    self.lines.append(f"poller  {function.logical_id} ← {','.join(event.properties.get('Topics', []))}"
                                      f" (group {event.properties.get('ConsumerGroupId')}, {shards} shards)")
                elif event.type == "Api":
                    api_function = function
            if any(e.type in SCHEDULE_TYPES for e in function.events):
                name = f"{function.logical_id}-schedule"
                ready_file = self.run_dir / f"ready-{name}"
                ready.append(ready_file)
                self._spawn(name, function.logical_id, [
                    "infra.local.scheduler", "--function", function.logical_id,
                    "--template", str(self.template_path), "--ready-file", str(ready_file)])
                exprs = [str(e.properties.get("Schedule")) for e in function.events if e.type in SCHEDULE_TYPES]
                self.lines.append(f"sched   {function.logical_id} {', '.join(exprs)}")
        # Consumers are positioned before the API takes its first request, so no request is published
        # to a topic nobody reads yet.
        self._wait_ready(ready, 60)
        if api_function is not None:
            self._spawn("api", api_function.logical_id, ["infra.local.api", api_function.logical_id, "--template",
                                                         str(self.template_path), "--state-file",
                                                         str(self.run_dir / "api-workers.json")])
            deadline = time.monotonic() + 30
            while not api_healthy(0.5):
                if time.monotonic() > deadline:
                    raise services.ServiceMissing(f"the API did not answer on {api_url()}")
                time.sleep(0.05)
            self.lines.append(f"api     {api_url()} ({api_function.logical_id})")

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + 10
        for process in (c.process for c in self.children):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for handle in reversed(self.services):
            handle.stop()
        for name in ("children.json", "restarts.json", "api-workers.json"):
            (self.run_dir / name).unlink(missing_ok=True)


def _write_atomically(path: Path, text: str) -> None:
    """Readers (status, tests, the chaos run) never see a half-written file."""
    partial = path.with_name(path.name + ".part")
    partial.write_text(text)
    partial.replace(path)


def demo_booking() -> str:
    """Sign in as the first demo user and book a stay through the API, as a client would, and say what came back
    (make run shows it)."""
    import datetime as dt
    import random

    from infra.local.token import DEFAULT_USER, id_token

    token = id_token(DEFAULT_USER)
    for _ in range(3):  # far-future random dates: a rerun on the same database still finds free nights
        check_in = dt.date.today() + dt.timedelta(days=random.randint(60, 3000))
        body = {"listing_id": 7, "check_in": check_in.isoformat(),
                "check_out": (check_in + dt.timedelta(days=3)).isoformat(), "guests": 2, "payment_token": "tok_visa"}
        request = urllib.request.Request(api_url() + "/v1/bookings", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {token}"})
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                status, answer = response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, json.loads(exc.read() or b"{}")
        except OSError as exc:
            return f"demo    booking failed: {exc}"
        took_ms = (time.monotonic() - started) * 1000
        if status != 409:
            break
    return (f"demo    POST /v1/bookings as {DEFAULT_USER} {json.dumps(body)}\n"
            f"        → {status} in {took_ms:.0f} ms: {json.dumps(answer)}")


def run(demo: bool = False) -> int:
    stack = Stack(Path(os.environ.get("STACK_TEMPLATE", str(template.TEMPLATE))))
    stop = stop_event_on_signals()
    started = time.monotonic()
    try:
        stack.start_services()
        stack.start_functions()
    except services.ServiceMissing as exc:
        print(f"stack: {exc}", file=sys.stderr, flush=True)
        stack.stop()
        return 1
    except BaseException:
        stack.stop()
        raise
    print("\n".join(stack.lines), flush=True)
    print(f"stack up in {time.monotonic() - started:.1f}s: {api_url()} (Ctrl-C to stop)", flush=True)
    if demo:
        print(demo_booking(), flush=True)
    crash_loop = None
    try:
        while not stop.wait(0.25):
            crash_loop = stack.supervise()
            if crash_loop:
                print(f"stack: {crash_loop}; stopping", file=sys.stderr, flush=True)
                break
    finally:
        stack.stop()
        print("stack stopped", flush=True)
    return 1 if crash_loop else 0


def up(timeout: float = 120) -> int:
    path = pid_file()
    if path.exists() and services.alive(int(path.read_text())):
        print(f"already up: {api_url()} (pid {path.read_text().strip()})")
        return 0
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{stack_id()}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "infra.local.stack", "run"], cwd=ROOT, env=child_env_base(),
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    path.write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            path.unlink(missing_ok=True)
            print(log_path.read_text().strip().splitlines()[-1] if log_path.stat().st_size else "stack exited",
                  file=sys.stderr)
            return 1
        if "stack up in" in log_path.read_text():
            print(log_path.read_text().strip())
            return 0
        time.sleep(0.1)
    print(f"stack not up after {timeout:.0f}s; see {log_path}", file=sys.stderr)
    return 1


def down(timeout: float = 30) -> int:
    path = pid_file()
    if not path.exists():
        print("not running")
        return 0
    pid = int(path.read_text())
    children_file = RUN_DIR / stack_id() / "children.json"
    children = json.loads(children_file.read_text()) if children_file.exists() else {}
    services._terminate(pid, timeout)
    # Anything the stack could not stop itself (it was killed) is stopped here, by its recorded pid.
    for child_pid in children.values():
        services._terminate(int(child_pid), 5)
    path.unlink(missing_ok=True)
    print("stack stopped")
    return 0


def status() -> int:
    path = pid_file()
    running = path.exists() and services.alive(int(path.read_text()))
    print(f"stack   {'up (pid ' + path.read_text().strip() + ')' if running else 'down'}")
    bootstrap = config.kafka_bootstrap_or_local()
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    print(f"kafka   {bootstrap}: {'answers' if services.port_open(host, int(port)) else 'no answer'}")
    s = config.mysql_settings()
    error = services.mysql_answers()
    print(f"mysql   {s.host}:{s.port}/{s.database}: {'answers' if error is None else error}")
    error = services.redis_answers(config.redis_url())
    print(f"redis   {config.redis_url()}: {'answers' if error is None else error}")
    print(f"api     {api_url()}: {'healthy' if api_healthy() else 'no answer'}")
    for line in restart_lines():  # also for a stack in the foreground (make run), which has no pid file
        print(line)
    return 0 if running else 3


def restart_lines() -> list[str]:
    """One line per function: its processes and how often they were started again (API workers included)."""
    run_dir = RUN_DIR / stack_id()
    try:
        restarts = json.loads((run_dir / "restarts.json").read_text())
    except (OSError, ValueError):
        return []
    try:
        workers = json.loads((run_dir / "api-workers.json").read_text())
    except (OSError, ValueError):
        workers = {}
    by_function: dict[str, list[int]] = {}
    notes: dict[str, str] = {}
    for entry in restarts.values():
        counts = by_function.setdefault(entry["function"], [0, 0])
        counts[0] += 1
        counts[1] += entry["restarts"]
        if entry["last_exit"]:
            notes[entry["function"]] = f"; last death: {entry['last_exit']}"
    lines = []
    for function, (processes, count) in sorted(by_function.items()):
        extra = ""
        if workers and function == workers.get("function"):
            extra = f", {len(workers.get('workers', []))} workers, worker restarts: {workers.get('restarts', 0)}"
        lines.append(f"restarts {function}: {count} ({processes} processes{extra}){notes.get(function, '')}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "up", "down", "status"])
    parser.add_argument("--demo", action="store_true", help="run: make one booking through the API once it is up")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(demo=args.demo)
    return {"up": up, "down": down, "status": status}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
