"""Training images/s of torchvision's ResNets in PyTorch, eager or under `torch.compile`, the
baselines of `bench.gpu_check` (each run in a fresh process by `bench.harness.run_isolated`).

The model is torchvision's (`torchvision.models.<name>`) when torchvision is importable and has
it; otherwise `bench.torch_resnets`' copy of torchvision's layout (the same modules and
parameter counts; it also has the CIFAR ResNets torchvision lacks). The result names which.
Training as PyTorch's performance guide recommends for convolutional networks: channels_last
model and input, bfloat16 autocast on the forward pass and loss (the counterpart of Keras'
`mixed_bfloat16`), SGD with momentum 0.9
(https://pytorch.org/tutorials/recipes/recipes/tuning_guide.html).
"""

import time
from typing import Any, Dict

from bench import torch_resnets

EAGER = "torch_eager"
COMPILED = "torch_compile"

# keras_resnets registry names that torchvision lacks -> bench.torch_resnets builders.
_CIFAR_DEPTHS = (20, 32, 44, 56, 110)
_IMAGENET = {"resnet18": (18, {}), "resnet34": (34, {}), "resnet50": (50, {}),
             "resnet101": (101, {}), "resnet152": (152, {}),
             "resnext50_32x4d": (50, dict(groups=32, width_per_group=4)),
             "resnext101_32x8d": (101, dict(groups=32, width_per_group=8)),
             "resnext101_64x4d": (101, dict(groups=64, width_per_group=4)),
             "wide_resnet50_2": (50, dict(width_per_group=128)),
             "wide_resnet101_2": (101, dict(width_per_group=128))}
MODELS = tuple(_IMAGENET) + tuple(f"resnet{depth}" for depth in _CIFAR_DEPTHS)


def build(name: str, classes: int = 1000):
    """`(module, source)`: torchvision's `name` when it is importable and has it, else
    `bench.torch_resnets`' equivalent; `source` says which."""
    try:
        import torchvision
    except ImportError:
        torchvision = None
    if torchvision is not None and hasattr(torchvision.models, name) and name in _IMAGENET:
        return (getattr(torchvision.models, name)(weights=None, num_classes=classes),
                f"torchvision {torchvision.__version__}")
    if name in _IMAGENET:
        depth, options = _IMAGENET[name]
        return torch_resnets.resnet(depth, num_classes=classes, **options), "bench.torch_resnets"
    if name in MODELS:
        return (torch_resnets.cifar_resnet(int(name[len("resnet"):]), num_classes=classes),
                "bench.torch_resnets")
    raise ValueError(f"model {name!r} has no PyTorch counterpart here; models with one: "
                     f"{', '.join(MODELS)}.")


def train_speed(model: str, batch_size: int, steps: int, epochs: int, image_size: int,
                classes: int = 1000, policy: str = "mixed_bfloat16", compiled: bool = False,
                compile_backend: str = "inductor") -> Dict[str, Any]:
    """Images/s of `model` trained on one random batch on the GPU (the CPU without one):
    `epochs` windows of `steps` steps, the first a warm-up (compilation), each window timed
    between device synchronisations."""
    import torch
    import torch.nn.functional as F

    if steps < 1 or epochs < 2:
        raise ValueError(f"steps must be at least 1 and epochs at least 2 (one warm-up); got "
                         f"steps={steps}, epochs={epochs}.")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    network, source = build(model, classes)
    layout = torch.channels_last
    network = network.to(device, memory_format=layout).train()
    images = torch.rand(batch_size, 3, image_size, image_size, device=device).contiguous(
        memory_format=layout)
    labels = torch.randint(0, classes, (batch_size,), device=device)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    forward = torch.compile(network, backend=compile_backend) if compiled else network
    autocast = policy == "mixed_bfloat16"

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(forward(images), labels)
        loss.backward()
        optimizer.step()

    seconds = []
    for epoch in range(epochs):
        sync()
        started = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        if epoch:
            seconds.append(time.perf_counter() - started)
    return {"contender": COMPILED if compiled else EAGER, "model": model, "source": source,
            "batch_size": batch_size, "policy": policy, "torch": torch.__version__,
            "compile_backend": compile_backend if compiled else None,
            "parameters": sum(p.numel() for p in network.parameters()),
            "platform": "gpu" if device == "cuda" else "cpu",
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "images_per_s": batch_size * steps * len(seconds) / sum(seconds),
            "epoch_images_per_s": [batch_size * steps / s for s in seconds],
            "timed_steps": steps * len(seconds), "timed_seconds": sum(seconds)}
