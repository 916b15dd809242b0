"""The modern recipes (issue 14) hold their papers' numbers, build their models, and every
recipe names its source in --recipe's help."""

import keras
import numpy as np
import pytest
from absl import flags

from training import config, recipes, setting_flags, trainer

NEW_RECIPES = ["imagenet_resnet50_bag_of_tricks", "imagenet_resnet50_rsb_a3", "cifar10_wrn28_10"]


def trainable_parameters(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_every_recipe_has_a_source_and_one_help_line():
    assert sorted(recipes.SOURCES) == config.list_recipes()
    lines = recipes.help_lines()
    assert [line.split(":")[0] for line in lines] == config.list_recipes()
    assert "imagenet_resnet50_rsb_a3: Wightman et al. 2021, ResNet strikes back, Table 1 A3 " \
           "(evaluated at 160 px, not 224)" in lines


def test_recipe_help_lists_each_recipe_with_its_source():
    flag_values = flags.FlagValues()
    setting_flags.define_flags(flag_values)
    help_text = flag_values["recipe"].help
    for line in recipes.help_lines():
        assert "\n  " + line + "\n" in help_text
    assert help_text.startswith("A paper's recipe (name: source, and where it departs from it):")


def test_bag_of_tricks_follows_he_et_al_2019():
    experiment = config.recipe("imagenet_resnet50_bag_of_tricks")
    optimization, data = experiment.optimization, experiment.data
    assert (optimization.optimizer, optimization.nesterov, optimization.momentum) == (
        "sgd", True, 0.9)
    assert (optimization.global_batch_size, optimization.learning_rate) == (1024, 0.4)
    assert optimization.learning_rate == pytest.approx(0.1 * 1024 / 256)
    assert (optimization.schedule, optimization.warmup_epochs, optimization.warmup_learning_rate,
            optimization.epochs) == ("cosine", 5.0, 0.0, 200)
    assert (optimization.label_smoothing, optimization.weight_decay,
            optimization.decay_mode(), optimization.decay_bn_and_bias) == (
        0.1, 1e-4, "coupled", False)
    assert (data.dataset, data.augmentation, data.mixup_alpha, data.cutmix_alpha,
            data.mix_prob, data.randaugment, data.validation_images) == (
        "imagenet2012", "inception", 0.2, 0.0, 1.0, None, 0)
    assert experiment.model.name == "resnet50d"
    architecture = experiment.model.architecture()
    assert (architecture.stem, architecture.avg_down, architecture.stage_blocks) == (
        "deep", True, (3, 4, 6, 3))
    model = experiment.model.build(num_classes=1000, image_shape=(64, 64, 3))
    assert trainable_parameters(model) == 25_576_264  # timm's resnet50d
    # Zero gamma: the last batch norm of every residual branch starts at 0.
    assert not np.any(model.get_layer("conv2_block1_3_bn").gamma.numpy())
    assert np.all(model.get_layer("conv2_block1_2_bn").gamma.numpy() == 1.0)


def test_rsb_a3_follows_table_1():
    experiment = config.recipe("imagenet_resnet50_rsb_a3")
    optimization, data = experiment.optimization, experiment.data
    assert (optimization.optimizer, optimization.learning_rate,
            optimization.global_batch_size, optimization.epochs) == ("lamb", 8e-3, 2048, 100)
    assert (optimization.weight_decay, optimization.decay_mode(),
            optimization.decay_bn_and_bias) == (0.02, "decoupled", False)
    assert (optimization.schedule, optimization.warmup_epochs, optimization.label_smoothing,
            optimization.ema_decay) == ("cosine", 5.0, 0.0, None)
    # timm's Lamb: epsilon 1e-6, gradients scaled to a global norm of at most 1.
    assert (optimization.epsilon, optimization.clip_global_norm) == (1e-6, 1.0)
    assert (data.augmentation, data.image_size, data.randaugment, data.mixup_alpha,
            data.cutmix_alpha, data.mix_prob, data.mix_switch_prob, data.erasing_prob) == (
        "inception", 160, "rand-m6-mstd0.5-inc1", 0.1, 1.0, 1.0, 0.5, 0.0)
    assert (optimization.loss, optimization.bce_target_threshold) == (
        "binary_cross_entropy", 0.2)
    # No dropout and no stochastic depth in A3; logits for the binary cross-entropy.
    assert experiment.model.name == "resnet50"
    assert experiment.model.overrides == {"classifier_activation": None}
    model = experiment.model.build(num_classes=1000, image_shape=(64, 64, 3))
    assert trainable_parameters(model) == 25_557_032  # torchvision's resnet50
    assert not [layer.name for layer in model.layers if "drop" in layer.name]
    assert model.get_layer("predictions").activation is keras.activations.linear


def test_wrn28_10_follows_zagoruyko_and_komodakis_2016():
    experiment = config.recipe("cifar10_wrn28_10")
    optimization, data = experiment.optimization, experiment.data
    assert (optimization.optimizer, optimization.nesterov, optimization.momentum,
            optimization.learning_rate, optimization.global_batch_size) == (
        "sgd", True, 0.9, 0.1, 128)
    assert (optimization.schedule, optimization.decay_epochs, optimization.decay_rate,
            optimization.epochs) == ("step", (60.0, 120.0, 160.0), 0.2, 200)
    assert (optimization.weight_decay, optimization.decay_mode(),
            optimization.decay_bn_and_bias, optimization.label_smoothing) == (
        5e-4, "coupled", True, 0.0)
    assert (data.dataset, data.augmentation, data.crop_padding, data.normalization,
            data.validation_images, data.mixup_alpha) == (
        "cifar10", "cifar", "reflect", "per_channel", 0, 0.0)
    # 390 updates an epoch on all 50k images: boundaries at 23,400, 46,800 and 62,400.
    assert optimization.boundaries(50_000 // 128) == (23_400, 46_800, 62_400)
    assert experiment.model.overrides == {"block_dropout_rate": 0.3}
    model = experiment.model.build(num_classes=10, image_shape=(32, 32, 3))
    assert model.name == "wrn28_10"
    assert trainable_parameters(model) == 36_479_194  # the paper's 36.5M
    rates = [layer.rate for layer in model.layers if layer.name.endswith("_dropout")]
    assert rates == [0.3] * 12  # one per unit, 4 units in each of 3 stages


@pytest.mark.parametrize("name", NEW_RECIPES)
def test_new_recipe_takes_overrides(name):
    experiment = config.recipe(name, epochs=2, dataset="synthetic")
    assert (experiment.optimization.epochs, experiment.data.dataset) == (2, "synthetic")


@pytest.mark.slow
@pytest.mark.parametrize("name, optimizer, decay_mode, clip", [
    ("imagenet_resnet50_bag_of_tricks", "sgd", "coupled", None),
    ("imagenet_resnet50_rsb_a3", "lamb", "decoupled", 1.0),
    ("cifar10_wrn28_10", "sgd", "coupled", None),
])
def test_new_recipe_trains_its_model(name, optimizer, decay_mode, clip):
    # The recipe's model, optimiser and augmentation for 2 updates of 4 synthetic 32 px images
    # (about 15 s each on a CPU); its warm-up is longer than that and is dropped.
    experiment = config.recipe(name, dataset="synthetic", image_size=32, global_batch_size=4,
                               total_steps=2, warmup_epochs=0.0, synthetic_examples=16,
                               max_test_examples=4, verbose=0, save_model=False)
    results = trainer.run(experiment).results
    assert (results["status"], results["steps"], results["recipe"]) == ("completed", 2, name)
    assert (results["optimizer"], results["weight_decay_mode"], results["clip_global_norm"]) == (
        optimizer, decay_mode, clip)
    assert results["model"] == experiment.model.name
