"""Every command in the README's ```sh blocks runs, against this run's stack, so none can rot.

Each block is run as a reader would type it, line by line in one bash (an `export` holds for the lines after it),
from the repository root and without PYTHONPATH, with the test's environment (its own database, Redis prefix,
broker and API port). What is rewritten, and why, is in REWRITES; what cannot run here is in SKIPPED with the
reason; both tables are checked against the README so neither outlives the line it is about.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from booking_core import config
from infra.local import services

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A line starting with one of these is not run here, for the reason given.
SKIPPED = {
    "make test": "it is this test suite",
    "make chaos": "a fault run of about 4 minutes on a stack of its own; tests/integration/test_chaos_run.py runs "
                  "the same run for 35 s",
    "CHAOS_DURABLE_BROKER=1 make chaos": "the same fault run with the durable broker (about 4 minutes); "
                                         "tests/integration/test_durable_broker.py kills and restarts that broker",
    ".local/tools/sam/bin/sam deploy": "AWS only: deploys a stack to an AWS account",
    "make deploy-web": "AWS only: reads a deployed stack's outputs, writes its bucket and invalidates its "
                       "distribution; tests/integration/test_deploy_web.py runs the same make target against the "
                       "local AWS endpoint",
    ".local/tools/sam/bin/sam local invoke": "needs Docker; tests/integration/test_sam_env.py runs the docker-free "
                                             "invoke with the same env file",
    "docker compose": "needs Docker (tests/unit/test_docker_compose.py checks the file)",
    "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 make run": "needs the compose file's Redpanda (Docker); `make run` "
                                                       "itself runs in the first block",
}
# (pattern, replacement, why): applied to each line that is run.
REWRITES = [
    (r"^DB_SECRET_ARN=arn:aws:secretsmanager:\S+ ", "",
     "AWS only: the secret and RDS are in AWS; `make migrate` runs on the test database instead"),
    (r"^KAFKA_AUTH=iam KAFKA_BOOTSTRAP_SERVERS=\S+ ", "",
     "AWS only: MSK with IAM; `make topics` runs on the test broker instead"),
    (r"make up && make bench", "make up",
     "make bench is a load test of about 100 s (and installs bench/requirements.txt); it runs on its own"),
    (r"http://127\.0\.0\.1:8000", "{api_url}", "the test stack's API port"),
    (r"^make build(?= |$)", "true", "`make build` (a sam build of 20-60 s here) runs once per test run, in the "
     "sam_build fixture, which the blocks that show it wait for"),
    (r"^export API_PORT=8200 KAFKA_PORT=9292 MYSQL_DATABASE=booking_bench REDIS_PREFIX=bench:",
     "export API_PORT={free_api_port} KAFKA_PORT={free_kafka_port} MYSQL_DATABASE={database}"
     " REDIS_PREFIX={prefix}", "a stack of the test's own, never the bench's names or ports"),
]


def readme_blocks() -> list[list[str]]:
    """The command lines of each ```sh block (a trailing backslash joins lines; blank lines dropped)."""
    blocks = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), re.S):
        lines = [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
        blocks.append([re.sub(r"\s+", " ", line) for line in lines])
    return blocks


def _skip_reason(line: str) -> str | None:
    return next((why for prefix, why in SKIPPED.items() if line.startswith(prefix)), None)


def _rewrite(line: str, values: dict) -> str:
    for pattern, replacement, _ in REWRITES:
        line = re.sub(pattern, replacement.format(**values), line)
    return line


def test_every_skip_and_rewrite_is_about_a_line_the_readme_still_shows():
    lines = [line for block in readme_blocks() for line in block]
    for prefix in SKIPPED:
        assert any(line.startswith(prefix) for line in lines), f"SKIPPED names a line the README lost: {prefix}"
    for pattern, _, _ in REWRITES:
        assert any(re.search(pattern, line) for line in lines), f"REWRITES names a line the README lost: {pattern}"


def _env() -> dict:
    from infra.local.stack import child_env_base

    env = child_env_base()
    env.pop("PYTHONPATH", None)  # as in a reader's shell: the Makefile and `infra` find the layer themselves
    return env


def _park_the_dead_row_the_readme_reopens(key: str) -> None:
    from booking_core.adapters.mysql import connect

    request = {"user_id": 1, "listing_id": 7, "check_in": "2031-05-01", "check_out": "2031-05-03", "guests": 1,
               "payment_token": "tok_visa"}
    conn = connect(config.mysql_settings(), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM booking_retries WHERE booking_key=%s", (key,))
            cur.execute("INSERT INTO booking_retries (booking_key, request_json, reason, attempts, status,"
                        " last_error) VALUES (%s, %s, 'transient_payment_failure', 5, 'dead', 'provider outage')",
                        (key, json.dumps(request)))
    finally:
        conn.close()


def _run_make_run(env: dict) -> str:
    """`make run` is in the foreground until Ctrl-C: start it, wait for its demo booking, press Ctrl-C."""
    env = {**env, "API_PORT": str(services.free_port())}
    process = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output, deadline = [], time.monotonic() + 180
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if line.lstrip().startswith("→") or "booking failed" in line or time.monotonic() > deadline:
                break  # the demo booking's answer (or its failure)
        os.killpg(process.pid, signal.SIGINT)
        try:
            rest, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # Which of its processes kept `make run` from stopping (a whole-suite run once met this, not reproduced).
            left = subprocess.run(["ps", "-o", "pid,stat,etime,args", "-g", str(process.pid)], capture_output=True,
                                  text=True).stdout
            pytest.fail(f"make run did not stop within 60 s of Ctrl-C; its processes:\n{left}\n"
                        f"its output:\n{''.join(output)[-5000:]}")
        output.append(rest)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return "".join(output)


@pytest.mark.parametrize("index", range(len(readme_blocks())), ids=lambda i: readme_blocks()[i][0][:40])
def test_the_readme_block_runs(index, stack, request):
    block = readme_blocks()[index]
    if any(re.match(r"make build(?= |$)", line) for line in block):
        request.getfixturevalue("sam_build")
    env = _env()
    values = {"api_url": stack, "free_api_port": services.free_port(), "free_kafka_port": services.free_port(),
              "database": config.mysql_settings().database, "prefix": config.redis_prefix()}
    to_run, skipped = [], []
    for line in block:
        reason = _skip_reason(line)
        if reason:
            skipped.append(f"{line}: {reason}")
        else:
            to_run.append(_rewrite(line, values))
    if not to_run:
        pytest.skip("; ".join(skipped))
    if any("make reopen KEY=" in line for line in to_run):
        _park_the_dead_row_the_readme_reopens(re.search(r"make reopen KEY=(\S+)", " ".join(to_run)).group(1))

    for line in to_run:
        if line.split("#")[0].strip() == "make run":
            output = _run_make_run(env)
            assert "stack up in" in output and '"status": "confirmed"' in output and "stack stopped" in output, \
                output
            continue
        # One bash per block: the exports of earlier lines hold (they are replayed before each line).
        exports = [ln for ln in to_run[:to_run.index(line)] if ln.startswith("export ")]
        script = "set -eo pipefail\n" + "\n".join(exports) + "\n" + line
        result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"{line}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        if line.startswith("curl "):
            json.loads(result.stdout)  # the API answered with JSON
