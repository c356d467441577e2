"""Several processes on one study: ``--workers`` helper processes, torch's threads shared
among them, and signals as exceptions so an ended sweep closes its runs."""

from sweeps.parallel.signals import Terminated, exit_status, terminate_as_exception
from sweeps.parallel.threads import TorchThreads, decide_threads, use_threads, worker_threads
from sweeps.parallel.workers import Helpers

__all__ = ["Helpers", "Terminated", "TorchThreads", "decide_threads", "exit_status",
           "terminate_as_exception", "use_threads", "worker_threads"]
