"""What both input pipelines (`training.data.Pipeline`, tf.data, and
`training.numpy_data.NumpyPipeline`, NumPy) share of their interface, without TensorFlow: the
normalisation and geometry that exports copy, the steps of an epoch and the checks of the
arguments of `train` and `evaluation`. A subclass sets `info`, `_plan`, `_splits`, `_scale`
and `_offset`."""

from typing import Optional, Tuple

import numpy as np

from training.data_config import EVAL_SPLITS, check_int


class PipelineBase:
    """The shared part of the input pipelines (see the module's docstring)."""

    @property
    def normalizer(self) -> Tuple[np.ndarray, np.ndarray]:
        """`(scale, offset)`: normalised image = pixels (0-255) * scale + offset, for every
        normalisation (exports put the same step in front of the trained model)."""
        return self._scale, self._offset

    @property
    def fit_size(self) -> Optional[Tuple[int, int]]:
        """`(height, width)` that every image is fitted to first (`training.images.fit`:
        resized, shorter side first, and centre cropped unless it has that size): the output
        size in the CIFAR-style geometry, the data's own size where small ImageNet-style data
        is held in memory, else `None` (images keep their own size until the crop).
        Exports put the same steps in front of the trained model."""
        if self._plan.whole:
            return self._plan.out_hw
        return self._plan.store_hw if self._plan.arrays else None

    @property
    def eval_center_crop(self) -> bool:
        """Whether evaluation (one crop) takes the ImageNet-style centre crop of the output
        size after resizing the shorter side to `eval_resize_side(size)`."""
        return not self._plan.whole

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """Training batches per epoch: `train_examples // global_batch_size`."""
        check_int("global_batch_size", global_batch_size, minimum=1)
        steps = self.info.train_examples // global_batch_size
        if steps == 0:
            raise ValueError(
                f"global_batch_size {global_batch_size} is larger than the training split "
                f"({self.info.train_examples} images)."
            )
        return steps

    def _check_train(self, epoch, global_batch_size, skip_batches) -> int:
        """The steps of an epoch, after checking the arguments of `train`."""
        check_int("epoch", epoch, minimum=0)
        steps = self.steps_per_epoch(global_batch_size)
        check_int("skip_batches", skip_batches, minimum=0)
        if skip_batches > steps:
            raise ValueError(f"skip_batches must be at most {steps} (steps per epoch); "
                             f"got {skip_batches}.")
        return steps

    def _check_evaluation(self, split, global_batch_size):
        """The examples of `split`, after checking the arguments of `evaluation`."""
        if split not in EVAL_SPLITS:
            raise ValueError(f"split must be one of {list(EVAL_SPLITS)}; got {split!r}.")
        check_int("global_batch_size", global_batch_size, minimum=1)
        examples = self._splits[split]
        if len(examples) == 0:
            raise ValueError(
                "The validation split is empty: set DataConfig.validation_images (e.g. 5000 "
                "for CIFAR's 45k/5k split)."
                if split == "validation" else f"The {split} split is empty."
            )
        return examples
