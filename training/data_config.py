"""What the input pipeline reads and how it prepares it: `DataConfig` and `DatasetInfo`.

Pure Python (no TensorFlow import), so that `training.config` and the command lines can hold and
check data settings without starting TensorFlow. `training.data.Pipeline` turns a `DataConfig`
into tf.data pipelines.

Each field carries its command-line help in `metadata["help"]` (and its valid values in
`metadata["choices"]`); `training.field_flags` makes the `--<field>` flags of
`python -m training.fit` from them (`training.setting_flags`).
"""

import dataclasses
import math
from typing import Optional, Tuple

from training import randaugment_config

AUGMENTATIONS = ("auto", "cifar", "imagenet", "inception", "none")
NORMALIZATIONS = ("auto", "per_pixel_mean", "per_channel", "none", "imagenet", "caffe",
                  "inception")
# The fixed channel means and standard deviations (RGB, pixel units 0-255) that pretrained
# weights expect: torchvision's and timm's ImageNet statistics (keras.applications' "torch"
# mode), Caffe's mean subtraction (its "caffe" mode, here in RGB order) and scaling to [-1, 1]
# (its "tf" mode). keras.applications/imagenet_utils.py has the three.
FIXED_STATISTICS = {
    "imagenet": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
    "caffe": ((123.68, 116.779, 103.939), (1.0, 1.0, 1.0)),
    "inception": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
}
EVAL_SPLITS = ("validation", "test")
EVAL_CROPS = (1, 10)
CROP_PADDINGS = ("zeros", "reflect")
SYNTHETIC = "synthetic"
# Fields of DataConfig that the runtime settings also set (one flag, one override key).
SHARED_WITH_RUNTIME = ("seed", "deterministic")


def _field(default, help_text, choices=None):
    metadata = {"help": help_text}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What to read and how to prepare it.

    Args:
        dataset: str. Where the data comes from (`training.sources.open_source` picks the
            source by this value, in this order):
            `"synthetic"` (random images, for throughput runs); a folder whose `train/`
            sub-folder holds one folder per class (an image folder: `.jpg`, `.jpeg`, `.png`
            files; class folders in alphabetical order are the labels; the test split is
            `test/`, `val/` or `validation/`); a folder of TFRecord files (no `train/`
            sub-folder, but files named `train-*`, and `test-*` or else `validation-*`, as
            in the TF Model Garden's ImageNet data: `tf.train.Example` records with the
            encoded image under `tfrecord_image_key` and the int64 label under
            `tfrecord_label_key`); or else a TFDS name (`"cifar10"`, `"cifar100"`,
            `"imagenet2012"`, ...). As in `keras.utils.image_dataset_from_directory`, images
            in sub-folders of a class folder belong to that class. Files and folders whose
            names start with `"."` (such as the `._*` files macOS leaves beside copied images)
            are ignored. Both are reported in a logged warning with their count. Every data
            set needs at least 2 classes. Defaults to `"cifar10"`.
        data_dir: str or `None`. The TFDS data directory. Defaults to `None` (TFDS' default,
            `~/tensorflow_datasets`).
        image_size: int or `None`. Side of the square images the pipeline outputs. Defaults to
            `None`: the data's own size for CIFAR-size data (at most 64 pixels) and for TFDS data
            sets of a fixed image shape, 32 for `"synthetic"`, 224 otherwise.
        augmentation: str. `"cifar"` (pad 1/8 of the size, random crop, flip), `"imagenet"`
            (scale augmentation: shorter side in [256, 480] at 224, 224 crop, flip),
            `"inception"` (random-resized crop and flip), `"none"`, or `"auto"` (`"cifar"` for
            data of at most 64 pixels, `"imagenet"` otherwise). `training.augment` gives the
            details. Defaults to `"auto"`.
        randaugment: str or `None`. RandAugment (Cubuk et al. 2019) in timm's notation
            (`rand_augment_transform`): dash-separated `m<magnitude 0-10>` (default 10),
            `n<ops per image>` (2), `mstd<magnitude noise>` (0), `inc<0|1>` (the "increasing"
            ops, 0) and `p<probability of each op>` (0.5), with or without a leading `rand`,
            e.g. `"rand-m9-mstd0.5-inc1"` (timm's ImageNet recipes). `training.randaugment`
            gives the ops. Defaults to `None` (off).
        erasing_prob: float. Probability that random erasing (Zhong et al. 2020) replaces a box
            of a training image by normal noise after normalisation, in [0, 1] (timm's
            `--reprob`, whose `RandomErasing` defaults the rest). Defaults to `0.0` (off).
        mixup_alpha: float. MixUp (Zhang et al. 2018): the batch mixed with itself reversed,
            weights from Beta(alpha, alpha), at least 0 (timm's `--mixup`; its recipes use
            0.8). Defaults to `0.0` (off).
        cutmix_alpha: float. CutMix (Yun et al. 2019): a box of the reversed batch pasted in,
            its area from Beta(alpha, alpha), at least 0 (timm's `--cutmix`; its recipes use
            1.0). Defaults to `0.0` (off).
        mix_prob: float. Probability that a batch is mixed when MixUp or CutMix is on, in
            [0, 1] (timm's `--mixup-prob`). Defaults to `1.0`.
        mix_switch_prob: float. Probability that CutMix rather than MixUp mixes a batch when
            both are on, in [0, 1] (timm's `--mixup-switch-prob`). Defaults to `0.5`.
            With MixUp or CutMix the training labels are mixed one-hot targets
            `[batch, classes]` (`training.mixing`); evaluation is unchanged.
        normalization: str. `"per_pixel_mean"` (pixels scaled to [0, 1] minus the mean image of
            the training split, the papers' CIFAR preprocessing; CIFAR-style geometry only),
            `"per_channel"` (per-channel mean and standard deviation of the training split),
            `"none"` (pixels scaled to [0, 1]), or `"auto"` (`"per_pixel_mean"` for the
            CIFAR-style geometry, `"per_channel"` otherwise). Statistics exclude the validation
            carve-out; the per-channel statistics of data not held in memory come from the first
            512 training images. Pretrained weights expect fixed statistics of RGB images
            (`FIXED_STATISTICS`): `"imagenet"` (ImageNet's channel means and standard
            deviations, torchvision's and timm's weights), `"caffe"` (ImageNet's channel means
            subtracted, no scaling) and `"inception"` (scaled to [-1, 1]). Defaults to
            `"auto"`.
        validation_images: int. Size of the validation split, carved from the end of a fixed
            permutation of the training split (5000 gives the papers' 45k/5k CIFAR split); the
            remaining images are the training split. Defaults to `0`.
        cache: bool or `None`. `True` keeps the data in memory: decoded for CIFAR-style data,
            the encoded files otherwise (decoded each epoch). `False` reads every file each
            epoch (TFDS and TFRecord data is streamed). Defaults to `None`: `True` for data of
            at most 64 pixels, `False` otherwise.
        shuffle_buffer: int or `None`. `None` shuffles the whole training split every epoch
            (an exact permutation; streamed data uses a window of 10,000 records). An int
            emulates a tf.data shuffle buffer of that size (streamed data: a window).
            Defaults to `None`.
        seed: int. Seed of the order and augmentation of every epoch (and of synthetic data).
            Defaults to `0`.
        deterministic: bool. `tf.data.Options.deterministic` of the training data: `True`
            delivers elements in order (a resumed run replays its epochs exactly); `False` lets
            tf.data trade order for speed. Augmentation is stateless either way, and evaluation
            data always comes in order. Defaults to `False`.
        skip_corrupt: bool. What to do with image files that cannot be decoded: `False` raises
            a `CorruptImageError` (a `ValueError`) naming them, `True` skips them, logs how many
            and lists them in `Pipeline.skipped_files`. Building the pipeline decodes every
            image of an image folder or of cached TFDS or TFRecord data once, so such files are
            found and counted then. A file that changed on disk after that check (even into
            another image), or a streamed TFDS or TFRecord record that does not decode, stops
            the input with an error naming it, or with `True` is skipped where it is met: in a
            training batch the batch's previous image takes its place (epochs keep their steps,
            and resumed runs their batches), evaluation leaves it out. Defaults to `False`.
        eval_crops: int. `1` (the whole image or the centre crop) or `10` (four corners, centre
            and their mirror images; evaluation batches are then `[batch, 10, H, W, C]`).
            Defaults to `1`.
        crop_padding: str. How the CIFAR-style crops and ten crops pad the normalised image by
            1/8 of its size: `"zeros"` (He et al. 2015) or `"reflect"` (its mirror image, the
            edge not repeated: Zagoruyko & Komodakis 2016's reflection padding).
            Defaults to `"zeros"`.
        synthetic_examples: int. Number of training images of `"synthetic"`; the test split has
            a quarter as many. Defaults to `1024`.
        num_classes: int or `None`. Number of classes of `"synthetic"` (`None`: 10), at least
            2. TFRecord data has the largest label + 1 classes unless this says more (TF-slim's
            ImageNet files have labels 1-1000 and 1001 classes, 0 being "background"). For
            other data sets it is read from the data, and a different value is an error.
            Defaults to `None`.
        max_train_examples: int or `None`. Keep only this many training images (after the
            validation carve-out): the first ones of a fixed permutation, taking the classes in
            turn so they stay balanced (streamed data: the first ones in file order).
            Defaults to `None` (all).
        max_test_examples: int or `None`. The same for the test split. Defaults to `None` (all).
        tfrecord_image_key: str. The feature of a TFRecord example that holds the encoded
            image (JPEG, PNG, GIF or BMP bytes). Defaults to `"image/encoded"` (the TF Model
            Garden's and TF-slim's ImageNet files).
        tfrecord_label_key: str. The int64 feature of a TFRecord example that holds the label.
            Defaults to `"image/class/label"`.

    Example:

    >>> from training.data import Pipeline
    >>> config = DataConfig(dataset="synthetic", synthetic_examples=64, validation_images=16)
    >>> Pipeline(config).info.train_examples
    48
    """

    dataset: str = _field("cifar10", (
        "synthetic, the path of an image folder with train/ and test/ (or val/), the path of "
        "a folder of TFRecord files train-* and test-* (or validation-*), or a TFDS name "
        "(cifar10, cifar100, imagenet2012, ...)."))
    data_dir: Optional[str] = _field(None, "TFDS data directory.")
    image_size: Optional[int] = _field(None, (
        "Training image size; default: the data set's (32 for CIFAR, 224 for ImageNet)."))
    augmentation: str = _field("auto", "Training augmentation; auto picks by data set.",
                               AUGMENTATIONS)
    randaugment: Optional[str] = _field(None, (
        "RandAugment in timm's notation, e.g. rand-m9-mstd0.5-inc1 (m: magnitude 0-10, n: ops "
        "per image, mstd: magnitude noise, inc: increasing ops, p: op probability); default: "
        "off."))
    erasing_prob: float = _field(0.0, (
        "Probability of random erasing of each training image (timm's --reprob; 0: off)."))
    mixup_alpha: float = _field(0.0, "MixUp's Beta(alpha, alpha) (timm's --mixup; 0: off).")
    cutmix_alpha: float = _field(0.0, "CutMix's Beta(alpha, alpha) (timm's --cutmix; 0: off).")
    mix_prob: float = _field(1.0, (
        "Probability that a batch is mixed by MixUp or CutMix (timm's --mixup-prob)."))
    mix_switch_prob: float = _field(0.5, (
        "Probability of CutMix rather than MixUp when both are on (timm's "
        "--mixup-switch-prob)."))
    normalization: str = _field("auto", (
        "Input normalisation; auto picks by data set (or, with a pretrained --init_weights, the "
        "weights' own). imagenet, caffe and inception are the fixed statistics pretrained "
        "weights expect."), NORMALIZATIONS)
    validation_images: int = _field(0, (
        "Images carved from train for validation (5000 = the papers' 45k/5k CIFAR split)."))
    cache: Optional[bool] = _field(None, (
        "Cache decoded images in memory; default: for small data sets."))
    shuffle_buffer: Optional[int] = _field(None, "Shuffle buffer; default: the pipeline's.")
    seed: int = _field(0, "Seed of the data order and augmentation.")
    deterministic: bool = _field(False, "Deterministic input pipeline order.")
    skip_corrupt: bool = _field(False, (
        "Skip unreadable images (and report how many) instead of failing."))
    eval_crops: int = _field(1, "1 (centre crop) or 10 (ten-crop evaluation).", EVAL_CROPS)
    crop_padding: str = _field("zeros", (
        "How CIFAR-style crops and ten crops pad the normalised image: zeros (He et al. 2015) "
        "or reflect (mirrored, Zagoruyko & Komodakis 2016)."), CROP_PADDINGS)
    synthetic_examples: int = _field(1024, "Training examples of --dataset=synthetic.")
    num_classes: Optional[int] = _field(None, (
        "Classes of --dataset=synthetic (default: 10), or of TFRecord data (default: the "
        "largest label + 1)."))
    max_train_examples: Optional[int] = _field(None, "Use at most this many training images.")
    max_test_examples: Optional[int] = _field(None, "Use at most this many test images.")
    tfrecord_image_key: str = _field("image/encoded", (
        "Feature of the encoded image in TFRecord data."))
    tfrecord_label_key: str = _field("image/class/label", (
        "Int64 feature of the label in TFRecord data."))

    def __post_init__(self):
        # keras_resnets loads Keras (and its backend): imported on use, as ModelConfig does.
        from keras_resnets import validate

        for name in ("dataset", "tfrecord_image_key", "tfrecord_label_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                what = ("synthetic, an image folder, a folder of TFRecord files or a TFDS name"
                        if name == "dataset" else "a feature name")
                raise ValueError(f"{name} must be {what}; got {value!r}.")
        for field in dataclasses.fields(self):
            if "choices" in field.metadata:
                validate.choice(field.name, getattr(self, field.name), field.metadata["choices"])
        check_int("validation_images", self.validation_images, minimum=0)
        check_int("seed", self.seed, minimum=0)
        check_int("synthetic_examples", self.synthetic_examples, minimum=1)
        for name in ("image_size", "shuffle_buffer", "max_train_examples", "max_test_examples"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=1)
        if self.num_classes is not None:  # one class would "train" to 0% error
            check_int("num_classes", self.num_classes, minimum=2)
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size must be at least 8 or None; got {self.image_size!r}.")
        for name in ("erasing_prob", "mix_prob", "mix_switch_prob"):
            validate.number_in(name, getattr(self, name), 0, 1)
        for name in ("mixup_alpha", "cutmix_alpha"):
            validate.number_in(name, getattr(self, name), 0, math.inf, high_open=True)
        if self.randaugment is not None:
            randaugment_config.parse(self.randaugment)
        if self.cache not in (None, True, False):
            raise ValueError(f"cache must be True, False or None; got {self.cache!r}.")


def check_int(argument, value, minimum):
    """`value` is an integer (NumPy's included, not a bool) of at least `minimum`."""
    from keras_resnets import validate

    if not validate.is_int(value) or value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}; got {value!r}.")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a `Pipeline` delivers.

    Args:
        name: str. The data set (TFDS name, folder name or `"synthetic"`).
        num_classes: int. Number of classes; labels are in `[0, num_classes)`.
        image_shape: tuple of 3 ints. `(height, width, channels)` of each output image.
        train_examples: int. Images in the training split (after the validation carve-out and
            `max_train_examples`, without skipped corrupt files).
        validation_examples: int. Images in the validation split.
        test_examples: int. Images in the test split.
        class_names: tuple of str. The class of each label.
    """

    name: str
    num_classes: int
    image_shape: Tuple[int, int, int]
    train_examples: int
    validation_examples: int
    test_examples: int
    class_names: Tuple[str, ...]
