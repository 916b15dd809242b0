"""`tuning.search`: end-to-end searches, resume after SIGKILL, chief and workers, bad input."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tests.conftest import CIFAR10_DIR, REPO_ROOT
from tests.training.conftest import free_port, subprocess_env
from training import config as config_lib
from tuning import tuner as search_lib
from tuning.budget import Budget
from tuning.hypermodel import SearchSpace

TINY_SPACE = SearchSpace(blocks_per_stage=(1,), base_widths=(4, 8), blocks=("basic",),
                         units=("original",), shortcuts=("A", "B"))
SYNTHETIC_FLAGS = [
    "--dataset=synthetic", "--synthetic_examples=96", "--image_size=16", "--num_classes=4",
    "--validation_images=32", "--batch_size=16", "--blocks_per_stage=1", "--base_widths=4,8",
    "--blocks=basic", "--units=original", "--shortcuts=A,B", "--epochs_per_trial=1",
    "--verbose=0"]


def _completed(project_dir):
    done = {}
    for name in sorted(os.listdir(project_dir)):
        path = os.path.join(project_dir, name, "trial.json")
        if name.startswith("trial_") and os.path.exists(path):
            with open(path) as file:
                trial = json.load(file)
            if trial["status"] == "COMPLETED":
                done[trial["trial_id"]] = trial
    return done


def _runs(project_dir, trial_id):
    with open(os.path.join(project_dir, f"trial_{trial_id}", "runs.txt")) as file:
        return file.read().split()


def test_tiny_real_search_writes_table_plot_and_a_loadable_best_model(tmp_path):
    if not os.path.isdir(CIFAR10_DIR):
        pytest.skip(f"no CIFAR-10 image folder at {CIFAR10_DIR}")
    experiment = config_lib.recipe(
        "cifar10_resnet20", dataset=CIFAR10_DIR, max_train_examples=480, validation_images=160,
        max_test_examples=200, global_batch_size=32, schedule="cosine", epochs=1, verbose=0)
    budget = Budget(max_flops=1_000_000)  # admits base width 4 (0.9M), rejects 8 (3.2M)
    search = search_lib.SearchConfig(
        experiment=experiment, space=TINY_SPACE, max_trials=2, epochs_per_trial=1,
        budget=budget, directory=str(tmp_path), project="cifar", export_best=1)
    result = search_lib.run(search)

    assert len(result.records) == 2
    assert all(record.macs <= 1_000_000 for record in result.records)
    assert {record.values["base_width"] for record in result.records} == {4}
    with open(result.tables["csv"]) as file:
        lines = file.read().splitlines()
    assert lines[0].startswith("rank,trial,model,block,blocks_per_stage,base_width,unit,")
    assert len(lines) == 3
    assert "candidates rejected over budget" in open(result.tables["markdown"]).read()
    assert os.path.getsize(result.plot) > 10_000

    best = result.exported[0]
    assert best["val_error"] == result.records[0].val_error
    assert 0.0 <= best["test_error"] <= 1.0
    model = keras.saving.load_model(best["keras"])
    assert model.output_shape == (None, 10)
    images = np.zeros((2, 32, 32, 3), "float32")
    assert model.predict(images, verbose=0).shape == (2, 10)
    with open(best["config"]) as file:
        exported = config_lib.ExperimentConfig.from_dict(json.load(file))
    assert exported.model.name == "custom"
    assert exported.model.overrides["stage_widths"] == (4, 8, 16)
    assert exported.runtime.evaluate_test and exported.runtime.model_dir is None

    # Rerunning the finished search trains nothing and gives the same table.
    again = search_lib.run(search)
    assert [r.trial_id for r in again.records] == [r.trial_id for r in result.records]
    assert all(_runs(search.project_dir, r.trial_id) == ["tuner0"] for r in again.records)


def _search_command(*flags):
    return [sys.executable, "-m", "tuning.search", *SYNTHETIC_FLAGS, *flags]


def test_resume_after_sigkill_keeps_completed_trials(tmp_path):
    directory = str(tmp_path)
    project_dir = os.path.join(directory, "search")
    command = _search_command("--max_trials=4", f"--directory={directory}")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=subprocess_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (
            os.path.isdir(project_dir) and len(_completed(project_dir)) >= 2):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = _completed(project_dir)
    assert 2 <= len(before) < 4, "the kill must land mid-search"
    finished = subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env(),
                              capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    after = _completed(project_dir)
    assert sorted(after) == ["0", "1", "2", "3"]
    for trial_id, trial in before.items():  # completed trials were kept, not retrained
        assert after[trial_id]["metrics"] == trial["metrics"]
        assert _runs(project_dir, trial_id) == ["tuner0"]


def _two_trial_search(tmp_path):
    experiment = config_lib.from_settings(dict(
        dataset="synthetic", synthetic_examples=64, image_size=8, num_classes=4,
        validation_images=16, global_batch_size=16, epochs=1, verbose=0))
    return search_lib.SearchConfig(experiment=experiment, space=TINY_SPACE, max_trials=2,
                                   epochs_per_trial=1, directory=str(tmp_path))


def test_a_kill_between_the_trial_file_and_the_oracle_state_keeps_the_trial(tmp_path):
    # KerasTuner writes trial.json (COMPLETED) before oracle.json; a kill in between leaves an
    # oracle.json that still lists the trial as ongoing, from when the trial began.
    search = _two_trial_search(tmp_path)
    assert search_lib.run(search).summary() == "2 trials: 2 completed, 0 failed"
    oracle_file = os.path.join(search.project_dir, "oracle.json")
    with open(oracle_file) as file:
        state = json.load(file)
    assert state["end_order"] == ["0", "1"] and state["ongoing_trials"] == {}
    state.update(end_order=["0"], ongoing_trials={"tuner0": "1"})
    with open(oracle_file, "w") as file:
        json.dump(state, file)

    again = search_lib.run(search)
    assert again.summary() == "2 trials: 2 completed, 0 failed"
    assert _runs(search.project_dir, "0") == _runs(search.project_dir, "1") == ["tuner0"]


def test_a_search_builds_its_data_pipeline_once(tmp_path, monkeypatch):
    from training import data

    built = []

    class CountedPipeline(data.Pipeline):
        def __init__(self, *args, **kwargs):
            built.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(data, "Pipeline", CountedPipeline)
    result = search_lib.run(_two_trial_search(tmp_path))
    assert result.summary() == "2 trials: 2 completed, 0 failed"
    assert len(built) == 1  # read for the data's shape, then trained on by every trial


def test_chief_and_two_workers_run_every_trial_exactly_once(tmp_path):
    directory = str(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    common = ["--max_trials=4", f"--directory={directory}", f"--oracle_address={address}"]
    chief = subprocess.Popen(_search_command("--role=chief", *common), cwd=REPO_ROOT,
                             env=subprocess_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    time.sleep(3)
    workers = [subprocess.Popen(_search_command("--role=worker", f"--tuner_id=worker{i}",
                                                *common),
                                cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for i in (1, 2)]
    outputs = [process.communicate(timeout=600)[0] for process in workers + [chief]]
    for process, output in zip(workers + [chief], outputs):
        assert process.returncode == 0, output[-3000:]
    project_dir = os.path.join(directory, "search")
    completed = _completed(project_dir)
    assert sorted(completed) == ["0", "1", "2", "3"]
    runners = [_runs(project_dir, trial_id) for trial_id in completed]
    assert all(len(names) == 1 for names in runners)  # every trial ran exactly once
    assert {names[0] for names in runners} <= {"worker1", "worker2"}
    with open(os.path.join(project_dir, "results.csv")) as file:
        assert len(file.read().splitlines()) == 1 + 4  # the chief's table holds all of them

    # The same search on one machine proposes the same points and gets the same errors.
    local_dir = str(tmp_path / "local")
    local = subprocess.run(_search_command("--max_trials=4", f"--directory={local_dir}"),
                           cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True,
                           timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    local_completed = _completed(os.path.join(local_dir, "search"))

    def outcomes(trials):
        return sorted((json.dumps(t["hyperparameters"]["values"], sort_keys=True),
                       t["metrics"]["metrics"]["val_error"]["observations"][0]["value"][0])
                      for t in trials.values())

    assert outcomes(local_completed) == outcomes(completed)


@pytest.mark.parametrize("flags, message", [
    (["--tuner=grid"], r"tuner must be one of \['random', 'bayesian', 'hyperband'\]"),
    (["--units="], r"The search space is empty: units has no values"),
    (["--max_flops=1000"], r"The budget \(max_flops=1,000\) is below the smallest model"),
    (["--validation_images=0"], r"needs a validation split carved from train"),
    (["--role=worker"], r"role='worker' needs oracle_address=host:port"),
    (["--tune_learning_rate=0.5,0.1"], r"learning_rates must be \(low, high\)"),
    (["--epochs_per_trial=0"], r"error: --epochs_per_trial must be a positive integer; got 0\.$"),
    (["--max_trials=0"], r"error: --max_trials must be a positive integer; got 0\.$"),
    (["--export_best=-1"], r"error: --export_best must be a non-negative integer; got -1\.$"),
    (["--max_flops=0"], r"error: --max_flops must be a positive integer; got 0\.$"),
])
def test_bad_input_is_one_line_and_exit_code_2(flags, message, tmp_path):
    result = subprocess.run(_search_command(f"--directory={tmp_path}", *flags), cwd=REPO_ROOT,
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tuning.search: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert os.listdir(tmp_path) == []  # bad input writes nothing


def test_a_different_search_in_the_same_folder_is_refused(tmp_path):
    experiment = config_lib.from_settings(dict(
        dataset="synthetic", synthetic_examples=64, image_size=8, num_classes=4,
        validation_images=16, global_batch_size=16, epochs=1, verbose=0))
    first = search_lib.SearchConfig(experiment=experiment, space=TINY_SPACE, max_trials=1,
                                    epochs_per_trial=1, directory=str(tmp_path))
    with search_lib.build_tuner(first):
        pass
    other = search_lib.SearchConfig(experiment=experiment, space=TINY_SPACE, max_trials=3,
                                    epochs_per_trial=1, directory=str(tmp_path))
    with pytest.raises(ValueError, match=r"holds a search with other settings \(max_trials\)"):
        search_lib.build_tuner(other)


def test_hyperband_continues_the_parent_trials_training(tmp_path):
    experiment = config_lib.from_settings(dict(
        dataset="synthetic", synthetic_examples=64, image_size=8, num_classes=4,
        validation_images=16, global_batch_size=16, epochs=1, schedule="constant", verbose=0))
    search = search_lib.SearchConfig(experiment=experiment, space=TINY_SPACE, tuner="hyperband",
                                     epochs_per_trial=3, directory=str(tmp_path))
    with search_lib.build_tuner(search) as tuner:
        tuner.search()
    continued = [t for t in tuner.oracle.trials.values()
                 if t.hyperparameters.values.get("tuner/trial_id")]
    assert continued, "Hyperband promotes at least one trial with max_epochs=3"
    for trial in continued:
        with open(os.path.join(tuner.train_dir(trial.trial_id), "results.json")) as file:
            results = json.load(file)
        # The parent's epochs are in the history: training continued instead of restarting.
        assert results["epochs"] == trial.hyperparameters.values["tuner/epochs"]
        assert trial.hyperparameters.values["tuner/initial_epoch"] > 0
