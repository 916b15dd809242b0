"""The papers' training recipes, as flat settings (data, not code); each cites its source.

Each recipe is a dict of the flat settings of `training.config` (`training.config.override_keys`);
`training.config.recipe(name, **overrides)` turns one into an `ExperimentConfig`.
"""

from typing import Any, Dict

_CIFAR = dict(
    dataset="cifar10", validation_images=5000, global_batch_size=128, learning_rate=0.1,
    momentum=0.9, weight_decay=1e-4, schedule="step",
)
# He et al. 2015, Section 4.2: /10 at 32k and 48k iterations, stop at 64k (on a 45k/5k split).
_CIFAR_STEPS = dict(_CIFAR, decay_steps=(32000, 48000), total_steps=64000)
# ResNet-110/1202 (He et al. 2015) and the deep pre-activation nets (He et al. 2016): 0.01 for
# the first 400 iterations, then 0.1.
_WARM_START = dict(warm_start_steps=400, warm_start_learning_rate=0.01)
# Xie et al. 2016, Section 6: 300 epochs, /10 at 150 and 225, weight decay 5e-4, all 50k images.
_CIFAR_RESNEXT = dict(
    _CIFAR, validation_images=0, weight_decay=5e-4, decay_epochs=(150, 225), epochs=300
)
# He et al. 2015, Section 3.4: batch 256, lr 0.1 /10 every 30 epochs, 90 epochs, scale augmentation.
_IMAGENET = dict(
    dataset="imagenet2012", augmentation="imagenet", global_batch_size=256, learning_rate=0.1,
    momentum=0.9, weight_decay=1e-4, schedule="step", decay_epochs=(30, 60), epochs=90,
)
# Xie et al. 2016, Section 5.1: random-resized crops (fb.resnet.torch), lr /10 three times.
_IMAGENET_RESNEXT = dict(_IMAGENET, augmentation="inception", decay_epochs=(30, 60, 90), epochs=120)
# Goyal et al. 2017 and TF Model Garden's ResNet-50: linear scaling 0.1 x 2048 / 256, 5 warmup
# epochs, label smoothing, no decay on batch norm and biases, zero-initialised residual branches.
_LARGE_BATCH = dict(
    _IMAGENET, augmentation="inception", global_batch_size=2048, learning_rate=0.8,
    warmup_epochs=5.0, label_smoothing=0.1, schedule="cosine", decay_epochs=(30, 60, 80),
    decay_bn_and_bias=False, model_overrides={"zero_init_residual": True},
)
# Fine-tuning an ImageNet ResNet-50 on a user's image folder (--dataset=PATH) at 224 px, after
# the transfer recipes of Kolesnikov et al. 2020 (BiT-HyperRule: SGD with momentum, a low
# learning rate, a short schedule with warmup) and Kornblith et al. 2019 (label smoothing, a
# new classifier): torchvision's ImageNet weights (its default, IMAGENET1K_V2: 80.9% top-1,
# against 74.9% for keras.applications' "imagenet"), 10 epochs of cosine decay after a 1-epoch
# warmup, a 10x learning rate for the new classifier, kernels-only weight decay, scale
# augmentation (images of any size are resized and cropped to 224).
_FINETUNE = dict(
    model="resnet50", init_weights="torchvision", image_size=224, augmentation="imagenet",
    global_batch_size=64, learning_rate=0.01, momentum=0.9, weight_decay=1e-4,
    decay_bn_and_bias=False, label_smoothing=0.1, schedule="cosine", warmup_epochs=1.0,
    epochs=10, head_lr_multiplier=10.0,
)

RECIPES: Dict[str, Dict[str, Any]] = {
    **{f"cifar10_resnet{d}": dict(_CIFAR_STEPS, model=f"resnet{d}",
                                  **(_WARM_START if d in (110, 1202) else {}))
       for d in (20, 32, 44, 56, 110, 1202)},
    **{f"cifar10_preact_resnet{d}": dict(_CIFAR_STEPS, model=f"preact_resnet{d}", **_WARM_START)
       for d in (110, 164, 1001)},
    # He et al. 2016, Table 3 reports CIFAR-100 for pre-activation ResNet-164 and 1001.
    **{f"cifar100_preact_resnet{d}": dict(_CIFAR_STEPS, dataset="cifar100",
                                          model=f"preact_resnet{d}", **_WARM_START)
       for d in (164, 1001)},
    # Xie et al. 2016, Table 7 reports ResNeXt-29 on both CIFAR-10 and CIFAR-100.
    **{f"cifar{k}_resnext29_{c}x64d": dict(_CIFAR_RESNEXT, dataset=f"cifar{k}",
                                           model=f"resnext29_{c}x64d")
       for k in (10, 100) for c in (8, 16)},
    **{f"imagenet_resnet{d}": dict(_IMAGENET, model=f"resnet{d}") for d in (18, 34, 50, 101, 152)},
    **{f"imagenet_resnext{n}": dict(_IMAGENET_RESNEXT, model=f"resnext{n}")
       for n in ("50_32x4d", "101_32x4d", "101_64x4d")},
    "imagenet_resnet50_large_batch": dict(_LARGE_BATCH, model="resnet50"),
    "finetune": _FINETUNE,
}
