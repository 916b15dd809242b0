"""GPU check: ResNet-50 training at batch 256 with mixed_float16 and XLA, and a MirroredStrategy
smoke test on the real GPU(s). Needs only TensorFlow, Keras and this repository:

    pip install -e . && python -m bench.tf_gpu_check        # about 3-5 minutes on one H100
    python -m bench.tf_gpu_check --no-no_xla --steps=30      # the XLA figure only

Prints one JSON line on stdout (the card, versions, images/s, the MirroredStrategy result) and
writes it with a Markdown summary to bench/results/tf_gpu_check-<UTC time>.json and .md. Issue 5's
reference: TensorFlow's published ResNet-50 training figure for an A100 with AMP and XLA, about
2,400 images/s. Data are synthetic tensors already on the GPU, so the figure is the model's.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench import harness  # noqa: E402

A100_AMP_XLA_REFERENCE = 2400.0  # images/s, ResNet-50 training, TensorFlow, AMP + XLA


def _gpus(tf):
    cards = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        cards.append({"name": details.get("device_name", device.name),
                      "compute_capability": details.get("compute_capability")})
    return cards


def resnet50_throughput(batch, jit_compile, warmup_steps, steps, windows, policy="mixed_float16"):
    """Training images/s of keras_resnets.ResNet50 under `policy` (median of `windows`)."""
    import keras
    import tensorflow as tf

    import keras_resnets

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = keras_resnets.ResNet50()  # the classifier computes in float32 under mixed policies
        optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(),
                      jit_compile=jit_compile)
        with tf.device("/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"):
            x = tf.random.uniform((batch, 224, 224, 3))
            y = tf.random.uniform((batch,), maxval=1000, dtype=tf.int32)
        start = time.perf_counter()
        for _ in range(warmup_steps):
            model.train_on_batch(x, y)  # returns Python floats: every step is synchronous
        warmup_s = time.perf_counter() - start
        rates = []
        for _ in range(windows):
            start = time.perf_counter()
            for _ in range(steps):
                loss = model.train_on_batch(x, y)
            rates.append(batch * steps / (time.perf_counter() - start))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return {"batch": batch, "policy": policy, "jit_compile": jit_compile,
            "images_per_s": harness.median(rates), "spread": harness.relative_spread(rates),
            "windows": rates, "warmup_s": warmup_s, "last_loss": float(loss)}


def mirrored_smoke(steps=4, global_batch=128):
    """model.fit of ResNet-20 under MirroredStrategy over every visible GPU; checks the loss is
    finite and the replicas hold identical weights afterwards."""
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_resnets

    keras.backend.clear_session()
    strategy = tf.distribute.MirroredStrategy()
    with strategy.scope():
        model = keras_resnets.ResNet20()
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy())
    rng = np.random.default_rng(0)
    images = rng.random((global_batch * steps, 32, 32, 3), dtype=np.float32)
    labels = rng.integers(0, 10, global_batch * steps).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(global_batch)
    history = model.fit(data, epochs=2, verbose=0)
    losses = [float(v) for v in history.history["loss"]]
    kernel = model.get_layer("conv1_conv").kernel.value  # the tf.Variable (MirroredVariable)
    replica_values = [v.numpy() for v in getattr(kernel, "values", (kernel,))]
    identical = all(np.array_equal(replica_values[0], v) for v in replica_values[1:])
    return {"replicas": strategy.num_replicas_in_sync,
            "devices": list(strategy.extended.worker_devices), "losses": losses,
            "replica_weights_identical": identical,
            "ok": bool(np.all(np.isfinite(losses)) and identical)}


def run(batch, warmup_steps, steps, windows, no_xla, allow_cpu=False):
    import tensorflow as tf

    cards = _gpus(tf)
    result = {"benchmark": "tf_gpu_check", "created": harness.timestamp(),
              "machine": harness.machine_info(), "gpus": cards,
              "reference_a100_amp_xla_images_per_s": A100_AMP_XLA_REFERENCE}
    if not cards and not allow_cpu:
        result["error"] = "no GPU visible to TensorFlow"
        return result
    result["resnet50_mixed_float16_xla"] = resnet50_throughput(
        batch, True, warmup_steps, steps, windows)
    result["above_reference"] = (
        result["resnet50_mixed_float16_xla"]["images_per_s"] > A100_AMP_XLA_REFERENCE)
    if no_xla:
        result["resnet50_mixed_float16"] = resnet50_throughput(
            batch, False, warmup_steps, steps, windows)
    result["mirrored_strategy"] = mirrored_smoke()
    return result


def to_markdown(result):
    lines = [f"## GPU check ({result['created']} UTC)", "",
             f"GPU: {result['gpus']}; versions: {result['machine']['versions']}.", ""]
    rows = [result[key] for key in ("resnet50_mixed_float16_xla", "resnet50_mixed_float16")
            if key in result]
    for row in rows:
        row["vs_reference"] = row["images_per_s"] / A100_AMP_XLA_REFERENCE
    lines.append(harness.markdown_table(
        [("policy", "policy", "{}"), ("XLA", "jit_compile", "{}"), ("batch", "batch", "{}"),
         ("train images/s", "images_per_s", "{:.0f}"), ("spread", "spread", "{:.0%}"),
         ("vs A100 AMP+XLA 2400/s", "vs_reference", "{:.2f}")], rows))
    if "mirrored_strategy" in result:
        lines += ["", f"MirroredStrategy smoke test: {result['mirrored_strategy']}"]
    if "error" in result:
        lines += ["", f"Error: {result['error']}"]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.tf_gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--warmup_steps", type=int, default=10,
                        help="the first includes XLA compilation")
    parser.add_argument("--steps", type=int, default=50, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--no_xla", action=argparse.BooleanOptionalAction, default=True,
                        help="also time mixed_float16 without XLA, for comparison")
    parser.add_argument("--allow_cpu", action="store_true",
                        help="run without a GPU (to check the script itself, with a small batch)")
    parser.add_argument("--results_dir", default=harness.RESULTS_DIR)
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    result = run(args.batch, args.warmup_steps, args.steps, args.windows, args.no_xla,
                 args.allow_cpu)
    if args.write:
        harness.write_results(result, to_markdown(result), "tf_gpu_check", args.results_dir)
    print(json.dumps(result), flush=True)
    return 0 if "error" not in result and result["mirrored_strategy"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
