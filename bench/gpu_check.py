"""`python -m bench.gpu_check`: on a GPU, training images/s of ResNet-50 and ResNeXt-50 through
`training`'s own loop against a bare `model.fit` and against PyTorch (issue 15).

    python -m bench.gpu_check                                  # JAX, batch 256, bfloat16, 224 px
    python -m bench.gpu_check --models=resnet50 --output=/tmp/gpu.json
    python -m bench.gpu_check --allow_cpu --models=resnet20 --batch_size=4 --image_size=16 \\
        --steps=3 --epochs=2 --compile_backend=eager        # a smoke run of the check on a CPU

For each model, each contender runs in a fresh process with a share of `--time_budget_s`:
`training` (`training.keras_loop.KerasTrainer`, the loop `python -m training.fit` runs on JAX
and PyTorch, on its synthetic data set) and `bare_fit` (`model.fit` of the same builder on a
batch made on the device), both on the Keras backend `--backend` (bench/keras_speed.py); and,
where PyTorch is installed, `torch_eager` and `torch_compile`, torchvision's model in
channels_last with bfloat16 autocast (bench/torch_speed.py). It prints one table of images/s
and the ratios training / bare_fit and training / torch_compile, and writes every figure as
JSON (`--output`, else bench/results/gpu_check-<UTC time>.json with a Markdown twin). Issue 15's
targets: training within 3% of bare_fit, and ResNet-50 and ResNeXt-50 at >= 1.0x torch_compile.
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from bench import harness

# The contenders' names as bench/keras_speed.py and bench/torch_speed.py return them, not
# imported from there: this process never imports Keras, JAX or PyTorch (JAX would take the GPU).
TRAINING, BARE_FIT, TORCH_EAGER, TORCH_COMPILE = (
    "training", "bare_fit", "torch_eager", "torch_compile")
KERAS_CONTENDERS = (TRAINING, BARE_FIT)
TORCH_CONTENDERS = (TORCH_COMPILE, TORCH_EAGER)
BACKENDS = ("jax", "torch")
POLICIES = ("mixed_bfloat16", "float32")
GPU_PACKAGES = ("jax", "jaxlib", "jax-cuda12-plugin", "torchvision")  # beside harness.PACKAGES
DEFAULT_MODELS = ("resnet50", "resnext50_32x4d")
# (candidate, baseline, threshold or None): ratio = candidate images/s / baseline images/s.
RATIOS = ((TRAINING, BARE_FIT, 0.97), (TRAINING, TORCH_COMPILE, 1.0),
          (BARE_FIT, TORCH_COMPILE, None), (TORCH_COMPILE, TORCH_EAGER, None))
_TARGETS = {"keras": ("bench.keras_speed:training_loop", "bench.keras_speed:bare_fit"),
            "torch": "bench.torch_speed:train_speed"}


def ratio_name(candidate: str, baseline: str) -> str:
    return f"{candidate}/{baseline}"


def ratios(figures: Dict[str, Dict[str, Any]]) -> Dict[str, Optional[float]]:
    """Each ratio of `RATIOS` from the contenders' `images_per_s` (None when one is missing)."""
    rates = {name: figure.get("images_per_s") for name, figure in figures.items()}
    return {ratio_name(a, b): (rates[a] / rates[b] if rates.get(a) and rates.get(b) else None)
            for a, b, _ in RATIOS}


def targets(results: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Issue 15's targets per model: `target`, `value`, `threshold`, `met` (None: unmeasured)."""
    rows = []
    for model, result in results.items():
        for a, b, threshold in RATIOS:
            if threshold is not None:
                value = result["ratios"][ratio_name(a, b)]
                rows.append({"target": f"{model}: {a} / {b} >= {threshold:g}", "value": value,
                             "threshold": threshold,
                             "met": None if value is None else value >= threshold})
    return rows


def _error_line(error: BaseException) -> str:
    """The last line of a child's traceback (e.g. "ModuleNotFoundError: ..."), or a timeout."""
    if isinstance(error, subprocess.TimeoutExpired):
        return f"timed out after {error.timeout:.0f} s (its share of --time_budget_s)"
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def plan(models: Sequence[str], backend: str, torch: bool) -> List[tuple]:
    """The jobs: `(model, contender, "module:function", extra kwargs, extra environment)`."""
    jobs = []
    for model in models:
        for contender, target in zip(KERAS_CONTENDERS, _TARGETS["keras"]):
            jobs.append((model, contender, target, {}, {"KERAS_BACKEND": backend}))
        if torch:
            for contender in TORCH_CONTENDERS:
                jobs.append((model, contender, _TARGETS["torch"],
                             {"compiled": contender == TORCH_COMPILE}, {}))
    return jobs


def run(models: Sequence[str] = DEFAULT_MODELS, backend: str = "jax", batch_size: int = 256,
        steps: int = 50, epochs: int = 3, image_size: int = 224, classes: int = 1000,
        policy: str = "mixed_bfloat16", torch: Optional[bool] = None,
        compile_backend: str = "inductor", time_budget_s: float = 330.0,
        allow_cpu: bool = False, runner: Callable = harness.run_isolated,
        clock: Callable[[], float] = time.monotonic) -> Dict[str, Any]:
    """Runs the check and returns its result dict (see the module docstring).

    Args:
        torch: bool or `None`. Time the PyTorch baselines; `None`: when torch is installed.
        time_budget_s: float. The whole check's limit; every job gets what is left less a
            reserve of `time_budget_s / (2 * jobs)` for each job after it, and is skipped when
            that is less than one reserve.
        allow_cpu: bool. Run without a GPU (a smoke run); otherwise a CPU-only backend stops
            the check with an `error`.
        runner, clock: `harness.run_isolated` and `time.monotonic`, replaceable in tests.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}.")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}.")
    if torch is None:
        torch = importlib.util.find_spec("torch") is not None
    deadline = clock() + time_budget_s
    settings = {"models": list(models), "backend": backend, "batch_size": batch_size,
                "steps": steps, "epochs": epochs, "image_size": image_size, "classes": classes,
                "policy": policy, "torch": torch, "compile_backend": compile_backend,
                "time_budget_s": time_budget_s, "allow_cpu": allow_cpu}
    result = {"benchmark": "gpu_check", "created": harness.timestamp(),
              "machine": harness.machine_info(), "settings": settings}
    result["machine"]["versions"].update(harness.package_versions(GPU_PACKAGES))
    env = {"KERAS_BACKEND": backend}
    try:
        result["device"] = runner("bench.keras_speed:device_description", {}, timeout=120,
                                  env=env)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        result["device"] = {"backend": backend}
        result["error"] = f"the Keras backend {backend} did not start: {_error_line(error)}"
        return result
    result["device"].pop("peak_rss_mib", None)
    if result["device"]["platform"] == "cpu" and not allow_cpu:
        result["error"] = (f"no GPU visible to {backend}; --allow_cpu runs the check on the CPU "
                           "(a smoke run: give small --models, --image_size and --steps).")
        return result
    common = dict(batch_size=batch_size, steps=steps, epochs=epochs, image_size=image_size,
                  classes=classes, policy=policy)
    jobs = plan(models, backend, torch)
    reserve = time_budget_s / (2 * len(jobs))
    figures: Dict[str, Dict[str, Dict[str, Any]]] = {model: {} for model in models}
    for index, (model, contender, target, extra, job_env) in enumerate(jobs):
        timeout = deadline - clock() - reserve * (len(jobs) - index - 1)
        if contender == TORCH_COMPILE:
            extra = {**extra, "compile_backend": compile_backend}
        if timeout < reserve:  # less than a fair share left: it would only time out
            figures[model][contender] = {"error": "skipped: the time budget was spent"}
            continue
        harness.log(f"{model}: {contender} (at most {timeout:.0f} s)")
        try:
            figures[model][contender] = runner(target, {"model": model, **common, **extra},
                                               timeout=timeout, env=job_env)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            figures[model][contender] = {"error": _error_line(error)}
    result["results"] = {model: {"contenders": found, "ratios": ratios(found)}
                         for model, found in figures.items()}
    result["targets"] = targets(result["results"])
    result["seconds"] = time_budget_s - (deadline - clock())
    return result


_COLUMNS = (TRAINING, BARE_FIT, TORCH_EAGER, TORCH_COMPILE)


def to_markdown(result: Dict[str, Any]) -> str:
    """The check's tables: images/s and ratios per model, then the targets."""
    settings = result["settings"]
    lines = [f"## GPU check ({result['created']} UTC)", "",
             f"Device: {result['device']}; versions: {result['machine']['versions']}. "
             f"Batch {settings['batch_size']}, {settings['image_size']} px, "
             f"{settings['policy']}, Keras backend {settings['backend']}; {settings['epochs']} "
             f"epochs of {settings['steps']} steps, the first a warm-up.", ""]
    if "error" in result:
        return "\n".join(lines + [f"Error: {result['error']}"])
    rows, errors = [], []
    for model, found in result["results"].items():
        row = {"model": model, **found["ratios"]}
        for name in _COLUMNS:
            figure = found["contenders"].get(name, {})
            row[name] = figure.get("images_per_s")
            if "error" in figure:
                errors.append(f"- {model} {name}: {figure['error']}")
        rows.append(row)
    columns = [("model", "model", "{}")] + [(f"{name} images/s", name, "{:.0f}")
                                            for name in _COLUMNS]
    columns += [(f"{a} / {b}", ratio_name(a, b), "{:.3f}") for a, b, _ in RATIOS]
    lines.append(harness.markdown_table(columns, rows))
    lines += ["", harness.markdown_table(
        [("target", "target", "{}"), ("measured", "value", "{:.3f}"),
         ("met", "status", "{}")],
        [{**t, "status": {True: "yes", False: "**no**", None: "not measured"}[t["met"]]}
         for t in result["targets"]])]
    if errors:
        lines += ["", "Contenders without a figure:", *errors]
    lines += ["", f"The check took {result['seconds']:.0f} s."]
    return "\n".join(lines)


def _models(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one model name")
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=_models, default=list(DEFAULT_MODELS),
                        help="comma-separated keras_resnets registry names")
    parser.add_argument("--backend", choices=BACKENDS, default="jax",
                        help="the Keras backend of the training and bare_fit contenders")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per contender; the first is a warm-up")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--policy", choices=POLICIES, default="mixed_bfloat16",
                        help="Keras dtype policy; mixed_bfloat16 is autocast to bfloat16 in "
                             "PyTorch")
    parser.add_argument("--torch", action=argparse.BooleanOptionalAction, default=None,
                        help="time the PyTorch baselines (default: when torch is installed)")
    parser.add_argument("--compile_backend", default="inductor",
                        help="torch.compile's backend (eager: tracing only, for smoke runs)")
    parser.add_argument("--time_budget_s", type=float, default=330.0,
                        help="the whole check's time limit")
    parser.add_argument("--allow_cpu", action="store_true",
                        help="run without a GPU (a smoke run of the check itself)")
    parser.add_argument("--output", help="write the JSON here (default: bench/results/)")
    args = parser.parse_args(argv)
    for name, least in (("batch_size", 1), ("steps", 2), ("epochs", 2), ("image_size", 1),
                        ("classes", 1)):
        if getattr(args, name) < least:
            parser.error(f"--{name} must be at least {least}; got {getattr(args, name)}")
    result = run(args.models, args.backend, args.batch_size, args.steps, args.epochs,
                 args.image_size, args.classes, args.policy, args.torch, args.compile_backend,
                 args.time_budget_s, args.allow_cpu)
    markdown = to_markdown(result)
    print(markdown, flush=True)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
            handle.write("\n")
    else:
        harness.write_results(result, markdown, "gpu_check")
    failed = "error" in result or any(
        "error" in figure for found in result["results"].values()
        for figure in found["contenders"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
