"""An exclusive lock on a directory that a run writes into (a model directory, a search).

Two runs writing the same directory mix their files (history from one, config from the other)
and lose one run's results. `DirectoryLock` makes the second one stop before it writes anything.

The lock is `fcntl.flock` on `<directory>/.lock`, a file that also names its holder (pid, host,
program, start time) for the error message. The kernel drops a flock when its process dies,
however it dies, so a lock left by a killed run is never mistaken for a live one, even when
its pid has been reused; such a stale file is taken over with a warning.
"""

import datetime
import fcntl
import json
import os
import socket
import sys
from typing import Optional

LOCK_FILE = ".lock"


class DirectoryLocked(ValueError):
    """Another live process holds the directory's lock."""


class DirectoryLock:
    """Holds `<directory>/.lock` from `acquire()` to `release()` (or the end of a `with`).

    Args:
        directory: str. The directory to lock; created if missing.
        program: str. Who takes the lock, for the holder's description. Defaults to the running
            program (e.g. `"training.fit"` for `python -m training.fit`).
        argument: str. The argument that named the directory, for error messages. Defaults to
            `"directory"`.

    Raises (from `acquire`):
        DirectoryLocked: another live process holds it; the message names the directory and the
            holder's pid, host, program and start time.
        ValueError: the directory cannot be created or written (a read-only file system, a path
            under a file, a path that is a file).

    Example:

    >>> import tempfile
    >>> with DirectoryLock(tempfile.mkdtemp()) as lock:
    ...     lock.held
    True
    """

    def __init__(self, directory: str, program: Optional[str] = None,
                 argument: str = "directory"):
        self.directory = os.path.abspath(directory)
        self.path = os.path.join(self.directory, LOCK_FILE)
        self.program = program or _main_program()
        self.argument = argument
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, log=None) -> "DirectoryLock":
        """Takes the lock; `log(message)` reports taking over a stale one (default: stderr)."""
        if self.held:
            return self
        make_directory(self.directory, self.argument)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise ValueError(f"{self.argument}={self.directory} is not writable: "
                                 f"{error.strerror or error}.") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise DirectoryLocked(
                    f"{self.argument}={self.directory} is in use by {_describe(holder)}; wait "
                    f"for it to finish or use another {self.argument}.") from None
            # The holder we waited on may have removed the file after we opened it: the lock
            # we got is then on a file nobody else will see. Try again with the current file.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _read_holder(fd)
        if stale:
            (log or warn)(f"Taking over the lock of {self.directory} left by "
                          f"{_describe(stale)}, which is no longer running.")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "program": self.program,
                  "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if not self.held:
            return
        fd, self._fd = self._fd, None
        try:
            os.remove(self.path)  # before unlocking, so that no waiter gets a removed file
        except OSError:
            pass
        os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()
        return False

    def __del__(self):
        if getattr(self, "_fd", None) is not None and sys.meta_path is not None:
            self.release()


def make_directory(directory: str, argument: str = "directory") -> None:
    """Creates `directory` (and its parents) if needed.

    Raises:
        ValueError: naming `argument`, the path and the reason (it is a file, a parent is a
            file, the file system is read-only, permission denied, ...).
    """
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"{argument}={directory} is a file, not a directory.")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{argument}={directory} cannot be created: "
                         f"{error.strerror or error}.") from None


def warn(message: str) -> None:
    """Writes `Warning: message` to stderr: warnings of the command-line programs, one line."""
    sys.stderr.write(f"Warning: {message}\n")
    sys.stderr.flush()


def _main_program() -> str:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return spec.name
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"


def _read_holder(fd):
    try:
        data = os.pread(fd, 4096, 0)
        return json.loads(data) if data else None
    except (OSError, ValueError):
        return None


def _describe(holder) -> str:
    if not isinstance(holder, dict):
        return "another process"
    return (f"{holder.get('program', 'a process')} (pid {holder.get('pid')} on "
            f"{holder.get('host')}, started {holder.get('started')})")
