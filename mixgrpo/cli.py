"""The error boundary of every command: ``error: <message>`` on one line and exit status 2.

A user who mistypes an option, points at a missing file or names an unknown reward gets one line
that says what was expected, what was found and how to fix it, not a Python traceback. What counts
as such an error: the project's own types (:class:`~mixgrpo.errors.MixGRPOError`) and the library
errors a user causes (a missing or unreadable file, a YAML file that does not parse). Anything
else is a bug and keeps its traceback. ``--debug`` (or ``MIXGRPO_DEBUG=1``) keeps the traceback
for every error.

Exit statuses: 0 done, 2 a user error, 130 / 143 stopped by SIGINT / SIGTERM (128 + the signal).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Callable

import yaml

from .errors import MixGRPOError

USER_ERROR_EXIT = 2
USER_ERRORS = (MixGRPOError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, yaml.YAMLError)
DEBUG_HELP = "show the full Python traceback of an error (also MIXGRPO_DEBUG=1)"


def one_line(error: BaseException) -> str:
    """The error's message with its line breaks folded into spaces."""
    text = str(error) or type(error).__name__
    return re.sub(r"\s*\n\s*", " ", text).strip()


def run_command(main: Callable[[list[str]], object], argv: list[str] | None = None) -> int:
    """Run ``main(argv)`` (``--debug`` taken out of ``argv``) and return the process's exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("MIXGRPO_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    try:
        main(argv)
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
        return USER_ERROR_EXIT
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr, flush=True)
        return 128 + signal.SIGINT
    return 0


def add_debug_flag(parser) -> None:
    """List ``--debug`` in a command's ``--help`` (:func:`run_command` consumes it)."""
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
