"""The papers' training recipes, as flat settings (data, not code); each cites its source.

Each recipe is a dict of the flat settings of `training.config` (`training.config.override_keys`);
`training.config.recipe(name, **overrides)` turns one into an `ExperimentConfig`. `SOURCES` names
each recipe's paper (and where the recipe departs from it); `help_lines()` is the list
`--recipe`'s help shows.
"""

from typing import Any, Dict, List

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

# He et al. 2019, "Bag of Tricks for Image Classification with Convolutional Neural Networks"
# (arXiv:1812.01187): ResNet-50-D (section 4, Figure 2c: deep stem, average-pooled projection
# shortcuts; registry name `resnet50d`). Section 2.1: Nesterov momentum, the inception-style
# random-resized crop and flip, evaluation at the centre 224 crop of the shorter side resized to
# 256. Section 3.1: linear scaling, 0.1 x b/256 = 0.4 at batch 1024 (section 3.3's setting);
# 5 warm-up epochs from 0; zero gamma (`zero_init_residual`); no bias decay (convolution and
# dense kernels only). Section 5: cosine decay (5.1), label smoothing 0.1 (5.2), mixup with
# alpha 0.2 and 200 epochs instead of 120 (5.4). The paper gives neither momentum nor weight
# decay: 0.9 and 1e-4 are the defaults of its code, GluonCV's
# scripts/classification/imagenet/train_imagenet.py. Not reproduced: section 2.1's colour
# jitter and PCA lighting noise (training.augment has neither), FP16 (section 3.2; give
# --mixed_precision) and distillation (5.3, not part of the recipe).
_BAG_OF_TRICKS = dict(
    _IMAGENET, augmentation="inception", global_batch_size=1024, learning_rate=0.4,
    nesterov=True, schedule="cosine", decay_epochs=(), warmup_epochs=5.0, label_smoothing=0.1,
    mixup_alpha=0.2, epochs=200, decay_bn_and_bias=False,
    model_overrides={"zero_init_residual": True},
)
# Wightman, Touvron and Jegou 2021, "ResNet strikes back: An improved training procedure in
# timm" (arXiv:2110.00476), Table 1, column A3: 100 epochs, batch 2048, LAMB at lr 8e-3 with
# (decoupled) weight decay 0.02, cosine decay after 5 warm-up epochs, random-resized crop and
# flip at 160 px, RandAugment 6/0.5 (timm's rand-m6-mstd0.5-inc1), mixup 0.1 and CutMix 1.0
# (one of the two per batch, probability 0.5 each: timm's --mixup-switch-prob), no label
# smoothing, no dropout, no stochastic depth, no repeated augmentation, no random erasing, no
# EMA; the table's binary cross-entropy loss, of the logits (the network ends without a
# softmax; the served model adds one), with the mixed targets binarised at 0.2 (timm's
# --bce-target-thresh). From the paper's code, timm: biases and batch norms are not decayed
# (its optimizer factory, param_groups_weight_decay); its Lamb (timm/optim/lamb.py) has epsilon
# 1e-6 and scales the gradients to a global norm of at most 1 (max_grad_norm=1.0,
# clip_global_norm here; the table's "no gradient clipping" is timm's separate --clip-grad).
# Deviations, for want of the settings: evaluation is at 160 px with the 8/7 resize (crop ratio
# 0.875), not at 224 px with crop ratio 0.95; Keras' Lamb decays apart from the trust ratio and
# applies the trust ratio to every weight, where timm's adds the decay to the update it scales
# and leaves the undecayed weights unscaled. Mixed precision (the table's) is left to
# --mixed_precision.
_RSB_A3 = dict(
    _IMAGENET, augmentation="inception", image_size=160, global_batch_size=2048,
    optimizer="lamb", learning_rate=8e-3, weight_decay=0.02, weight_decay_mode="decoupled",
    epsilon=1e-6, clip_global_norm=1.0, loss="binary_cross_entropy", bce_target_threshold=0.2,
    model_overrides={"classifier_activation": None},
    decay_bn_and_bias=False, schedule="cosine", decay_epochs=(), warmup_epochs=5.0, epochs=100,
    randaugment="rand-m6-mstd0.5-inc1", mixup_alpha=0.1, cutmix_alpha=1.0, mix_switch_prob=0.5,
)
# Zagoruyko and Komodakis 2016, "Wide Residual Networks" (arXiv:1605.07146), section 3 and its
# code (github.com/szagoruyko/wide-residual-networks): WRN-28-10 with dropout 0.3 between the
# convolutions of every unit (`block_dropout_rate`), SGD with Nesterov momentum 0.9, lr 0.1
# divided by 5 at epochs 60, 120 and 160, 200 epochs, batch 128, weight decay 5e-4 (on every
# weight, as Torch's optim.sgd), flip and 4-pixel pad-and-crop, per-channel mean/std
# normalisation, all 50k training images, the 4 pixels of padding filled with reflections of
# the image.
_CIFAR_WRN = dict(
    _CIFAR, model="wrn28_10", validation_images=0, nesterov=True, weight_decay=5e-4,
    decay_epochs=(60, 120, 160), decay_rate=0.2, epochs=200, augmentation="cifar",
    crop_padding="reflect", normalization="per_channel",
    model_overrides={"block_dropout_rate": 0.3},
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
    "imagenet_resnet50_bag_of_tricks": dict(_BAG_OF_TRICKS, model="resnet50d"),
    "imagenet_resnet50_rsb_a3": dict(_RSB_A3, model="resnet50"),
    "cifar10_wrn28_10": _CIFAR_WRN,
}

_HE_2015 = "He et al. 2015, Deep Residual Learning for Image Recognition"
_HE_2016 = "He et al. 2016, Identity Mappings in Deep Residual Networks, section 4"
_XIE_2016 = "Xie et al. 2016, Aggregated Residual Transformations for Deep Neural Networks"
# The source of each recipe, and where it departs from it (the comments above give the details).
SOURCES: Dict[str, str] = {
    **{name: _HE_2015 + ", section 4.2" for name in RECIPES if name.startswith("cifar10_resnet")},
    **{name: _HE_2016 for name in RECIPES if "_preact_" in name},
    **{name: _XIE_2016 + ", section 6" for name in RECIPES if "_resnext29_" in name},
    **{f"imagenet_resnet{d}": _HE_2015 + ", section 3.4" for d in (18, 34, 50, 101, 152)},
    **{name: _XIE_2016 + ", section 5.1" for name in RECIPES
       if name.startswith("imagenet_resnext")},
    "imagenet_resnet50_large_batch": "Goyal et al. 2017, Accurate, Large Minibatch SGD; "
                                     "TF Model Garden's ResNet-50",
    "finetune": "Kolesnikov et al. 2020 (BiT-HyperRule) and Kornblith et al. 2019, "
                "torchvision's ResNet-50 weights",
    "imagenet_resnet50_bag_of_tricks": "He et al. 2019, Bag of Tricks for Image Classification "
                                       "with CNNs, sections 3-5 (ResNet-50-D; no colour jitter "
                                       "or PCA lighting)",
    "imagenet_resnet50_rsb_a3": "Wightman et al. 2021, ResNet strikes back, Table 1 A3 "
                                "(evaluated at 160 px, not 224)",
    "cifar10_wrn28_10": "Zagoruyko & Komodakis 2016, Wide Residual Networks, section 3",
}


def help_lines() -> List[str]:
    """One `"name: source"` line per recipe, sorted by name (`--recipe`'s help)."""
    return [f"{name}: {SOURCES[name]}" for name in sorted(RECIPES)]
