"""Test doubles for `training.data` (written in parallel on another branch).

`FakePipeline` implements the interface the trainer consumes (`info`, `train`, `evaluation`,
`steps_per_epoch`) over small in-memory random images whose labels are learnable (each class is
a noisy copy of a random prototype). Its order is a pure function of `(seed, epoch)`, and with an
`input_context` it yields per-replica batches in the order `tf.distribute` hands them to the
replicas, so distributed runs see the same global batches as one-device runs.

`install()` registers this module as `training.data` when the real one is not there yet, so that
`training.config` (which builds `training.data.DataConfig`) and `python -m training.fit` (through
`tests/training/run_module.py`) work; once the real module lands, `install()` does nothing.
"""

import dataclasses
import importlib.util
import os
import sys
from typing import Optional, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = "cifar10"
    data_dir: Optional[str] = None
    image_size: Optional[int] = None
    augmentation: str = "auto"
    normalization: str = "auto"
    validation_images: int = 0
    cache: Optional[bool] = None
    shuffle_buffer: Optional[int] = None
    seed: int = 0
    deterministic: bool = False
    skip_corrupt: bool = False
    eval_crops: int = 1
    synthetic_examples: int = 1024
    num_classes: Optional[int] = None
    max_train_examples: Optional[int] = None
    max_test_examples: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    image_shape: Tuple[int, int, int]
    train_examples: int
    validation_examples: int
    test_examples: int
    class_names: Tuple[str, ...]


class FakePipeline:
    """In-memory learnable random images.

    Args:
        train_examples, validation_examples, test_examples: int. Split sizes.
        image_size: int. Square images of this size, 3 channels.
        num_classes: int.
        seed: int. Seeds the order of each epoch together with the epoch.
        eval_crops: int. 1, or 10 for evaluation elements of shape [batch, 10, H, W, 3].
        noise: float. Standard deviation of the noise around each class prototype.
        data_seed: int. Seeds the images themselves.
    """

    def __init__(self, train_examples=128, validation_examples=0, test_examples=40,
                 image_size=8, num_classes=4, seed=0, eval_crops=1, noise=1.0, data_seed=1234):
        total = train_examples + validation_examples + test_examples
        rng = np.random.RandomState(data_seed)
        prototypes = rng.randn(num_classes, image_size, image_size, 3).astype("float32")
        labels = rng.randint(num_classes, size=total).astype("int64")
        images = prototypes[labels] + noise * rng.randn(total, image_size, image_size, 3)
        images = images.astype("float32")
        cuts = np.cumsum([train_examples, validation_examples])
        self._splits = {
            "train": (images[:cuts[0]], labels[:cuts[0]]),
            "validation": (images[cuts[0]:cuts[1]], labels[cuts[0]:cuts[1]]),
            "test": (images[cuts[1]:], labels[cuts[1]:]),
        }
        self.seed = seed
        self.eval_crops = eval_crops
        self.info = DatasetInfo("fake", num_classes, (image_size, image_size, 3), train_examples,
                                validation_examples, test_examples,
                                tuple(f"class{i}" for i in range(num_classes)))
        self.calls = []  # (method, epoch or split, skip_batches or None, pipeline id)

    def steps_per_epoch(self, global_batch_size):
        return self.info.train_examples // global_batch_size

    @staticmethod
    def _layout(input_context):
        if input_context is None:
            return 1, 1, 0
        return (input_context.num_replicas_in_sync, input_context.num_input_pipelines,
                input_context.input_pipeline_id)

    def train(self, epoch, global_batch_size, input_context=None, skip_batches=0):
        images, labels = self._splits["train"]
        replicas, pipelines, pipeline_id = self._layout(input_context)
        self.calls.append(("train", epoch, skip_batches, pipeline_id))
        per_replica = global_batch_size // replicas
        local = replicas // pipelines
        order = np.random.RandomState([self.seed, epoch]).permutation(len(labels))
        rows = []
        for step in range(skip_batches, self.steps_per_epoch(global_batch_size)):
            for replica in range(pipeline_id * local, (pipeline_id + 1) * local):
                start = step * global_batch_size + replica * per_replica
                rows.append(order[start:start + per_replica])
        index = np.concatenate(rows) if rows else np.zeros([0], "int64")
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices(
            (images[index], labels[index])).batch(per_replica, drop_remainder=True)

    def evaluation(self, split, global_batch_size, input_context=None):
        if split not in ("validation", "test"):
            raise ValueError(f"split must be 'validation' or 'test'; got {split!r}.")
        images, labels = self._splits[split]
        replicas, pipelines, pipeline_id = self._layout(input_context)
        self.calls.append(("evaluation", split, None, pipeline_id))
        if self.eval_crops == 10:
            flipped = images[:, :, ::-1]
            images = np.stack([images, flipped] * 5, axis=1)
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices((images, labels))
        dataset = dataset.batch(global_batch_size // replicas)
        if pipelines > 1:
            dataset = dataset.shard(pipelines, pipeline_id)
        return dataset


class Pipeline(FakePipeline):
    """`training.data.Pipeline(config)` for `dataset="synthetic"`; paths that do not exist and
    other data sets are ValueErrors, as the real pipeline reports them."""

    def __init__(self, config):
        dataset = config.dataset
        if dataset != "synthetic":
            if os.sep in dataset or dataset.startswith("."):
                if not os.path.isdir(dataset):
                    raise ValueError(f"dataset path {dataset!r} does not exist.")
            raise ValueError(
                f"The test double of training.data serves only dataset='synthetic'; got "
                f"{dataset!r}.")
        train = config.max_train_examples or config.synthetic_examples
        test = config.max_test_examples or max(config.synthetic_examples // 4, 1)
        super().__init__(
            train_examples=train - config.validation_images,
            validation_examples=config.validation_images, test_examples=test,
            image_size=config.image_size or 32, num_classes=config.num_classes or 10,
            seed=config.seed, eval_crops=config.eval_crops)


def install():
    """Makes this module `training.data` unless the real one exists; returns which is used."""
    if "training.data" in sys.modules:
        return sys.modules["training.data"]
    if importlib.util.find_spec("training.data") is not None:
        import training.data

        return training.data
    import training

    module = sys.modules[__name__]
    sys.modules["training.data"] = module
    training.data = module
    return module
