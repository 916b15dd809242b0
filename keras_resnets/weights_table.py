"""The table of published weights (`weights.json`, package data): one `WeightEntry` per file.

>>> entry = weight_entry("resnet50", "torchvision")
>>> entry.tag, entry.layer_config, entry.top1, entry.preprocessing.resize_size
('tv2_in1k', 'torchvision', 80.858, 232)
>>> [row.tag for row in list_weights("resnet18", verbose=False)]
['tv_in1k']
"""

import dataclasses
import fnmatch
import functools
import json
import os
from typing import Optional, Tuple

from keras_resnets import specs

TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights.json")
MODES = ("caffe", "tf", "torch")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """What an image needs before a model with these weights sees it.

    Attributes:
        mode: `"caffe"` (RGB to BGR, then minus `mean`, pixels 0-255), `"tf"` (x / 127.5 - 1)
            or `"torch"` (x / 255, minus `mean`, over `std`), as `keras.applications`'
            `imagenet_utils.preprocess_input` modes.
        mean: per-channel means in the mode's scale (RGB; BGR for caffe).
        std: per-channel standard deviations, or `None`.
        resize_size: the shorter side images are resized to before the centre crop.
        crop_size: the side of the square centre crop, the model's input size.
        interpolation: the resize's interpolation (`"bilinear"`).
    """

    mode: str
    mean: Tuple[float, ...]
    std: Optional[Tuple[float, ...]]
    resize_size: int
    crop_size: int
    interpolation: str

    @property
    def input_size(self) -> int:
        return self.crop_size


@dataclasses.dataclass(frozen=True)
class WeightEntry:
    """One published weight file of a keras_resnets model.

    Attributes:
        model: the registry name the weights fit (`keras_resnets.list_models()`).
        tag: the name to pass as `weights=` (e.g. `"imagenet"`, `"tv_in1k"`, `"tv2_in1k"`).
        aliases: other names of the same weights (`"torchvision"`: torchvision's DEFAULT).
        publisher: `"keras.applications"` or `"torchvision"`.
        url: the publisher's URL of the file with the classifier.
        hash: the publisher's hash of that file, `"md5:<hex>"` or `"sha256:<hex>"`; a hex
            shorter than the digest is a prefix (torchvision's file names carry 8 digits).
        notop_url: the publisher's file without the classifier (`include_top=False`), or `None`.
        notop_hash: its hash, or `None`.
        layout: the file's layout (`keras_resnets.weight_files.LAYOUTS`).
        layer_config: the `layer_config` preset the model must be built with.
        preprocessing: a `Preprocessing`.
        top1: the publisher's ImageNet-1k top-1 accuracy (%).
        top5: the publisher's top-5 accuracy (%).
        reference: where the publisher lists these weights.
        classes: the classifier's number of classes.
    """

    model: str
    tag: str
    aliases: Tuple[str, ...]
    publisher: str
    url: str
    hash: str
    notop_url: Optional[str]
    notop_hash: Optional[str]
    layout: str
    layer_config: str
    preprocessing: Preprocessing
    top1: float
    top5: float
    reference: str
    classes: int = 1000

    @property
    def tags(self) -> Tuple[str, ...]:
        return (self.tag,) + tuple(self.aliases)

    @property
    def file_name(self) -> str:
        return os.path.basename(self.url)


@functools.lru_cache(maxsize=None)
def _table():
    with open(TABLE_PATH, encoding="utf-8") as handle:
        return json.load(handle)


def _preprocessing(name_or_fields) -> Preprocessing:
    fields = (_table()["preprocessing"][name_or_fields] if isinstance(name_or_fields, str)
              else dict(name_or_fields))
    if fields["mode"] not in MODES:
        raise ValueError(f"preprocessing mode must be one of {MODES}; got {fields['mode']!r}.")
    return Preprocessing(mode=fields["mode"], mean=tuple(fields["mean"]),
                         std=None if fields["std"] is None else tuple(fields["std"]),
                         resize_size=fields["resize_size"], crop_size=fields["crop_size"],
                         interpolation=fields["interpolation"])


def entry_from_row(row) -> WeightEntry:
    """A `WeightEntry` from a row of the table (a dict, as in `weights.json`)."""
    row = dict(row)
    row["aliases"] = tuple(row.get("aliases") or ())
    row["preprocessing"] = _preprocessing(row["preprocessing"])
    return WeightEntry(**row)


@functools.lru_cache(maxsize=None)
def _package_entries() -> Tuple[WeightEntry, ...]:
    return tuple(entry_from_row(row) for row in _table()["weights"])


def entries() -> Tuple[WeightEntry, ...]:
    """Every entry of the table, in its order."""
    return _package_entries()


def file_spec(name: str) -> Tuple[str, str]:
    """`(url, hash)` of a published support file, e.g. `"imagenet_class_index"`."""
    spec = _table()["files"][name]
    return spec["url"], spec["hash"]


def tags_of(model_name: str) -> Tuple[str, ...]:
    """The tags (aliases after them) of `model_name`, in table order."""
    rows = [row for row in entries() if row.model == model_name]
    return tuple(row.tag for row in rows) + tuple(a for row in rows for a in row.aliases)


def weight_entry(model_name: str, tag: str) -> WeightEntry:
    """The table row of `model_name`'s weights named `tag` (or one of its aliases).

    Raises:
        ValueError: the table has no such weights; the message lists those it has.
    """
    for row in entries():
        if row.model == model_name and tag in row.tags:
            return row
    available = tags_of(model_name)
    if available:
        raise ValueError(f"No weights {tag!r} for model '{model_name}'; its weights are "
                         f"{', '.join(map(repr, available))} (keras_resnets.list_weights()).")
    models = sorted({row.model for row in entries()})
    raise ValueError(f"No published weights for model '{model_name}' (weights={tag!r}); "
                     f"models with weights: {', '.join(models)}.")


def _percent(value) -> str:
    """An accuracy as its publisher gives it: one decimal (keras.applications) or three."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:.3f}"


def _format(rows) -> str:
    header = ("Model", "Tag", "Top-1", "Resize/crop", "Mode", "layer_config", "File")
    lines = [header]
    for row in rows:
        tag = row.tag + (f" ({', '.join(row.aliases)})" if row.aliases else "")
        prep = row.preprocessing
        lines.append((row.model, tag, _percent(row.top1),
                      f"{prep.resize_size}/{prep.crop_size}", prep.mode, row.layer_config,
                      row.file_name))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in lines)


def markdown_table() -> str:
    """The weight table as Markdown (the README's "Pretrained weights" table)."""
    lines = ["| Model | `weights=` | Publisher's name | Top-1 | Top-5 | Resize/crop | "
             "Preprocessing | File |", "|---|---|---|---:|---:|---|---|---|"]
    for row in list_weights(verbose=False):
        tags = ", ".join(f"`{tag}`" for tag in row.tags)
        prep = row.preprocessing
        notop = f" ([no top]({row.notop_url}))" if row.notop_url else ""
        lines.append(f"| `{row.model}` | {tags} | `{row.reference}` | {_percent(row.top1)} | "
                     f"{_percent(row.top5)} | {prep.resize_size}/{prep.crop_size} "
                     f"{prep.interpolation} | {prep.mode} | [{row.file_name}]({row.url}){notop} |")
    return "\n".join(lines) + "\n"


def list_weights(pattern: str = "*", verbose: bool = True):
    """Print the weight table's rows whose model (or `model.tag`) matches `pattern`, and
    return them (a list of `WeightEntry`).

    Args:
        pattern: str. An `fnmatch` pattern of model names or `model.tag`, e.g. `"resnext*"` or
            `"*.tv2_in1k"`. Defaults to `"*"`.
        verbose: bool. Print the table. Defaults to `True`.

    Example:

    >>> rows = list_weights("resnet1[58]*")
    Model      Tag                     Top-1   Resize/crop  Mode   layer_config        File
    resnet18   tv_in1k (torchvision)   69.758  256/224      torch  torchvision         ...
    resnet152  imagenet                76.6    256/224      caffe  keras_applications  ...
    resnet152  tv_in1k                 78.312  256/224      torch  torchvision         ...
    resnet152  tv2_in1k (torchvision)  82.284  232/224      torch  torchvision         ...
    resnet152v2  ...
    >>> [(row.model, row.tag) for row in rows][-1]
    ('resnet152v2', 'imagenet')
    """
    order = {name: index for index, name in enumerate(specs.MODEL_SPECS)}
    rows = [row for row in entries()
            if fnmatch.fnmatchcase(row.model, pattern)
            or any(fnmatch.fnmatchcase(f"{row.model}.{tag}", pattern) for tag in row.tags)]
    rows.sort(key=lambda row: order.get(row.model, len(order)))  # stable: table order per model
    if verbose:
        print(_format(rows))
    return rows
