"""What `training.fit` and `training.evaluate` share: one-line usage errors with exit code 2.

TensorFlow prints native log lines to stderr when it loads and when it first lists devices
(whatever `TF_CPP_MIN_LOG_LEVEL` says once Python runs). A bad flag should give one readable
line, so the set-up phase runs inside `captured_stderr()`: on a usage error the captured lines
are dropped, otherwise they are replayed.
"""

import os
import sys
import tempfile

from absl import flags
from absl import logging as absl_logging

USAGE_ERROR = 2
_HELP = {"--help", "-help", "-h", "-?", "--helpshort", "-helpshort", "--helpfull", "-helpfull",
         "--helpxml", "-helpxml"}


def fail(program: str, error) -> None:
    """Prints `program: error` as one line on stderr and exits with code 2."""
    message = " ".join(str(error).split()) or type(error).__name__
    sys.stderr.write(f"{program}: error: {message}\n")
    sys.stderr.flush()
    sys.exit(USAGE_ERROR)


def quiet_logs() -> None:
    """Python logs at WARNING and above (TensorFlow logs its savers at INFO), unless
    `--verbosity` was given."""
    if "verbosity" not in flags.FLAGS or not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)


def flags_parser(program: str):
    """An `absl.app.run` flags parser whose errors are one line and exit code 2."""

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            fail(program, error)
        except SystemExit:
            # absl prints the help and exits with 1; asking for help is no error.
            if any(arg.split("=")[0] in _HELP for arg in argv[1:]):
                sys.exit(0)
            raise

    return parse


class captured_stderr:
    """Redirects file descriptor 2 to a temporary file; `replay()` writes what it caught.

    Leaving the block with an exception replays the output (it may explain the exception) and
    lets the exception through.
    """

    def __enter__(self):
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, kind, value, traceback):
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        if kind is not None:
            self.replay()
        return False

    def replay(self):
        """Writes the captured output to stderr (once)."""
        if self._file is None:
            return
        self._file.seek(0)
        data = self._file.read()
        self._file.close()
        self._file = None
        if data:
            sys.stderr.flush()
            os.write(2, data)

    def discard(self):
        if self._file is not None:
            self._file.close()
            self._file = None


def set_up_or_fail(program: str, set_up):
    """Runs `set_up()` with TensorFlow's start-up lines held back and returns its result; a
    `ValueError` or `TypeError` from it is a usage error (one line, exit code 2)."""
    with captured_stderr() as captured:
        try:
            result = set_up()
        except (ValueError, TypeError) as error:
            captured.discard()
            usage_error = error
        else:
            usage_error = None
    if usage_error is not None:
        fail(program, usage_error)
    captured.replay()
    return result
