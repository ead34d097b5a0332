"""Errors caused by user input, and a stop from outside (Ctrl+C, SIGTERM). `ikd`'s CLI prints
these as one line, without a traceback."""


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


def require(condition: bool, message: str) -> None:
    """Raise a `ConfigError` with `message` unless `condition` holds (config validation)."""
    if not condition:
        raise ConfigError(message)
