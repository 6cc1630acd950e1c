"""How the local stack's processes learn to stop: on SIGTERM/SIGINT, or when the process that started them dies."""
from __future__ import annotations

import ctypes
import os
import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_event_on_signals(stop: threading.Event | None = None) -> threading.Event:
    """An event set by SIGTERM or SIGINT. Call from the main thread.

    The handler itself touches no lock: Python runs a handler in the main thread between two bytecodes, so a
    handler calling `Event.set()` deadlocks when the signal lands while the main thread holds that event's lock
    inside `wait()` (a `make run` once never stopped after Ctrl-C). The signal's number reaches a pipe at C level
    (`signal.set_wakeup_fd`) and a thread reading the pipe sets the event.
    """
    stop = stop if stop is not None else threading.Event()
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _nothing)

    def set_on_stop_signal() -> None:
        while os.read(read_fd, 1)[0] not in STOP_SIGNALS:
            pass
        stop.set()

    threading.Thread(target=set_on_stop_signal, daemon=True, name="stop-on-signal").start()
    return stop


def _nothing(signum: int, frame: object) -> None:
    """The wakeup pipe carries the signal; a Python handler must exist for it to be written."""


def end_with_parent(parent: int) -> None:
    """SIGTERM this process when its parent dies (Linux PR_SET_PDEATHSIG): a stack killed outright (kill -9, a
    test's clean-up) leaves no child of its own session behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)
