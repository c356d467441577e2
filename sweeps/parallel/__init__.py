"""Several processes on one study: ``--workers`` helper processes, and signals as exceptions
so an ended sweep closes its runs."""

from sweeps.parallel.signals import Terminated, exit_status, terminate_as_exception
from sweeps.parallel.workers import Helpers

__all__ = ["Helpers", "Terminated", "exit_status", "terminate_as_exception"]
