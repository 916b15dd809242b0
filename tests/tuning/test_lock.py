"""The project directory's lock: a second search stops at once, stale locks are taken over,
workers share the chief's directory without locking it."""

import json
import os
import socket
import subprocess

import pytest

from tests.conftest import REPO_ROOT
from tests.training.conftest import free_port, subprocess_env
from tests.tuning.test_failures import EXPERIMENT
from tests.tuning.test_search import TINY_SPACE, _search_command
from training import trainer
from training.dirlock import LOCK_FILE, DirectoryLock, DirectoryLocked
from tuning import tuner as search_lib


def _search(tmp_path, **overrides):
    settings = dict(experiment=EXPERIMENT, space=TINY_SPACE, max_trials=1, epochs_per_trial=1,
                    directory=str(tmp_path))
    return search_lib.SearchConfig(**{**settings, **overrides})


def _listing(root):
    """Every path under `root` with its size and modification time."""
    found = {}
    for folder, names, files in os.walk(root):
        for name in names + files:
            path = os.path.join(folder, name)
            status = os.stat(path)
            found[os.path.relpath(path, root)] = (status.st_size, status.st_mtime_ns)
    return found


def _holder(directory):
    with open(os.path.join(directory, LOCK_FILE)) as file:
        return json.load(file)


def test_a_second_search_on_a_locked_directory_exits_2_and_touches_nothing(tmp_path):
    project = os.path.abspath(_search(tmp_path).project_dir)
    with search_lib.build_tuner(_search(tmp_path)):
        pass  # a search's files are there: its settings, the oracle's state
    with DirectoryLock(project, program="tuning.search"):  # a live run holds it
        holder = _holder(project)
        before = _listing(tmp_path)
        result = subprocess.run(_search_command(f"--directory={tmp_path}"), cwd=REPO_ROOT,
                                env=subprocess_env(), capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 2, result.stderr[-3000:]
        assert result.stderr.splitlines() == [
            f"tuning.search: error: directory={project} is in use by tuning.search (pid "
            f"{os.getpid()} on {socket.gethostname()}, started {holder['started']}); wait for "
            "it to finish or use another directory."]
        assert _listing(tmp_path) == before
        assert "search_config.json" in os.listdir(project)


def test_the_lock_is_held_for_the_search_and_a_stale_one_is_taken_over(tmp_path, monkeypatch,
                                                                        capsys):
    search = _search(tmp_path)
    project = os.path.abspath(search.project_dir)
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid names no live process, and no flock is held on the file
    os.makedirs(project)
    stale = {"pid": dead.pid, "host": socket.gethostname(), "program": "tuning.search",
             "started": "2026-01-02T03:04:05+00:00"}
    with open(os.path.join(project, LOCK_FILE), "w") as file:
        json.dump(stale, file)
    original, holders = trainer.run, []

    def run(experiment, **kwargs):
        holders.append(_holder(project))
        with pytest.raises(DirectoryLocked):
            DirectoryLock(project).acquire()
        return original(experiment, **kwargs)

    monkeypatch.setattr(trainer, "run", run)
    result = search_lib.run(search)
    assert result.summary() == "1 trial: 1 completed, 0 failed"
    assert capsys.readouterr().err.splitlines() == [
        f"Warning: Taking over the lock of {project} left by tuning.search (pid {dead.pid} on "
        f"{socket.gethostname()}, started 2026-01-02T03:04:05+00:00), which is no longer "
        "running."]
    assert [holder["pid"] for holder in holders] == [os.getpid()]
    assert not os.path.exists(os.path.join(project, LOCK_FILE))  # released at the end


def test_the_chief_locks_the_directory_and_a_worker_does_not(tmp_path, monkeypatch):
    for name in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.setenv(name, "unset")  # restored after the test
    search = _search(tmp_path)
    project = os.path.abspath(search.project_dir)
    address = f"127.0.0.1:{free_port()}"
    with search_lib.build_tuner(search, role="chief", oracle_address=address) as chief:
        assert chief.lock.held and _holder(project)["pid"] == os.getpid()
        with pytest.raises(DirectoryLocked, match=f"directory={project} is in use by "):
            search_lib.build_tuner(search)  # a local search on the chief's directory
        holder = _holder(project)
        with search_lib.build_tuner(search, role="worker", oracle_address=address,
                                    tuner_id="worker1") as worker:
            assert worker.lock is None
        assert chief.lock.held and _holder(project) == holder  # the worker left it alone
    assert not os.path.exists(os.path.join(project, LOCK_FILE))


def test_hyperband_does_not_copy_the_parents_lock_file(tmp_path):
    parent, child = tmp_path / "trial_0" / "train", tmp_path / "trial_1" / "train"
    (parent / "checkpoints").mkdir(parents=True)
    (parent / "checkpoints" / "checkpoint").write_text("index")
    (parent / "results.json").write_text("{}")
    (parent / LOCK_FILE).write_text('{"pid": 1}')  # left by a killed run
    search_lib.continue_training(str(parent), str(child))
    assert sorted(_listing(child)) == ["checkpoints", "checkpoints/checkpoint", "results.json"]


def test_hyperband_copies_the_parent_whole_or_not_at_all(tmp_path, monkeypatch):
    """A kill during the copy leaves no child directory (a rerun, which copies only when there
    is none, would train from the partial one); the next copy replaces what it left."""
    parent, child = tmp_path / "trial_0" / "train", tmp_path / "trial_1" / "train"
    parent.mkdir(parents=True)
    (parent / "ckpt-8.index").write_text("index")
    (parent / "results.json").write_text("{}")
    copytree, copy2 = search_lib.shutil.copytree, search_lib.shutil.copy2

    def killed(source, target, **kwargs):
        if source.endswith("ckpt-8.index"):
            raise KeyboardInterrupt  # where a kill would stop the copy
        return copy2(source, target, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(search_lib.shutil, "copytree", lambda *args, **kwargs: copytree(
            *args, copy_function=killed, **kwargs))
        with pytest.raises(KeyboardInterrupt):
            search_lib.continue_training(str(parent), str(child))
    assert not child.exists()
    search_lib.continue_training(str(parent), str(child))
    assert sorted(_listing(child)) == ["ckpt-8.index", "results.json"]
    assert sorted(os.listdir(child.parent)) == ["train"]
