"""Fixtures of the training tests: tiny models and runs, subprocess helpers."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.training import fakes

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")

# A ResNet with one basic block per stage and widths 4-8-16 (about 5k parameters).
TINY_MODEL = {"depth": 8, "stage_widths": (4, 8, 16)}


def tiny_settings(**overrides):
    """Flat settings of a tiny run on synthetic data."""
    settings = dict(model="resnet20", model_overrides=dict(TINY_MODEL), dataset="synthetic",
                    global_batch_size=16, epochs=2, verbose=0, save_model=False)
    settings.update(overrides)
    return settings


def free_port():
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def subprocess_env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    env.update(extra)
    return env


def worker_spec(tmp_path, name, settings, pipeline, **extra):
    """Writes a `worker.py` spec and returns (spec path, output .npz path)."""
    output = str(tmp_path / f"{name}.npz")
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
    if "model_overrides" in settings:
        settings["model_overrides"] = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in settings["model_overrides"].items()}
    spec = {"settings": settings, "pipeline": pipeline, "output": output, **extra}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(spec))
    return str(path), output


def start_worker(spec_path, **env):
    return subprocess.Popen([sys.executable, WORKER, spec_path], cwd=REPO_ROOT,
                            env=subprocess_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def run_worker(spec_path, timeout=240, **env):
    process = start_worker(spec_path, **env)
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return output


def run_cli(module, *args, timeout=240, **env):
    """Runs `python -m module args`."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT,
                          env=subprocess_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def latest_step(model_dir):
    """The step of a model directory's newest checkpoint, or -1."""
    path = os.path.join(model_dir, "checkpoints", "checkpoint")
    if not os.path.exists(path):
        return -1
    with open(path) as file:
        match = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', file.read(), re.M)
    return int(match.group(1)) if match else -1


def kill_after_step(spec_path, model_dir, step, timeout=240):
    """Starts a `worker.py` run, SIGKILLs it once it has checkpointed `step` and returns the
    step of its newest checkpoint then."""
    process = start_worker(spec_path)
    deadline = time.time() + timeout
    while latest_step(model_dir) < step and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    return latest_step(model_dir)


def weights_of(npz, prefix="weight_"):
    return [npz[key] for key in sorted(k for k in npz.files if k.startswith(prefix))]


@pytest.fixture
def fake_pipeline():
    return fakes.FakePipeline()


@contextlib.contextmanager
def read_only(path):
    """Makes the directory `path` read-only for the block: a read-only bind mount of it when
    running as root (root ignores permission bits), else its write permissions removed."""
    path = str(path)
    if os.geteuid() != 0:
        modes = {}
        for folder, _, _ in os.walk(path):
            modes[folder] = os.stat(folder).st_mode
            os.chmod(folder, 0o555)
        try:
            yield path
        finally:
            for folder, mode in modes.items():
                os.chmod(folder, mode)
        return
    mount = subprocess.run(["mount", "--bind", path, path], capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip("running as root on a machine that cannot bind-mount: no way to make a "
                    f"directory read-only ({mount.stderr.strip()})")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", path], check=True)
        yield path
    finally:
        subprocess.run(["umount", path], check=True)


@pytest.fixture
def read_only_dir(tmp_path):
    """An empty directory in which no file can be created."""
    path = tmp_path / "read_only"
    path.mkdir()
    with read_only(path) as folder:
        yield folder
