"""The same seed gives the same history as before the training/ redesign (issue 13).

The figures were recorded with `training.trainer.run` at commit ef48804, before the data layer
was split into sources and the trainer into a loop and its outputs. A refactor that changes the
order of the data, an augmentation draw, the initialisation or the accounting changes them.
Accuracies are counts of images, so they must be equal; losses may differ in the last bits when
TensorFlow's kernels sum in another order on another CPU, hence the relative tolerance.
"""

import pytest

from tests.training.conftest import tiny_settings
from tests.training.test_data import make_folder
from training import config as config_lib
from training import trainer

SYNTHETIC = {
    "loss": [2.392483135064443, 2.3469938784837723],
    "accuracy": [0.07942708333333333, 0.10546875],
    "learning_rate": [0.09791667014360428, 0.00010705292515922338],
    "val_loss": [2.3412673473358154, 2.33774733543396],
    "val_accuracy": [0.078125, 0.125],
    "val_top5_accuracy": [0.5234375, 0.5078125],
    "test_loss": [2.3273723125457764, 2.288936138153076],
    "test_accuracy": [0.10546875, 0.12109375],
    "test_top5_accuracy": [0.5234375, 0.609375],
}
FOLDER = {
    "loss": [1.2866759498914082, 0.40737303098042804],
    "accuracy": [0.5, 0.9583333333333334],
    "learning_rate": [0.10000000149011612, 0.10000000149011612],
    "val_loss": [1.1762183904647827, 1.4757351875305176],
    "val_accuracy": [0.25, 0.375],
    "test_loss": [1.1157941818237305, 0.9852665265401205],
    "test_accuracy": [0.3333333333333333, 0.6666666666666666],
}


def history_of(settings):
    result = trainer.run(config_lib.from_settings(settings))
    return result.history.history


def assert_same(history, expected):
    for key, values in expected.items():
        assert history[key] == pytest.approx(values, rel=1e-5, abs=1e-7), key


def test_synthetic_run_history_is_unchanged():
    history = history_of(tiny_settings(validation_images=256, deterministic=True, seed=3,
                                       label_smoothing=0.1, schedule="cosine", warmup_epochs=1))
    assert_same(history, SYNTHETIC)


def test_image_folder_run_history_is_unchanged(tmp_path):
    make_folder(str(tmp_path), train_per_class=12, test_per_class=4)
    history = history_of(tiny_settings(dataset=str(tmp_path), validation_images=8,
                                       deterministic=True, seed=5, global_batch_size=8,
                                       augmentation="cifar"))
    assert_same(history, FOLDER)
