"""Configs and recipes: every recipe is a valid run; overrides; errors name the argument."""

import dataclasses
import json

import keras
import pytest

import keras_resnets
from training import config, optimization_config, schedules
from training.data_config import DataConfig

TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "imagenet2012": 1_281_167}

EXPECTED_RECIPES = sorted(
    [f"cifar10_resnet{d}" for d in (20, 32, 44, 56, 110, 1202)]
    + [f"cifar10_preact_resnet{d}" for d in (110, 164, 1001)]
    + [f"cifar100_preact_resnet{d}" for d in (164, 1001)]
    + [f"cifar{k}_resnext29_{c}x64d" for k in (10, 100) for c in (8, 16)]
    + [f"imagenet_resnet{d}" for d in (18, 34, 50, 101, 152)]
    + [f"imagenet_resnext{n}" for n in ("50_32x4d", "101_32x4d", "101_64x4d")]
    + ["imagenet_resnet50_large_batch", "finetune", "imagenet_resnet50_bag_of_tricks",
       "imagenet_resnet50_rsb_a3", "cifar10_wrn28_10"])


def steps_per_epoch(experiment):
    train = TRAIN_IMAGES[experiment.data.dataset] - experiment.data.validation_images
    return train // experiment.optimization.global_batch_size


def test_the_recipes_are_the_papers():
    assert config.list_recipes() == EXPECTED_RECIPES


@pytest.mark.parametrize("name", EXPECTED_RECIPES)
def test_every_recipe_resolves_to_a_valid_run(name):
    experiment = config.recipe(name)
    optimization = experiment.optimization
    assert experiment.name == name
    assert experiment.model.name in keras_resnets.list_models()
    assert optimization.global_batch_size > 0
    per_epoch = steps_per_epoch(experiment)
    total = optimization.steps(per_epoch)
    boundaries = optimization.boundaries(per_epoch)
    assert total > 0
    assert list(boundaries) == sorted(set(boundaries))
    assert all(0 < b < total for b in boundaries)
    assert optimization.warm_start_steps < (boundaries[0] if boundaries else total)
    assert optimization.warmup_steps(per_epoch) < (boundaries[0] if boundaries else total)
    schedule = schedules.build(optimization, per_epoch)
    assert float(schedule(total - 1)) < optimization.learning_rate
    assert json.loads(json.dumps(experiment.to_dict()))["name"] == name


def test_cifar_resnet_recipes_follow_he_et_al_2015():
    experiment = config.recipe("cifar10_resnet56")
    optimization = experiment.optimization
    assert (experiment.model.name, experiment.data.dataset, experiment.data.validation_images) == (
        "resnet56", "cifar10", 5000)
    assert (optimization.global_batch_size, optimization.learning_rate, optimization.momentum,
            optimization.weight_decay) == (128, 0.1, 0.9, 1e-4)
    assert (optimization.decay_steps, optimization.total_steps, optimization.epochs) == (
        (32000, 48000), 64000, None)
    assert optimization.warm_start_steps == 0
    assert steps_per_epoch(experiment) == 351


@pytest.mark.parametrize("name", ["cifar10_resnet110", "cifar10_resnet1202",
                                  "cifar10_preact_resnet110", "cifar10_preact_resnet164",
                                  "cifar10_preact_resnet1001", "cifar100_preact_resnet164",
                                  "cifar100_preact_resnet1001"])
def test_deep_cifar_recipes_warm_start_at_001_for_400_iterations(name):
    optimization = config.recipe(name).optimization
    assert (optimization.warm_start_steps, optimization.warm_start_learning_rate) == (400, 0.01)


def test_resnext29_recipe_follows_xie_et_al_2016():
    experiment = config.recipe("cifar100_resnext29_16x64d")
    optimization = experiment.optimization
    assert (experiment.model.name, experiment.data.dataset) == ("resnext29_16x64d", "cifar100")
    assert (optimization.epochs, optimization.decay_epochs, optimization.weight_decay) == (
        300, (150.0, 225.0), 5e-4)
    assert optimization.boundaries(390) == (150 * 390, 225 * 390)


def test_imagenet_recipes():
    resnet = config.recipe("imagenet_resnet152").optimization
    assert (resnet.global_batch_size, resnet.learning_rate, resnet.decay_epochs,
            resnet.epochs) == (256, 0.1, (30.0, 60.0), 90)
    assert steps_per_epoch(config.recipe("imagenet_resnet152")) == 5004
    resnext = config.recipe("imagenet_resnext101_64x4d")
    assert resnext.model.name == "resnext101_64x4d"
    assert resnext.optimization.decay_epochs == (30.0, 60.0, 90.0)


def test_large_batch_recipe_scales_the_learning_rate_linearly():
    experiment = config.recipe("imagenet_resnet50_large_batch")
    optimization = experiment.optimization
    assert optimization.global_batch_size == 2048
    assert optimization.learning_rate == pytest.approx(0.1 * 2048 / 256)
    assert (optimization.warmup_epochs, optimization.label_smoothing, optimization.schedule,
            optimization.decay_bn_and_bias) == (5.0, 0.1, "cosine", False)
    assert experiment.model.overrides == {"zero_init_residual": True}


def test_unknown_recipe_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        config.recipe("cifar10_resnet21")
    message = str(error.value)
    assert "recipe must be one of" in message
    assert all(name in message for name in EXPECTED_RECIPES)


def test_overrides_replace_any_field():
    experiment = config.recipe(
        "cifar10_resnet20", global_batch_size=64, learning_rate=0.05, strategy="mirrored",
        mixed_precision="bfloat16", dataset="/data/cifar10", model="resnet32",
        model_overrides={"zero_init_residual": True}, nesterov=True)
    assert experiment.optimization.global_batch_size == 64
    assert experiment.optimization.learning_rate == 0.05
    assert experiment.optimization.nesterov is True
    assert experiment.runtime.strategy == "mirrored"
    assert experiment.runtime.mixed_precision == "bfloat16"
    assert experiment.data.dataset == "/data/cifar10"
    assert experiment.model.name == "resnet32"
    assert experiment.model.overrides == {"zero_init_residual": True}
    # Untouched fields keep the recipe's values.
    assert experiment.optimization.decay_steps == (32000, 48000)
    assert experiment.data.validation_images == 5000


def test_seed_and_deterministic_set_runtime_and_data():
    experiment = config.recipe("cifar10_resnet20", seed=7, deterministic=True)
    assert (experiment.runtime.seed, experiment.data.seed) == (7, 7)
    assert experiment.runtime.deterministic and experiment.data.deterministic


def test_epochs_replace_total_steps_and_epoch_boundaries_replace_iterations():
    experiment = config.recipe("cifar10_resnet20", epochs=3)
    assert (experiment.optimization.epochs, experiment.optimization.total_steps) == (3, None)
    experiment = config.recipe("imagenet_resnet50", total_steps=1000, decay_steps=(500,))
    assert (experiment.optimization.epochs, experiment.optimization.total_steps) == (None, 1000)
    assert (experiment.optimization.decay_steps, experiment.optimization.decay_epochs) == (
        (500,), ())
    experiment = config.recipe("cifar10_resnet110", warmup_epochs=1.0)
    assert experiment.optimization.warm_start_steps == 0


def test_replace_applies_flat_overrides():
    experiment = config.recipe("cifar10_resnet20").replace(epochs=5, model_dir="/tmp/x")
    assert experiment.optimization.epochs == 5
    assert experiment.runtime.model_dir == "/tmp/x"
    assert experiment.name == "cifar10_resnet20"


def test_to_dict_and_from_dict_round_trip():
    experiment = config.recipe("imagenet_resnet50_large_batch", model_dir="/tmp/x", seed=3)
    restored = config.ExperimentConfig.from_dict(json.loads(json.dumps(experiment.to_dict())))
    assert restored == experiment


def test_from_settings_needs_a_length():
    with pytest.raises(ValueError, match="epochs or total_steps"):
        config.from_settings({"model": "resnet20"})
    assert config.from_settings({"total_steps": 10}).optimization.total_steps == 10


def test_unknown_setting_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown setting\(s\) \['batch'\]; valid settings: "
                                         r".*global_batch_size"):
        config.recipe("cifar10_resnet20", batch=3)


def test_every_data_field_is_a_setting():
    fields = {f.name for f in dataclasses.fields(DataConfig())}
    assert fields <= set(config.override_keys())


@pytest.mark.parametrize("settings, message", [
    ({"global_batch_size": -1}, "batch_size must be a positive integer; got -1"),
    ({"global_batch_size": 0}, "batch_size must be a positive integer; got 0"),
    ({"learning_rate": 0.0}, r"learning_rate must be a number in \(0, inf\]; got 0.0"),
    ({"momentum": 1.0}, r"momentum must be a number in \[0, 1\); got 1.0"),
    ({"weight_decay": -1e-4}, "weight_decay must be a number"),
    ({"label_smoothing": 1.0}, "label_smoothing must be a number"),
    ({"schedule": "linear"}, r"schedule must be one of \['step', 'cosine', 'constant'\]"),
    ({"decay_steps": (48000, 32000)}, "decay_steps must be strictly increasing"),
    ({"decay_steps": (10,), "decay_epochs": (1.0,)}, "either in iterations"),
    ({"decay_rate": 0.0}, "decay_rate must be a number"),
    ({"warm_start_steps": 10, "warmup_epochs": 1.0}, "either a warm start"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"strategy": "horovod"}, r"strategy must be one of \['auto', 'one_device', 'mirrored', "
                              r"'multi_worker', 'tpu'\]"),
    ({"mixed_precision": "fp16"}, r"mixed_precision must be one of \['none', 'float16', "
                                  r"'bfloat16'\]"),
    ({"jit_compile": "maybe"}, r"jit_compile must be one of \['auto', 'true', 'false'\]"),
    ({"keep_checkpoints": 0}, "keep_checkpoints must be a positive integer"),
    ({"verbose": 4}, r"verbose must be one of \[0, 1, 2, 3\]"),
    ({"max_loss": float("nan")}, "max_loss must be a number"),
    ({"model": "resnet21"}, r"model must be one of \[.*'resnet20'.*\]; got 'resnet21'"),
    ({"model_overrides": {"classes": 3}}, r"model_overrides may not set \['classes'\]"),
    ({"cpu_devices": -1}, "cpu_devices must be a non-negative integer"),
    ({"export_format": "keras,pdf"}, r"^export_format must be a comma-separated list of "
                                     r"distinct formats among keras, saved_model, onnx, litert; "
                                     r"got 'keras,pdf'\.$"),
    ({"export_format": ()}, r"export_format must be .*; got \(\)\."),
    ({"export_format": ["onnx", "onnx"]}, r"export_format must be .*; got \['onnx', 'onnx'\]"),
    ({"export_format": [1]}, r"export_format must be .*; got \[1\]\."),
])
def test_invalid_settings_name_the_argument(settings, message):
    with pytest.raises(ValueError, match=message):
        config.from_settings({"epochs": 1, **settings})


def test_export_format_is_a_tuple_of_formats():
    assert config.RuntimeConfig().export_format == ("keras", "saved_model")
    runtime = config.RuntimeConfig(export_format="onnx, litert,keras")
    assert runtime.export_format == ("onnx", "litert", "keras")
    experiment = config.from_settings({"epochs": 1, "export_format": ["litert"]})
    assert config.ExperimentConfig.from_dict(experiment.to_dict()) == experiment


def test_jit_compile_accepts_booleans():
    assert config.RuntimeConfig(jit_compile=True).jit_compile == "true"
    assert config.RuntimeConfig(jit_compile=False).jit_compile == "false"


def test_model_config_builds_for_the_data_set():
    model = config.ModelConfig("resnet20", {"depth": 8}).build(7, (16, 16, 3))
    assert model.output_shape == (None, 7)
    assert model.input_shape == (None, 16, 16, 3)


def test_custom_model_is_the_generic_builder():
    arguments = {"depth": 8, "stem": "cifar", "stage_widths": [4, 8, 16],
                 "unit": "full_preactivation"}
    model = config.ModelConfig("custom", arguments).build(num_classes=7, image_shape=(16, 16, 3))
    expected = keras_resnets.ResNet(8, stem="cifar", stage_widths=(4, 8, 16), classes=7,
                                    unit="full_preactivation", input_shape=(16, 16, 3))
    assert model.count_params() == expected.count_params()
    assert model.output_shape == (None, 7)
    assert model.name == "preact_resnet8_widths4-8-16"


def test_models_are_channels_last_whatever_keras_is_set_to():
    keras.config.set_image_data_format("channels_first")
    try:
        model = config.ModelConfig("resnet20", {"depth": 8}).build(7, (16, 16, 3))
    finally:
        keras.config.set_image_data_format("channels_last")
    assert model.get_layer("conv1_conv").data_format == "channels_last"
    assert model.count_params() == config.ModelConfig("resnet20", {"depth": 8}).build(
        7, (16, 16, 3)).count_params()
    with pytest.raises(ValueError, match=r"model_overrides may not set data_format="
                                         r"'channels_first': training's input pipeline gives "
                                         r"channels-last images"):
        config.ModelConfig("resnet20", {"data_format": "channels_first"})


def test_optimization_config_is_re_exported_by_training_config():
    assert config.OptimizationConfig is optimization_config.OptimizationConfig
    assert (config.OPTIMIZERS, config.SCHEDULES, config.WEIGHT_DECAY_MODES) == (
        ("sgd", "adamw", "lamb"), ("step", "cosine", "constant"),
        ("auto", "coupled", "decoupled"))


def test_unreached_boundaries_are_those_at_or_after_the_last_step():
    in_steps = config.OptimizationConfig(decay_steps=(10, 15, 20), total_steps=15)
    assert in_steps.unreached_boundaries(4) == [15, 20]
    in_epochs = config.OptimizationConfig(decay_epochs=(1.5, 4.0), epochs=3)
    assert in_epochs.unreached_boundaries(10) == [40]
    assert config.OptimizationConfig(decay_steps=(5,), total_steps=6).unreached_boundaries(
        2) == []
    cosine = config.OptimizationConfig(schedule="cosine", decay_steps=(20,), total_steps=6)
    assert cosine.unreached_boundaries(2) == []
