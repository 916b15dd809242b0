"""Runs in their own processes: MirroredStrategy on two logical CPUs against one device,
MultiWorkerMirroredStrategy with two workers on localhost, and resume after a SIGKILL."""

import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest

from tests.training.conftest import (
    TINY_MODEL,
    free_port,
    kill_after_step,
    latest_step,
    run_worker,
    start_worker,
    tiny_settings,
    weights_of,
    worker_spec,
)


def results_of(npz, name="run"):
    return json.loads(str(npz[f"results_{name}"]))


def test_mirrored_on_two_cpus_matches_one_device(tmp_path):
    # Cross-replica batch norm, so that both strategies normalise over the same global batch.
    settings = tiny_settings(
        epochs=2, cpu_devices=2, deterministic=True,
        model_overrides=dict(TINY_MODEL, overrides={"*_bn": {"synchronized": True}}))
    spec, output = worker_spec(tmp_path, "mirrored", settings,
                               {"train_examples": 64, "test_examples": 21},
                               compare_strategies=["one_device", "mirrored"])
    run_worker(spec)
    npz = np.load(output)
    one, mirrored = results_of(npz, "one_device"), results_of(npz, "mirrored")
    assert (one["strategy"], one["num_replicas"]) == ("one_device", 1)
    assert (mirrored["strategy"], mirrored["num_replicas"], mirrored["steps"]) == (
        "mirrored", 2, 8)
    # Every test example evaluated once, although 21 leaves replicas partial and empty batches.
    assert one["test_examples"] == mirrored["test_examples"] == 21
    np.testing.assert_allclose(npz["loss_mirrored"], npz["loss_one_device"], atol=1e-5)
    for a, b in zip(weights_of(npz, "weight_mirrored_"), weights_of(npz, "weight_one_device_")):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert mirrored["final_test_accuracy"] == one["final_test_accuracy"]


def _two_workers(tmp_path, model_dirs, verbose=0, **extra):
    """Starts the 2 workers of a multi-worker run on localhost, worker `i` with `model_dirs[i]`
    and its temporary files in `tmp_path / f"tmp_{i}"`; returns the processes and the .npz
    paths they write."""
    cluster = {"worker": [f"localhost:{free_port()}" for _ in range(2)]}
    tmp_path.mkdir(parents=True, exist_ok=True)
    processes, outputs = [], []
    for index in range(2):
        temp = tmp_path / f"tmp_{index}"
        temp.mkdir(exist_ok=True)
        settings = tiny_settings(epochs=2, strategy="multi_worker", deterministic=True,
                                 model_dir=model_dirs[index], checkpoint_every_steps=2,
                                 save_model=True, verbose=verbose)
        spec, output = worker_spec(tmp_path, f"worker{index}", settings,
                                   {"train_examples": 64, "test_examples": 21}, **extra)
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        processes.append(start_worker(spec, TF_CONFIG=json.dumps(tf_config), TMPDIR=str(temp)))
        outputs.append(output)
    return processes, outputs


def _exit_codes(processes, timeout=300):
    """The processes' exit codes and outputs; both are killed when one outlives `timeout`."""
    try:
        logs = [process.communicate(timeout=timeout)[0] for process in processes]
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        pytest.fail("the workers hung")
    return [process.returncode for process in processes], logs


@pytest.fixture(scope="module")
def multi_worker_run(tmp_path_factory):
    """An uninterrupted 2-worker run, each worker with its own model directory:
    `(tmp_path, model_dirs, chief's .npz, other worker's .npz)`."""
    tmp_path = tmp_path_factory.mktemp("multi_worker")
    model_dirs = [str(tmp_path / f"model_dir_{index}") for index in range(2)]
    processes, outputs = _two_workers(tmp_path, model_dirs)
    codes, logs = _exit_codes(processes)
    assert codes == [0, 0], logs[codes.index(max(codes))][-3000:]
    return tmp_path, model_dirs, *(np.load(output) for output in outputs)


def test_multi_worker_on_localhost_trains_identically_and_only_the_chief_writes(
        multi_worker_run):
    tmp_path, model_dirs, chief, worker = multi_worker_run
    temps = [tmp_path / f"tmp_{index}" for index in range(2)]
    for name, npz in (("chief", chief), ("worker", worker)):
        results = results_of(npz)
        assert (results["strategy"], results["num_workers"], results["num_replicas"],
                results["steps"], results["test_examples"]) == ("multi_worker", 2, 2, 8, 21), name
    # Identical weights, batch-norm statistics included.
    for a, b in zip(weights_of(chief, "weight_run_"), weights_of(worker, "weight_run_")):
        np.testing.assert_array_equal(a, b)
    assert results_of(chief)["final_test_accuracy"] == results_of(worker)["final_test_accuracy"]
    # The chief wrote the model directory; the other worker wrote nothing and left no temp files.
    written = sorted(os.listdir(model_dirs[0]))
    assert written == ["best", "checkpoints", "class_names.json", "config.json", "curves.png",
                       "history.csv", "logs", "model.keras", "results.json", "saved_model"]
    assert sorted(os.listdir(os.path.join(model_dirs[0], "checkpoints"))) == [
        "checkpoint", "ckpt-4.data-00000-of-00001", "ckpt-4.index",
        "ckpt-6.data-00000-of-00001", "ckpt-6.index", "ckpt-8.data-00000-of-00001",
        "ckpt-8.index"]
    assert not os.path.exists(model_dirs[1])
    assert [p for p in os.listdir(temps[1]) if p.startswith("keras_resnets_worker")] == []


def test_a_signal_to_one_worker_stops_both_after_one_step_and_the_rerun_resumes(
        multi_worker_run, tmp_path):
    """SIGTERM reaches the second worker only. Checkpoints are collective, so both must stop
    after the same step (a worker that went on would wait for the other forever); the rerun of
    both, sharing the model directory, resumes there and ends as an uninterrupted run."""
    model_dir, reference = str(tmp_path / "run"), multi_worker_run[2]
    processes, _ = _two_workers(tmp_path / "b", [model_dir] * 2, sleep_per_batch=0.3)
    deadline = time.time() + 240
    while latest_step(model_dir) < 2 and processes[1].poll() is None and time.time() < deadline:
        time.sleep(0.05)
    processes[1].send_signal(signal.SIGTERM)
    codes, logs = _exit_codes(processes)
    assert codes == [143, 143], logs[0][-3000:]
    step = latest_step(model_dir)
    assert 2 <= step < 8
    stopped = f"Interrupted by SIGTERM at step {step} of 8"
    assert stopped in logs[0] and stopped in logs[1]
    assert "SIGTERM: stopping" not in logs[0]  # the chief never received one
    with open(os.path.join(model_dir, "results.json")) as file:
        assert json.load(file)["status"] == "interrupted"
    processes, outputs = _two_workers(tmp_path / "c", [model_dir] * 2, verbose=2)
    codes, logs = _exit_codes(processes)
    assert codes == [0, 0], logs[0][-3000:]
    assert re.search(rf"Resuming from .*ckpt-{step}: epoch \d, batch \d, step {step}",
                     logs[0]), logs[0][-2000:]
    resumed = np.load(outputs[0])
    assert results_of(resumed)["steps"] == 8
    for a, b in zip(weights_of(resumed, "weight_run_"), weights_of(reference, "weight_run_"),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_a_run_killed_mid_way_resumes_to_the_same_weights(tmp_path):
    pipeline = {"train_examples": 128, "test_examples": 16}
    common = dict(epochs=3, deterministic=True, checkpoint_every_steps=3)
    reference_spec, reference_out = worker_spec(tmp_path, "reference", tiny_settings(
        model_dir=str(tmp_path / "reference"), **common), pipeline)
    model_dir = str(tmp_path / "killed")
    killed_spec, _ = worker_spec(tmp_path, "killed", tiny_settings(model_dir=model_dir, **common),
                                 pipeline, sleep_per_batch=0.3)
    resumed_spec, resumed_out = worker_spec(tmp_path, "resumed", tiny_settings(
        model_dir=model_dir, verbose=2, **common), pipeline)

    killed_at = kill_after_step(killed_spec, model_dir, 9)
    assert 9 <= killed_at < 24

    log = run_worker(resumed_spec)
    assert re.search(rf"Resuming from .*ckpt-{killed_at}: epoch \d, batch \d, step {killed_at}",
                     log), log[-2000:]
    run_worker(reference_spec)
    resumed, reference = np.load(resumed_out), np.load(reference_out)
    assert results_of(resumed)["steps"] == results_of(reference)["steps"] == 24
    assert results_of(resumed)["epochs"] == 3
    np.testing.assert_allclose(resumed["loss_run"], reference["loss_run"], atol=1e-5)
    for a, b in zip(weights_of(resumed, "weight_run_"), weights_of(reference, "weight_run_")):
        np.testing.assert_allclose(a, b, atol=1e-5)
