"""Errors caused by user input, and a stop from outside (Ctrl+C, SIGTERM). `ikd`'s CLI prints
these as one line, without a traceback."""

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


class UserError(Exception):
    """A mistake in what the user asked for or handed over (config, paths, files)."""


class ConfigError(UserError, ValueError):
    """An unknown key, a value of the wrong type, or an inconsistent configuration."""


class CaptureError(UserError, ValueError):
    """A radar capture that cannot be used: truncated, mis-sized, or holding NaNs."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (`ray job stop`, `kill`, a scheduler's preemption) once Ray runs: ikd stops the way
    Ctrl+C stops it — the stage in progress adds its time to the study record, finished runs are
    kept, and the same command resumes (`ikd.cluster.init_ray` installs the handler)."""

    received = False  # set by the handler: SIGTERM came

    @staticmethod
    def caused(interrupt: KeyboardInterrupt) -> bool:
        """Whether SIGTERM stopped the process: raised inside a blocking Ray call (`ray.get`,
        Tune's controller waiting on its trials), Terminated comes out of it as a plain
        KeyboardInterrupt (Ray's core catches KeyboardInterrupt there and raises a new one)."""
        return isinstance(interrupt, Terminated) or Terminated.received


_STOPS: list[int] = []  # the stop signals that came (SIGINT, SIGTERM), until the CLI handles one


def stop(signum: int, frame: Any) -> None:
    """ikd's handler of SIGINT (the CLI installs it) and SIGTERM (`ikd.cluster.init_ray`): raise
    KeyboardInterrupt (`Terminated` for SIGTERM) — and remember that the signal came, for
    `raise_if_stopped`. Python drops an exception raised while the garbage collector runs a
    weakref callback or a `__del__` ("Exception ignored in …"): a signal handled there was lost,
    and a study went on to its end after Ctrl+C (tests/test_tune.py, 2 runs in 6 on a busy
    machine, 2026-12-06)."""
    _STOPS.append(signum)
    if signum == signal.SIGTERM:
        Terminated.received = True
        raise Terminated("SIGTERM")
    raise KeyboardInterrupt


def raise_if_stopped() -> None:
    """Raise again a stop signal that came and was lost (`stop`): called where the driver spends
    its time — between training steps, at each step of Tune's controller."""
    if _STOPS:
        raise Terminated("SIGTERM") if signal.SIGTERM in _STOPS else KeyboardInterrupt


@contextlib.contextmanager
def stop_shared(interrupt: BaseException) -> Iterator[None]:
    """While a thread that caught `interrupt` waits for the threads it runs: their
    `raise_if_stopped` raises too, also for a stop that did not come through `stop` (Python's
    own handler of SIGINT in a library's caller; SystemExit, Ray's answer to SIGTERM in its
    workers). A stop recorded here is forgotten on exit."""
    shared = not _STOPS
    if shared:
        ctrl_c = isinstance(interrupt, KeyboardInterrupt) and not Terminated.caused(interrupt)
        _STOPS.append(signal.SIGINT if ctrl_c else signal.SIGTERM)
    try:
        yield
    finally:
        if shared:
            _STOPS.clear()


def stopped() -> None:
    """The stop has been handled (the CLI has returned its status): forget it."""
    _STOPS.clear()
    Terminated.received = False


def require(condition: bool, message: str) -> None:
    """Raise a `ConfigError` with `message` unless `condition` holds (config validation)."""
    if not condition:
        raise ConfigError(message)
