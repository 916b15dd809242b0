"""`training.keras_loop` on JAX (and PyTorch) in subprocesses: a run killed (SIGKILL) and
stopped (SIGTERM) within epochs, then rerun, ends as an uninterrupted run does."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.training.conftest import run_cli, subprocess_env

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keras_worker.py")
# 6 steps per epoch, 12 in all; checkpoints after steps 4, 6 (epoch end), 8 and 12.
FLAGS = ["--model=resnet20", '--model_overrides={"depth": 8, "stage_widths": [4, 8, 16]}',
         "--dataset=synthetic", "--synthetic_examples=96", "--image_size=8",
         "--num_classes=4", "--batch_size=16", "--epochs=2", "--verbose=2", "--deterministic",
         "--ema_decay=0.9", "--clip_global_norm=0.5", "--weight_decay=0.001",
         "--checkpoint_every_steps=4"]
# What differs between two equal runs: clocks, and the paths of their own directories.
UNEQUAL = {"train_seconds", "wall_seconds", "images_per_second", "epoch_seconds",
           "latest_checkpoint", "exports", "config"}


def _state(model_dir):
    path = os.path.join(model_dir, "keras_state.json")
    if not os.path.isfile(path):
        return {"step": -1}
    try:
        with open(path) as file:
            return json.load(file)
    except ValueError:  # never half-written (atomic), but be safe while polling
        return {"step": -1}


def _start(model_dir, backend):
    return subprocess.Popen([sys.executable, WORKER, "0.2", *FLAGS, f"--model_dir={model_dir}"],
                            cwd=REPO_ROOT, env=subprocess_env(KERAS_BACKEND=backend),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop_after(model_dir, step, signum, backend, timeout=240):
    """Runs the pausing worker until its checkpoint reaches `step`, sends `signum`, and returns
    the process's (return code, stderr)."""
    process = _start(model_dir, backend)
    deadline = time.time() + timeout
    while _state(model_dir)["step"] < step and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be stopped"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def _weights(model_dir):
    """Every array of the final checkpoint (model, optimizer and average), by its h5 path."""
    with h5py.File(os.path.join(model_dir, _state(model_dir)["weights"])) as file:
        arrays = {}
        file.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(
            item, h5py.Dataset) else None)
    return arrays


def _history(model_dir):
    with open(os.path.join(model_dir, "history.csv")) as file:
        return [{k: v for k, v in row.items() if k not in UNEQUAL} for row in csv.DictReader(file)]


def _results(model_dir):
    with open(os.path.join(model_dir, "results.json")) as file:
        return json.load(file)


def _assert_same_run(model_dir, reference):
    mine, theirs = _weights(model_dir), _weights(reference)
    assert sorted(mine) == sorted(theirs)
    # The optimizer's: its step, the momentum of the 23 trainable weights and the averages of
    # those and of the 7 batch norms' statistics (37).
    assert sum(name.startswith("optimizer/") for name in mine) == 1 + 23 + 37
    for name in mine:
        np.testing.assert_allclose(mine[name], theirs[name], rtol=0, atol=1e-6, err_msg=name)
    assert _history(model_dir) == _history(reference)
    results, expected = _results(model_dir), _results(reference)
    assert results.keys() == expected.keys()
    assert {k: v for k, v in results.items() if k not in UNEQUAL} == {
        k: v for k, v in expected.items() if k not in UNEQUAL}
    assert sorted(os.listdir(model_dir)) == sorted(os.listdir(reference))


@pytest.mark.slow  # four runs in subprocesses: about 1 to 3 minutes on 2 CPU cores
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_killed_then_interrupted_run_resumes_to_the_uninterrupted_result(backend, tmp_path):
    pytest.importorskip(backend)
    reference, model_dir = str(tmp_path / "whole"), str(tmp_path / "parts")
    whole = run_cli("training.fit", *FLAGS, f"--model_dir={reference}", KERAS_BACKEND=backend)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert _results(reference)["status"] == "completed"

    code, _ = _stop_after(model_dir, 4, signal.SIGKILL, backend)
    assert code == -signal.SIGKILL
    killed = _state(model_dir)
    assert killed["epoch"] == 0 and 4 <= killed["step"] < 6 and killed["batch"] == killed["step"]
    assert os.path.isfile(os.path.join(model_dir, killed["weights"]))

    code, stderr = _stop_after(model_dir, 8, signal.SIGTERM, backend)  # resumes, then SIGTERM
    assert code == 143, stderr[-3000:]
    stopped = _state(model_dir)
    assert stopped["step"] >= 8 and stopped["epoch"] == 1
    message = (f"Interrupted by SIGTERM at step {stopped['step']} of 12: checkpoint "
               f"{model_dir}/{stopped['weights']} saved; rerun the same command to resume.")
    assert stderr.endswith(f"training.fit: {message}\n")
    results = _results(model_dir)
    assert (results["status"], results["message"], results["steps"]) == (
        "interrupted", message, stopped["step"])

    rest = run_cli("training.fit", *FLAGS, f"--model_dir={model_dir}", KERAS_BACKEND=backend)
    assert rest.returncode == 0, rest.stderr[-3000:]
    if stopped["batch"]:
        assert (f"Resuming in epoch 2 after batch {stopped['batch']} (step {stopped['step']})."
                in rest.stdout)
    _assert_same_run(model_dir, reference)
