"""Model throughput and peak memory: keras_resnets against keras.applications and PyTorch.

    python -m bench.models                          # every group, CPU settings, ~40 minutes
    python -m bench.models --groups=cifar_resnet20 --windows=3
    python -m bench.models --groups=smoke --no-memory   # seconds: the whole pipeline, tiny model
    python -m bench.models --list

Each group is a set of equivalent networks timed in one process, in interleaved windows (see
bench/harness.py), in training (one optimizer step: forward, loss, backward, SGD with momentum)
and inference. Keras contenders train through the compiled `model.train_on_batch` (the train
function `model.fit` runs) and infer through `model.predict_on_batch`; PyTorch contenders (the
torchvision-layout networks of bench/torch_resnets.py) run in channels_last with
`torch.set_num_threads(<usable cores>)`, training as forward + cross-entropy + backward +
`SGD.step()` and inferring under `eval()` and `no_grad()`. Peak memory is measured per contender
and mode in a fresh process. Results go to bench/results/models-<UTC time>.json and .md.
"""

import argparse
import dataclasses
import gc
import json
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from bench import harness

# bench.variants.VARIANTS (not imported here: it imports keras, and PyTorch's memory probes
# import this module).
VARIANT_NAMES = ("stock_bn", "stock_gconv", "stock_shortcut")

# ----------------------------------------------------------------------------------- contenders


@dataclasses.dataclass(frozen=True)
class Contender:
    """A network to time: `build()` returns a Keras model or a torch module (NHWC or NCHW input)."""

    framework: str  # "keras" or "torch"
    build: Callable[[], object]
    image_size: int
    classes: int
    jit_compile: Optional[bool] = None  # Keras: overrides the run's XLA setting


def _keras_applications(name):
    def build():
        import keras

        return getattr(keras.applications, name)(weights=None)

    return build


def _keras_resnets(name, variants=(), **options):
    def build():
        import keras_resnets
        from bench import variants as variants_lib

        stock = {"layer_classes": variants_lib.layer_classes(*variants)} if variants else {}
        return getattr(keras_resnets, name)(**options, **stock)

    return build


def _torch(function, *args, **kwargs):
    def build():
        from bench import torch_resnets

        return getattr(torch_resnets, function)(*args, **kwargs)

    return build


KA = "keras_applications"  # keras_resnets' layer_config preset that equals keras.applications
CONTENDERS: Dict[str, Contender] = {
    "keras.applications.ResNet50": Contender("keras", _keras_applications("ResNet50"), 224, 1000),
    "keras_resnets.ResNet50(keras_applications)": Contender(
        "keras", _keras_resnets("ResNet50", layer_config=KA), 224, 1000),
    "keras_resnets.ResNet50": Contender("keras", _keras_resnets("ResNet50"), 224, 1000),
    "keras.applications.ResNet50V2": Contender(
        "keras", _keras_applications("ResNet50V2"), 224, 1000),
    "keras_resnets.ResNet50V2(keras_applications)": Contender(
        "keras", _keras_resnets("ResNet50V2", layer_config=KA), 224, 1000),
    "keras_resnets.ResNet50V2": Contender("keras", _keras_resnets("ResNet50V2"), 224, 1000),
    "keras_resnets.ResNeXt50": Contender("keras", _keras_resnets("ResNeXt50"), 224, 1000),
    "torch.resnet50": Contender("torch", _torch("resnet", 50), 224, 1000),
    "torch.resnext50_32x4d": Contender(
        "torch", _torch("resnet", 50, groups=32, width_per_group=4), 224, 1000),
    **{f"keras_resnets.ResNet{d}": Contender("keras", _keras_resnets(f"ResNet{d}"), 32, 10)
       for d in (20, 56, 110)},
    **{f"torch.cifar_resnet{d}": Contender("torch", _torch("cifar_resnet", d), 32, 10)
       for d in (20, 56, 110)},
    # The smallest CIFAR ResNet (6n+2 with n=1) at 16x16, for smoke runs and the tests.
    "keras_resnets.ResNet(8)": Contender(
        "keras", _keras_resnets("ResNet", depth=8, stem="cifar", shortcut="A",
                                input_shape=(16, 16, 3)), 16, 10),
    "torch.cifar_resnet8": Contender("torch", _torch("cifar_resnet", 8), 16, 10),
}

# Our models rebuilt with Keras' stock layers in place of the package's own (bench/variants.py),
# "<our contender>+<variant>"; "+stock" is every variant together.
STOCK = "stock"
_STOCK_BASES = {f"keras_resnets.{name}": name
                for name in ("ResNet20", "ResNet50", "ResNet50V2", "ResNeXt50")}
for _base, _builder in _STOCK_BASES.items():
    for _variants in [(v,) for v in VARIANT_NAMES] + [VARIANT_NAMES]:
        _suffix = STOCK if len(_variants) > 1 else _variants[0]
        CONTENDERS[f"{_base}+{_suffix}"] = dataclasses.replace(
            CONTENDERS[_base], build=_keras_resnets(_builder, variants=_variants))
# "+xla": the same model compiled with jit_compile=True (XLA) whatever the device.
for _name in [n for n in CONTENDERS if n.startswith("keras_resnets.") and "(8)" not in n]:
    CONTENDERS[_name + "+xla"] = dataclasses.replace(CONTENDERS[_name], jit_compile=True)


@dataclasses.dataclass(frozen=True)
class Group:
    """Networks timed together; `comparisons` are (candidate, baseline) pairs of members."""

    name: str
    description: str
    members: Tuple[str, ...]
    comparisons: Tuple[Tuple[str, str], ...]
    batch_cpu: int
    batch_gpu: int


def _against_first(members):
    return tuple((member, members[0]) for member in members[1:])


def _twin_group(name, description, members):
    return Group(name, description, members, _against_first(members), 16, 256)


def _cifar_group(depth):
    members = (f"torch.cifar_resnet{depth}", f"keras_resnets.ResNet{depth}")
    return Group(f"cifar_resnet{depth}",
                 f"CIFAR ResNet-{depth} (option A), 32x32, against PyTorch",
                 members, _against_first(members), 128, 128)


_R50 = ("torch.resnet50", "torch.resnext50_32x4d", "keras_resnets.ResNet50",
        "keras_resnets.ResNeXt50")
GROUPS: Dict[str, Group] = {
    group.name: group for group in (
        _twin_group("resnet50_twins", "ResNet-50 against keras.applications, 224x224",
                    ("keras.applications.ResNet50", "keras_resnets.ResNet50(keras_applications)",
                     "keras_resnets.ResNet50")),
        _twin_group("resnet50v2_twins", "ResNet-50 v2 against keras.applications, 224x224",
                    ("keras.applications.ResNet50V2",
                     "keras_resnets.ResNet50V2(keras_applications)", "keras_resnets.ResNet50V2")),
        _cifar_group(20),
        _cifar_group(56),
        _cifar_group(110),
        Group("resnet50_resnext50", "ResNet-50 and ResNeXt-50 32x4d, Keras and PyTorch, 224x224",
              _R50,
              (("keras_resnets.ResNet50", "torch.resnet50"),
               ("keras_resnets.ResNeXt50", "torch.resnext50_32x4d"),
               ("keras_resnets.ResNeXt50", "keras_resnets.ResNet50"),
               ("torch.resnext50_32x4d", "torch.resnet50")),
              16, 256),
        Group("smoke", "ResNet-8 at 16x16 in Keras and PyTorch (a seconds-long pipeline check)",
              ("torch.cifar_resnet8", "keras_resnets.ResNet(8)"),
              (("keras_resnets.ResNet(8)", "torch.cifar_resnet8"),), 8, 8),
    )
}
CURRENT_GROUPS = tuple(name for name in GROUPS if name != "smoke")


def _ablation_group(model, variants):
    """Our `model` as the package builds it against the same model with Keras' stock layers:
    each applicable variant alone and (with more than one) all together. Ratios are package /
    stock, so above 1 the package's choice is the faster one."""
    base = f"keras_resnets.{model}"
    suffixes = list(variants) + ([STOCK] if len(variants) > 1 else [])
    members = (base,) + tuple(f"{base}+{s}" for s in suffixes)
    size = CONTENDERS[base].image_size
    return Group(f"ablation_{model.lower()}",
                 f"{model}: the package's layers against stock Keras ({', '.join(suffixes)})",
                 members, tuple((base, m) for m in members[1:]),
                 128 if size == 32 else 16, 128 if size == 32 else 256)


# Which stock variants change which model: ResNet-50 has projection shortcuts only (no
# zero-padding shortcut) and no grouped convolutions; ResNet-20 and ResNet50V2 have no grouped
# convolutions. Stock grouped convolutions (XLA) are so slow on CPU that one ResNeXt-50 step
# takes minutes there: run ablation_resnext50 on a GPU or with patience.
for _group in (_ablation_group("ResNet20", ("stock_bn", "stock_shortcut")),
               _ablation_group("ResNet50", ("stock_bn",)),
               _ablation_group("ResNet50V2", ("stock_bn", "stock_shortcut")),
               _ablation_group("ResNeXt50", ("stock_gconv",))):
    GROUPS[_group.name] = _group
ABLATION_GROUPS = tuple(name for name in GROUPS if name.startswith("ablation_"))
GROUP_SETS = {"current": CURRENT_GROUPS, "ablations": ABLATION_GROUPS,
              "all": CURRENT_GROUPS + ABLATION_GROUPS}


@dataclasses.dataclass(frozen=True)
class Target:
    """A goal of issue 5: the ratio of `comparison` (candidate, baseline) in `mode` against
    `threshold`, a number or the ratio of another comparison."""

    label: str
    mode: str
    metric: str  # "throughput" (higher is better) or "memory" (lower is better)
    comparison: Tuple[str, str]
    threshold: object


def _twin_targets(ours, theirs, title):
    return [
        Target(f"{title} training throughput >= 1.0x keras.applications", "train", "throughput",
               (ours, theirs), 1.0),
        Target(f"{title} inference throughput >= 1.0x keras.applications", "infer", "throughput",
               (ours, theirs), 1.0),
        Target(f"{title} training peak memory <= 1.0x keras.applications", "train", "memory",
               (ours, theirs), 1.0),
        Target(f"{title} inference peak memory <= 1.0x keras.applications", "infer", "memory",
               (ours, theirs), 1.0),
    ]


CURRENT_TARGETS: List[Target] = [
    *_twin_targets("keras_resnets.ResNet50(keras_applications)", "keras.applications.ResNet50",
                   "ResNet50"),
    *_twin_targets("keras_resnets.ResNet50V2(keras_applications)",
                   "keras.applications.ResNet50V2", "ResNet50V2"),
    *[Target(f"ResNet{d} training throughput >= 1.2x PyTorch", "train", "throughput",
             (f"keras_resnets.ResNet{d}", f"torch.cifar_resnet{d}"), 1.2) for d in (20, 56, 110)],
    Target("ResNet50 training throughput >= 1.2x PyTorch", "train", "throughput",
           ("keras_resnets.ResNet50", "torch.resnet50"), 1.2),
    Target("ResNeXt50/ResNet50 training ratio >= PyTorch's", "train", "throughput",
           ("keras_resnets.ResNeXt50", "keras_resnets.ResNet50"),
           ("torch.resnext50_32x4d", "torch.resnet50")),
]
TARGETS = CURRENT_TARGETS

# ------------------------------------------------------------------------------------ workloads

OPTIMIZER = "SGD(learning_rate=0.01, momentum=0.9)"
MODES = ("train", "infer")


def detect_device() -> str:
    import tensorflow as tf

    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def torch_available(device: str) -> bool:
    """PyTorch contenders run where torch imports (and, for device "gpu", sees CUDA)."""
    try:
        import torch
    except ImportError:
        return False
    return device == "cpu" or torch.cuda.is_available()


def configure_threads(threads: int) -> int:
    """Threads per framework: 0 leaves TensorFlow's defaults (one per core) and gives PyTorch
    one per usable core; N > 0 sets TensorFlow's intra- and inter-op pools and PyTorch to N.
    Call before TensorFlow runs its first op. Returns PyTorch's thread count."""
    count = threads or harness.usable_cores()
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    return count


def _keras_workload(name, contender, mode, batch, jit_compile):
    import keras
    import tensorflow as tf

    model = contender.build()
    size = contender.image_size
    x = tf.random.uniform((batch, size, size, 3))
    y = tf.random.uniform((batch,), maxval=contender.classes, dtype=tf.int32)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(), jit_compile=jit_compile)
    if mode == "train":
        step = lambda: model.train_on_batch(x, y)  # noqa: E731
    else:
        step = lambda: model.predict_on_batch(x)  # noqa: E731
    return harness.Workload(name, step, batch)


def _torch_workload(name, contender, mode, batch, device, threads):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    target = "cuda" if device == "gpu" else "cpu"
    sync = torch.cuda.synchronize if target == "cuda" else (lambda: None)
    layout = torch.channels_last
    model = contender.build().to(target, memory_format=layout)
    size = contender.image_size
    x = torch.randn(batch, 3, size, size, device=target).contiguous(memory_format=layout)
    y = torch.randint(0, contender.classes, (batch,), device=target)
    if mode == "train":
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            sync()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                model(x)
            sync()
    return harness.Workload(name, step, batch)


def make_workload(name: str, mode: str, batch: int, device: str, jit_compile: bool,
                  threads: int = 0):
    contender = CONTENDERS[name]
    if contender.framework == "keras":
        if contender.jit_compile is not None:
            jit_compile = contender.jit_compile
        return _keras_workload(name, contender, mode, batch, jit_compile)
    return _torch_workload(name, contender, mode, batch, device,
                           threads or harness.usable_cores())


def _release(framework_names):
    if "keras" in framework_names:
        import keras

        keras.backend.clear_session()
    gc.collect()


def memory_probe(name: str, mode: str, batch: int, device: str, jit_compile: bool,
                 threads: int = 0, steps: int = 3) -> dict:
    """Run in a fresh process by `harness.run_isolated`: import the framework, note the peak
    RSS, build the contender and run `steps` steps (the child adds the final peak)."""
    if CONTENDERS[name].framework == "keras":
        import keras  # noqa: F401
        import tensorflow  # noqa: F401

        import keras_resnets  # noqa: F401

        configure_threads(threads)
    else:
        import torch  # noqa: F401
    after_import = harness.peak_rss_mib()
    workload = make_workload(name, mode, batch, device, jit_compile, threads)
    for _ in range(steps):
        workload.step()
    return {"rss_after_import_mib": after_import}


# ---------------------------------------------------------------------------------------- a run


@dataclasses.dataclass
class Settings:
    device: str = "cpu"
    modes: Tuple[str, ...] = MODES
    windows: int = 5
    warmup_steps: int = 2
    min_window_s: float = 5.0
    batch: Optional[int] = None  # overrides every group's batch
    memory: bool = True
    memory_steps: int = 3
    jit_compile: Optional[bool] = None  # None: XLA on GPU, off on CPU
    threads: int = 0  # 0: the frameworks' defaults (all usable cores); see configure_threads
    max_other_cores: float = 0.25  # a window is clean while other processes use at most this
    quiet_timeout_s: float = 0.0  # wait up to this long for a quiet machine before each window
    retries: int = 0  # re-time a contended window up to this many times

    def resolved_jit(self) -> bool:
        return self.device == "gpu" if self.jit_compile is None else self.jit_compile

    def quiet(self) -> harness.Quiet:
        return harness.Quiet(self.max_other_cores, self.quiet_timeout_s, retries=self.retries)


def _threads():
    threads = {"torch": None, "tf_intra_op": None, "tf_inter_op": None}
    try:
        import tensorflow as tf

        threads["tf_intra_op"] = tf.config.threading.get_intra_op_parallelism_threads() or "auto"
        threads["tf_inter_op"] = tf.config.threading.get_inter_op_parallelism_threads() or "auto"
    except ImportError:
        pass
    if "torch" in sys.modules:
        threads["torch"] = sys.modules["torch"].get_num_threads()
    return threads


def run_group(group: Group, settings: Settings, log=harness.log) -> dict:
    """Time (and measure the memory of) every member of `group` in every mode."""
    batch = settings.batch or (group.batch_gpu if settings.device == "gpu" else group.batch_cpu)
    has_torch = torch_available(settings.device)
    members = [m for m in group.members if CONTENDERS[m].framework == "keras" or has_torch]
    skipped = [m for m in group.members if m not in members]
    quiet = settings.quiet()
    rows, comparisons = [], []
    for mode in settings.modes:
        log(f"{group.name} / {mode}: batch {batch}, {len(members)} contenders")
        workloads = [make_workload(m, mode, batch, settings.device, settings.resolved_jit(),
                                   settings.threads) for m in members]
        series = harness.time_interleaved(workloads, warmup_steps=settings.warmup_steps,
                                          windows=settings.windows,
                                          min_window_s=settings.min_window_s, quiet=quiet,
                                          log=log)
        del workloads
        _release({CONTENDERS[m].framework for m in members})
        memory = {}
        for member in members if settings.memory else ():
            memory[member] = harness.run_isolated(
                "bench.models:memory_probe",
                dict(name=member, mode=mode, batch=batch, device=settings.device,
                     jit_compile=settings.resolved_jit(), threads=settings.threads,
                     steps=settings.memory_steps))
            log(f"  peak memory {member}: {memory[member]['peak_rss_mib']:.0f} MiB")
        for member in members:
            probe, entry = memory.get(member), series[member]
            rows.append({
                "group": group.name, "mode": mode, "name": member,
                "framework": CONTENDERS[member].framework, "batch": batch,
                "image_size": CONTENDERS[member].image_size,
                **harness.summarize(entry["rates"], entry["cores_busy"],
                                    [c for c in entry["other_cores"] if c is not None],
                                    harness.clean_rounds(series, [member], quiet)),
                "waited_s": sum(entry["waited_s"]),
                "peak_rss_mib": probe["peak_rss_mib"] if probe else None,
                "model_peak_mib": _model_peak(probe) if probe else None,
            })
        for candidate, baseline in group.comparisons:
            if candidate not in series or baseline not in series:
                continue
            memory_ratio = None
            if candidate in memory and baseline in memory:
                memory_ratio = _model_peak(memory[candidate]) / _model_peak(memory[baseline])
            comparisons.append({
                "group": group.name, "mode": mode, "candidate": candidate, "baseline": baseline,
                **harness.ratio_summary(
                    series[candidate]["rates"], series[baseline]["rates"],
                    harness.clean_rounds(series, [candidate, baseline], quiet)),
                "memory_ratio": memory_ratio,
            })
    return {"group": {**dataclasses.asdict(group), "batch": batch, "skipped": skipped},
            "throughput": rows, "comparisons": comparisons}


def _model_peak(probe):
    return max(probe["peak_rss_mib"] - probe["rss_after_import_mib"], 1e-6)


def evaluate_targets(comparisons: Sequence[dict], targets: Sequence[Target] = TARGETS):
    """Each target with its measured value, its threshold and whether it is met."""

    def find(mode, pair):
        for row in comparisons:
            if row["mode"] == mode and (row["candidate"], row["baseline"]) == tuple(pair):
                return row
        return None

    def ratio(row, metric):
        if row is None:
            return None
        return row["ratio"] if metric == "throughput" else row.get("memory_ratio")

    results = []
    for target in targets:
        rows = [find(target.mode, target.comparison)]
        threshold = target.threshold
        if isinstance(threshold, tuple):
            rows.append(find(target.mode, threshold))
            threshold = ratio(rows[-1], target.metric)
        value = ratio(rows[0], target.metric)
        met = None
        if value is not None and threshold is not None:
            met = value >= threshold if target.metric == "throughput" else value <= threshold
        clean = rounds = None
        if target.metric == "throughput" and all(rows):
            clean = all(row.get("clean", True) for row in rows)
            rounds = min(row.get("rounds", 0) for row in rows)
        results.append({"target": target.label, "value": value, "threshold": threshold,
                        "met": met, "clean": clean, "rounds": rounds})
    return results


def run(group_names: Sequence[str], settings: Settings, log=harness.log,
        on_group: Optional[Callable[[dict], None]] = None) -> dict:
    """Run the groups; returns the result dict that `write` saves. `on_group` receives the
    result so far after each group (to save partial results of a long run)."""
    result = {
        "benchmark": "models",
        "created": harness.timestamp(),
        "machine": harness.machine_info(),
        "settings": {
            **dataclasses.asdict(settings),
            "jit_compile": settings.resolved_jit(),
            "keras_train_step": f"compiled model.train_on_batch, {OPTIMIZER}, "
                                "SparseCategoricalCrossentropy",
            "keras_inference": "model.predict_on_batch",
            "torch_train_step": f"channels_last; zero_grad, forward, cross_entropy, backward, "
                                f"torch.optim.{OPTIMIZER.replace('learning_rate', 'lr')}.step()",
            "torch_inference": "channels_last; eval() and no_grad()",
            "memory": "peak RSS of a fresh process per contender and mode after "
                      f"{settings.memory_steps} steps; memory_ratio compares model_peak_mib "
                      "(peak minus the RSS after importing the framework)",
            "ratio": "median over rounds of candidate/baseline images/s of the same round; only "
                     "clean rounds (other processes used <= max_other_cores during both windows) "
                     "count when there are any",
        },
        "groups": [], "throughput": [], "comparisons": [], "targets": [],
    }
    torch_threads = configure_threads(settings.threads)
    result["settings"]["torch_threads"] = torch_threads
    for name in group_names:
        measured = run_group(GROUPS[name], settings, log)
        result["groups"].append(measured["group"])
        result["throughput"] += measured["throughput"]
        result["comparisons"] += measured["comparisons"]
        result["settings"]["threads"] = _threads()
        result["targets"] = evaluate_targets(result["comparisons"])
        if on_group:
            on_group(result)
    return result


def to_markdown(result: dict) -> str:
    machine, settings = result["machine"], result["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    lines = [
        f"## Model benchmarks: {', '.join(g['name'] for g in result['groups'])} "
        f"({result['created']} UTC)",
        "",
        f"Machine: {machine['cpu']}, {machine['usable_cores']} usable cores, "
        f"{machine['memory_gib']} GiB; device {settings['device']}; {versions}.",
        f"Settings: {settings['windows']} timed windows of >= {settings['min_window_s']} s after "
        f"{settings['warmup_steps']} warm-up steps, interleaved; XLA "
        f"{'on' if settings['jit_compile'] else 'off'}. A window is clean when other processes "
        f"kept at most {settings['max_other_cores']} cores busy meanwhile; medians and ratios "
        "use the clean windows and rounds where there are any (the clean column says whether "
        "there were). "
        f"Keras: {settings['keras_train_step']}; "
        f"{settings['keras_inference']}. PyTorch: {settings['torch_train_step']}; "
        f"{settings['torch_inference']}. Threads: {settings.get('threads')}.",
        "",
        "### Throughput and peak memory",
        "",
        harness.markdown_table(
            [("group", "group", "{}"), ("mode", "mode", "{}"), ("model", "name", "{}"),
             ("batch", "batch", "{}"), ("images/s", "images_per_s", "{:.1f}"),
             *harness.WINDOW_COLUMNS, ("peak RSS MiB", "peak_rss_mib", "{:.0f}"),
             ("model MiB", "model_peak_mib", "{:.0f}")],
            result["throughput"]),
        "",
        "### Ratios (candidate / baseline, same process, interleaved)",
        "",
        harness.markdown_table(
            [("mode", "mode", "{}"), ("candidate", "candidate", "{}"),
             ("baseline", "baseline", "{}"), ("throughput ratio", "ratio", "{:.3f}"),
             ("low", "ratio_low", "{:.3f}"), ("high", "ratio_high", "{:.3f}"),
             ("rounds", "rounds", "{}"), ("clean", "clean", "{}"),
             ("memory ratio", "memory_ratio", "{:.3f}")],
            result["comparisons"]),
        "",
        "### Targets (issue 5)",
        "",
        harness.targets_table(result["targets"], "{:.3f}", threshold_format="{:.3f}"),
    ]
    return "\n".join(lines)


def write(result: dict, results_dir: str = harness.RESULTS_DIR, update_readme=False,
          readme_section: str = "models") -> dict:
    return harness.write_results(result, to_markdown(result), "models", results_dir,
                                 readme_section=readme_section if update_readme else None)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", default="current",
                        help="comma-separated group names (see --list) or a set: current (the "
                             "package against keras.applications and PyTorch), ablations (the "
                             "package's layers against stock Keras layers), all")
    parser.add_argument("--modes", default=",".join(MODES), help="train, infer or both")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument("--windows", type=int, default=5, help="timed windows per contender")
    parser.add_argument("--warmup_steps", type=int, default=2)
    parser.add_argument("--min_window_s", type=float, default=5.0,
                        help="each window runs at least this long")
    parser.add_argument("--batch", type=int, default=None,
                        help="override every group's batch (default: per group and device)")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                        help="measure peak memory in fresh processes")
    parser.add_argument("--memory_steps", type=int, default=3)
    parser.add_argument("--jit_compile", choices=("auto", "on", "off"), default="auto",
                        help="XLA for the Keras contenders; auto: on for GPU, off for CPU")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads per framework; 0: TensorFlow's defaults and one PyTorch "
                             "thread per usable core")
    parser.add_argument("--max_other_cores", type=float, default=0.25,
                        help="a window is clean while other processes keep at most this many "
                             "cores busy")
    parser.add_argument("--quiet_timeout_s", type=float, default=30.0,
                        help="wait up to this long for a quiet machine before each window")
    parser.add_argument("--retries", type=int, default=2,
                        help="re-time a contended window up to this many times")
    parser.add_argument("--results_dir", default=harness.RESULTS_DIR)
    parser.add_argument("--update_readme", action="store_true",
                        help="quote the table in bench/README.md")
    parser.add_argument("--readme_section", default="models",
                        help="the README's <!-- SECTION:begin/end --> markers to replace")
    parser.add_argument("--list", action="store_true", help="list the groups and exit")
    parser.add_argument("--render", metavar="RESULT_JSON",
                        help="re-evaluate the targets of a saved result and rewrite its Markdown "
                             "(and, with --update_readme, the README) without measuring")
    return parser.parse_args(argv)


def main(argv=None) -> Optional[dict]:
    args = _parse(argv)
    if args.list:
        for group in GROUPS.values():
            print(f"{group.name}: {group.description}\n    " + ", ".join(group.members))
        for name, names in GROUP_SETS.items():
            print(f"set {name}: {', '.join(names)}")
        return None
    if args.render:
        with open(args.render, encoding="utf-8") as handle:
            result = json.load(handle)
        result["targets"] = evaluate_targets(result["comparisons"])
        paths = write(result, os.path.dirname(os.path.abspath(args.render)), args.update_readme,
                      args.readme_section)
        print(to_markdown(result))
        harness.log(f"rewrote {paths['json']} and {paths['markdown']}")
        return result
    names = []
    for item in (n for n in args.groups.split(",") if n):
        names += list(GROUP_SETS.get(item, (item,)))
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise SystemExit(f"unknown group(s) {unknown}; valid: {', '.join(GROUPS)}")
    modes = tuple(m for m in args.modes.split(",") if m)
    if set(modes) - set(MODES):
        raise SystemExit(f"--modes must be a subset of {MODES}; got {modes}")
    settings = Settings(
        device=detect_device() if args.device == "auto" else args.device,
        modes=modes, windows=args.windows, warmup_steps=args.warmup_steps,
        min_window_s=args.min_window_s, batch=args.batch, memory=args.memory,
        memory_steps=args.memory_steps,
        jit_compile={"auto": None, "on": True, "off": False}[args.jit_compile],
        threads=args.threads, max_other_cores=args.max_other_cores,
        quiet_timeout_s=args.quiet_timeout_s, retries=args.retries,
    )
    result = run(names, settings, on_group=lambda partial: write(partial, args.results_dir))
    paths = write(result, args.results_dir, args.update_readme, args.readme_section)
    print(to_markdown(result))
    harness.log(f"wrote {paths['json']} and {paths['markdown']}")
    return result


if __name__ == "__main__":
    main()
