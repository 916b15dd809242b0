"""Data-parallel training on JAX: Keras' `DataParallel` over every device of every process.

`--strategy` maps onto JAX as follows (`setup`): `auto` is `keras.distribution.DataParallel`
over all devices when there are several (every local GPU, or the CPU devices of
`XLA_FLAGS=--xla_force_host_platform_device_count=N`), else no distribution; `one_device` is no
distribution. Several processes (one per host, or per GPU) join through
`keras.distribution.initialize` (https://keras.io/api/distribution/), configured by
`--coordinator_address`, `--num_processes` and `--process_id` of `python -m training.fit` or by
Keras' own variables `KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES` and
`KERAS_DISTRIBUTION_PROCESS_ID` (the flags set them). Every process then runs the same command.

What each process sees: Keras' own sharding (`Distribution.distribute_tf_dataset`: every
process reads the whole global batch, then keeps its slice) would make each host decode and
augment every image; instead each process reads only its share (`ProcessShare`: the package's
`tf.distribute.InputContext` sharding, as the tensorflow loop's workers read) and
`jax.make_array_from_process_local_data` joins the shares in process order. For the sources
that list their examples (synthetic data, image folders, cached TFDS and TFRecord data) the
global batches hold the examples of a one-process run's; streamed (uncached) records are dealt
out between the processes record by record instead. The step is one XLA program over the global
batch (GSPMD): batch normalization's statistics are those of the whole global batch, not of
each device's part, so a data-parallel run computes what one device computes with the same
global batch, to float rounding. Only process 0 writes the model directory; resuming needs that
directory on a file system that every process reads.

This module imports neither Keras nor JAX at the top, so `training.backends` can check settings
before Keras is loaded.
"""

import atexit
import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any, Dict, Optional

# Keras' variables for `keras.distribution.initialize` (keras/src/distribution/distribution_lib.py).
ADDRESS_ENV = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
PROCESSES_ENV = "KERAS_DISTRIBUTION_NUM_PROCESSES"
PROCESS_ID_ENV = "KERAS_DISTRIBUTION_PROCESS_ID"
_FLAG_ENV = {"coordinator_address": ADDRESS_ENV, "num_processes": PROCESSES_ENV,
             "process_id": PROCESS_ID_ENV}


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The processes of a multi-process JAX run.

    Args:
        coordinator_address: str or `None`. `host:port` of process 0, which every process
            connects to; `None` for one process.
        num_processes: int. Processes in the run.
        process_id: int. This process's index, `0` to `num_processes - 1`; process 0 writes.
    """

    coordinator_address: Optional[str] = None
    num_processes: int = 1
    process_id: int = 0


def _integer(name, raw, low):
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {raw!r}.")
    return value


def cluster(environ=None) -> Cluster:
    """The `Cluster` of `KERAS_DISTRIBUTION_*` in `environ` (default: `os.environ`).

    Args:
        environ: mapping or `None`. The environment variables to read.

    Returns:
        A `Cluster`.

    >>> cluster({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:1234,10.0.0.2:1234",
    ...          "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "1"})
    Cluster(coordinator_address='10.0.0.1:1234', num_processes=2, process_id=1)

    Raises:
        ValueError: a value that is not a number, a process id outside the processes, or
            several processes without a coordinator address.
    """
    environ = os.environ if environ is None else environ
    processes = _integer(PROCESSES_ENV, environ.get(PROCESSES_ENV, "1"), 1)
    process_id = _integer(PROCESS_ID_ENV, environ.get(PROCESS_ID_ENV, "0"), 0)
    # Keras takes a comma-separated list of every process's address; JAX uses the first.
    address = environ.get(ADDRESS_ENV) or None
    coordinator = address.split(",")[0].strip() if address else None
    if process_id >= processes:
        raise ValueError(f"{PROCESS_ID_ENV}={process_id} must be below "
                         f"{PROCESSES_ENV}={processes}.")
    if processes > 1 and not coordinator:
        raise ValueError(f"{PROCESSES_ENV}={processes} needs {ADDRESS_ENV}, the host:port of "
                         "process 0 (--coordinator_address).")
    return Cluster(coordinator, processes, process_id)


def check_settings(runtime, backend: str, environ=None) -> None:
    """Raises one `ValueError` when `runtime` (a `training.config.RuntimeConfig`) cannot run
    with the processes of `environ` on `backend`: several processes off JAX, with
    `strategy='one_device'`, or with `TF_CONFIG` naming a tf.distribute cluster too."""
    environ = os.environ if environ is None else environ
    processes = cluster(environ).num_processes
    if backend != "jax":
        if processes > 1:
            raise ValueError(f"{PROCESSES_ENV}={processes} (--num_processes) starts a "
                             f"multi-process run of Keras' distribution, which exists only on "
                             f"the jax backend; on {backend} leave it 1.")
        return
    if processes > 1 and runtime.strategy == "one_device":
        raise ValueError(f"strategy='one_device' trains on one device of one process, but "
                         f"{PROCESSES_ENV}={processes} (--num_processes) starts {processes}; "
                         "use strategy='auto'.")
    if _tf_config_tasks(environ) > 1:
        raise ValueError("TF_CONFIG describes a tf.distribute cluster, which the jax backend "
                         "does not read; unset it and give --coordinator_address, "
                         "--num_processes and --process_id instead.")


def _tf_config_tasks(environ) -> int:
    try:
        spec = json.loads(environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError:
        return 0
    tasks = spec.get("cluster", {}) if isinstance(spec, dict) else {}
    return sum(len(v) for v in tasks.values()) if isinstance(tasks, dict) else 0


def process_id() -> int:
    """This process's index: JAX's once the processes have joined, else `KERAS_DISTRIBUTION_
    PROCESS_ID` (0 when unset). Known before `setup`, so that only process 0 locks the model
    directory."""
    return _joined_process_id() if _joined() else cluster().process_id


def _joined() -> bool:
    import sys

    if "jax" not in sys.modules:  # not imported: not joined (and not worth importing)
        return False
    import jax

    return jax.distributed.is_initialized()


def _joined_process_id() -> int:
    import jax

    return jax.process_index()


def _joined_processes() -> int:
    import jax

    return jax.process_count()


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a Keras-loop run trains: the outcome of `setup`.

    Args:
        strategy: str. `"one_device"` or `"data_parallel"`.
        device_type: str. `"cpu"`, `"gpu"` or `"tpu"`.
        num_replicas: int. Devices that each train on a slice of every global batch.
        num_processes: int. Processes holding those devices.
        process_id: int. This process's index; process 0 writes the model directory.
        per_replica_batch_size: int. `global_batch_size / num_replicas`.
    """

    strategy: str
    device_type: str
    num_replicas: int
    num_processes: int
    process_id: int
    per_replica_batch_size: int

    @property
    def writes(self) -> bool:
        """Whether this process writes the model directory (process 0 only)."""
        return self.process_id == 0

    def results(self) -> Dict[str, Any]:
        """The keys of `results.json` that the tensorflow loop also writes."""
        return {"strategy": self.strategy, "num_replicas": self.num_replicas,
                "num_workers": self.num_processes}

    def agreed_signal(self, signum: Optional[int]) -> Optional[int]:
        """The signal (SIGINT / SIGTERM number) that stops the run, as every process agrees:
        with several processes, the largest any of them received (`None`: none did), found by
        a collective that every process must call at the same point; with one, `signum`.

        Saving weights is collective, so all processes stop after the same step; a signal
        delivered to some processes only, or between steps, must not let the others go on.
        """
        if self.num_processes == 1:
            return signum
        import numpy as np
        from jax.experimental import multihost_utils

        received = multihost_utils.process_allgather(np.int32(signum or 0))
        return int(np.max(received)) or None

    def line(self) -> str:
        """One log line: the strategy, devices and batch per device."""
        processes = (f" in {self.num_processes} processes (this is process "
                     f"{self.process_id})" if self.num_processes > 1 else "")
        return (f"Distribution: {self.strategy} over {self.num_replicas} "
                f"{self.device_type.upper()} device{'s' if self.num_replicas > 1 else ''}"
                f"{processes}, {self.per_replica_batch_size} images per device.")


def _divide(global_batch_size: int, replicas: int, processes: int) -> int:
    if global_batch_size % replicas:
        raise ValueError(f"global_batch_size={global_batch_size} is not divisible by the "
                         f"{replicas} devices of the data-parallel run ({processes} "
                         f"process{'es' if processes > 1 else ''}); use a multiple of "
                         f"{replicas}.")
    return global_batch_size // replicas


def setup(runtime, global_batch_size: int, backend: str) -> Placement:
    """Joins the processes of `KERAS_DISTRIBUTION_*` (once per process) and makes Keras'
    distribution of this process the one `runtime.strategy` stands for; call it before the
    model is built.

    Args:
        runtime: `training.config.RuntimeConfig`.
        global_batch_size: int. Images per update over every device of every process.
        backend: str. The Keras backend; off JAX the run stays on one device.

    Returns:
        A `Placement`.

    Raises:
        ValueError: `check_settings`'s refusals, or a `global_batch_size` that the devices do
            not divide.
    """
    check_settings(runtime, backend)
    if backend != "jax":
        return Placement("one_device", "cpu", 1, 1, 0, global_batch_size)
    import keras

    spec = cluster()
    if spec.num_processes > 1 and not _joined():
        keras.distribution.initialize(spec.coordinator_address, spec.num_processes,
                                      spec.process_id)
    devices = keras.distribution.list_devices()
    kind = devices[0].split(":")[0]
    processes, index = (_joined_processes(), _joined_process_id()) if _joined() else (1, 0)
    if runtime.strategy == "one_device" or len(devices) == 1:
        keras.distribution.set_distribution(None)
        return Placement("one_device", kind, 1, 1, 0, global_batch_size)
    per_replica = _divide(global_batch_size, len(devices), processes)
    # Each process reads its own share of the input (`ProcessShare`), not Keras' slices of a
    # global batch read by every process.
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
    return Placement("data_parallel", kind, len(devices), processes, index, per_replica)


class ProcessShare:
    """A `training.data.Pipeline` whose training batches are this process's share of each
    global batch: with `P` processes, process `i` reads the examples `i, i + P, i + 2P, ...` of
    every global batch (the pipeline's sharding of `tf.distribute.InputContext`, as the
    tensorflow loop's workers read), so each process decodes and augments `1 / P` of the input
    and, for the sources that list their examples, the processes together train on the global
    batches of a one-process run (in another order within each batch); streamed records are
    dealt out record by record. Everything else is the pipeline's.

    Args:
        pipeline: `training.data.Pipeline`.
        placement: `Placement`. Its processes.
    """

    def __init__(self, pipeline, placement: Placement):
        self._pipeline, self._placement = pipeline, placement

    def train(self, epoch: int, global_batch_size: int, input_context=None,
              skip_batches: int = 0):
        """`Pipeline.train` of this process's share (`input_context` must be `None`)."""
        import tensorflow as tf

        if input_context is not None:
            raise ValueError("input_context must be None: ProcessShare shards by process.")
        processes = self._placement.num_processes
        share = tf.distribute.InputContext(num_input_pipelines=processes,
                                           input_pipeline_id=self._placement.process_id,
                                           num_replicas_in_sync=processes)
        return self._pipeline.train(epoch, global_batch_size, share, skip_batches)

    def __getattr__(self, name):
        return getattr(self._pipeline, name)


def process_share(pipeline, placement: Placement):
    """`pipeline` for one process, else its `ProcessShare` for this process."""
    if placement.num_processes == 1:
        return pipeline
    from training.numpy_data import NumpyPipeline

    if isinstance(pipeline, NumpyPipeline):
        raise ValueError("input_pipeline='numpy' trains in one process (over all of its "
                         "devices); several processes share their input through tf.data.")
    return ProcessShare(pipeline, placement)


def output_dir(placement: Placement, model_dir: Optional[str]) -> Optional[str]:
    """Where this process writes: `model_dir` on process 0; on the others a temporary
    directory, removed when the process exits, since saving weights runs collective JAX
    operations that every process must take part in (as the tensorflow loop's workers write
    their checkpoints to temporary directories). With several processes, returns once every
    process has read `model_dir` (to resume), so that process 0 cannot write to it before
    another has looked."""
    if placement.num_processes > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("keras_resnets: model_dir read")
    if placement.writes or not model_dir:
        return model_dir
    temporary = tempfile.mkdtemp(prefix=f"keras_resnets_process{placement.process_id}_")
    atexit.register(shutil.rmtree, temporary, ignore_errors=True)
    return temporary


def define_flags(flag_values=None) -> None:
    """Defines `--coordinator_address`, `--num_processes` and `--process_id` (defaults: the
    `KERAS_DISTRIBUTION_*` variables) in `flag_values`."""
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    flags.DEFINE_string("coordinator_address", None,
                        "jax: host:port of process 0 of a multi-process run, the same for "
                        f"every process. Default: {ADDRESS_ENV}.", flag_values=flag_values)
    flags.DEFINE_integer("num_processes", None,
                         "jax: processes of a multi-process run (one per host or GPU); each "
                         f"runs the same command. Default: {PROCESSES_ENV}, else 1.",
                         flag_values=flag_values)
    flags.DEFINE_integer("process_id", None,
                         "jax: this process's index, 0 to num_processes - 1; process 0 writes "
                         f"the model directory. Default: {PROCESS_ID_ENV}, else 0.",
                         flag_values=flag_values)


def apply_flags(backend: str, flag_values=None) -> None:
    """Copies the flags of `define_flags` that were given into the `KERAS_DISTRIBUTION_*`
    variables that `setup` reads (before Keras is imported).

    Raises:
        ValueError: such a flag on another backend than jax.
    """
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    for name, variable in _FLAG_ENV.items():
        if flag_values[name].value is None:
            continue
        if backend != "jax":
            hint = ("the TF_CONFIG variable starts several workers (strategy='multi_worker')"
                    if backend == "tensorflow" else f"{backend} trains in one process")
            raise ValueError(f"--{name} joins the processes of a run on the jax backend; "
                             f"on {backend} {hint}.")
        os.environ[variable] = str(flag_values[name].value)
