"""``crack-model``: train, evaluate, predict, score, validate, retrain, registry and gate commands.

Each command lives in its own module; heavy libraries are imported inside the functions that
need them, so ``--help`` answers at once. A user mistake prints one line,
``crack-model: error: ...``, and exits 1.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from crack_model import __version__
from crack_model.cli.arguments import CommandLineParser
from crack_model.cli.model_commands import (
    add_evaluate_command,
    add_export_command,
    add_synth_command,
    add_train_command,
)
from crack_model.cli.registry_commands import add_registry_commands
from crack_model.cli.retrain_command import add_retrain_command
from crack_model.cli.score_commands import add_predict_command, add_score_command
from crack_model.cli.validate_command import add_validate_command
from crack_model.core.errors import CrackModelError

# OS errors that mean "this path cannot be used as given" (the rest keep their traceback).
_PATH_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EACCES, errno.EPERM,
                          errno.ENAMETOOLONG, errno.EROFS, errno.ENOSPC})  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(prog="crack-model", description="Concrete crack classifier: train, evaluate, score.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_train_command(commands)

    add_evaluate_command(commands)

    add_predict_command(commands)

    add_score_command(commands)

    add_export_command(commands)

    add_validate_command(commands)

    add_retrain_command(commands)

    add_registry_commands(commands)

    add_synth_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter out of the output
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    previous = _end_on_terminate()
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # here, not at exit: a reader gone away is then a broken pipe below, not a traceback
        return code
    except CrackModelError as error:
        print(f"crack-model: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("crack-model: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("crack-model: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BrokenPipeError:
        if not _output_reader_gone():  # a pipe of another kind (a socket, a subprocess): a fault to report
            raise
        # `crack-model predict ... | head`: the reader has all it wanted. Python's own flush at exit must not fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as error:
        if (message := _outside_error(error)) is None:  # a fault of ours: its traceback is what to report
            raise
        print(f"crack-model: error: {message}", file=sys.stderr)
        return 1
    finally:  # a program that called main() (a test, a notebook) gets its own handler back
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(BaseException):
    """SIGTERM (``timeout``, ``docker stop``, systemd), raised where the command is, so that its ``with`` blocks
    and ``finally`` clauses clean up: a killed retrain left its whole pool copy in /tmp. A BaseException, as
    KeyboardInterrupt is: no per-object ``except Exception`` takes it for that object's error."""


def _end_on_terminate() -> Any:
    """Raise ``Terminated`` on SIGTERM; the handler it replaced (None: none was, off the main thread)."""

    def terminated(signum: int, frame: object) -> None:
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return None
    return signal.signal(signal.SIGTERM, terminated)


def _output_reader_gone() -> bool:
    """Is standard output a pipe whose reader has closed it? (The poll reports an error on its write end.)"""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, ValueError, OSError):  # no file descriptor (a test's capture): not a pipe
        return False


def _outside_error(error: Exception) -> str | None:
    """One line for an error that comes from outside the program and says what to check, else None.

    botocore's errors first: some (timeouts, SSL) are OSErrors too, and none is about a path.
    """
    if type(error).__module__.startswith("botocore"):  # no credentials, an endpoint that does not answer, denied
        advice = (
            "check the s3:// URI, the AWS credentials (environment, profile or role) and, for MinIO, AWS_ENDPOINT_URL"
        )
        return f"the S3 store did not serve the request: {error}; {advice}"
    if not isinstance(error, OSError) or error.errno not in _PATH_ERRNOS:  # a broken pipe, a reset connection, ...
        return None
    if error.filename is None:  # a write to a full disk names no file
        return f"{error.strerror}; check the paths given" if error.errno == errno.ENOSPC else None
    return f"{error.strerror}: {error.filename}; check the paths given"


if __name__ == "__main__":
    sys.exit(main())
