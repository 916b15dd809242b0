"""Fine-tuning on the real CIFAR-10 (../shared/data/cifar10) beats training from scratch (slow).

A ResNet-20 trained briefly on five classes (airplane ... deer) starts a run on the other five
(dog ... truck) with `--init_weights=<its model directory>`; the same run from random weights
is the baseline. The five-class views are symbolic links in a temporary folder.
"""

import os

import pytest

from tests.conftest import CIFAR10_DIR
from training import config, trainer

FIRST, SECOND = ("airplane", "automobile", "bird", "cat", "deer"), (
    "dog", "frog", "horse", "ship", "truck")


def five_classes(root, classes):
    for split in ("train", "test"):
        os.makedirs(os.path.join(root, split))
        for name in classes:
            os.symlink(os.path.join(CIFAR10_DIR, split, name), os.path.join(root, split, name))
    return str(root)


def run(dataset, model_dir, train_examples, epochs, **settings):
    experiment = config.recipe(
        "cifar10_resnet20", dataset=dataset, validation_images=0,
        max_train_examples=train_examples, max_test_examples=1_000, global_batch_size=64,
        epochs=epochs, model_dir=model_dir, save_model=False, verbose=2, deterministic=True,
        **settings)
    return trainer.run(experiment).results


@pytest.mark.slow
def test_a_resnet20_fine_tuned_from_other_classes_beats_one_from_scratch(tmp_path):
    if not os.path.isdir(CIFAR10_DIR):
        pytest.skip(f"no CIFAR-10 image folder at {CIFAR10_DIR}")
    first = five_classes(tmp_path / "first", FIRST)
    second = five_classes(tmp_path / "second", SECOND)
    source = str(tmp_path / "source")
    pretrained = run(first, source, 10_000, 2)
    finetuned = run(second, str(tmp_path / "finetuned"), 2_500, 2, init_weights=source)
    scratch = run(second, str(tmp_path / "scratch"), 2_500, 2)
    print(f"source {pretrained['final_test_accuracy']:.4f}, fine-tuned "
          f"{finetuned['final_test_accuracy']:.4f}, scratch {scratch['final_test_accuracy']:.4f}")
    # Five classes there and here, but other ones: the classifier starts afresh.
    assert finetuned["initialization"]["reason"] == (
        "other classes there: airplane, automobile, bird, cat, deer")
    assert finetuned["final_test_accuracy"] > scratch["final_test_accuracy"] + 0.05
