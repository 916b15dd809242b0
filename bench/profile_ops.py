"""Where a step's time goes: time per op type for one contender of bench/models.py.

    python -m bench.profile_ops --model=keras_resnets.ResNet20 --mode=train --batch=128
    python -m bench.profile_ops --model=torch.cifar_resnet20 --mode=train --batch=128
    python -m bench.profile_ops --model=keras_resnets.ResNet50 --batch=16 --write

Keras contenders are traced with the TensorFlow profiler (`tf.profiler.experimental`; the
XSpace trace is read directly, no TensorBoard needed) and PyTorch contenders with
`torch.profiler`. Op times are summed over every thread, so with several threads their total
exceeds the wall time. `--write` saves the table to bench/results/profile-<model>-<mode>-<UTC
time>.md (and the raw trace stays in a temporary directory).
"""

import argparse
import collections
import glob
import os
import re
import tempfile
import time
from typing import Dict, Tuple

from bench import harness, models

# TensorFlow executor bookkeeping events that wrap the ops rather than being ops.
_TF_WRAPPERS = ("Process", "ThreadpoolListener", "ExecutorDoneCallback", "StartRegion", "Record")


def _tf_op_type(event_name: str) -> str:
    # Events are named "layer/…/op_name:OpType" (or just the type for bookkeeping events).
    return event_name.rsplit(":", 1)[-1] if ":" in event_name else event_name


def profile_keras(workload, steps: int) -> Tuple[Dict[str, list], float]:
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        for _ in range(steps):
            workload.step()
        wall = (time.perf_counter() - start) / steps
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        with open(path, "rb") as handle:
            space.ParseFromString(handle.read())
    totals = collections.defaultdict(lambda: [0.0, 0])
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                op = _tf_op_type(plane.event_metadata[event.metadata_id].name)
                if any(op.startswith(w) or op.endswith(w) for w in _TF_WRAPPERS):
                    continue
                totals[op][0] += event.duration_ps / 1e9 / steps  # ms per step
                totals[op][1] += 1
    return {op: [ms, count // steps] for op, (ms, count) in totals.items()}, wall * 1000


def profile_torch(workload, steps: int) -> Tuple[Dict[str, list], float]:
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            workload.step()
        wall = (time.perf_counter() - start) / steps
    totals = {}
    for event in prof.key_averages():
        # Self time, so nested aten ops are not counted twice.
        totals[event.key] = [event.self_cpu_time_total / 1000 / steps, event.count // steps]
    return totals, wall * 1000


def profile(name: str, mode: str, batch: int, steps: int, warmup_steps: int, threads: int):
    models.configure_threads(threads)
    workload = models.make_workload(name, mode, batch, "cpu", False, threads)
    for _ in range(warmup_steps):
        workload.step()
    if models.CONTENDERS[name].framework == "keras":
        return profile_keras(workload, steps)
    return profile_torch(workload, steps)


def to_markdown(name, mode, batch, totals, wall_ms, top):
    total = sum(ms for ms, _ in totals.values()) or 1.0
    rows = [{"op": op, "ms": ms, "share": ms / total, "count": count}
            for op, (ms, count) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:top]]
    return "\n".join([
        f"## Op profile: {name}, {mode}, batch {batch}",
        "",
        f"Wall time per step {wall_ms:.1f} ms (under the profiler); op time summed over "
        f"threads {total:.1f} ms per step.",
        "",
        harness.markdown_table([("op", "op", "{}"), ("ms/step", "ms", "{:.1f}"),
                                ("share", "share", "{:.1%}"), ("calls/step", "count", "{}")],
                               rows),
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.profile_ops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=sorted(models.CONTENDERS))
    parser.add_argument("--mode", choices=models.MODES, default="train")
    parser.add_argument("--batch", type=int, default=None,
                        help="default: 128 for 32x32 models, 16 for 224x224")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup_steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--results_dir", default=harness.RESULTS_DIR)
    args = parser.parse_args(argv)
    batch = args.batch or (16 if models.CONTENDERS[args.model].image_size >= 224 else 128)
    totals, wall = profile(args.model, args.mode, batch, args.steps, args.warmup_steps,
                           args.threads)
    markdown = to_markdown(args.model, args.mode, batch, totals, wall, args.top)
    print(markdown)
    if args.write:
        slug = re.sub(r"[^A-Za-z0-9]+", "_", args.model).strip("_")
        harness.write_results({"created": harness.timestamp(), "model": args.model,
                               "mode": args.mode, "batch": batch, "wall_ms": wall,
                               "ops": totals}, markdown, f"profile-{slug}-{args.mode}",
                              args.results_dir)
    return totals


if __name__ == "__main__":
    main()
