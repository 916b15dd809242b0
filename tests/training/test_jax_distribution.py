"""`training.jax_distribution`: data-parallel training on JAX over 2 CPU devices of one process
and over 2 processes joined by `keras.distribution.initialize`."""

import doctest
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
import pytest
from absl import flags

from tests.training.conftest import REPO_ROOT, free_port, run_cli, subprocess_env, tiny_settings
from training import backends, jax_distribution
from training import config as config_lib

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jax_devices_worker.py")
TWO_DEVICES = "--xla_force_host_platform_device_count=2"
# The run of these tests: 64 synthetic examples, 1 epoch of 4 steps of 16, deterministic.
SETTINGS = tiny_settings(epochs=1, synthetic_examples=64, image_size=8, num_classes=4,
                         deterministic=True, verbose=2, save_model=True, export_format="keras")
TINY = ["--model=resnet20", '--model_overrides={"depth": 8, "stage_widths": [4, 8, 16]}',
        "--dataset=synthetic", "--synthetic_examples=64", "--image_size=8", "--num_classes=4",
        "--batch_size=16", "--epochs=1", "--deterministic", "--verbose=2",
        "--export_format=keras"]


def _exported_weights(model_dir):
    """The arrays of `model.keras` (its `model.weights.h5`), by path."""
    import h5py

    with zipfile.ZipFile(os.path.join(model_dir, "model.keras")) as archive:
        data = io.BytesIO(archive.read("model.weights.h5"))
    arrays = {}
    with h5py.File(data, "r") as file:
        file.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(
            item, h5py.Dataset) else None)
    return arrays


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
    """One process with 2 CPU devices: a data-parallel run, a one-device run (in
    `<tmp>/data_parallel` and `<tmp>/one_device`) and a batch the devices do not divide."""
    pytest.importorskip("jax")
    folder = tmp_path_factory.mktemp("two_devices")
    spec = {"settings": dict(SETTINGS, model_dir=str(folder)),
            "runs": [["data_parallel", "auto"], ["one_device", "one_device"]],
            "bad_settings": [{"global_batch_size": 15}], "output": str(folder / "out.json")}
    (folder / "spec.json").write_text(json.dumps(spec))
    result = subprocess.run([sys.executable, WORKER, str(folder / "spec.json")], cwd=REPO_ROOT,
                            env=subprocess_env(KERAS_BACKEND="jax", XLA_FLAGS=TWO_DEVICES),
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, result.stdout, json.loads((folder / "out.json").read_text())


def test_data_parallel_on_2_devices_trains_the_weights_of_one_device(two_devices):
    folder, log, out = two_devices
    assert "Distribution: data_parallel over 2 CPU devices, 8 images per device." in log
    assert log.count("Distribution:") == 1  # the one-device run has no such line
    parallel, single = out["data_parallel"]["results"], out["one_device"]["results"]
    assert (parallel["strategy"], parallel["num_replicas"], parallel["num_workers"]) == (
        "data_parallel", 2, 1)
    assert (single["strategy"], single["num_replicas"], single["num_workers"]) == (
        "one_device", 1, 1)
    written = json.loads((folder / "data_parallel" / "results.json").read_text())
    assert (written["strategy"], written["num_replicas"]) == ("data_parallel", 2)
    # The step is one XLA program over the global batch: batch normalization's statistics
    # (the moving mean and variance are among the weights) are those of all 16 images, as on
    # one device, so every weight agrees to float rounding.
    weights = [np.asarray(w) for w in out["data_parallel"]["weights"]]
    reference = [np.asarray(w) for w in out["one_device"]["weights"]]
    assert [w.shape for w in weights] == [w.shape for w in reference]
    for got, want in zip(weights, reference):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert parallel["steps"] == single["steps"] == 4
    np.testing.assert_allclose(parallel["final_test_loss"], single["final_test_loss"],
                               rtol=1e-5)


def test_a_global_batch_the_devices_do_not_divide_is_refused(two_devices):
    assert two_devices[2]["errors"] == [
        "global_batch_size=15 is not divisible by the 2 devices of the data-parallel run "
        "(1 process); use a multiple of 2."]


@pytest.mark.slow
def test_two_processes_train_the_one_process_run_and_only_process_0_writes(two_devices,
                                                                            tmp_path):
    model_dir = tmp_path / "run"
    address = f"127.0.0.1:{free_port()}"
    processes = [subprocess.Popen(
        [sys.executable, "-m", "training.fit", *TINY, f"--model_dir={model_dir}",
         f"--coordinator_address={address}", "--num_processes=2", f"--process_id={index}"],
        cwd=REPO_ROOT, env=subprocess_env(KERAS_BACKEND="jax", XLA_FLAGS=""),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for index in (0, 1)]
    logs = [process.communicate(timeout=400) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], logs[1][1][-3000:]
    for index, (out, _) in enumerate(logs):
        assert (f"Distribution: data_parallel over 2 CPU devices in 2 processes (this is "
                f"process {index}), 8 images per device.") in out
    assert f"results in {model_dir}." in logs[0][0]
    # Process 1 saved into a temporary directory (the saves are collective), removed at exit.
    temporary = logs[1][0].rsplit("results in ", 1)[1].strip().rstrip(".")
    assert temporary.startswith(os.path.join(tempfile.gettempdir(), "keras_resnets_process1_"))
    assert not os.path.exists(temporary)
    results = json.loads((model_dir / "results.json").read_text())
    assert (results["strategy"], results["num_replicas"], results["num_workers"]) == (
        "data_parallel", 2, 2)
    assert sorted(os.listdir(tmp_path)) == ["run"]
    reference_dir = two_devices[0] / "one_device"
    reference = json.loads((reference_dir / "results.json").read_text())
    # The processes read disjoint halves of each global batch: the same examples per step.
    for key in ("final_test_loss", "final_test_error"):
        np.testing.assert_allclose(results[key], reference[key], rtol=1e-5)
    weights, want = _exported_weights(model_dir), _exported_weights(reference_dir)
    assert sorted(weights) == sorted(want)
    for name in want:
        np.testing.assert_allclose(weights[name], want[name], rtol=1e-5, atol=1e-6)


def _start_processes(model_dir, arguments, logs):
    """The 2 processes of a run, their outputs in `logs/<out|err><index>.txt`."""
    address = f"127.0.0.1:{free_port()}"
    return [subprocess.Popen(
        [sys.executable, "-m", "training.fit", *arguments, f"--model_dir={model_dir}",
         f"--coordinator_address={address}", "--num_processes=2", f"--process_id={index}"],
        cwd=REPO_ROOT, env=subprocess_env(KERAS_BACKEND="jax", XLA_FLAGS="",
                                          PYTHONUNBUFFERED="1"),
        stdout=open(logs / f"out{index}.txt", "w"), stderr=open(logs / f"err{index}.txt", "w"),
        text=True) for index in (0, 1)]


def _wait(processes, logs, timeout=300):
    """The processes' exit codes; both are killed when one outlives `timeout` (a hang)."""
    try:
        return [process.wait(timeout=timeout) for process in processes]
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        tails = [(logs / f"out{index}.txt").read_text()[-1500:] for index in (0, 1)]
        pytest.fail(f"the processes hung; their outputs end:\n{tails[0]}\n---\n{tails[1]}")


@pytest.mark.slow
def test_a_signal_to_one_process_stops_both_after_one_step_and_the_rerun_resumes(tmp_path):
    """SIGTERM reaches process 0 only, within epoch 2. Saving is collective, so both must stop
    after the same step (a process that went on would wait for the other forever); the rerun
    of both resumes there and ends with the weights of an uninterrupted one-process run."""
    pytest.importorskip("jax")
    # 8 epochs of 4 steps of 16; a checkpoint after every step tells where the run is.
    arguments = [a.replace("--epochs=1", "--epochs=8") for a in TINY] + [
        "--checkpoint_every_steps=1"]
    model_dir, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    processes = _start_processes(model_dir, arguments, logs)
    out0, state = logs / "out0.txt", model_dir / "keras_state.json"
    for _ in range(3000):  # until step 6 is saved (5 minutes at most)
        if processes[0].poll() is not None or (
                state.exists() and json.loads(state.read_text())["step"] >= 6):
            break
        time.sleep(0.1)
    processes[0].send_signal(signal.SIGTERM)
    assert _wait(processes, logs) == [143, 143], (logs / "err0.txt").read_text()[-3000:]
    results = json.loads((model_dir / "results.json").read_text())
    step = results["steps"]
    assert results["status"] == "interrupted" and 6 <= step < 32
    stopped = f"Finished (interrupted): {step} steps"
    assert stopped in out0.read_text() and stopped in (logs / "out1.txt").read_text()
    assert "SIGTERM: stopping" not in (logs / "err1.txt").read_text()  # it never received one
    assert _wait(_start_processes(model_dir, arguments, logs), logs) == [0, 0]
    resumed = (logs / "out0.txt").read_text()
    assert (f"Resuming in epoch {step // 4 + 1} after batch {step % 4} (step {step})."
            if step % 4 else f"Resuming after epoch {step // 4} (step {step}).") in resumed
    results = json.loads((model_dir / "results.json").read_text())
    assert (results["status"], results["steps"]) == ("completed", 32)
    reference_dir = tmp_path / "reference"
    reference = run_cli("training.fit", *arguments, f"--model_dir={reference_dir}",
                        KERAS_BACKEND="jax", XLA_FLAGS="")
    assert reference.returncode == 0, reference.stderr[-3000:]
    weights, want = _exported_weights(model_dir), _exported_weights(reference_dir)
    assert sorted(weights) == sorted(want)
    for name in want:
        np.testing.assert_allclose(weights[name], want[name], rtol=1e-5, atol=1e-6)


def test_docstring_examples_run():
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(jax_distribution):
        runner.run(test)
    assert runner.summarize(verbose=False) == (0, 1)


def test_the_processes_come_from_keras_variables():
    env = {jax_distribution.ADDRESS_ENV: "10.0.0.1:1234,10.0.0.2:1234",
           jax_distribution.PROCESSES_ENV: "2", jax_distribution.PROCESS_ID_ENV: "1"}
    assert jax_distribution.cluster(env) == jax_distribution.Cluster("10.0.0.1:1234", 2, 1)
    assert jax_distribution.cluster({}) == jax_distribution.Cluster(None, 1, 0)
    for bad, message in [
        ({jax_distribution.PROCESSES_ENV: "two"},
         "KERAS_DISTRIBUTION_NUM_PROCESSES must be an integer >= 1; got 'two'."),
        ({jax_distribution.PROCESSES_ENV: "2", jax_distribution.PROCESS_ID_ENV: "2",
          jax_distribution.ADDRESS_ENV: "h:1"},
         "KERAS_DISTRIBUTION_PROCESS_ID=2 must be below KERAS_DISTRIBUTION_NUM_PROCESSES=2."),
        ({jax_distribution.PROCESSES_ENV: "2"},
         "KERAS_DISTRIBUTION_NUM_PROCESSES=2 needs KERAS_DISTRIBUTION_JOB_ADDRESSES, the "
         "host:port of process 0 (--coordinator_address)."),
    ]:
        with pytest.raises(ValueError) as error:
            jax_distribution.cluster(bad)
        assert str(error.value) == message


def test_what_cannot_apply_is_refused_in_one_line(monkeypatch):
    two = {jax_distribution.PROCESSES_ENV: "2", jax_distribution.ADDRESS_ENV: "h:1"}
    runtime = config_lib.RuntimeConfig
    for settings, backend, env, message in [
        (runtime(), "torch", two,
         "KERAS_DISTRIBUTION_NUM_PROCESSES=2 (--num_processes) starts a multi-process run of "
         "Keras' distribution, which exists only on the jax backend; on torch leave it 1."),
        (runtime(strategy="one_device"), "jax", two,
         "strategy='one_device' trains on one device of one process, but "
         "KERAS_DISTRIBUTION_NUM_PROCESSES=2 (--num_processes) starts 2; use strategy='auto'."),
        (runtime(), "jax", {"TF_CONFIG": json.dumps(
            {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}})},
         "TF_CONFIG describes a tf.distribute cluster, which the jax backend does not read; "
         "unset it and give --coordinator_address, --num_processes and --process_id instead."),
    ]:
        with pytest.raises(ValueError) as error:
            jax_distribution.check_settings(settings, backend, env)
        assert str(error.value) == message
    jax_distribution.check_settings(runtime(), "jax", two)
    jax_distribution.check_settings(runtime(strategy="one_device"), "jax", {})
    # training.backends checks the processes of this process's environment.
    for name, value in two.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=r"^KERAS_DISTRIBUTION_NUM_PROCESSES=2 \("):
        backends.check_settings(config_lib.from_settings(tiny_settings()), "torch")


def test_the_flags_set_keras_variables_and_are_refused_off_jax(monkeypatch):
    for name in (jax_distribution.ADDRESS_ENV, jax_distribution.PROCESSES_ENV,
                 jax_distribution.PROCESS_ID_ENV):
        monkeypatch.setenv(name, "")  # recorded, so that what apply_flags sets is undone
        monkeypatch.delenv(name)
    values = flags.FlagValues()
    jax_distribution.define_flags(values)
    values(["fit", "--coordinator_address=10.0.0.1:1234", "--num_processes=2",
            "--process_id=1"])
    for backend, hint in [
        ("tensorflow", "the TF_CONFIG variable starts several workers "
                       "(strategy='multi_worker')"),
        ("torch", "torch trains in one process")]:
        with pytest.raises(ValueError) as error:
            jax_distribution.apply_flags(backend, values)
        assert str(error.value) == (f"--coordinator_address joins the processes of a run on "
                                    f"the jax backend; on {backend} {hint}.")
    assert jax_distribution.ADDRESS_ENV not in os.environ
    jax_distribution.apply_flags("jax", values)
    assert jax_distribution.cluster() == jax_distribution.Cluster("10.0.0.1:1234", 2, 1)
    assert jax_distribution.process_id() == 1  # before the processes join


def test_placement_reports_the_devices_and_only_process_0_writes(tmp_path):
    placement = jax_distribution.Placement("data_parallel", "gpu", 8, 2, 1, 32)
    assert placement.line() == ("Distribution: data_parallel over 8 GPU devices in 2 "
                                "processes (this is process 1), 32 images per device.")
    assert placement.results() == {"strategy": "data_parallel", "num_replicas": 8,
                                   "num_workers": 2}
    single = jax_distribution.Placement("one_device", "cpu", 1, 1, 0, 16)
    assert (single.writes, placement.writes) == (True, False)
    assert jax_distribution.output_dir(single, str(tmp_path)) == str(tmp_path)
    assert jax_distribution.output_dir(single, None) is None


def test_fit_refuses_the_process_flags_on_tensorflow_in_one_line():
    result = run_cli("training.fit", *TINY[:-2], "--num_processes=2", "--backend=tensorflow")
    assert result.returncode == 2
    assert result.stderr == (
        "training.fit: error: --num_processes joins the processes of a run on the jax "
        "backend; on tensorflow the TF_CONFIG variable starts several workers "
        "(strategy='multi_worker').\n")
