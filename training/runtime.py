"""Distribution strategy, mixed-precision policy and XLA, chosen per device.

`setup(runtime_config, global_batch_size)` resolves a `RuntimeConfig` into a `Runtime`: the
`tf.distribute.Strategy`, the number of replicas and workers, this task's role, the per-replica
batch and whether the train step is XLA-compiled.

Facts behind the choices (TF 2.21, Keras 3.15; keras-team/keras#20585): `model.fit` fails under
`MultiWorkerMirroredStrategy`, so `training.trainer` runs its own loop (`strategy.run` over a
distributed dataset) under every strategy; XLA made ResNet-50 training 2.8x slower on CPU and
failed under `MirroredStrategy` on CPU, so `jit_compile="auto"` uses XLA on GPU and TPU only;
`mixed_float16` needs loss scaling, `mixed_bfloat16` does not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from typing import Optional

import keras

from keras_resnets import validate
from training.config import JIT_COMPILE, MIXED_PRECISION, STRATEGIES, RuntimeConfig
from training.optional import tensorflow as tf

POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


@dataclasses.dataclass(frozen=True)
class Runtime:
    """A resolved runtime.

    Args:
        strategy: `tf.distribute.Strategy`. The strategy every variable and step runs under.
        strategy_name: str. The resolved kind: `"one_device"`, `"mirrored"`, `"multi_worker"`
            or `"tpu"`.
        device_type: str. `"CPU"`, `"GPU"` or `"TPU"`: what the replicas run on.
        num_replicas: int. Replicas in sync over all workers.
        num_workers: int. Worker processes (1 unless multi-worker).
        task_type: str or `None`. This process's role in `TF_CONFIG` (`"chief"`, `"worker"`).
        task_id: int. This process's index within its role.
        is_chief: bool. Whether this process writes checkpoints, logs and exports.
        jit_compile: bool. Whether the train and evaluation steps are XLA-compiled.
        dtype_policy: str. `"float32"`, `"mixed_float16"` or `"mixed_bfloat16"`.
        global_batch_size: int. Images per update over all replicas.
        per_replica_batch_size: int. `global_batch_size / num_replicas`.
    """

    strategy: tf.distribute.Strategy
    strategy_name: str
    device_type: str
    num_replicas: int
    num_workers: int
    task_type: Optional[str]
    task_id: int
    is_chief: bool
    jit_compile: bool
    dtype_policy: str
    global_batch_size: int
    per_replica_batch_size: int


def split_cpu(count: int) -> None:
    """Splits the first CPU into `count` logical devices (before TensorFlow starts)."""
    if count < 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have == count:
            return
        raise ValueError(
            f"cpu_devices={count} must be set before TensorFlow starts, and this process "
            f"already runs with {have} logical CPU device(s); start a new process."
        ) from None


def _tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {raw!r}.") from None


def _cluster_tasks(tf_config):
    return sum(len(tasks) for tasks in tf_config.get("cluster", {}).values())


def resolve_strategy_name(name: str) -> str:
    """The strategy `"auto"` stands for here; other names are returned as they are."""
    validate.choice("strategy", name, STRATEGIES)
    if name != "auto":
        return name
    if os.environ.get("TPU_NAME"):
        return "tpu"
    if _cluster_tasks(_tf_config()) > 1:
        return "multi_worker"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    if (not tf.config.list_logical_devices("GPU")
            and len(tf.config.list_logical_devices("CPU")) > 1):
        return "mirrored"
    return "one_device"


def create_strategy(name: str) -> tf.distribute.Strategy:
    """Creates the strategy of a `--strategy` value.

    Args:
        name: str. `"auto"`, `"one_device"` (the first GPU, else the CPU), `"mirrored"` (every
            local GPU, else every logical CPU device), `"multi_worker"` (the cluster in
            `TF_CONFIG`) or `"tpu"` (the TPU named by `TPU_NAME`, or a local one).
    """
    name = resolve_strategy_name(name)
    # Listing devices starts the TensorFlow runtime, after which multi-worker collectives can
    # no longer be configured: only the local strategies list them.
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        tf_config = _tf_config()
        if not tf_config.get("cluster") or "task" not in tf_config:
            raise ValueError(
                "strategy=multi_worker needs the TF_CONFIG environment variable with 'cluster' "
                "and 'task', e.g. {\"cluster\": {\"worker\": [\"host1:12345\", \"host2:12345\"]}, "
                "\"task\": {\"type\": \"worker\", \"index\": 0}}."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=os.environ.get("TPU_NAME", "")
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"strategy=tpu found no TPU ({message}); set TPU_NAME or run on a "
                         "TPU VM.") from None
    return tf.distribute.TPUStrategy(resolver)


def _strategy_name(strategy):
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi_worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    if isinstance(strategy, (tf.distribute.TPUStrategy,)):
        return "tpu"
    return "one_device"


def _role(strategy):
    """(task_type, task_id, num_workers, is_chief) of this process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    task_id = getattr(resolver, "task_id", None) or 0
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or task_type is None:
        return None, 0, 1, True
    spec = resolver.cluster_spec().as_dict()
    workers = len(spec.get("chief", [])) + len(spec.get("worker", []))
    if "chief" in spec:
        is_chief = task_type == "chief"
    else:
        is_chief = task_type == "worker" and task_id == 0
    return task_type, int(task_id), workers, is_chief


def device_type(strategy) -> str:
    """`"TPU"`, `"GPU"` or `"CPU"`: what the strategy's replicas run on."""
    if _strategy_name(strategy) == "tpu":
        return "TPU"
    devices = strategy.extended.worker_devices
    return "GPU" if any("GPU" in d.upper().rsplit("/", 1)[-1] for d in devices) else "CPU"


def resolve_jit_compile(setting, device: str, num_replicas: int) -> bool:
    """Whether to XLA-compile the steps.

    Args:
        setting: str or bool. `"auto"` (XLA on GPU and TPU only), `"true"` or `"false"`.
        device: str. `"CPU"`, `"GPU"` or `"TPU"`.
        num_replicas: int. Replicas in sync.
    """
    if isinstance(setting, bool):
        setting = "true" if setting else "false"
    validate.choice("jit_compile", setting, JIT_COMPILE)
    if setting == "auto":
        return device in ("GPU", "TPU")
    if setting == "true" and device == "CPU" and num_replicas > 1:
        raise ValueError(
            f"jit_compile=true fails under a distribution strategy with {num_replicas} replicas "
            "on CPU (XLA's collectives are not implemented there); use jit_compile=auto or false."
        )
    return setting == "true"


def dtype_policy(mixed_precision: str) -> str:
    """The Keras dtype policy of a `--mixed_precision` value."""
    validate.choice("mixed_precision", mixed_precision, MIXED_PRECISION)
    return POLICIES[mixed_precision]


@contextlib.contextmanager
def policy_scope(name: str):
    """Sets the global Keras dtype policy inside the block and restores the previous one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def per_replica_batch_size(global_batch_size: int, num_replicas: int) -> int:
    """`global_batch_size / num_replicas`, or a ValueError when it does not divide."""
    if global_batch_size % num_replicas:
        raise ValueError(
            f"batch_size={global_batch_size} (the global batch) is not divisible by the "
            f"{num_replicas} replicas in sync; use a multiple of {num_replicas}."
        )
    return global_batch_size // num_replicas


def wrap_optimizer(optimizer, policy: str):
    """Adds dynamic loss scaling (`keras.optimizers.LossScaleOptimizer`) for `mixed_float16`."""
    if policy == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seeds Python, NumPy, TensorFlow and Keras; with `deterministic`, also makes every op
    deterministic (which cannot be undone in this process)."""
    keras.utils.set_random_seed(seed)
    if deterministic and "tensorflow" in sys.modules:  # TensorFlow's ops, where they can run
        tf.config.experimental.enable_op_determinism()


def setup(config: RuntimeConfig, global_batch_size: int,
          strategy: Optional[tf.distribute.Strategy] = None) -> Runtime:
    """Resolves a `RuntimeConfig` for a global batch.

    Args:
        config: `training.config.RuntimeConfig`.
        global_batch_size: int. Images per update over all replicas.
        strategy: optional `tf.distribute.Strategy` to use instead of `config.strategy`.

    Returns:
        A `Runtime`.
    """
    if strategy is None:
        split_cpu(config.cpu_devices)
        strategy = create_strategy(config.strategy)
    replicas = int(strategy.num_replicas_in_sync)
    per_replica = per_replica_batch_size(global_batch_size, replicas)
    device = device_type(strategy)
    task_type, task_id, workers, is_chief = _role(strategy)
    return Runtime(
        strategy=strategy,
        strategy_name=_strategy_name(strategy),
        device_type=device,
        num_replicas=replicas,
        num_workers=workers,
        task_type=task_type,
        task_id=task_id,
        is_chief=is_chief,
        jit_compile=resolve_jit_compile(config.jit_compile, device, replicas),
        dtype_policy=dtype_policy(config.mixed_precision),
        global_batch_size=global_batch_size,
        per_replica_batch_size=per_replica,
    )
