"""The first weights of a fine-tuning run (`FinetuneConfig.init_weights`).

Three kinds of source:

- a `training.fit` model directory: its best checkpoint (the latest before the first
  evaluation, as `python -m training.evaluate` picks; of a run of Keras' fit, its
  `keras_best_step<N>.weights.h5`), read into the source run's own model (built from its
  `config.json`), or its `model.keras` when it has no checkpoint (or, for a run of Keras' fit,
  no `results.json` naming its classes). Of a run with `ema_decay`, the weight average: the
  weights it evaluated, chose its best checkpoint by and exported;
- a whole Keras model file (`.keras`, e.g. a `tuning.search --export_best` file);
- a pretrained tag or weights file, read by `keras_resnets.load_weights`.

The first two are copied layer by layer, by name. Every layer with weights must be in both models
with the same weight shapes, except the classifier (`predictions`). It is copied only when it
classifies the same classes: it keeps its fresh initialisation (and the result says so) when
the source has none, another number of classes, or, for a model directory, other class names
(its `results.json` records them): a classifier of other classes starts the new run with
confidently wrong answers. Anything else that differs is one `ValueError` naming the first
layer that does.
"""

import dataclasses
import json
import os
from typing import Optional, Sequence

import numpy as np

from training.finetune import CLASSIFIER, looks_like_path


@dataclasses.dataclass(frozen=True)
class Initialization:
    """Where a model's first weights came from.

    Args:
        source: str. The `init_weights` setting.
        path: str. What was read: the checkpoint or file path, or for a pretrained tag its
            model, tag and file name (`"resnet50 tv2_in1k weights (resnet50-11ad3fa6.pth)"`).
        source_classes: int or `None`. The source's class count (`None` without a classifier).
        classifier_reinitialized: bool. Whether the classifier kept its fresh initialisation.
        reason: str. Why it did (`"10 classes there, 5 here"`, `"the source has no
            classifier"`, `"other classes there: ..."`), or `""`.
        weight_average: bool. Whether the weights are the source run's weight average (a
            model directory of a run with `ema_decay`).
    """

    source: str
    path: str
    source_classes: Optional[int]
    classifier_reinitialized: bool
    reason: str = ""
    weight_average: bool = False

    def line(self) -> str:
        """One log line, e.g. `Initialised from runs/a/best/ckpt-40; the classifier is
        re-initialised (10 classes there, 5 here).`."""
        line = f"Initialised from {self.path}"
        if self.weight_average:
            line += " (its weight average)"
        if self.classifier_reinitialized:
            line += f"; the classifier is re-initialised ({self.reason})"
        return line + "."

    def to_dict(self):
        return dataclasses.asdict(self)


def load(model, source: str, class_names: Optional[Sequence[str]] = None) -> Initialization:
    """Sets `model`'s weights from `source` (a model directory, a `.keras` file, a weights
    file or a pretrained tag; see the module docstring).

    Args:
        model: `keras.Model` built by keras_resnets, with its classifier.
        source: str. The `init_weights` setting.
        class_names: the classes of `model`'s outputs, if known; a model directory of other
            classes then gets no say in the classifier.

    Returns:
        An `Initialization`.

    Raises:
        ValueError: the source cannot be read, or its model differs from `model` in more than
            the classifier; the message names `init_weights` and the first layer that differs.
    """
    path = os.path.expanduser(source)
    if not os.path.exists(path) and looks_like_path(source):
        raise ValueError(f"init_weights={source!r}: no such file or directory.")
    source_names = None
    if os.path.isdir(path):
        source_model, read, averaged = _run_directory(path, model)
        source_names = _class_names(path)
    elif path.endswith(".keras") and os.path.isfile(path):
        source_model, read, averaged = _keras_file(path), path, False
    else:
        return _pretrained(model, source)
    head = source_model.get_layer(CLASSIFIER) if CLASSIFIER in [
        layer.name for layer in source_model.layers] else None
    classes = None if head is None else int(head.kernel.shape[-1])
    reason = _classifier_differs(classes, _classes(model), source_names, class_names)
    copy_by_name(source_model, model, f"init_weights={source!r}", classifier=not reason)
    return Initialization(source, read, classes, bool(reason), reason, averaged)


def _classes(model) -> int:
    return int(model.get_layer(CLASSIFIER).kernel.shape[-1])


def _classifier_differs(source_classes, classes, source_names=None, names=None) -> str:
    """Why the source's classifier does not fit (`""` when it does)."""
    if source_classes is None:
        return "the source has no classifier"
    if source_classes != classes:
        return f"{source_classes} classes there, {classes} here"
    if source_names is not None and names is not None and list(source_names) != list(names):
        shown = ", ".join(source_names[:5]) + (", ..." if len(source_names) > 5 else "")
        return f"other classes there: {shown}"
    return ""


def _class_names(run_dir) -> Optional[list]:
    """The class names a run's `results.json` records, or `None`."""
    try:
        with open(os.path.join(run_dir, "results.json")) as file:
            names = json.load(file).get("class_names")
    except (OSError, ValueError, AttributeError):
        return None
    return names if isinstance(names, list) else None


def _run_directory(path, model):
    """`(model, what was read, averaged)` of a `training.fit` run directory: its model with its
    best weights, of a run with `ema_decay` their average (then `averaged` is `True`)."""
    from training import evaluate

    where = f"init_weights={path!r}"
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ValueError(f"{where} is a directory without config.json: not a training.fit "
                         "model directory.")
    config = evaluate.load_config(path)
    keras_run = _keras_run(path, config, model)
    if keras_run is not None:
        return keras_run
    try:
        checkpoint = evaluate.find_checkpoint(path, "best")
    except ValueError:
        model_file = os.path.join(path, "model.keras")
        if os.path.isfile(model_file):
            return _keras_file(model_file), model_file, False
        raise ValueError(f"{where} has neither a checkpoint nor a model.keras to start from."
                         ) from None
    import tensorflow as tf

    from training import ema, finetune

    # The classifier's kernel is the only matrix of a ResNet (its optimizer slots share its
    # shape); checkpoint keys follow the object graph, so go by shape.
    reader = tf.train.load_checkpoint(checkpoint)
    kernels = {tuple(shape) for shape in reader.get_variable_to_shape_map().values()
               if len(shape) == 2}
    if len(kernels) != 1:
        raise ValueError(f"{where}: the checkpoint {checkpoint} holds {len(kernels)} kinds of "
                         "dense kernels, not a classifier's one.")
    source = config.model.build(kernels.pop()[1], model.input_shape[1:])
    decay = config.optimization.ema_decay
    if decay is not None:  # the run averaged the weights it trained: freeze as it did
        finetune.freeze(source, config.finetune)
    average = ema.for_decay(source, decay, tf.distribute.get_strategy())
    status = tf.train.Checkpoint(model=source, **ema.checkpoint_entries(average)).restore(
        checkpoint).expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise ValueError(f"{where}: the checkpoint {checkpoint} does not hold the model its "
                         f"config.json describes ({str(error).splitlines()[0]}).") from None
    if average is not None:
        average.load_into_model()
    return source, checkpoint, average is not None


def _keras_run(path, config, model):
    """`(model, checkpoint, averaged)` of the best weights of a run of Keras' fit
    (`training.keras_loop`; with `ema_decay`, their average), or `None` for another run or one
    whose classes are unknown."""
    from training import keras_ema, keras_evaluate

    names = _class_names(path)
    if not (keras_evaluate.is_keras_run(path) and names):
        return None
    checkpoint, _ = keras_evaluate.find_checkpoint(path, "best")
    source = config.model.build(len(names), model.input_shape[1:])
    try:
        if config.optimization.ema_decay is None:
            source.load_weights(checkpoint)  # the optimizer's part of the file is not read
        else:
            keras_ema.load_averaged(source, config, checkpoint)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"init_weights={path!r}: the checkpoint {checkpoint} does not hold the "
                         f"model its config.json describes ({str(error).splitlines()[0]})."
                         ) from None
    return source, checkpoint, config.optimization.ema_decay is not None


def _keras_file(path):
    import keras

    import keras_resnets  # noqa: F401 (registers the package's layers for loading)

    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(f"init_weights={path!r} is not a readable Keras model file "
                         f"({type(error).__name__}: {str(error).splitlines()[0]}).") from None


def copy_by_name(source, model, where: str, classifier: bool = True) -> None:
    """Copies every layer's weights from `source` to `model` by layer name; the classifier
    only with `classifier` (its class count may then differ).

    Raises:
        ValueError: a layer with weights is missing from either model, or its weights have
            other shapes (one line naming the layer, starting with `where`).
    """
    theirs = {layer.name: layer for layer in source.layers if layer.weights}
    ours = {layer.name: layer for layer in model.layers if layer.weights}
    extra = [name for name in theirs if name not in ours]
    if extra:
        raise ValueError(f"{where}: layer {extra[0]} of the source ({source.name}) is not in "
                         f"this model ({model.name}); the models differ.")
    for name, layer in ours.items():
        other = theirs.get(name)
        if other is None:
            if name == CLASSIFIER:
                continue
            raise ValueError(f"{where}: layer {name} of this model ({model.name}) is not in the "
                             f"source ({source.name}); the models differ.")
        shapes = [tuple(w.shape) for w in layer.weights]
        their_shapes = [tuple(w.shape) for w in other.weights]
        if name == CLASSIFIER and not classifier:  # only the class count may differ
            shapes, their_shapes = [s[:-1] for s in shapes], [s[:-1] for s in their_shapes]
        if shapes != their_shapes:
            raise ValueError(f"{where}: layer {name} has weights of shape "
                             f"{_shapes(their_shapes)} in the source ({source.name}) and "
                             f"{_shapes(shapes)} in this model ({model.name}); the models "
                             "differ.")
    for name, layer in ours.items():
        if name in theirs and (classifier or name != CLASSIFIER):
            layer.set_weights([np.asarray(w) for w in theirs[name].get_weights()])


def _shapes(shapes):
    return ", ".join(str(shape) for shape in shapes)


def _pretrained(model, source: str) -> Initialization:
    """A weights file or a pretrained tag, through `keras_resnets.load_weights`; the source's
    classifier is used when its class count is the model's."""
    import keras_resnets
    from keras_resnets import weight_files

    path = os.path.expanduser(source)
    where = f"init_weights={source!r}"
    if not os.path.isfile(path):
        entry = keras_resnets.weight_entry(model.name, source)
        reason = _classifier_differs(entry.classes, _classes(model))
        keras_resnets.load_weights(model, source, skip_classifier=bool(reason))
        if entry.preprocessing.mode == "caffe":
            _bgr_to_rgb(model)
        return Initialization(source, f"{entry.model} {entry.tag} weights ({entry.file_name})",
                              entry.classes, bool(reason), reason)
    try:
        arrays = weight_files.read(path, model).arrays
        head = arrays.get(CLASSIFIER)
        classes = None if head is None else int(np.shape(head[0])[-1])
        reason = _classifier_differs(classes, _classes(model))
        keras_resnets.load_weights(model, path, skip_classifier=bool(reason))
    except (OSError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None
    return Initialization(source, path, classes, bool(reason), reason)


def _bgr_to_rgb(model):
    """Caffe-mode weights (keras.applications' ResNet50/101/152) expect BGR images minus the
    BGR means. Reversing the input channels of the first convolution makes the same network
    take RGB images minus the RGB means, which `training.data`'s `"caffe"` normalisation gives
    (and which an export expresses as a mean and a standard deviation); the outputs are equal,
    zero padding included."""
    layer = model.get_layer("conv1_conv")
    kernel, *rest = layer.get_weights()
    layer.set_weights([kernel[:, :, ::-1, :], *rest])
