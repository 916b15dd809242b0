"""`training.dirlock`: one writer per directory, stale locks taken over, clear refusals."""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from training.dirlock import LOCK_FILE, DirectoryLock, DirectoryLocked

_HOLD = """
import sys, time
from training.dirlock import DirectoryLock
lock = DirectoryLock(sys.argv[1], program="holder").acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_lock_is_refused_naming_the_directory_and_the_holder(tmp_path):
    first = DirectoryLock(str(tmp_path / "run"), program="training.fit",
                          argument="model_dir").acquire()
    before = sorted(os.listdir(tmp_path / "run"))
    with pytest.raises(DirectoryLocked) as error:
        DirectoryLock(str(tmp_path / "run"), argument="model_dir").acquire()
    message = str(error.value)
    assert message.startswith(f"model_dir={tmp_path / 'run'} is in use by training.fit (pid "
                              f"{os.getpid()} on {socket.gethostname()}, started ")
    assert message.endswith("; wait for it to finish or use another model_dir.")
    assert sorted(os.listdir(tmp_path / "run")) == before
    first.release()


def test_release_removes_the_file_and_lets_the_next_run_in(tmp_path):
    with DirectoryLock(str(tmp_path)) as lock:
        assert lock.held
        with open(tmp_path / LOCK_FILE) as file:
            holder = json.load(file)
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
    assert not os.path.exists(tmp_path / LOCK_FILE)
    with DirectoryLock(str(tmp_path)) as again:
        assert again.held


def test_a_lock_file_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps(
        {"pid": 999999, "host": "gone", "program": "training.fit", "started": "yesterday"}))
    said = []
    lock = DirectoryLock(str(tmp_path)).acquire(log=said.append)
    assert said == [f"Taking over the lock of {tmp_path} left by training.fit (pid 999999 on "
                    "gone, started yesterday), which is no longer running."]
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_killed_holder_no_longer_blocks(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DirectoryLocked, match=rf"in use by holder \(pid {holder.pid} on"):
            DirectoryLock(str(tmp_path)).acquire()
    finally:
        holder.kill()  # SIGKILL: the holder cannot clean up; the kernel drops its flock
        holder.wait()
    said = []
    DirectoryLock(str(tmp_path)).acquire(log=said.append).release()
    assert len(said) == 1 and f"(pid {holder.pid} on" in said[0]


def test_a_path_that_is_a_file_or_lies_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"model_dir=.*/file is a file, not a directory\."):
        DirectoryLock(str(tmp_path / "file"), argument="model_dir").acquire()
    with pytest.raises(ValueError, match=r"model_dir=.*/file/run cannot be created: Not a "
                                         r"directory\."):
        DirectoryLock(str(tmp_path / "file" / "run"), argument="model_dir").acquire()


def test_a_read_only_directory_is_refused(read_only_dir):
    with pytest.raises(ValueError, match=rf"model_dir={read_only_dir} is not writable: "
                                         r"(Read-only file system|Permission denied)\."):
        DirectoryLock(read_only_dir, argument="model_dir").acquire()
    with pytest.raises(ValueError, match=r"cannot be created: (Read-only file system|"
                                         r"Permission denied)\."):
        DirectoryLock(os.path.join(read_only_dir, "run"), argument="model_dir").acquire()
