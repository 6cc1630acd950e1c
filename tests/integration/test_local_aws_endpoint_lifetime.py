"""The local AWS endpoint (moto, in a session of its own so Ctrl-C reaches only the stack) ends with the process
that started it: a stack killed outright, or a test's clean-up, leaves no endpoint behind (one was found alive 25
minutes after a `make run` that had not stopped)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

STARTER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from infra.local import services, stack, template

    run_dir = Path(sys.argv[1])
    aws = services.start_aws_endpoint(services.free_port(), template.TEMPLATE, run_dir, stack.child_env_base(),
                                      run_dir / "aws-endpoint.log")
    print(aws.process.pid, flush=True)
    time.sleep(600)
""")


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_local_aws_endpoint_ends_when_the_process_that_started_it_is_killed(tmp_path):
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'layer'}"})
    endpoint_pid = 0
    try:
        endpoint_pid = int(starter.stdout.readline() or 0)
        assert endpoint_pid and running(endpoint_pid), (tmp_path / "aws-endpoint.log").read_text()
        starter.kill()
        starter.wait()
        deadline = time.monotonic() + 15
        while running(endpoint_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not running(endpoint_pid), "the local AWS endpoint outlived the process that started it"
    finally:
        starter.kill()
        if endpoint_pid and running(endpoint_pid):
            os.kill(endpoint_pid, signal.SIGKILL)
