"""The served model: raw images in, class probabilities out.

`serving_model(network, preprocessing)` puts in front of a trained network what the run's
evaluation did to each image (`Preprocessing.from_pipeline(training.data.Pipeline)`): the
geometry that fits an image of any size to the network's input, then the normalisation. A
network that ends in logits gets a softmax. It is built from `keras.ops` and Keras' own layers
only, so it saves to a `.keras` file that loads without this repository and exports to
SavedModel, ONNX and LiteRT.

The geometry is TensorFlow's bilinear resize (`tf.image.resize`: half-pixel centres, no
antialiasing) written out as two gathers and a linear interpolation per axis, over the crop
window the pipeline takes. Keras' `Resizing` and `CenterCrop` layers cannot do it: `Resizing`
crops before it resizes (the pipeline's CIFAR-style fit resizes first), and neither takes a crop
proportional to the image (the ImageNet-style evaluation's centre 224/256 of the shorter side).
On the same image the served model's network input equals the pipeline's evaluation image bit
for bit (tested on TensorFlow).
"""

import dataclasses
from typing import Optional, Tuple

import keras
import numpy as np
from keras import ops


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """What the run's evaluation does to one image of pixel values in 0-255.

    First the image is fitted to `fit_size` (if given), then its centre crop is taken (if
    `crop_fraction` is given), then it is normalised.

    Args:
        image_size: tuple of 2 ints. `(height, width)` of the network's input.
        channels: int. Channels of the images (1 grayscale, 3 RGB).
        scale: NumPy array. Normalised image = pixels * `scale` + `offset`; a scalar, one value
            per channel or one per pixel (`[height, width, channels]`).
        offset: NumPy array. See `scale`.
        fit_size: tuple of 2 ints or `None`. An image of this size is kept as it is; any
            other is resized to cover it (shorter side first), centre cropped to it and
            rounded to integer pixel values, as `training.images.fit` does. Defaults to
            `None` (images keep their size).
        crop_fraction: float or `None`. The centre square of this fraction of the shorter side
            is resized to `image_size` (ImageNet-style evaluation: 224/256 = 0.875); `None`
            takes no crop (`fit_size` is then `image_size`). Defaults to `None`.
    """

    image_size: Tuple[int, int]
    channels: int
    scale: np.ndarray
    offset: np.ndarray
    fit_size: Optional[Tuple[int, int]] = None
    crop_fraction: Optional[float] = None

    def __post_init__(self):
        for name in ("image_size", "fit_size"):
            value = getattr(self, name)
            if not (value is None and name == "fit_size" or isinstance(value, tuple) and len(
                    value) == 2 and all(isinstance(n, int) and n > 0 for n in value)):
                raise ValueError(f"{name} must be a (height, width) tuple of positive ints"
                                 f"{' or None' if name == 'fit_size' else ''}; got {value!r}.")
        if self.crop_fraction is None:
            if self.fit_size != self.image_size:
                raise ValueError("Without a crop_fraction, fit_size must be image_size "
                                 f"{tuple(self.image_size)}; got {self.fit_size!r}.")
        elif not 0 < self.crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1] or None; got "
                             f"{self.crop_fraction!r}.")

    @classmethod
    def from_pipeline(cls, pipeline) -> "Preprocessing":
        """The evaluation preprocessing of a `training.data.Pipeline` (or any object with its
        `info`, `normalizer`, `fit_size` and `eval_center_crop`)."""
        from training.draws import eval_resize_side

        height, width, channels = pipeline.info.image_shape
        scale, offset = pipeline.normalizer
        fit_size = pipeline.fit_size
        fraction = height / eval_resize_side(height) if pipeline.eval_center_crop else None
        return cls((int(height), int(width)), int(channels), np.asarray(scale),
                   np.asarray(offset), None if fit_size is None else tuple(map(int, fit_size)),
                   fraction)


def serving_model(network: keras.Model, preprocessing: Preprocessing) -> keras.Model:
    """`network` behind the run's preprocessing: raw images in, probabilities out.

    The model's input is a batch of images `[batch, height, width, channels]` of any height and
    width (one size per batch), pixel values in 0-255 (uint8 images are cast to float32).
    The network's layers join the new model's graph (it is not nested), so their names, weights
    and order are the network's.

    Args:
        network: `keras.Model`. A channels-last classifier of `preprocessing.image_size` images.
        preprocessing: `Preprocessing`. The run's evaluation preprocessing.

    Returns:
        A `keras.Model` named like `network`, whose output is the class probabilities (float32).

    Example:

    >>> import numpy as np, keras_resnets
    >>> network = keras_resnets.ResNet(depth=8, stem="cifar", stage_widths=(4, 8, 16))
    >>> cifar = Preprocessing((32, 32), 3, np.float32(1 / 255), np.float32(0), fit_size=(32, 32))
    >>> served = serving_model(network, cifar)
    >>> served.predict(np.zeros((2, 48, 40, 3), "uint8"), verbose=0).shape
    (2, 10)
    """
    if tuple(network.input_shape[1:3]) != tuple(preprocessing.image_size):
        raise ValueError(f"network takes {network.input_shape[1:3]} images but preprocessing "
                         f"gives {preprocessing.image_size}.")
    images = keras.Input((None, None, preprocessing.channels), dtype="float32", name="images")
    x = images
    if preprocessing.fit_size is not None:
        x = _fit(x, *preprocessing.fit_size)
    if preprocessing.crop_fraction is not None:
        x = _center_crop(x, preprocessing.image_size[0], preprocessing.crop_fraction)
    x = keras.layers.Rescaling(_broadcastable(preprocessing.scale),
                               _broadcastable(preprocessing.offset), dtype="float32",
                               name="normalization")(x)
    outputs = network.call(x)  # calling the layers, not the model: one flat graph
    if getattr(network.layers[-1], "activation", None) in (None, keras.activations.linear):
        outputs = keras.layers.Softmax(dtype="float32", name="probabilities")(outputs)
    return keras.Model(images, outputs, name=network.name)


def _broadcastable(value):
    """A scalar or an array that broadcasts against `[batch, height, width, channels]` whatever
    `keras.config.image_data_format()` says (`Rescaling` reshapes 1-D and 2-D scales)."""
    value = np.asarray(value, np.float32)
    return value if value.ndim in (0, 3) else value.reshape((1,) * (3 - value.ndim) + value.shape)


def _height_width(images):
    """The images' height and width as float32 scalars (dynamic: `ops.shape` is static)."""
    return (ops.cast(ops.size(images[0, :, 0, 0]), "float32"),
            ops.cast(ops.size(images[0, 0, :, 0]), "float32"))


def _axis(size, scale, shift, extent, start):
    """Where `tf.image.resize` reads output pixels `0 .. size-1` of one axis from a window of
    `extent` input pixels that starts at `start`, the window resized by `1 / scale` and read
    from pixel `shift` on: the lower and upper input pixels and the weight of the upper one."""
    centres = np.arange(size, dtype=np.float32) + np.float32(0.5)  # numpy: a graph constant
    if shift is not None:
        centres = ops.add(centres, shift)
    x = ops.subtract(ops.multiply(centres, scale), 0.5)
    below = ops.floor(x)
    lower = ops.add(ops.maximum(below, 0.0), start)
    upper = ops.add(ops.minimum(ops.ceil(x), extent - 1.0), start)
    return ops.cast(lower, "int32"), ops.cast(upper, "int32"), ops.subtract(x, below)


def _resample(images, rows, columns):
    """Bilinear interpolation, in `tf.image.resize`'s order of operations."""
    top, bottom = (ops.take(images, index, axis=1) for index in rows[:2])
    left_index, right_index, column_weight = columns
    column_weight = ops.reshape(column_weight, (1, 1, -1, 1))

    def across(x):
        left = ops.take(x, left_index, axis=2)
        return ops.add(left, ops.multiply(ops.subtract(ops.take(x, right_index, axis=2), left),
                                          column_weight))

    top, bottom = across(top), across(bottom)
    return ops.add(top, ops.multiply(ops.subtract(bottom, top),
                                     ops.reshape(rows[2], (1, -1, 1, 1))))


def _fit(images, target_h, target_w):
    """`training.images.fit`: resize to cover `(target_h, target_w)`, shorter side first, crop
    the centre and round to integer pixel values; an image of that size is left as it is."""
    h, w = _height_width(images)
    scale = ops.maximum(ops.divide(float(target_h), h), ops.divide(float(target_w), w))
    new_h = ops.maximum(float(target_h), ops.round(ops.multiply(h, scale)))
    new_w = ops.maximum(float(target_w), ops.round(ops.multiply(w, scale)))
    top = ops.floor(ops.divide(ops.subtract(new_h, float(target_h)), 2.0))
    left = ops.floor(ops.divide(ops.subtract(new_w, float(target_w)), 2.0))
    resized = _resample(images, _axis(target_h, ops.divide(h, new_h), top, h, 0.0),
                        _axis(target_w, ops.divide(w, new_w), left, w, 0.0))
    # At the target size the resize reads each pixel with weight 0 on its neighbour: the image.
    same = ops.logical_and(ops.equal(h, float(target_h)), ops.equal(w, float(target_w)))
    return ops.where(same, resized, ops.clip(ops.round(resized), 0.0, 255.0))


def _center_crop(images, size, crop_fraction):
    """The pipeline's ImageNet-style evaluation crop (`training.augment.center_crop`)."""
    h, w = _height_width(images)
    short = ops.minimum(h, w)
    side = ops.round(ops.multiply(short, np.float32(crop_fraction)))
    side = ops.minimum(ops.maximum(side, 1.0), short)
    top = ops.floor(ops.divide(ops.subtract(h, side), 2.0))
    left = ops.floor(ops.divide(ops.subtract(w, side), 2.0))
    # side / size, with a divisor TensorFlow's graph optimiser cannot see as a constant: it
    # turns x / c into x * (1 / c), one rounding more than the resize kernel's own division,
    # which moved resized pixels by up to 0.01 (of 255).
    scale = ops.divide(side, ops.add(ops.multiply(side, 0.0), float(size)))
    return _resample(images, _axis(size, scale, None, side, top),
                     _axis(size, scale, None, side, left))
