"""What the command-line programs share: one-line errors with exit code 2, quiet start-up.

TensorFlow prints native log lines to stderr when it loads and when it first lists devices
(CUDA and cuInit on machines without a GPU, CPU features; whatever `TF_CPP_MIN_LOG_LEVEL` says
once Python runs). A bad flag should give one readable line, and a good start no noise, so the
set-up phase runs inside `captured_stderr()`: on a usage error the captured lines are dropped,
otherwise they are replayed without TensorFlow's native log lines (unless asked for).
"""

import os
import re
import sys
import tempfile

from absl import flags
from absl import logging as absl_logging

USAGE_ERROR = 2
_HELP = {"--help", "-help", "-h", "-?", "--helpshort", "-helpshort", "--helpfull", "-helpfull",
         "--helpxml", "-helpxml"}


# TensorFlow's native (glog / absl C++) log lines and the line that continues its CPU-feature
# notice; Python's own warnings are kept.
_NATIVE_LOG = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]\n]+\] .*"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate "
    rb"compiler flags\.)(?:\r?\n|\Z)", re.M)


def one_line(error) -> str:
    """An exception's message on one line."""
    return " ".join(str(error).split()) or type(error).__name__


def fail(program: str, error, code: int = USAGE_ERROR) -> None:
    """Prints `program: error: message` as one line on stderr and exits with `code`."""
    sys.stderr.write(f"{program}: error: {one_line(error)}\n")
    sys.stderr.flush()
    sys.exit(code)


def stop(program: str, message, code: int) -> None:
    """Prints `program: message` as one line on stderr and exits with `code` (a run that
    ended early: diverged, interrupted)."""
    sys.stderr.write(f"{program}: {one_line(message)}\n")
    sys.stderr.flush()
    sys.exit(code)


def native_logs_wanted() -> bool:
    """Whether absl's `--verbosity` was given: then TensorFlow's start-up lines are shown."""
    return "verbosity" in flags.FLAGS and flags.FLAGS["verbosity"].present


def quiet_logs(native_logs: bool = False) -> None:
    """Python logs at WARNING and above (TensorFlow logs its savers at INFO) and TensorFlow's
    native logs at ERROR (unless `TF_CPP_MIN_LOG_LEVEL` says otherwise), unless `native_logs`
    or `--verbosity` ask for more. Call it before TensorFlow is imported."""
    if not (native_logs or native_logs_wanted()):
        absl_logging.set_verbosity(absl_logging.WARNING)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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

    def replay(self, native_logs: bool = True):
        """Writes the captured output to stderr (once); without `native_logs`, minus
        TensorFlow's native log lines."""
        if self._file is None:
            return
        self._file.seek(0)
        data = self._file.read()
        self._file.close()
        self._file = None
        if not native_logs:
            data = _NATIVE_LOG.sub(b"", data)
        if data:
            sys.stderr.flush()
            os.write(2, data)

    def discard(self):
        if self._file is not None:
            self._file.close()
            self._file = None


def set_up_or_fail(program: str, set_up, native_logs: bool = False):
    """Runs `set_up()` with TensorFlow's start-up lines held back and returns its result; a
    `ValueError` or `TypeError` from it is a usage error (one line, exit code 2). The lines it
    printed are then replayed, TensorFlow's native log lines only with `native_logs` or
    `--verbosity`."""
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
    captured.replay(native_logs or native_logs_wanted())
    return result
