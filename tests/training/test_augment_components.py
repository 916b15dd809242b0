"""The augmentation components in the pipeline and the trainer: DataConfig fields and flags,
seeded batches, independent streams, and resumed runs that end with the same weights."""

import numpy as np
import pytest

from tests.training.conftest import tiny_settings
from tests.training.test_fit import parse
from tests.training.test_trainer import Recorder
from training import config as config_lib
from training import fit, trainer
from training.data import DataConfig, Pipeline

ALL = dict(randaugment="rand-m9-mstd0.5-inc1", erasing_prob=0.5, mixup_alpha=0.8,
           cutmix_alpha=1.0)


def pipeline(**fields):
    return Pipeline(DataConfig(dataset="synthetic", synthetic_examples=32, deterministic=True,
                               **fields))


def batches(pipe, epoch):
    return [(x.numpy(), y.numpy()) for x, y in pipe.train(epoch, global_batch_size=8)]


@pytest.mark.parametrize("field, value, message", [
    ("mixup_alpha", -0.1, "mixup_alpha must be a number in [0, inf); got -0.1."),
    ("cutmix_alpha", "1", "cutmix_alpha must be a number in [0, inf); got '1'."),
    ("mix_prob", 1.5, "mix_prob must be a number in [0, 1]; got 1.5."),
    ("mix_switch_prob", -0.5, "mix_switch_prob must be a number in [0, 1]; got -0.5."),
    ("erasing_prob", True, "erasing_prob must be a number in [0, 1]; got True."),
    ("randaugment", "m12", "randaugment must be dash-separated m<0-10>, n<ops>, mstd<std>, "
                           "inc<0|1>, p<0-1> (timm's rand_augment_transform, e.g. "
                           "'rand-m9-mstd0.5-inc1'); got 'm12'."),
])
def test_bad_values_are_one_error_naming_the_field(field, value, message):
    with pytest.raises(ValueError) as error:
        DataConfig(**{field: value})
    assert str(error.value) == message


def test_flags_set_the_components():
    data = fit.config_from_flags(parse(
        "--dataset=synthetic", "--epochs=1", "--randaugment=rand-m9-mstd0.5-inc1",
        "--erasing_prob=0.25", "--mixup_alpha=0.8", "--cutmix_alpha=1.0", "--mix_prob=0.9",
        "--mix_switch_prob=0.4")).data
    assert (data.randaugment, data.erasing_prob, data.mixup_alpha, data.cutmix_alpha,
            data.mix_prob, data.mix_switch_prob) == ("rand-m9-mstd0.5-inc1", 0.25, 0.8, 1.0,
                                                     0.9, 0.4)
    defaults = fit.config_from_flags(parse("--dataset=synthetic", "--epochs=1")).data
    assert (defaults.randaugment, defaults.erasing_prob, defaults.mixup_alpha,
            defaults.cutmix_alpha, defaults.mix_prob, defaults.mix_switch_prob) == (
        None, 0.0, 0.0, 0.0, 1.0, 0.5)


@pytest.mark.parametrize("geometry", ["cifar", "inception"])
def test_same_seed_and_epoch_give_identical_batches_and_another_epoch_differs(geometry):
    pipe = pipeline(augmentation=geometry, **ALL)
    first = batches(pipe, 3)
    assert [(x.shape, x.dtype.name, y.shape, y.dtype.name) for x, y in first[:1]] == [
        ((8, 32, 32, 3), "float32", (8, 10), "float32")]
    for (x, y), (x2, y2) in zip(first, batches(pipe, 3)):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    np.testing.assert_allclose(np.concatenate([y for _, y in first]).sum(1), 1.0, rtol=1e-6)
    other = batches(pipe, 4)
    assert all((x != x2).any() for (x, _), (x2, _) in zip(first, other))


def test_erasing_changes_one_box_per_image_and_leaves_the_other_draws_alone():
    plain, erased = batches(pipeline(), 0), batches(pipeline(erasing_prob=1.0), 0)
    for (x, y), (x2, y2) in zip(plain, erased):
        np.testing.assert_array_equal(y, y2)
        for image, image2 in zip(x, x2):
            rows, cols = np.nonzero((image != image2).any(-1))
            assert rows.size == (np.ptp(rows) + 1) * (np.ptp(cols) + 1) > 0


def test_mixup_mixes_each_batch_with_itself_reversed_by_the_label_weight():
    plain, mixed = batches(pipeline(), 1), batches(pipeline(mixup_alpha=0.8), 1)
    for (x, y), (x2, y2) in zip(plain, mixed):
        lam = y2[np.arange(8), y][0] if y[0] != y[-1] else None
        if lam is None:
            continue
        np.testing.assert_allclose(x2, lam * x + (1 - lam) * x[::-1], rtol=1e-5, atol=1e-5)
        want = np.zeros_like(y2)
        want[np.arange(8), y] += lam
        want[np.arange(8), y[::-1]] += 1 - lam
        np.testing.assert_allclose(y2, want, rtol=1e-6)


def test_without_components_labels_stay_int_class_indices():
    (x, y), = batches(pipeline(), 0)[:1]
    assert y.dtype.name == "int32" and y.shape == (8,)


# Two runs cover the four components (three trainer runs each, about 8 s of CPU).
@pytest.mark.parametrize("components", [
    dict(mixup_alpha=0.8, erasing_prob=0.5),
    dict(cutmix_alpha=1.0, randaugment="m9-mstd0.5", augmentation="inception")],
    ids=["mixup-erasing", "cutmix-randaugment"])
def test_stopping_mid_epoch_and_resuming_ends_with_the_same_weights(tmp_path, components):
    settings = tiny_settings(synthetic_examples=64, deterministic=True, label_smoothing=0.1,
                             **components)
    reference = trainer.run(config_lib.from_settings(settings))
    resumed_settings = dict(settings, model_dir=str(tmp_path / "run"))
    stopped = trainer.run(config_lib.from_settings(resumed_settings),
                          callbacks=[Recorder(stop_at=(1, 1))])
    assert (stopped.results["status"], stopped.results["steps"]) == ("stopped", 6)
    resumed = trainer.run(config_lib.from_settings(resumed_settings))
    assert resumed.results["steps"] == 8
    assert resumed.history.history["loss"] == reference.history.history["loss"]
    for got, want in zip(resumed.model.get_weights(), reference.model.get_weights()):
        np.testing.assert_array_equal(got, want)
