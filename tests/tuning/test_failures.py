"""Failed trials: one log line each, failed rows of the report, never retried; interruptions."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import types

import keras_tuner
import pytest

from tests.conftest import REPO_ROOT
from tests.training.conftest import subprocess_env
from tests.tuning.test_search import SYNTHETIC_FLAGS, TINY_SPACE
from training import config as config_lib
from training import trainer
from tuning import failures, report
from tuning import tuner as search_lib
from tuning.hypermodel import ResNetHyperModel

EXPERIMENT = config_lib.from_settings(dict(
    dataset="synthetic", synthetic_examples=64, image_size=8, num_classes=4,
    validation_images=16, global_batch_size=16, epochs=1, verbose=0))
DIVERGED = (r"Training diverged in update 1 of 3 \(epoch 1\): the loss \d+\.\d+ exceeds "
            r"max_loss=1e-06\.")
TOO_BIG = "ValueError: global_batch_size 4096 is larger than the training split (48 images)."


def _trial(project_dir, trial_id):
    with open(os.path.join(project_dir, f"trial_{trial_id}", "trial.json")) as file:
        return json.load(file)


def _runs(project_dir, trial_id):
    with open(os.path.join(project_dir, f"trial_{trial_id}", "runs.txt")) as file:
        return file.read().split()


def _failing_points(monkeypatch):
    """Width 8 diverges (a real `TrainingDiverged` from the trainer: max_loss is tiny); width 4
    with shortcut B asks for a batch larger than the data (the trainer's ValueError)."""
    original = search_lib.ResNetTuner.trial_config

    def trial_config(self, trial):
        experiment = original(self, trial)
        values = trial.hyperparameters.values
        if values["base_width"] == 8:
            return experiment.replace(max_loss=1e-6)
        if values["shortcut"] == "B":
            return experiment.replace(global_batch_size=4096)
        return experiment

    monkeypatch.setattr(search_lib.ResNetTuner, "trial_config", trial_config)


def test_failed_trials_are_one_line_each_reported_and_never_retried(tmp_path, monkeypatch,
                                                                    capfd):
    _failing_points(monkeypatch)
    search = search_lib.SearchConfig(experiment=EXPERIMENT, space=TINY_SPACE, max_trials=4,
                                     epochs_per_trial=1, directory=str(tmp_path), export_best=2)
    result = search_lib.run(search)
    output = capfd.readouterr()

    assert result.summary() == "4 trials: 1 completed, 3 failed"
    (completed,) = result.completed
    assert completed.values["base_width"] == 4 and completed.values["shortcut"] == "A"
    assert completed.pareto and not any(record.pareto for record in result.failed)
    expected = {}
    for record in result.failed:
        point = (record.values["base_width"], record.values["shortcut"])
        assert re.fullmatch(DIVERGED, record.reason) if point[0] == 8 else (
            record.reason == TOO_BIG), (point, record.reason)
        expected[record.trial_id] = (point, record.reason)
    assert sorted(point for point, _ in expected.values()) == [(4, "B"), (8, "A"), (8, "B")]

    # One line per failure naming the trial, its point and the reason; no traceback anywhere.
    lines = [line for line in output.out.splitlines() if " failed: " in line]
    assert sorted(lines) == sorted(
        f"Trial {trial_id} (depth=8, basic, width={width}, original, shortcut={shortcut}) "
        f"failed: {why}" for trial_id, ((width, shortcut), why) in expected.items())
    assert "Traceback" not in output.out + output.err

    project = search.project_dir
    for trial_id, (_, why) in expected.items():
        trial = _trial(project, trial_id)
        assert (trial["status"], trial["message"]) == ("FAILED", why)
        with open(os.path.join(project, f"trial_{trial_id}", failures.FAILURE_FILE)) as file:
            kept = file.read()
        assert kept.startswith(f"{why}\n\nTraceback (most recent call last):")
    assert _trial(project, completed.trial_id)["status"] == "COMPLETED"

    with open(result.tables["csv"]) as file:
        rows = list(csv.DictReader(file))
    assert [(r["rank"], r["trial"], r["status"]) for r in rows] == [
        ("1", completed.trial_id, "completed")] + [("", t, "failed") for t in sorted(expected)]
    assert rows[0]["reason"] == "" and rows[0]["pareto"] == "yes"
    for row in rows[1:]:
        assert (row["val_error"], row["wall_time_s"], row["pareto"]) == ("", "", "")
        assert row["reason"] == expected[row["trial"]][1]
        assert int(row["macs"]) > 0  # the cost of a failed point is still known
    with open(result.tables["markdown"]) as file:
        summary = file.read().splitlines()[-1]
    assert summary.startswith("4 trials: 1 completed, 3 failed; 0 candidates rejected")
    assert [entry["trial"] for entry in result.exported] == [completed.trial_id]
    assert os.path.getsize(result.plot) > 10_000

    # Rerunning the finished search retries nothing and reports the same.
    again = search_lib.run(search)
    assert again.summary() == "4 trials: 1 completed, 3 failed"
    assert [(r.trial_id, r.status, r.reason) for r in again.records] == [
        (r.trial_id, r.status, r.reason) for r in result.records]
    assert all(_runs(project, trial_id) == ["tuner0"] for trial_id in ("0", "1", "2", "3"))
    assert " failed: " not in capfd.readouterr().out


def test_a_search_where_every_trial_fails_reports_them_and_exits_3(tmp_path):
    # Four failures: more than KerasTuner's default stop after three consecutive ones.
    command = [sys.executable, "-m", "tuning.search", *SYNTHETIC_FLAGS, "--max_trials=4",
               "--max_loss=0.001", f"--directory={tmp_path}"]
    project = os.path.join(str(tmp_path), "search")
    last_line = (f"tuning.search: error: no trial completed (4 trials: 0 completed, 4 failed); "
                 f"the reasons are in {project}/results.md")
    first = subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 3, first.stderr[-3000:]
    assert first.stderr.strip().splitlines()[-1] == last_line
    assert "Traceback" not in first.stdout + first.stderr
    failed = [line for line in first.stdout.splitlines() if " failed: " in line]
    assert [line.split()[1] for line in failed] == ["0", "1", "2", "3"]
    assert all(re.search(r"\) failed: Training diverged in update 1 of 4 \(epoch 1\): the loss "
                         r"\d+\.\d+ exceeds max_loss=0\.001\.$", line) for line in failed)
    assert [_trial(project, i)["status"] for i in "0123"] == ["FAILED"] * 4
    with open(os.path.join(project, "results.md")) as file:
        assert file.read().splitlines()[-1].startswith("4 trials: 0 completed, 4 failed;")
    assert not os.path.exists(os.path.join(project, "results.png"))

    # The finished search, rerun: no trial runs again and it ends the same way.
    second = subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True,
                            text=True, timeout=600)
    assert second.returncode == 3, second.stderr[-3000:]
    assert second.stderr.strip().splitlines()[-1] == last_line
    assert " failed: " not in second.stdout
    assert [_runs(project, i) for i in "0123"] == [["tuner0"]] * 4


def test_an_interrupted_trial_stops_the_search_and_resumes_on_rerun(tmp_path, monkeypatch):
    original, calls = trainer.run, []

    def interrupted_once(experiment, **kwargs):
        calls.append(experiment.runtime.model_dir)
        if len(calls) == 1:
            raise trainer.TrainingInterrupted(
                "Interrupted by SIGINT at step 2 of 3: a checkpoint was saved.", signal.SIGINT)
        return original(experiment, **kwargs)

    monkeypatch.setattr(trainer, "run", interrupted_once)
    search = search_lib.SearchConfig(experiment=EXPERIMENT, space=TINY_SPACE, max_trials=2,
                                     epochs_per_trial=1, directory=str(tmp_path))
    with pytest.raises(failures.SearchInterrupted) as raised:
        search_lib.run(search)
    assert str(raised.value) == ("Trial 0: Interrupted by SIGINT at step 2 of 3: a checkpoint "
                                 "was saved. Rerun the search to resume it.")
    assert (raised.value.trial_id, raised.value.exit_code) == ("0", 130)
    project = search.project_dir
    assert _trial(project, "0")["status"] == "RUNNING"  # not failed: it resumes
    assert not os.path.exists(os.path.join(project, "trial_0", failures.FAILURE_FILE))
    assert not os.path.exists(os.path.join(project, ".lock"))  # released on the way out

    result = search_lib.run(search)
    assert result.summary() == "2 trials: 2 completed, 0 failed"
    assert _runs(project, "0") == ["tuner0", "tuner0"] and _runs(project, "1") == ["tuner0"]


def test_the_report_reads_a_workers_reason_from_the_trial_folder(tmp_path):
    # Through gRPC the chief gets a trial's status but not its message: the file has the reason.
    hypermodel = ResNetHyperModel(TINY_SPACE)
    values = dict(block="basic", blocks_per_stage=1, base_width=4, unit="original", shortcut="A")
    trials = {}
    for trial_id, message in (("0", None), ("1", "Traceback ...\nValueError: bad point\n")):
        hp = hypermodel.values_to_hp(values)
        trials[trial_id] = keras_tuner.engine.trial.Trial(hp, trial_id=trial_id, status="FAILED",
                                                          message=message)
    failures.record(str(tmp_path / "trial_0"), "RuntimeError: out of memory", "Traceback ...")
    records = report.collect(types.SimpleNamespace(trials=trials), hypermodel, str(tmp_path))
    assert [(r.trial_id, r.status, r.reason, r.params) for r in records] == [
        ("0", "failed", "RuntimeError: out of memory", None),
        ("1", "failed", "ValueError: bad point", None)]
    assert report.summary(records) == "2 trials: 0 completed, 2 failed"


@pytest.mark.parametrize("error, expected", [
    (trainer.TrainingDiverged("Training diverged in update 7 of 9 (epoch 2): the loss is nan. "
                              "Stopped without saving this state; keep going."),
     "Training diverged in update 7 of 9 (epoch 2): the loss is nan."),
    (ValueError("first line\n  second line"), "ValueError: first line"),
    (MemoryError(), "MemoryError"),
    (RuntimeError("x" * 500), "RuntimeError: " + "x" * 397 + "..."),
])
def test_reasons_are_one_line(error, expected):
    assert failures.reason(error) == expected
