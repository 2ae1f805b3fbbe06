"""One exception type for mistakes a user can fix (bad flag, unknown env, missing checkpoint).

The CLI turns a `BellmaxError` into one readable line on stderr and a non-zero exit code; it
never shows a traceback for these. Library users can catch it like any other exception.
"""

import argparse
from typing import NoReturn


class BellmaxError(Exception):
    """A user-facing error: the message names the problem and how to fix it."""


class ConfigError(BellmaxError, ValueError):
    """A configuration field holds a value outside its allowed range."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped `learn(run=...)` (or an RLHF stage) at the end of an
    iteration, after a checkpoint of that step was written: `bellmax train ALGO --resume RUN_DIR`
    (`command`, when given, instead of `bellmax train ALGO`) continues exactly.

    A KeyboardInterrupt, so code that does not know it still sees the usual Ctrl-C."""

    def __init__(self, signal_name: str, algo: str, step: int, run_dir: object, command: str | None = None):
        self.command = command or f"bellmax train {algo}"
        super().__init__(f"{signal_name} at step {step:,}: checkpoint saved; "
                         f"continue with `{self.command} --resume {run_dir}`")
        self.signal_name, self.algo, self.step, self.run_dir = signal_name, algo, step, run_dir


def unknown_name(what: str, name: str, known: list[str]) -> BellmaxError:
    """The error for a name that is not among `known`: "unknown <what> 'x' (did you mean y?); known: ..."."""
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return BellmaxError(f"unknown {what} {name!r}{hint}; known: {', '.join(known)}")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises BellmaxError (one line from the CLI, exit 2) instead of printing its
    usage and exiting; the message names the command and points to its --help."""

    def error(self, message: str) -> NoReturn:
        raise BellmaxError(f"{self.prog}: {message} (see `{self.prog} --help`)")
