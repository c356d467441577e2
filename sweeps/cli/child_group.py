"""A command run as a child in its own process group, stopped with everything it started.

A server such as ``mlflow server`` starts workers of its own. Killing only the process that
launched it leaves them running, re-parented to init. ``run_in_group`` starts the command in a
new session (so its group is its own), turns SIGINT, SIGTERM and SIGHUP sent to this process
into a stop of that whole group, and stops the group whenever it returns::

    status = run_in_group([sys.executable, "-m", "mlflow", "server", ...], env)
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from types import FrameType

__all__ = ["FORWARDED", "STOP_TIMEOUT", "exit_status", "run_in_group", "stop_group"]

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # passed on to the child's group
STOP_TIMEOUT = 10.0  # seconds the group has to exit after the signal, before SIGKILL
_POLL = 0.05  # seconds between checks of whether the group's last process has exited


class _Stopped(Exception):
    """This process received one of ``FORWARDED``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Trap:
    """A handler of ``FORWARDED`` that raises ``_Stopped`` once, while armed; later signals
    (a second Ctrl-C, one during the stop) leave the stop under way to finish."""

    def __init__(self) -> None:
        self.armed = True

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.armed:
            self.armed = False
            raise _Stopped(signum)


def exit_status(returncode: int) -> int:
    """A child's ``returncode`` as a shell reports it: ``-N`` (killed by signal N) is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def run_in_group(command: Sequence[str], env: Mapping[str, str] | None = None, *,
                 stop_timeout: float = STOP_TIMEOUT) -> int:
    """Run ``command`` in its own session until it exits or this process receives one of
    ``FORWARDED``; then stop its whole group (``stop_group``) with that signal, or with
    SIGTERM where the command ended by itself. The exit status: 128 + the signal received
    (130 for SIGINT, 143 for SIGTERM), else the command's own."""
    trap = _Trap()
    previous = {sig: signal.signal(sig, trap) for sig in FORWARDED}
    proc: subprocess.Popen[bytes] | None = None
    sig = signal.SIGTERM
    try:
        proc = subprocess.Popen(list(command), env=env, start_new_session=True)
        return exit_status(proc.wait())
    except _Stopped as stopped:
        sig = signal.Signals(stopped.signum)
        return 128 + stopped.signum
    finally:
        trap.armed = False
        try:
            if proc is not None:
                stop_group(proc, sig, stop_timeout)
        finally:
            for forwarded, handler in previous.items():
                signal.signal(forwarded, handler)


def stop_group(proc: subprocess.Popen[bytes], sig: signal.Signals,
               timeout: float = STOP_TIMEOUT) -> None:
    """Send ``sig`` to the group that ``proc`` leads, wait up to ``timeout`` seconds for every
    process of it to exit, then SIGKILL what is left; ``proc`` is reaped."""
    pgid = proc.pid  # start_new_session: the child leads its own group
    if _signal_group(pgid, sig):
        deadline = time.monotonic() + timeout
        while _group_alive(pgid, proc) and time.monotonic() < deadline:
            time.sleep(_POLL)
        if _group_alive(pgid, proc):
            _signal_group(pgid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to group ``pgid``; False if no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _group_alive(pgid: int, leader: subprocess.Popen[bytes]) -> bool:
    """Whether a process of group ``pgid`` is left (its leader reaped first: a zombie still
    counts as one)."""
    leader.poll()
    try:
        os.killpg(pgid, 0)  # signal 0: an existence check
    except ProcessLookupError:
        return False
    return True
