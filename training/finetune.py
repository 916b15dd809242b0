"""Fine-tuning: which layers train, whether batch norms adapt, and how fast the classifier learns.

A model's layers fall into groups by their keras.applications names: `stem` (`conv1_*`,
`pool1_*`), `stage1` ... `stageN` (`conv2_*` ... `conv{N+1}_*`) and `head` (`post_bn` and
`post_relu` of pre-activation nets, the pooling and `predictions`). `FinetuneConfig.freeze` names
groups to freeze, `trainable_from` freezes every group before the one it names (`"head"`: only
the head trains, a linear probe). A frozen layer gets `trainable = False`; in Keras 3 that also
puts its batch norms in inference mode (their moving statistics stay fixed), as in Keras'
transfer-learning guide (https://keras.io/guides/transfer_learning/). `freeze_bn` does the same
for every batch norm of the model, like torchvision's `FrozenBatchNorm2d`: scale, offset and
statistics all fixed.

Where the first weights come from (`init_weights`) is `training.initial_weights`; `resolve`
here makes an experiment agree with a named pretrained source (its layer settings and input
normalisation).
"""

import dataclasses
import math
import os
import re
from typing import Any, Dict, List, Optional, Tuple

STEM, HEAD = "stem", "head"
_GROUP = re.compile(r"stem|stage[1-9]\d*")
_LAYER_GROUP = re.compile(r"(?P<stem>(?:conv1|pool1)_)|conv(?P<stage>\d+)_|post_|avg_pool$|"
                          r"max_pool$|predictions$")
CLASSIFIER = "predictions"
# The input normalisation each pretrained source expects, by its `preprocessing.mode`.
_NORMALIZATION_OF_MODE = {"torch": "imagenet", "caffe": "caffe", "tf": "inception"}


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Where training starts from and which weights it changes.

    Args:
        init_weights: str or `None`. The first weights: a pretrained tag of the model
            (`"imagenet"`, `"torchvision"`, ... from `keras_resnets.list_weights()`), a weights
            file (`.weights.h5`, keras.applications `.h5`, torchvision `.pth`, `.safetensors`,
            or a whole `.keras` model) or the model directory of a `training.fit` run (its best
            checkpoint). The classifier is re-initialised when the source's classes are not the
            data's (another count; other names, where the source records them); any other
            difference is an error (`training.initial_weights`). A run that resumes from its own
            checkpoint ignores it. Defaults to `None` (random initialisation).
        freeze: tuple of str. Groups whose weights stay fixed: `"stem"`, `"stage1"`,
            `"stage2"`, ... Defaults to `()`.
        trainable_from: str or `None`. Freeze every group before this one (`"stage3"`, or
            `"head"` to train only the head); not together with `freeze`. Defaults to `None`.
        freeze_bn: bool. Every batch norm in inference mode: moving statistics, scale and
            offset fixed. Defaults to `False`.
        head_lr_multiplier: float. The classifier (`predictions`) learns at this multiple of the
            learning rate: with SGD its gradients are scaled (exactly a larger learning rate,
            since SGD with momentum is linear in the gradient), with AdamW and LAMB (not
            linear) its updates (`scale_updates`). Defaults to `1.0`.

    Example:

    >>> FinetuneConfig(trainable_from="stage3").frozen_groups(["stem", "stage1", "stage2",
    ...                                                        "stage3", "head"])
    ('stem', 'stage1', 'stage2')
    """

    init_weights: Optional[str] = None
    freeze: Tuple[str, ...] = ()
    trainable_from: Optional[str] = None
    freeze_bn: bool = False
    head_lr_multiplier: float = 1.0

    def __post_init__(self):
        if self.init_weights is not None and (
                not isinstance(self.init_weights, str) or not self.init_weights.strip()):
            raise ValueError("init_weights must be a pretrained tag, a weights file or a model "
                             f"directory; got {self.init_weights!r}.")
        freeze = (self.freeze,) if isinstance(self.freeze, str) else tuple(self.freeze)
        object.__setattr__(self, "freeze", freeze)
        for name in freeze:
            if not isinstance(name, str) or not _GROUP.fullmatch(name):
                raise ValueError(f"freeze entries must be 'stem' or 'stageN' (N = 1, 2, ...); "
                                 f"got {name!r}.")
        if len(set(freeze)) != len(freeze):
            raise ValueError(f"freeze names a group twice: {list(freeze)}.")
        if self.trainable_from is not None and not (
                isinstance(self.trainable_from, str)
                and (_GROUP.fullmatch(self.trainable_from) or self.trainable_from == HEAD)):
            raise ValueError("trainable_from must be 'stem', 'stageN' (N = 1, 2, ...) or "
                             f"'head'; got {self.trainable_from!r}.")
        if freeze and self.trainable_from is not None:
            raise ValueError(f"Give freeze or trainable_from, not both; got freeze={list(freeze)}"
                             f", trainable_from={self.trainable_from!r}.")
        # Imported here: keras_resnets loads Keras, and `training.config` imports this module.
        from keras_resnets import validate

        validate.boolean("freeze_bn", self.freeze_bn)
        validate.positive_number("head_lr_multiplier", self.head_lr_multiplier)

    def frozen_groups(self, groups) -> Tuple[str, ...]:
        """The groups these settings freeze, of a model whose groups are `groups` (in order)."""
        groups = list(groups)
        wanted = self.freeze if self.trainable_from is None else (self.trainable_from,)
        missing = [name for name in wanted if name not in groups]
        if missing:
            flag = "freeze" if self.trainable_from is None else "trainable_from"
            raise ValueError(f"{flag}: the model has no group {missing[0]!r}; its groups are "
                             f"{', '.join(groups)}.")
        if self.trainable_from is None:
            return tuple(name for name in groups if name in self.freeze)
        return tuple(groups[:groups.index(self.trainable_from)])


def layer_groups(model) -> Dict[str, List[Any]]:
    """The model's layers by group (`stem`, `stage1`, ..., `head`, in that order); layers
    without weights that belong to no group (the input) are left out.

    Raises:
        ValueError: a layer with weights belongs to no group (not a keras_resnets model).
    """
    stages, stem, head = {}, [], []
    for layer in model.layers:
        match = _LAYER_GROUP.match(layer.name)
        if match is None:
            if layer.weights:
                raise ValueError(f"Layer {layer.name!r} of {model.name} is in no group (stem, "
                                 "stageN, head): fine-tuning needs keras.applications layer "
                                 "names, as keras_resnets builds them.")
            continue
        if match.group("stem"):
            stem.append(layer)
        elif match.group("stage"):
            stages.setdefault(int(match.group("stage")) - 1, []).append(layer)
        else:
            head.append(layer)
    return {STEM: stem, **{f"stage{k}": stages[k] for k in sorted(stages)}, HEAD: head}


def _size(weights) -> int:
    return int(sum(math.prod(w.shape) for w in weights))


@dataclasses.dataclass(frozen=True)
class Freezing:
    """What `freeze` did to a model.

    Args:
        frozen_groups: tuple of str. The frozen groups.
        freeze_bn: bool. Whether every batch norm is in inference mode.
        trainable_parameters: int. Parameters that training changes.
        frozen_parameters: int. Parameters that would train but are frozen (batch-norm moving
            statistics, never trained by gradients, are in neither count).
    """

    frozen_groups: Tuple[str, ...]
    freeze_bn: bool
    trainable_parameters: int
    frozen_parameters: int

    def line(self) -> str:
        """One log line, e.g. `Frozen: stem, stage1 (1,204 parameters); ...`."""
        what = ", ".join(self.frozen_groups) or "no group"
        if self.freeze_bn:
            what += " and every batch norm (inference mode)"
        return (f"Frozen: {what} ({self.frozen_parameters:,} parameters); trainable: "
                f"{self.trainable_parameters:,} parameters.")


def freeze(model, settings: FinetuneConfig) -> Freezing:
    """Freezes the groups `settings` names (and with `freeze_bn` every batch norm) in place.

    Call it before the optimizer is built: the optimizer then tracks only trainable weights.

    Args:
        model: `keras.Model` built by keras_resnets.
        settings: `FinetuneConfig`.

    Returns:
        A `Freezing` with the frozen groups and the parameter counts.

    Example:

    >>> import keras_resnets
    >>> model = keras_resnets.ResNet(8, stem="cifar", stage_widths=(4, 8, 16), classes=10)
    >>> freeze(model, FinetuneConfig(freeze=("stem",))).frozen_parameters
    116
    """
    import keras

    before = _size(model.trainable_weights)
    groups = layer_groups(model)
    frozen = settings.frozen_groups(groups)
    for name in frozen:
        for layer in groups[name]:
            layer.trainable = False
    if settings.freeze_bn:
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    trainable = _size(model.trainable_weights)
    return Freezing(frozen, settings.freeze_bn, trainable, before - trainable)


def head_scales(model, multiplier: float) -> Optional[List[float]]:
    """The factor of each trainable variable's gradient: `multiplier` for the classifier's,
    1 for the others; `None` when `multiplier` is 1."""
    if multiplier == 1:
        return None
    head = {id(v) for v in model.get_layer(CLASSIFIER).trainable_weights}
    return [float(multiplier) if id(v) in head else 1.0 for v in model.trainable_variables]


def scale_gradients(gradients, scales):
    """`gradients` times `scales` (from `head_scales`; `None` leaves them alone)."""
    if scales is None:
        return gradients
    return [g if s == 1.0 or g is None else g * s for g, s in zip(gradients, scales)]


def scale_updates(variables, before, scales) -> None:
    """Multiplies each variable's change since `before` (its values, `None` where its scale
    is 1) by its entry of `scales` (from `head_scales`): the learning-rate multiplier of an
    optimizer whose step is not linear in the gradient (AdamW, LAMB)."""
    for variable, old, scale in zip(variables, before, scales):
        if scale != 1.0:
            variable.assign(old + scale * (variable.value - old))


def is_local(source: str) -> bool:
    """Whether `init_weights` names a file or directory rather than a pretrained tag."""
    return os.path.exists(os.path.expanduser(source))


def looks_like_path(source: str) -> bool:
    """A name with a path separator or a file extension is meant as a path, not a tag."""
    return os.sep in source or "/" in source or bool(
        re.search(r"\.(h5|keras|pth|pt|bin|safetensors)$", source))


def resolve(experiment) -> Tuple[Any, List[str]]:
    """An experiment that agrees with its named pretrained source, and notes to log.

    With `init_weights` a pretrained tag (not a path), the model is built with the table
    entry's `layer_config` (added to the model overrides; a different explicit one is an error
    naming both) and the input normalisation becomes the one the weights were trained with
    (`"imagenet"` mean/std, `"caffe"` mean subtraction or `"inception"` scaling to [-1, 1]) when
    `normalization` is `"auto"`; another explicit normalisation is kept, with a warning note.
    Other experiments come back unchanged. Resolving a resolved experiment changes nothing.

    Returns:
        `(experiment, notes)`.

    Raises:
        ValueError: an unknown tag (naming `init_weights`) or a conflicting `layer_config`.
    """
    source = experiment.finetune.init_weights
    # Paths are read only when a run starts (a resumed run needs no source).
    if source is None or is_local(source) or looks_like_path(source):
        return experiment, []
    import keras_resnets

    model = experiment.model.model_name()
    entry = keras_resnets.weight_entry(model, source)
    overrides = dict(experiment.model.overrides)
    wanted = entry.layer_config
    if overrides.get("layer_config", wanted) != wanted:
        raise ValueError(
            f"init_weights={source!r} ({model}) needs layer_config={wanted!r}, but "
            f"model_overrides sets layer_config={overrides['layer_config']!r}; drop it.")
    normalization = normalization_for(entry)
    changes = {"model_overrides": {**overrides, "layer_config": wanted}}
    notes = [f"init_weights={source!r}: {entry.model} weights {entry.tag!r}; the model is built "
             f"with layer_config={wanted!r}."]
    given = experiment.data.normalization
    if given == "auto":
        changes["normalization"] = normalization
        notes[0] += f" Inputs are normalised as they expect: normalization={normalization!r}."
    elif given != normalization:
        notes.append(f"Warning: init_weights={source!r} expects inputs normalised as "
                     f"normalization={normalization!r}; this run uses {given!r} as asked, "
                     "which the pretrained features were not trained on.")
    return experiment.replace(**changes), notes


def normalization_for(entry) -> str:
    """The `training.data` normalisation of a weight entry's preprocessing."""
    mode = entry.preprocessing.mode
    if mode not in _NORMALIZATION_OF_MODE:
        raise ValueError(f"Weights {entry.tag!r} of {entry.model} expect the preprocessing "
                         f"mode {mode!r}, which training.data does not provide.")
    return _NORMALIZATION_OF_MODE[mode]
