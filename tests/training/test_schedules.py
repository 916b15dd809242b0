"""Learning-rate schedules: exact values at the boundaries, composition, serialization."""

import keras
import numpy as np
import pytest

from training import config, schedules


def values(schedule, steps):
    return [float(schedule(step)) for step in steps]


def f32(*numbers):
    return [float(np.float32(n)) for n in numbers]


def test_step_decay_switches_at_the_boundary_step():
    schedule = schedules.StepDecay(0.1, (32000, 48000))
    assert values(schedule, [0, 1, 31999, 32000, 32001, 47999, 48000, 63999, 64000]) == f32(
        0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001)


def test_step_decay_without_boundaries_is_constant():
    assert values(schedules.StepDecay(0.05), [0, 10**6]) == f32(0.05, 0.05)


def test_step_decay_rejects_unsorted_boundaries():
    with pytest.raises(ValueError, match="strictly increasing"):
        schedules.StepDecay(0.1, (48000, 32000))


def test_warm_start_is_001_for_400_iterations_then_the_schedule():
    schedule = schedules.WarmStart(schedules.StepDecay(0.1, (32000, 48000)), 400, 0.01)
    assert values(schedule, [0, 399, 400, 31999, 32000, 48000]) == f32(
        0.01, 0.01, 0.1, 0.1, 0.01, 0.001)


def test_linear_warmup_reaches_the_schedule_at_the_last_warmup_step():
    schedule = schedules.LinearWarmup(schedules.StepDecay(0.8, (150,)), steps=100)
    assert values(schedule, [0, 25, 50, 99, 100, 149, 150]) == f32(
        0.0, 0.2, 0.4, 0.792, 0.8, 0.8, 0.08)


def test_linear_warmup_from_an_initial_rate():
    schedule = schedules.LinearWarmup(schedules.StepDecay(0.8), steps=10,
                                      initial_learning_rate=0.1)
    assert values(schedule, [0, 5, 10]) == f32(0.1, 0.45, 0.8)


def test_cosine_decay_values():
    schedule = schedules.CosineDecay(1.0, total_steps=100)
    assert values(schedule, [0, 100, 150]) == f32(1.0, 0.0, 0.0)
    # float32 cosines: within one unit in the last place.
    assert values(schedule, [25, 50, 75]) == pytest.approx(
        [0.5 * (1 + np.cos(np.pi / 4)), 0.5, 0.5 * (1 - np.cos(np.pi / 4))], abs=1e-7)


def test_cosine_after_warmup_starts_at_the_peak():
    schedule = schedules.LinearWarmup(schedules.CosineDecay(0.8, 110, start_step=10), 10)
    assert values(schedule, [0, 5, 10, 110]) == f32(0.0, 0.4, 0.8, 0.0)
    assert float(schedule(60)) == pytest.approx(0.4, abs=1e-7)


def test_cosine_rejects_a_start_after_the_end():
    with pytest.raises(ValueError, match="start_step"):
        schedules.CosineDecay(0.1, total_steps=10, start_step=10)


@pytest.mark.parametrize("schedule", [
    schedules.StepDecay(0.1, (32000, 48000), 0.2),
    schedules.CosineDecay(0.8, 1000, 50, 0.001),
    schedules.WarmStart(schedules.StepDecay(0.1, (32000, 48000)), 400, 0.01),
    schedules.LinearWarmup(schedules.CosineDecay(0.8, 1000, 50), 50, 0.1),
])
def test_schedules_serialize_and_deserialize(schedule):
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule))
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    steps = [0, 49, 50, 399, 400, 999, 32000, 48000]
    assert values(restored, steps) == values(schedule, steps)


def test_an_optimizer_with_a_schedule_round_trips_through_keras_serialization():
    optimizer = keras.optimizers.SGD(schedules.WarmStart(schedules.StepDecay(0.1, (10,))))
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored._learning_rate, schedules.WarmStart)
    assert restored._learning_rate.get_config() == optimizer._learning_rate.get_config()


def test_build_cifar_resnet110_recipe():
    optimization = config.recipe("cifar10_resnet110").optimization
    schedule = schedules.build(optimization, steps_per_epoch=351)
    assert isinstance(schedule, schedules.WarmStart)
    assert values(schedule, [0, 399, 400, 31999, 32000, 48000]) == f32(
        0.01, 0.01, 0.1, 0.1, 0.01, 0.001)


def test_build_converts_epoch_boundaries_with_steps_per_epoch():
    optimization = config.recipe("imagenet_resnet50").optimization
    schedule = schedules.build(optimization, steps_per_epoch=5004)
    assert schedule.boundaries == [30 * 5004, 60 * 5004]
    assert values(schedule, [30 * 5004 - 1, 30 * 5004, 60 * 5004]) == f32(0.1, 0.01, 0.001)


def test_build_large_batch_recipe_warms_up_then_cosine():
    optimization = config.recipe("imagenet_resnet50_large_batch").optimization
    schedule = schedules.build(optimization, steps_per_epoch=625)
    assert isinstance(schedule, schedules.LinearWarmup)
    assert schedule.steps == 5 * 625
    assert isinstance(schedule.schedule, schedules.CosineDecay)
    assert values(schedule, [0, 5 * 625, 90 * 625]) == f32(0.0, 0.8, 0.0)
    assert float(schedule(5 * 625 // 2)) == pytest.approx(0.8 * 1562 / 3125, abs=1e-7)
    assert float(schedule(5 * 625 + 85 * 625 // 2)) == pytest.approx(
        0.4 * (1 + np.cos(np.pi * (85 * 625 // 2) / (85 * 625))), abs=1e-7)


def test_build_constant_and_step_override():
    constant = config.recipe("cifar10_resnet20", schedule="constant").optimization
    assert values(schedules.build(constant, 351), [0, 40000]) == f32(0.1, 0.1)
    step = config.recipe("imagenet_resnet50_large_batch", schedule="step").optimization
    built = schedules.build(step, 625)
    assert built.schedule.boundaries == [30 * 625, 60 * 625, 80 * 625]


def test_build_rejects_a_warmup_longer_than_training():
    optimization = config.OptimizationConfig(warmup_epochs=3.0, epochs=2)
    with pytest.raises(ValueError, match="warmup_epochs=3.0"):
        schedules.build(optimization, 10)
