"""Fine-tuning: frozen groups and batch norms, the head's learning rate, first weights from a
model directory or a .keras file, the fixed normalisations, the flags and the recipe."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnets
from tests.training import fakes
from tests.training.conftest import TINY_MODEL, run_cli, tiny_settings
from tests.training.test_fit import parse
from training import config, evaluate, finetune, fit, initial_weights, trainer
from training.data import FIXED_STATISTICS, NORMALIZATIONS, DataConfig, Pipeline
from training.finetune import FinetuneConfig


def experiment(**overrides):
    return config.from_settings(tiny_settings(**overrides))


def tiny_trainer(num_classes=4, **overrides):
    return trainer.Trainer(experiment(**overrides),
                           pipeline=fakes.FakePipeline(num_classes=num_classes))


def weights_by_path(model):
    return {w.path: np.array(w.numpy()) for w in model.weights}


def group_of(model):
    """Weight path -> group."""
    return {w.path: group for group, layers in finetune.layer_groups(model).items()
            for layer in layers for w in layer.weights}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A tiny 1-epoch run on 4 classes with a model directory, to start from."""
    model_dir = str(tmp_path_factory.mktemp("source") / "run")
    keras.utils.set_random_seed(0)
    result = trainer.run(experiment(epochs=1, model_dir=model_dir, save_model=True),
                         pipeline=fakes.FakePipeline(num_classes=4))
    return model_dir, result.results["best_checkpoint"]


def checkpoint_weights(model_dir, checkpoint, num_classes=4):
    """The weights of a run's checkpoint, by weight path."""
    trained = tiny_trainer(num_classes=num_classes)
    trained.restore_weights(checkpoint)
    return weights_by_path(trained.model)


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize("fields, message", [
    ({"freeze": ("stage0",)}, "freeze entries must be 'stem' or 'stageN' (N = 1, 2, ...); "
                              "got 'stage0'."),
    ({"freeze": ("head",)}, "freeze entries must be 'stem' or 'stageN' (N = 1, 2, ...); "
                            "got 'head'."),
    ({"freeze": ("stem", "stem")}, "freeze names a group twice: ['stem', 'stem']."),
    ({"trainable_from": "conv3"}, "trainable_from must be 'stem', 'stageN' (N = 1, 2, ...) or "
                                  "'head'; got 'conv3'."),
    ({"freeze": ("stem",), "trainable_from": "stage2"},
     "Give freeze or trainable_from, not both; got freeze=['stem'], trainable_from='stage2'."),
    ({"freeze_bn": 1}, "freeze_bn must be True or False; got 1."),
    ({"head_lr_multiplier": 0.0}, "head_lr_multiplier must be a positive number; got 0.0."),
    ({"head_lr_multiplier": float("nan")}, "head_lr_multiplier must be a positive number; "
                                           "got nan."),
    ({"head_lr_multiplier": True}, "head_lr_multiplier must be a positive number; got True."),
    ({"init_weights": " "}, "init_weights must be a pretrained tag, a weights file or a model "
                            "directory; got ' '."),
])
def test_bad_settings_name_the_setting(fields, message):
    with pytest.raises(ValueError) as error:
        FinetuneConfig(**fields)
    assert str(error.value) == message


def test_a_group_the_model_lacks_is_named_with_the_models_groups():
    with pytest.raises(ValueError) as error:
        tiny_trainer(freeze=("stage4",))
    assert str(error.value) == ("freeze: the model has no group 'stage4'; its groups are stem, "
                                "stage1, stage2, stage3, head.")
    with pytest.raises(ValueError, match="^trainable_from: the model has no group 'stage5'"):
        tiny_trainer(trainable_from="stage5")


def test_groups_follow_the_keras_applications_layer_names():
    model = keras_resnets.get_model("resnet50v2", input_shape=(32, 32, 3), classes=3)
    groups = {name: [layer.name for layer in layers]
              for name, layers in finetune.layer_groups(model).items()}
    assert list(groups) == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    assert groups["stem"] == ["conv1_pad", "conv1_conv", "pool1_pad", "pool1_pool"]
    assert groups["stage1"][0] == "conv2_block1_preact_bn"
    assert groups["stage4"][-1] == "conv5_block3_out"
    assert groups["head"] == ["post_bn", "post_relu", "avg_pool", "predictions"]


# The tiny ResNet-8 (widths 4-8-16, option A shortcuts, 4 classes) has 4,904 trainable
# parameters: stem 108 + 8, stage1 2 x 144 + 2 x 8, stage2 288 + 576 + 2 x 16, stage3
# 1,152 + 2,304 + 2 x 32, head 16 x 4 + 4; 120 of them are batch-norm scales and offsets.
@pytest.mark.parametrize("settings, frozen_groups, frozen", [
    ({}, (), 0),
    ({"freeze": ("stem", "stage1")}, ("stem", "stage1"), 116 + 304),
    ({"freeze": ("stage2", "stem")}, ("stem", "stage2"), 116 + 896),
    ({"trainable_from": "stage3"}, ("stem", "stage1", "stage2"), 116 + 304 + 896),
    ({"trainable_from": "head"}, ("stem", "stage1", "stage2", "stage3"), 4904 - 68),
    ({"freeze_bn": True}, (), 120),
    ({"freeze": ("stem",), "freeze_bn": True}, ("stem",), 116 + 120 - 8),
])
def test_frozen_and_trainable_parameter_counts_are_exact(settings, frozen_groups, frozen):
    model = keras_resnets.get_model("resnet20", **TINY_MODEL, classes=4, input_shape=(8, 8, 3))
    freezing = finetune.freeze(model, FinetuneConfig(**settings))
    assert freezing.frozen_groups == frozen_groups
    assert (freezing.frozen_parameters, freezing.trainable_parameters) == (frozen, 4904 - frozen)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 4904 - frozen


# ------------------------------------------------------------------ training


def train_and_compare(**settings):
    """Weights before and after training (one epoch by default), and each weight's group."""
    keras.utils.set_random_seed(0)
    run = tiny_trainer(**{"epochs": 1, **settings})
    before = weights_by_path(run.model)
    run.fit()
    return before, weights_by_path(run.model), group_of(run.model), run


def test_frozen_groups_and_their_batch_norm_statistics_do_not_change():
    before, after, groups, run = train_and_compare(freeze=("stem", "stage1"))
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    frozen = {path for path, group in groups.items() if group in ("stem", "stage1")}
    assert frozen and not changed & frozen  # kernels, scales, offsets, moving statistics
    # Every other weight trained, batch-norm statistics included.
    assert changed == set(before) - frozen
    assert run.results["frozen_parameters"] == 116 + 304
    assert run.results["trainable_parameters"] == 4904 - 420
    assert run.results["frozen_groups"] == ["stem", "stage1"]


def test_freeze_bn_keeps_every_batch_norm_fixed_and_trains_the_rest():
    before, after, _, run = train_and_compare(freeze_bn=True)
    bn = {w.path for layer in run.model.layers
          if isinstance(layer, keras.layers.BatchNormalization) for w in layer.weights}
    assert len(bn) == 7 * 4  # gamma, beta, moving mean and variance of 7 batch norms
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    assert changed == set(before) - bn


def test_head_lr_multiplier_scales_the_classifiers_first_update_only():
    updates = {}
    for multiplier in (1.0, 3.0):
        before, after, _, _ = train_and_compare(total_steps=1, epochs=None,
                                                head_lr_multiplier=multiplier)
        updates[multiplier] = {path: after[path] - before[path] for path in before}
    for path, update in updates[1.0].items():
        factor = 3.0 if path.startswith("predictions/") else 1.0
        np.testing.assert_allclose(updates[3.0][path], factor * update, rtol=1e-4, atol=1e-7,
                                   err_msg=path)
    assert np.abs(updates[1.0]["predictions/kernel"]).max() > 1e-3


# ------------------------------------------------------------------ first weights


def test_a_model_directory_gives_every_weight_but_a_classifier_of_other_classes(source_run):
    model_dir, best = source_run
    expected = checkpoint_weights(model_dir, best)
    keras.utils.set_random_seed(0)
    fresh = weights_by_path(tiny_trainer(num_classes=3).model)
    keras.utils.set_random_seed(0)
    started = tiny_trainer(num_classes=3, init_weights=model_dir)
    loaded = weights_by_path(started.model)
    for path, value in loaded.items():
        want = fresh[path] if path.startswith("predictions/") else expected[path]
        np.testing.assert_array_equal(value, want, err_msg=path)
    assert loaded["predictions/kernel"].shape == (16, 3)
    state = json.loads(started._state.numpy().decode())
    assert state["initialization"] == {"source": model_dir, "path": best, "source_classes": 4,
                                       "classifier_reinitialized": True,
                                       "reason": "4 classes there, 3 here",
                                       "weight_average": False}


def test_a_run_with_a_weight_average_gives_its_average(tmp_path):
    """The average is what the run evaluated and chose its best checkpoint by; it follows the
    weights the run trained (here not the frozen stem's)."""
    model_dir = str(tmp_path / "run")
    settings = dict(ema_decay=0.5, freeze=("stem",))
    keras.utils.set_random_seed(0)
    trainer.run(experiment(epochs=1, model_dir=model_dir, **settings),
                pipeline=fakes.FakePipeline(num_classes=4))
    best = evaluate.find_checkpoint(model_dir)
    evaluated = tiny_trainer(**settings)  # as training.evaluate reads it
    evaluated.restore_weights(best)
    averaged = weights_by_path(evaluated.model)
    raw = tiny_trainer()
    tf.train.Checkpoint(model=raw.model).restore(best).expect_partial()
    raw = weights_by_path(raw.model)
    started = tiny_trainer(init_weights=model_dir)
    loaded = weights_by_path(started.model)
    for path, value in loaded.items():
        np.testing.assert_array_equal(value, averaged[path], err_msg=path)
    differ = sorted(path for path in loaded if not np.array_equal(loaded[path], raw[path]))
    assert "predictions/kernel" in differ and not any(p.startswith("conv1_") for p in differ)
    state = json.loads(started._state.numpy().decode())["initialization"]
    assert (state["path"], state["weight_average"]) == (best, True)
    assert initial_weights.Initialization(**state).line() == (
        f"Initialised from {best} (its weight average).")


def test_the_same_class_count_keeps_the_classifier_too(source_run):
    model_dir, best = source_run
    expected = checkpoint_weights(model_dir, best)
    loaded = weights_by_path(tiny_trainer(num_classes=4, init_weights=model_dir).model)
    for path, value in loaded.items():
        np.testing.assert_array_equal(value, expected[path], err_msg=path)


def test_a_run_of_other_classes_gets_no_say_in_the_classifier(source_run):
    model_dir, best = source_run
    pipeline = fakes.FakePipeline(num_classes=4)
    names = ("cat", "dog", "frog", "horse")
    pipeline.info = dataclasses.replace(pipeline.info, class_names=names)
    keras.utils.set_random_seed(0)
    fresh = tiny_trainer().model.get_layer("predictions").get_weights()
    keras.utils.set_random_seed(0)
    started = trainer.Trainer(experiment(init_weights=model_dir), pipeline=pipeline)
    for mine, want in zip(started.model.get_layer("predictions").get_weights(), fresh):
        np.testing.assert_array_equal(mine, want)
    state = json.loads(started._state.numpy().decode())["initialization"]
    assert (state["classifier_reinitialized"], state["reason"]) == (
        True, "other classes there: class0, class1, class2, class3")


def test_a_source_without_a_classifier_gives_the_rest(tmp_path, capsys):
    path = str(tmp_path / "backbone.keras")
    backbone = keras_resnets.get_model("resnet20", **TINY_MODEL, include_top=False,
                                       input_shape=(8, 8, 3))
    backbone.save(path)
    run = tiny_trainer(init_weights=path, verbose=2, total_steps=1, epochs=None)
    np.testing.assert_array_equal(run.model.get_layer("conv4_block1_2_conv").kernel.numpy(),
                                  backbone.get_layer("conv4_block1_2_conv").kernel.numpy())
    run.fit()
    assert (f"Initialised from {path}; the classifier is re-initialised (the source has no "
            "classifier).") in capsys.readouterr().out.splitlines()


def test_a_keras_file_gives_its_weights(source_run, tmp_path):
    model_dir, best = source_run
    model = keras.models.load_model(os.path.join(model_dir, "model.keras"))
    path = str(tmp_path / "exported.keras")
    model.save(path)
    loaded = tiny_trainer(num_classes=2, init_weights=path).model
    for layer in loaded.layers:
        if layer.weights and layer.name != "predictions":
            for mine, theirs in zip(layer.get_weights(), model.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(mine, theirs, err_msg=layer.name)


@pytest.mark.parametrize("classes", [3, 4])
def test_a_weights_file_gives_its_weights_and_a_classifier_of_the_same_classes(tmp_path,
                                                                                  classes):
    source = keras_resnets.get_model("resnet20", **TINY_MODEL, classes=4, input_shape=(8, 8, 3))
    path = str(tmp_path / "tiny.weights.h5")
    source.save_weights(path)
    started = tiny_trainer(num_classes=classes, init_weights=path)
    for layer in started.model.layers:
        if layer.weights and (layer.name != "predictions" or classes == 4):
            theirs = source.get_layer(layer.name).get_weights()
            for mine, their in zip(layer.get_weights(), theirs):
                np.testing.assert_array_equal(mine, their, err_msg=layer.name)
    state = json.loads(started._state.numpy().decode())
    assert state["initialization"] == {"source": path, "path": path, "source_classes": 4,
                                       "classifier_reinitialized": classes != 4,
                                       "reason": "4 classes there, 3 here" if classes == 3 else "",
                                       "weight_average": False}


def test_a_torchvision_state_dict_starts_a_resnet18_on_other_classes(tmp_path):
    torch = pytest.importorskip("torch")
    from bench import torch_resnets

    module = torch_resnets.resnet(18)
    path = str(tmp_path / "resnet18.pth")
    torch.save(module.state_dict(), path)
    started = trainer.Trainer(
        experiment(model="resnet18", model_overrides={}, init_weights=path),
        pipeline=fakes.FakePipeline(image_size=32, num_classes=5))
    np.testing.assert_array_equal(
        started.model.get_layer("conv5_block2_2_conv").kernel.numpy(),
        module.layer4[1].conv2.weight.detach().numpy().transpose(2, 3, 1, 0))
    assert json.loads(started._state.numpy().decode())["initialization"] == {
        "source": path, "path": path, "source_classes": 1000, "classifier_reinitialized": True,
        "reason": "1000 classes there, 5 here", "weight_average": False}


def test_a_weights_file_of_another_model_is_named(tmp_path):
    path = str(tmp_path / "wide.weights.h5")
    keras_resnets.get_model("resnet20", **dict(TINY_MODEL, stage_widths=(4, 8, 32)), classes=4,
                            input_shape=(8, 8, 3)).save_weights(path)
    with pytest.raises(ValueError) as error:
        tiny_trainer(init_weights=path)
    assert str(error.value).startswith(
        f"init_weights={path!r}: The weights in {path} (keras layout) do not fit model "
        "'resnet8_widths4-8-16': layer 'conv4_block1_1_conv' has weight shapes")


@pytest.mark.parametrize("model, message", [
    ({"model_overrides": dict(TINY_MODEL, stage_widths=(4, 8, 32))},
     "layer conv4_block1_1_conv has weights of shape (3, 3, 8, 16) in the source "
     "(resnet8_widths4-8-16) and (3, 3, 8, 32) in this model (resnet8_widths4-8-32); the "
     "models differ."),
    ({"model_overrides": dict(TINY_MODEL, depth=14)}, "layer conv2_block2_1_conv of this model "
                                 "(resnet14_widths4-8-16) is not in the source "
                                 "(resnet8_widths4-8-16); the models differ."),
])
def test_a_model_that_differs_beyond_the_classifier_is_named(source_run, model, message):
    model_dir, _ = source_run
    with pytest.raises(ValueError) as error:
        tiny_trainer(init_weights=model_dir, **model)
    assert str(error.value) == f"init_weights={model_dir!r}: {message}"


def test_a_layer_only_the_source_has_is_named(tmp_path):
    path = str(tmp_path / "deeper.keras")
    keras_resnets.get_model("resnet20", **dict(TINY_MODEL, depth=14), classes=4,
                            input_shape=(8, 8, 3)).save(path)
    with pytest.raises(ValueError) as error:
        tiny_trainer(init_weights=path)
    assert str(error.value) == (
        f"init_weights={path!r}: layer conv2_block2_1_conv of the source "
        "(resnet14_widths4-8-16) is not in this model (resnet8_widths4-8-16); the models "
        "differ.")


@pytest.mark.parametrize("make, message", [
    (lambda root: root / "missing" / "run", "{path!r}: no such file or directory."),
    (lambda root: root, "{path!r} is a directory without config.json: not a training.fit model "
                        "directory."),
    (lambda root: (root / "bad.keras").write_text("not a zip") and root / "bad.keras",
     "{path!r} is not a readable Keras model file"),
])
def test_an_unreadable_source_is_named(tmp_path, make, message):
    path = str(make(tmp_path))
    with pytest.raises(ValueError) as error:
        tiny_trainer(init_weights=path)
    assert str(error.value).startswith("init_weights=" + message.format(path=path))


def test_the_run_logs_and_records_its_start_and_a_resumed_run_ignores_init_weights(
        source_run, tmp_path, capsys):
    model_dir, best = source_run
    target = str(tmp_path / "target")
    trainer.run(experiment(epochs=1, model_dir=target, verbose=2, init_weights=model_dir,
                           trainable_from="stage2"),
                pipeline=fakes.FakePipeline(num_classes=3))
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:3] == [
        f"Initialised from {best}; the classifier is re-initialised (4 classes there, 3 here).",
        "Frozen: stem, stage1 (420 parameters); trainable: 4,467 parameters."]
    with open(os.path.join(target, "results.json")) as file:
        results = json.load(file)
    start = {"source": model_dir, "path": best, "source_classes": 4,
             "classifier_reinitialized": True, "reason": "4 classes there, 3 here",
             "weight_average": False}
    assert (results["initialization"], results["frozen_groups"], results["frozen_parameters"],
            results["trainable_parameters"]) == (start, ["stem", "stage1"], 420, 4467)
    assert results["config"]["finetune"] == {
        "init_weights": model_dir, "freeze": [], "trainable_from": "stage2",
        "freeze_bn": False, "head_lr_multiplier": 1.0}
    # Rerun for a second epoch: the source is gone and not needed.
    missing = str(tmp_path / "gone")
    result = trainer.run(experiment(epochs=2, model_dir=target, verbose=2,
                                    init_weights=missing, trainable_from="stage2"),
                         pipeline=fakes.FakePipeline(num_classes=3))
    out = capsys.readouterr().out
    assert (f"init_weights={missing!r} is ignored: the run resumes from its own checkpoint."
            in out.splitlines())
    assert result.results["initialization"] == start
    assert result.results["steps"] == 16
    # Evaluating the run needs no source either.
    metrics = evaluate.evaluate(target, pipeline=fakes.FakePipeline(num_classes=3))
    assert metrics["accuracy"] == pytest.approx(result.results["best_test_accuracy"])


# ------------------------------------------------------------------ pretrained tags


def pretrained(**settings):
    return finetune.resolve(config.from_settings(dict(epochs=1, **settings)))


@pytest.mark.parametrize("model, tag, layer_config, normalization", [
    ("resnet50", "torchvision", "torchvision", "imagenet"),
    ("resnet50", "imagenet", "keras_applications", "caffe"),
    ("resnet50v2", "imagenet", "keras_applications", "inception"),
])
def test_a_tag_fixes_the_layer_config_and_the_normalisation(model, tag, layer_config,
                                                             normalization):
    resolved, notes = pretrained(model=model, init_weights=tag)
    assert resolved.model.overrides == {"layer_config": layer_config}
    assert resolved.data.normalization == normalization
    entry = keras_resnets.weight_entry(model, tag)
    assert notes == [f"init_weights={tag!r}: {model} weights {entry.tag!r}; the model is built "
                     f"with layer_config={layer_config!r}. Inputs are normalised as they "
                     f"expect: normalization={normalization!r}."]
    assert finetune.resolve(resolved)[0] == resolved


def test_another_normalisation_is_kept_with_a_warning_and_another_layer_config_refused():
    resolved, notes = pretrained(model="resnet50", init_weights="torchvision",
                                 normalization="per_channel")
    assert resolved.data.normalization == "per_channel"
    assert notes[1] == ("Warning: init_weights='torchvision' expects inputs normalised as "
                        "normalization='imagenet'; this run uses 'per_channel' as asked, which "
                        "the pretrained features were not trained on.")
    with pytest.raises(ValueError) as error:
        pretrained(model="resnet50", init_weights="imagenet",
                   model_overrides={"layer_config": "torchvision"})
    assert str(error.value) == (
        "init_weights='imagenet' (resnet50) needs layer_config='keras_applications', but "
        "model_overrides sets layer_config='torchvision'; drop it.")
    with pytest.raises(ValueError, match="^No weights 'tv9' for model 'resnet50'; its weights "):
        pretrained(model="resnet50", init_weights="tv9")


def test_every_table_entry_has_its_normalisation_in_pixel_units():
    from keras_resnets import weights_table

    for entry in weights_table.entries():
        prep = entry.preprocessing
        mean, std = FIXED_STATISTICS[finetune.normalization_for(entry)]
        scale = 255.0 if prep.mode == "torch" else 1.0
        want_mean = np.array(prep.mean) * scale
        if prep.mode == "caffe":  # BGR there, RGB here
            want_mean = want_mean[::-1]
        np.testing.assert_allclose(mean, want_mean, rtol=1e-6, err_msg=entry.tag)
        np.testing.assert_allclose(std, np.array(prep.std or (1.0,) * 3) * scale, rtol=1e-6)


def test_a_tag_loads_its_file_and_caffe_weights_take_rgb(tmp_path, monkeypatch):
    import hashlib

    from keras_resnets import weights_table

    source = keras_resnets.get_model("resnet20", **TINY_MODEL, classes=4, input_shape=(8, 8, 3),
                                     layer_config="keras_applications")
    path = tmp_path / "tiny_caffe.weights.h5"
    source.save_weights(str(path))
    entry = weights_table.WeightEntry(
        model=source.name, tag="test_caffe", aliases=(), publisher="a test",
        url=f"https://download.example/{path.name}",
        hash="sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(), notop_url=None,
        notop_hash=None, layout="keras", layer_config="keras_applications",
        preprocessing=weights_table._preprocessing("caffe"), top1=1.0, top5=2.0,
        reference="a test", classes=4)
    monkeypatch.setattr(weights_table, "entries", lambda: (entry,))
    monkeypatch.setenv("KERAS_RESNETS_WEIGHTS_DIR", str(tmp_path))
    started = tiny_trainer(num_classes=3, init_weights="test_caffe")
    assert started.config.data.normalization == "caffe"
    assert started.config.model.overrides["layer_config"] == "keras_applications"
    for layer in started.model.layers:
        if layer.weights and layer.name != "predictions":
            theirs = source.get_layer(layer.name).get_weights()
            if layer.name == "conv1_conv":  # reversed input channels: RGB in, not BGR
                theirs[0] = theirs[0][:, :, ::-1, :]
            for mine, their in zip(layer.get_weights(), theirs):
                np.testing.assert_array_equal(mine, their, err_msg=layer.name)
    assert json.loads(started._state.numpy().decode())["initialization"] == {
        "source": "test_caffe", "path": "resnet8_widths4-8-16 test_caffe weights "
        "(tiny_caffe.weights.h5)", "source_classes": 4, "classifier_reinitialized": True,
        "reason": "4 classes there, 3 here", "weight_average": False}


# ------------------------------------------------------------------ normalisation, flags, recipe


def test_caffe_weights_take_rgb_images_once_the_first_convolution_is_reversed():
    model = keras_resnets.get_model("resnet18", layer_config="keras_applications", classes=3,
                                    input_shape=(32, 32, 3), classifier_activation=None)
    rng = np.random.default_rng(1)
    for weight in model.weights:  # batch norms that are not identities, biases that are not 0
        if not weight.path.endswith("kernel"):
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))
    rgb = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    mean = np.array(FIXED_STATISTICS["caffe"][0], "float32")
    bgr_output = np.asarray(model(rgb[..., ::-1] - mean[::-1]))  # keras.applications' caffe mode
    initial_weights._bgr_to_rgb(model)
    rgb_output = np.asarray(model(rgb - mean))
    np.testing.assert_allclose(rgb_output, bgr_output, rtol=1e-4)
    assert np.abs(bgr_output).max() > 0


def test_fixed_normalisations_use_their_statistics_in_pixel_units():
    settings = dict(dataset="synthetic", synthetic_examples=32, augmentation="none")
    raw = Pipeline(DataConfig(normalization="none", **settings))
    images, _ = next(iter(raw.evaluation("test", 8)))
    pixels = images.numpy() * 255
    for name, (mean, std) in {"imagenet": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
                              "caffe": ((123.68, 116.779, 103.939), (1, 1, 1)),
                              "inception": ((127.5,) * 3, (127.5,) * 3)}.items():
        pipeline = Pipeline(DataConfig(normalization=name, **settings))
        np.testing.assert_array_equal(pipeline.mean, np.float32(mean))
        np.testing.assert_array_equal(pipeline.std, np.float32(std))
        normalised, _ = next(iter(pipeline.evaluation("test", 8)))
        np.testing.assert_allclose(normalised, (pixels - mean) / std, rtol=1e-5, atol=1e-4)


def test_fixed_normalisations_need_rgb_images():
    from training import normalization  # what both input pipelines compute statistics with

    with pytest.raises(ValueError) as error:
        normalization.statistics("imagenet", 1, "mnist", whole=True, raw_batches=list)
    assert str(error.value) == "normalization='imagenet' is for RGB images; mnist has 1 channel(s)."


def test_flags_make_the_finetune_settings():
    experiment = fit.config_from_flags(parse(
        "--epochs=1", "--init_weights=runs/a", "--freeze=stem,stage1", "--freeze_bn",
        "--head_lr_multiplier=5", "--normalization=caffe"))
    assert experiment.finetune == FinetuneConfig(init_weights="runs/a", freeze=("stem", "stage1"),
                                                 freeze_bn=True, head_lr_multiplier=5.0)
    assert experiment.data.normalization == "caffe"
    # One of freeze and trainable_from replaces the other (as epochs replaces total_steps).
    assert experiment.replace(trainable_from="stage3").finetune.freeze == ()
    assert fit.config_from_flags(parse("--epochs=1")).finetune == FinetuneConfig()
    assert parse()["normalization"].parser.enum_values == list(NORMALIZATIONS)


def test_the_config_round_trips_and_old_configs_read_without_finetune():
    settings = experiment(freeze=["stem"], head_lr_multiplier=2.0)
    assert config.ExperimentConfig.from_dict(settings.to_dict()) == settings
    old = settings.to_dict()
    del old["finetune"]
    assert config.ExperimentConfig.from_dict(old).finetune == FinetuneConfig()


def test_the_finetune_recipe():
    recipe = config.recipe("finetune", dataset="/data/photos")
    assert recipe.model.name == "resnet50"
    assert recipe.finetune == FinetuneConfig(init_weights="torchvision", head_lr_multiplier=10.0)
    assert (recipe.data.image_size, recipe.data.augmentation, recipe.data.normalization) == (
        224, "imagenet", "auto")
    optimization = recipe.optimization
    assert (optimization.global_batch_size, optimization.learning_rate, optimization.schedule,
            optimization.warmup_epochs, optimization.epochs, optimization.label_smoothing,
            optimization.decay_bn_and_bias) == (64, 0.01, "cosine", 1.0, 10, 0.1, False)


def test_the_command_line_names_a_mismatch_in_one_line_with_exit_code_2(source_run, tmp_path):
    model_dir, _ = source_run
    process = run_cli("training.fit", "--model=resnet20", "--dataset=synthetic", "--epochs=1",
                      '--model_overrides={"depth": 8, "stage_widths": [4, 8, 32]}',
                      f"--init_weights={model_dir}", f"--model_dir={tmp_path / 'run'}")
    assert process.returncode == 2, process.stderr
    assert process.stderr == (
        f"training.fit: error: init_weights={model_dir!r}: layer conv4_block1_1_conv has "
        "weights of shape (3, 3, 8, 16) in the source (resnet8_widths4-8-16) and (3, 3, 8, 32) "
        "in this model (resnet8_widths4-8-32); the models differ.\n")


