"""The run's accounting: the checkpoint's JSON, epoch sums, best epoch, resume checks."""

import json

import keras
import pytest

from training.run_state import EpochSums, RunState, check_same_run

# What a checkpoint of a new run held before the RunState class (training/trainer.py at f6adc29).
FRESH = ('{"history": [], "epoch_sums": null, "best": null, "best_epoch": null, '
         '"train_seconds": 0.0, "wall_seconds": 0.0, "images": 0, "global_batch_size": 16, '
         '"steps_per_epoch": 8}')


def test_a_new_state_writes_the_checkpoint_json_of_before():
    assert RunState(16, 8).to_json() == FRESH
    assert RunState.from_json(FRESH) == RunState(16, 8)


def test_a_halfway_state_with_initialization_round_trips():
    state = RunState(16, 8, history=[{"epoch": 1, "step": 8, "loss": 0.5}],
                     epoch_sums=EpochSums(1.5, 20.0, 32.0, 2, 0.25), best=0.75, best_epoch=1,
                     train_seconds=3.0, wall_seconds=4.0, images=160,
                     initialization={"source": "imagenet"})
    saved = json.loads(state.to_json())
    assert list(saved) == ["history", "epoch_sums", "best", "best_epoch", "train_seconds",
                           "wall_seconds", "images", "global_batch_size", "steps_per_epoch",
                           "initialization"]
    assert saved["epoch_sums"] == {"loss": 1.5, "correct": 20.0, "count": 32.0, "steps": 2,
                                   "seconds": 0.25}
    assert RunState.from_json(state.to_json()) == state


def test_the_random_states_round_trip_and_a_checkpoint_without_them_changes_nothing():
    import keras_resnets
    from training.loop_common import random_states, set_random_states

    def model():
        keras.utils.set_random_seed(0)
        return keras_resnets.ResNet(8, stem="cifar", stage_widths=(4, 8, 16), classes=4,
                                    input_shape=(8, 8, 3), drop_path_rate=0.2,
                                    dropout_rate=0.1)

    source, target = model(), model()
    source(keras.ops.ones((2, 8, 8, 3)), training=True)  # draws masks: the states advance
    states = random_states(source)
    assert len(states["seeds"]) == 3 and states != random_states(target)
    state = RunState(16, 8, random=states)
    assert RunState.from_json(state.to_json()).random == states
    assert RunState.from_json(FRESH).random is None  # a checkpoint from before
    before = random_states(target)
    set_random_states(target, None)
    assert random_states(target) == before
    set_random_states(target, states)
    assert random_states(target) == states
    with pytest.raises(ValueError,
                       match=r"holds 2 random states, and this model \(resnet\) has 3;"):
        set_random_states(target, {"seeds": states["seeds"][:2]})
    assert random_states(keras_resnets.ResNet(8, stem="cifar", stage_widths=(4, 8, 16),
                                              classes=4, input_shape=(8, 8, 3))) is None


def test_epoch_sums_give_running_and_final_logs():
    sums = EpochSums()
    assert sums.add(2.0, 3.0, 4.0) == {"loss": 2.0, "accuracy": 0.75}
    assert sums.add(1.0, 1.0, 4.0) == {"loss": 1.5, "accuracy": 0.5}
    sums.seconds = 2.0
    assert sums.logs(0.1) == {"loss": 1.5, "accuracy": 0.5, "error": 0.5, "learning_rate": 0.1,
                              "images_per_second": 4.0, "epoch_seconds": 2.0}
    assert EpochSums().logs(0.1)["images_per_second"] == 0.0


def test_a_resumed_epoch_continues_its_saved_sums():
    saved = EpochSums(1.0, 2.0, 4.0, 1, 0.5)
    state = RunState(16, 8, epoch_sums=saved)
    state.start(epoch=0, step=1, skip=1)
    assert state.begin_epoch() is saved
    state.start(epoch=1, step=8, skip=0)
    assert state.begin_epoch() == EpochSums()


def test_end_epoch_keeps_the_best_monitored_accuracy():
    state = RunState(16, 8)
    state.start(epoch=0, step=8, skip=0)
    assert state.end_epoch({"epoch": 1, "step": 8, "val_accuracy": 0.5}, "val_accuracy")
    assert not state.end_epoch({"epoch": 2, "step": 16, "val_accuracy": 0.4}, "val_accuracy")
    assert not state.end_epoch({"epoch": 3, "step": 24}, "val_accuracy")  # not evaluated
    assert (state.epoch, state.best, state.best_epoch, len(state.history)) == (3, 0.5, 1, 3)


def test_a_snapshot_saves_the_pending_time_and_images_without_changing_the_state():
    state = RunState(16, 8, train_seconds=1.0, images=32)
    sums = EpochSums(1.0, 2.0, 4.0, 1, 0.5)
    copy = state.snapshot(sums, seconds=2.0, images=16)
    assert (copy.train_seconds, copy.images, copy.epoch_sums.seconds) == (3.0, 48, 2.5)
    assert (state.train_seconds, state.images, state.epoch_sums, sums.seconds) == (
        1.0, 32, None, 0.5)


def test_replay_fills_a_keras_history():
    state = RunState(16, 8, history=[{"epoch": 1, "step": 8, "loss": 0.5},
                                     {"epoch": 2, "step": 16, "loss": 0.25}])
    history = keras.callbacks.History()
    history.on_train_begin()
    state.replay(history)
    assert history.epoch == [0, 1]
    assert history.history == {"step": [8, 16], "loss": [0.5, 0.25]}


def test_resuming_with_another_batch_or_epoch_is_refused():
    state = RunState(16, 8)
    state.check_resumable("runs/a", 16, 8)
    with pytest.raises(ValueError) as error:
        state.check_resumable("runs/a", 16, 9)
    assert str(error.value) == (
        "model_dir='runs/a' holds a run with steps_per_epoch=8, but this run has "
        "steps_per_epoch=9; resume with the same batch and data settings or use a new "
        "model_dir.")


def test_check_same_run_names_the_other_model():
    before = {"model": {"name": "resnet20", "overrides": {}},
              "optimization": {"global_batch_size": 16}}
    now = {"model": {"name": "resnet32", "overrides": {}},
           "optimization": {"global_batch_size": 16}}
    check_same_run("runs/a", before, before, ["runs/a/checkpoints/ckpt-8"])
    check_same_run("runs/a", before, now, [])  # no checkpoint yet: nothing to resume
    with pytest.raises(ValueError, match=r"of a different model: --model=resnet20 "
                                         r"--model_overrides=\{\}, not --model=resnet32"):
        check_same_run("runs/a", before, now, ["runs/a/checkpoints/ckpt-8"])
