"""The local stack's processes stop when asked, whenever the signal lands (infra/local/lifetime.py)."""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A stop signal delivered at the worst moment: while the main thread holds the event's lock inside wait(), just
# after Condition.wait re-acquired it. A handler that calls Event.set() there waits for that lock forever.
SIGNAL_INSIDE_WAIT = textwrap.dedent("""
    import os, signal, sys
    from infra.local.lifetime import stop_event_on_signals

    stop = stop_event_on_signals()
    sent = False

    def deliver_inside_wait(frame, event, arg):
        global sent
        if event == "return" and frame.f_code.co_name == "_acquire_restore" and not sent:
            sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return deliver_inside_wait

    sys.settrace(lambda frame, event, arg: deliver_inside_wait
                 if frame.f_code.co_name in ("wait", "_acquire_restore") else None)
    while not stop.wait(0.05):
        pass
    sys.settrace(None)
    print("stopped", sent)
""")


def test_a_stop_signal_landing_while_the_main_thread_is_inside_the_wait_still_stops_it():
    try:
        done = subprocess.run([sys.executable, "-c", SIGNAL_INSIDE_WAIT], cwd=ROOT, capture_output=True, text=True,
                              timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError("the process did not stop: the signal handler deadlocked on the event's lock") from None
    assert (done.returncode, done.stdout.strip()) == (0, "stopped True"), done.stderr


def test_only_the_wakeup_pipe_sets_a_stop_event_no_signal_handler_does():
    """Every process of the local stack takes its stop signals through stop_event_on_signals."""
    offenders = []
    for path in sorted((ROOT / "infra").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and ast.unparse(node.func) == "signal.signal" and len(node.args) == 2):
                continue
            handler = node.args[1]
            calls = [n for n in ast.walk(handler) if isinstance(n, ast.Call)] if isinstance(handler, ast.Lambda) else []
            if any(isinstance(c.func, ast.Attribute) and c.func.attr == "set" for c in calls):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
