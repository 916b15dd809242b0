"""Strategy, mixed precision and XLA choices."""

import json

import keras
import pytest
import tensorflow as tf

from training import config, runtime


def test_per_replica_batch_divides_or_names_the_replicas():
    assert runtime.per_replica_batch_size(128, 4) == 32
    with pytest.raises(ValueError, match=r"batch_size=130 \(the global batch\) is not divisible "
                                         r"by the 4 replicas in sync; use a multiple of 4"):
        runtime.per_replica_batch_size(130, 4)


@pytest.mark.parametrize("setting, device, replicas, expected", [
    ("auto", "CPU", 1, False), ("auto", "CPU", 2, False), ("auto", "GPU", 1, True),
    ("auto", "GPU", 8, True), ("auto", "TPU", 8, True), ("false", "GPU", 1, False),
    ("true", "CPU", 1, True), (True, "GPU", 4, True), (False, "TPU", 1, False),
])
def test_jit_compile_is_chosen_per_device(setting, device, replicas, expected):
    assert runtime.resolve_jit_compile(setting, device, replicas) is expected


def test_jit_compile_true_with_several_cpu_replicas_is_an_error():
    with pytest.raises(ValueError, match="jit_compile=true fails under a distribution strategy "
                                         "with 2 replicas on CPU"):
        runtime.resolve_jit_compile("true", "CPU", 2)


def test_mixed_precision_policies():
    assert [runtime.dtype_policy(m) for m in ("none", "float16", "bfloat16")] == [
        "float32", "mixed_float16", "mixed_bfloat16"]
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        runtime.dtype_policy("int8")


def test_float16_gets_loss_scaling_and_bfloat16_does_not():
    sgd = keras.optimizers.SGD(0.1)
    assert isinstance(runtime.wrap_optimizer(sgd, "mixed_float16"),
                      keras.optimizers.LossScaleOptimizer)
    assert runtime.wrap_optimizer(sgd, "mixed_bfloat16") is sgd
    assert runtime.wrap_optimizer(sgd, "float32") is sgd


def test_policy_scope_restores_the_previous_policy():
    with runtime.policy_scope("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"


def test_auto_strategy(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    assert runtime.resolve_strategy_name("auto") == "one_device"
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}))
    assert runtime.resolve_strategy_name("auto") == "multi_worker"
    monkeypatch.setenv("TPU_NAME", "my-tpu")
    assert runtime.resolve_strategy_name("auto") == "tpu"
    assert runtime.resolve_strategy_name("mirrored") == "mirrored"
    with pytest.raises(ValueError, match="strategy must be one of"):
        runtime.resolve_strategy_name("parameter_server")


def test_multi_worker_without_tf_config_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="strategy=multi_worker needs the TF_CONFIG"):
        runtime.create_strategy("multi_worker")


def test_bad_tf_config_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{cluster")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        runtime.resolve_strategy_name("auto")


def test_tpu_without_a_tpu_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(ValueError, match="strategy=tpu found no TPU"):
        runtime.create_strategy("tpu")


def test_setup_one_device_on_cpu():
    resolved = runtime.setup(config.RuntimeConfig(strategy="one_device",
                                                  mixed_precision="float16"), 64)
    assert isinstance(resolved.strategy, tf.distribute.OneDeviceStrategy)
    assert (resolved.strategy_name, resolved.device_type, resolved.num_replicas,
            resolved.num_workers, resolved.is_chief, resolved.jit_compile,
            resolved.dtype_policy, resolved.global_batch_size,
            resolved.per_replica_batch_size) == (
        "one_device", "CPU", 1, 1, True, False, "mixed_float16", 64, 64)


def test_setup_mirrored_on_the_one_cpu_device():
    resolved = runtime.setup(config.RuntimeConfig(strategy="mirrored"), 32)
    assert (resolved.strategy_name, resolved.num_replicas, resolved.per_replica_batch_size) == (
        "mirrored", 1, 32)


def test_cpu_devices_after_tensorflow_started_is_a_clear_error():
    tf.constant(1.0)  # TensorFlow has started in this process
    have = len(tf.config.list_logical_devices("CPU"))
    with pytest.raises(ValueError, match=f"cpu_devices={have + 2} must be set before TensorFlow "
                                         f"starts, and this process already runs with {have}"):
        runtime.split_cpu(have + 2)
    runtime.split_cpu(0)  # 0 leaves the CPU alone
