"""The model directory (`training.outputs`): locked, recoverable, never lost or mixed."""

import glob
import json
import os
import shutil
import stat

import numpy as np
import pytest
import tensorflow as tf

from tests.training import fakes
from tests.training.conftest import tiny_settings
from training import config, outputs, trainer
from training.dirlock import DirectoryLock, DirectoryLocked


def experiment(**overrides):
    return config.from_settings(tiny_settings(**overrides))


def listing(folder):
    """Every file under `folder` with its size and modification time."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            info = os.stat(os.path.join(root, name))
            found[os.path.relpath(os.path.join(root, name), folder)] = (info.st_size,
                                                                      info.st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 3-epoch run with checkpoints at steps 0, 8, 16 and 24 (3 kept: 8, 16, 24)."""
    model_dir = str(tmp_path_factory.mktemp("finished") / "run")
    result = trainer.run(experiment(epochs=3, model_dir=model_dir, deterministic=True),
                         fakes.FakePipeline())
    return model_dir, result


def copy_of(finished_run, tmp_path):
    model_dir = str(tmp_path / "run")
    shutil.copytree(finished_run[0], model_dir)
    return model_dir


def resume(model_dir, epochs=3, **overrides):
    return trainer.Trainer(experiment(epochs=epochs, model_dir=model_dir, deterministic=True,
                                      **overrides), fakes.FakePipeline())


def test_a_second_trainer_on_a_directory_in_use_stops_before_writing(tmp_path):
    model_dir = str(tmp_path / "run")
    first = trainer.Trainer(experiment(model_dir=model_dir), fakes.FakePipeline())
    before = listing(model_dir)
    with pytest.raises(DirectoryLocked, match=rf"model_dir={model_dir} is in use by .*pid "
                                              rf"{os.getpid()} on "):
        trainer.Trainer(experiment(model_dir=model_dir, epochs=5), fakes.FakePipeline())
    assert listing(model_dir) == before
    first.fit()  # releases the directory at the end
    trainer.Trainer(experiment(model_dir=model_dir), fakes.FakePipeline()).close()


def test_an_error_while_setting_up_releases_the_directory(tmp_path):
    model_dir = str(tmp_path / "run")
    with pytest.raises(ValueError, match="batch_size=256 is larger"):
        trainer.Trainer(experiment(model_dir=model_dir, global_batch_size=256),
                        fakes.FakePipeline())
    DirectoryLock(model_dir).acquire().release()


def test_a_lost_state_file_resumes_from_the_newest_checkpoint(finished_run, tmp_path, capfd):
    model_dir = copy_of(finished_run, tmp_path)
    os.remove(os.path.join(model_dir, "checkpoints", "checkpoint"))
    run = resume(model_dir, epochs=4)
    assert run._resumed_from == os.path.join(model_dir, "checkpoints", "ckpt-24")
    assert int(run.step.numpy()) == 24
    assert "the state file" in capfd.readouterr().err
    for got, want in zip(run.model.get_weights(), finished_run[1].model.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith("ckpt-24")
    run.fit()
    assert int(run.step.numpy()) == 32


@pytest.mark.parametrize("damaged", ["index", "data"])
def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(
        finished_run, tmp_path, capfd, damaged):
    model_dir = copy_of(finished_run, tmp_path)
    folder = os.path.join(model_dir, "checkpoints")
    bad = glob.glob(os.path.join(folder, f"ckpt-24.{damaged}*"))[0]
    size = os.path.getsize(bad)
    with open(bad, "r+b") as file:
        file.truncate(size // 2)
    run = resume(model_dir)
    assert run._resumed_from == os.path.join(folder, "ckpt-16")
    assert int(run.step.numpy()) == 16
    err = capfd.readouterr().err
    assert f"Using {folder}/ckpt-16, the newest checkpoint that reads cleanly: {bad} is " \
           "damaged or missing (" in err
    assert os.path.getsize(bad) == size // 2  # never deleted or changed
    assert tf.train.latest_checkpoint(folder).endswith("ckpt-16")
    run.close()


def test_when_no_checkpoint_reads_the_run_stops_with_one_message(finished_run, tmp_path):
    model_dir = copy_of(finished_run, tmp_path)
    for index in glob.glob(os.path.join(model_dir, "checkpoints", "*.index")):
        with open(index, "wb") as file:
            file.write(b"garbage")
    with pytest.raises(ValueError, match=r"None of the 3 checkpoints in .*/checkpoints can be "
                                         r"read: .*ckpt-24.index is damaged.*Use a new model_dir"):
        resume(model_dir)
    DirectoryLock(model_dir).acquire().release()


def test_a_killed_save_leaves_partial_folders_that_the_next_start_removes(
        finished_run, tmp_path):
    model_dir = copy_of(finished_run, tmp_path)
    partial = os.path.join(model_dir, "checkpoints", "ckpt-32_temp")
    os.makedirs(partial)
    with open(os.path.join(partial, "part-00000-of-00001.data-00000-of-00001"), "wb") as file:
        file.write(b"\0" * 100)
    resume(model_dir).close()
    assert not os.path.exists(partial)


def test_a_failed_checkpoint_write_keeps_the_last_good_one(finished_run, tmp_path, monkeypatch):
    model_dir = copy_of(finished_run, tmp_path)
    run = resume(model_dir, epochs=4)
    real_save = tf.train.CheckpointManager.save

    def full_disk(manager, checkpoint_number=None, **kwargs):
        # What TensorFlow's saver leaves when the disk fills: a partial temp folder, an error.
        os.makedirs(os.path.join(manager.directory, f"ckpt-{checkpoint_number}_temp"))
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
    with pytest.raises(outputs.RunDirectoryError) as error:
        run.fit()
    # Epoch 4 is the best so far, and the best checkpoint is written first.
    folder, best = os.path.join(model_dir, "checkpoints"), os.path.join(model_dir, "best")
    assert str(error.value) == (
        f"Could not write the checkpoint of step 32 to {best}: No space left on device. The "
        f"last good checkpoint, {folder}/ckpt-24, is kept; rerun to resume from it.")
    assert glob.glob(os.path.join(model_dir, "*", "*_temp")) == []
    assert tf.train.latest_checkpoint(folder) == os.path.join(folder, "ckpt-24")
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    resume(model_dir, epochs=4).close()  # the directory was released


def test_a_failed_write_of_the_best_checkpoint_leaves_a_run_that_redoes_the_epoch(
        tmp_path, monkeypatch):
    """Every epoch is the best so far; the best checkpoint of epoch 2 fails to write. The
    latest checkpoint must not then say that epoch 2 is best while best/ holds epoch 1."""
    evaluate = trainer.Trainer.evaluate

    def improving(self, split="test"):  # each epoch better than the last
        return {**evaluate(self, split), "accuracy": int(self.step.numpy()) / 100}

    monkeypatch.setattr(trainer.Trainer, "evaluate", improving)
    real_save, failed = tf.train.CheckpointManager.save, []

    def full_disk_once(manager, checkpoint_number=None, **kwargs):
        if manager.directory.endswith("best") and checkpoint_number == 16 and not failed:
            failed.append(checkpoint_number)
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
        return real_save(manager, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk_once)
    model_dir = str(tmp_path / "run")
    with pytest.raises(outputs.RunDirectoryError):
        resume(model_dir).fit()
    folder, best = os.path.join(model_dir, "checkpoints"), os.path.join(model_dir, "best")
    assert tf.train.latest_checkpoint(folder) == os.path.join(folder, "ckpt-8")
    assert tf.train.latest_checkpoint(best) == os.path.join(best, "ckpt-8")
    run = resume(model_dir)
    run.fit()
    assert (run.results["best_epoch"], run.results["best_checkpoint"]) == (
        3, os.path.join(best, "ckpt-24"))


def test_files_of_a_run_get_the_default_permissions(finished_run):
    umask = os.umask(0)
    os.umask(umask)
    modes = {path: stat.S_IMODE(os.stat(os.path.join(finished_run[0], path)).st_mode)
             for path in listing(finished_run[0])}
    assert "results.json" in modes and "history.csv" in modes and "config.json" in modes
    assert {path: mode for path, mode in modes.items() if mode != 0o666 & ~umask} == {}


def test_a_renamed_model_is_recorded_under_its_real_architecture(tmp_path):
    result = trainer.run(experiment(epochs=1, model_dir=str(tmp_path / "run")),
                         fakes.FakePipeline())
    with open(tmp_path / "run" / "results.json") as file:
        results = json.load(file)
    assert results["model"] == result.model.name == "resnet8_widths4-8-16"
    assert results["architecture"] == {
        "depth": 8, "stem": "cifar", "stem_width": 4, "block": "basic",
        "stage_blocks": [1, 1, 1], "stage_widths": [4, 8, 16], "bottleneck_widths": [],
        "cardinality": 1, "unit": "original", "shortcut": "A", "plain": False,
        "se_ratio": None, "avg_down": False}
    assert results["parameters"] == result.model.count_params()
