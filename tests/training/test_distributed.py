"""Runs in their own processes: MirroredStrategy on two logical CPUs against one device,
MultiWorkerMirroredStrategy with two workers on localhost, and resume after a SIGKILL."""

import json
import os
import re

import numpy as np

from tests.training.conftest import (
    TINY_MODEL,
    free_port,
    kill_after_step,
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


def test_multi_worker_on_localhost_trains_identically_and_only_the_chief_writes(tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    processes, outputs, temps, model_dirs = [], [], [], []
    for index in range(2):
        model_dir = str(tmp_path / f"model_dir_{index}")
        temp = tmp_path / f"tmp_{index}"
        temp.mkdir()
        settings = tiny_settings(epochs=2, strategy="multi_worker", deterministic=True,
                                 model_dir=model_dir, checkpoint_every_steps=2, save_model=True)
        spec, output = worker_spec(tmp_path, f"worker{index}", settings,
                                   {"train_examples": 64, "test_examples": 21})
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        processes.append(start_worker(spec, TF_CONFIG=json.dumps(tf_config), TMPDIR=str(temp)))
        outputs.append(output)
        temps.append(temp)
        model_dirs.append(model_dir)
    for process in processes:
        log, _ = process.communicate(timeout=300)
        assert process.returncode == 0, log[-3000:]
    chief, worker = (np.load(output) for output in outputs)
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
