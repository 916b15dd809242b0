"""The run's log lines: exact text of the pure formatting functions."""

import signal

from keras_resnets import registry
from training import report


def test_duration():
    assert [report.duration(s) for s in (9.4, 245, 3720)] == ["9s", "4m05s", "1h02m"]


def test_architecture_line():
    assert report.architecture_line(registry.architecture_of("resnet56")) == (
        "ResNet-56: cifar stem, basic blocks 9-9-9, widths 16-32-64, original units, shortcut A")


def test_epoch_line_with_evaluations_and_eta():
    logs = {"loss": 0.41234, "error": 0.125, "test_loss": 0.5, "test_error": 0.2,
            "learning_rate": 0.1, "images_per_second": 2048.4}
    assert report.epoch_line(3, 10, logs, 5.24, remaining_s=75) == (
        "Epoch 3/10: loss 0.4123, error 12.50%, test_loss 0.5000, test_error 20.00%, lr 0.1, "
        "2048 images/s (5.2s); run ETA 1m15s")
    assert report.epoch_line(10, 10, logs, 5.24, remaining_s=0).endswith("(5.2s)")


def test_loss_problem():
    assert report.loss_problem(2.5, 1e4) is None
    assert report.loss_problem(float("nan"), 1e4) == "the loss is nan"
    assert report.loss_problem(2e4, 1e4) == "the loss 2e+04 exceeds max_loss=10000"


def test_config_changes():
    before = {"model": {"name": "resnet20"}, "optimization": {"epochs": 3},
              "runtime": {}, "data": {}, "finetune": {}}
    now = {"model": {"name": "resnet20"}, "optimization": {"epochs": 4},
           "runtime": {}, "data": {}, "finetune": {}}
    assert report.config_changes(before, now) == ["optimization.epochs: 3 -> 4"]
    assert report.config_changes(None, now) == []


def test_interrupt_notice():
    assert report.interrupt_notice(signal.SIGTERM) == (
        "\nSIGTERM: stopping after this step and saving a checkpoint (send it again to stop "
        "at once).")


def test_interrupted_and_finished_lines():
    assert report.interrupted_message(signal.SIGTERM, 4, 16, "runs/a/checkpoints/ckpt-4") == (
        "Interrupted by SIGTERM at step 4 of 16: checkpoint runs/a/checkpoints/ckpt-4 saved; "
        "rerun the same command to resume.")
    assert report.interrupted_message(signal.SIGINT, 4, 16, None).endswith(
        "nothing saved (no model_dir).")
    results = {"steps": 16, "final_test_error": 0.075, "best_test_error": 0.05}
    assert report.finished_line("completed", results, "runs/a") == (
        "Finished (completed): 16 steps, final test error 7.50%, best 5.00%; results in runs/a.")
    assert report.finished_line("stopped", {"steps": 3}, None) == (
        "Finished (stopped): 3 steps, no test evaluation.")
