"""`python -m training.fit`: flags, the config they make, and one-line errors with exit code 2."""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from tests.training.conftest import REPO_ROOT, run_cli, subprocess_env
from training import config, fit, setting_flags
from training.data_config import NORMALIZATIONS


def parse(*args):
    flag_values = flags.FlagValues()
    fit.define_flags(flag_values)
    flag_values(["training.fit", *args])
    return flag_values


def test_every_setting_has_a_flag():
    flag_values = parse()
    names = set(flag_values) - {"recipe", "config"}
    expected = (set(config.override_keys()) - {"global_batch_size"}) | {"batch_size"}
    assert expected <= names


def test_data_flags_are_made_from_the_data_config_fields():
    flag_values = parse()
    kinds = {name: type(flag_values[name]).__name__ + "/" + type(
        flag_values[name].parser).__name__ for name in ("dataset", "image_size", "cache",
                                                         "augmentation", "eval_crops")}
    assert kinds == {"dataset": "Flag/ArgumentParser", "image_size": "Flag/IntegerParser",
                     "cache": "BooleanFlag/BooleanParser", "augmentation": "EnumFlag/EnumParser",
                     "eval_crops": "Flag/IntegerParser"}
    assert flag_values["normalization"].parser.enum_values == list(NORMALIZATIONS)
    assert flag_values["tfrecord_label_key"].default == "image/class/label"
    assert flag_values["num_classes"].help.startswith("Classes of --dataset=synthetic")


def test_flags_override_the_recipe_and_only_when_given():
    experiment = fit.config_from_flags(parse(
        "--recipe=cifar10_resnet110", "--batch_size=64", "--decay_steps=100,200",
        "--total_steps=300", "--model_overrides={\"stage_widths\": [4, 8, 16]}",
        "--nodecay_bn_and_bias", "--mixed_precision=bfloat16", "--seed=5", "--deterministic",
        "--dataset=synthetic", "--model_dir=/tmp/run"))
    optimization = experiment.optimization
    assert experiment.name == "cifar10_resnet110"
    assert (optimization.global_batch_size, optimization.decay_steps,
            optimization.total_steps, optimization.decay_bn_and_bias) == (
        64, (100, 200), 300, False)
    assert optimization.warm_start_steps == 400  # the recipe's, not the flag's default 0
    assert optimization.learning_rate == 0.1
    assert experiment.model.overrides == {"stage_widths": (4, 8, 16)}
    assert experiment.runtime.mixed_precision == "bfloat16"
    assert (experiment.runtime.seed, experiment.data.seed) == (5, 5)
    assert experiment.runtime.deterministic and experiment.data.deterministic
    assert experiment.data.validation_images == 5000
    assert experiment.runtime.model_dir == "/tmp/run"


def test_the_recipe_alone_is_the_recipe():
    assert fit.config_from_flags(parse("--recipe=imagenet_resnet50_large_batch")) == (
        config.recipe("imagenet_resnet50_large_batch"))


def test_without_a_recipe_the_flag_defaults_apply():
    experiment = fit.config_from_flags(parse("--epochs=2", "--decay_epochs=1.5"))
    assert experiment.name == "custom"
    assert experiment.model.name == "resnet20"
    assert experiment.optimization.epochs == 2
    assert experiment.optimization.decay_epochs == (1.5,)
    assert experiment.optimization.global_batch_size == 128


def test_a_config_file_is_the_base_and_flags_override_it(tmp_path):
    base = config.recipe("cifar10_resnet56", model="custom",
                         model_overrides={"depth": 8, "stem": "cifar", "stage_widths": (4, 8, 16)})
    path = tmp_path / "best_1.json"
    path.write_text(json.dumps(base.to_dict()))
    assert fit.config_from_flags(parse(f"--config={path}")) == base
    changed = fit.config_from_flags(parse(f"--config={path}", "--epochs=3", "--seed=2"))
    assert changed == base.replace(epochs=3, seed=2)
    with pytest.raises(ValueError, match=r"Give --recipe or --config, not both"):
        fit.config_from_flags(parse(f"--config={path}", "--recipe=cifar10_resnet20"))
    with pytest.raises(ValueError, match=r"--config='/no/file.json' is not a readable"):
        fit.config_from_flags(parse("--config=/no/file.json"))


def test_export_format_flag():
    assert fit.config_from_flags(parse("--epochs=1")).runtime.export_format == (
        "keras", "saved_model")
    experiment = fit.config_from_flags(parse("--epochs=1", "--export_format=onnx,keras"))
    assert experiment.runtime.export_format == ("onnx", "keras")


def test_a_bad_list_is_a_value_error():
    with pytest.raises(ValueError, match="--decay_steps must be a comma-separated list"):
        fit.config_from_flags(parse("--epochs=2", "--decay_steps=10,x"))


def test_help_lists_every_flag_with_its_default():
    result = run_cli("training.fit", "--help")
    assert result.returncode == 0
    for name in parse():
        if name in ("recipe", "model") or name in setting_flags.DEFAULTS:
            assert f"--{name}:" in result.stdout or f"--[no]{name}:" in result.stdout, name
    assert "(default: '128')" in result.stdout  # batch_size
    assert "(default: 'resnet20')" in result.stdout
    assert "cifar10_resnet110" in result.stdout


BAD_FLAGS = {
    "unknown model": (["--model=resnet21", "--epochs=1"], "model must be one of ["),
    "unknown recipe": (["--recipe=cifar10_resnet21"], "recipe must be one of ["),
    "negative batch": (["--recipe=cifar10_resnet20", "--batch_size=-128"],
                       "batch_size must be a positive integer; got -128."),
    "batch not divisible by the replicas": (
        ["--recipe=cifar10_resnet20", "--dataset=synthetic", "--strategy=mirrored",
         "--cpu_devices=2", "--batch_size=127"],
        "batch_size=127 (the global batch) is not divisible by the 2 replicas in sync"),
    "missing dataset path": (["--recipe=cifar10_resnet20", "--dataset=/no/such/cifar10"],
                             "/no/such/cifar10"),
    "unknown flag": (["--recipe=cifar10_resnet20", "--batchsize=64"],
                     "Unknown command line flag 'batchsize'"),
    "bad enum": (["--recipe=cifar10_resnet20", "--strategy=horovod"], "strategy"),
    "not a number": (["--recipe=cifar10_resnet20", "--learning_rate=fast"], "learning_rate"),
    "unknown export format": (["--recipe=cifar10_resnet20", "--export_format=keras,pdf"],
                              "export_format must be a comma-separated list of distinct formats "
                              "among keras, saved_model, onnx, litert; got 'keras,pdf'."),
}


def test_bad_flags_exit_2_with_one_line():
    processes = {
        name: subprocess.Popen([sys.executable, "-m", "training.fit", *args],
                               cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for name, (args, _) in BAD_FLAGS.items()}
    for name, process in processes.items():
        out, err = process.communicate(timeout=240)
        lines = err.splitlines()
        assert process.returncode == 2, (name, err)
        assert len(lines) == 1, (name, err)
        assert lines[0].startswith("training.fit: error: "), (name, err)
        assert BAD_FLAGS[name][1] in lines[0], (name, err)
        assert "Traceback" not in err and out == ""


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("cli") / "run")
    result = run_cli(
        "training.fit", "--recipe=cifar10_resnet20", "--dataset=synthetic",
        "--synthetic_examples=96", "--image_size=8", "--num_classes=4",
        "--max_test_examples=20", "--validation_images=16", "--epochs=2", "--batch_size=16",
        "--model_overrides={\"depth\": 8, \"stage_widths\": [4, 8, 16]}", "--verbose=2",
        f"--model_dir={model_dir}", "--seed=3")
    return result, model_dir


def test_fit_runs_a_recipe_end_to_end(cli_run):
    result, model_dir = cli_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Epoch 2/2: loss " in result.stdout
    assert "the step schedule's boundaries [32000, 48000] lie at or after the last step (10)" in (
        result.stdout)
    for name in ("results.json", "history.csv", "curves.png", "config.json", "model.keras",
                 "class_names.json"):
        assert os.path.isfile(os.path.join(model_dir, name)), name
    for name in ("checkpoints", "best", "logs", "saved_model"):
        assert os.path.isdir(os.path.join(model_dir, name)), name
    with open(os.path.join(model_dir, "results.json")) as file:
        results = json.load(file)
    assert (results["status"], results["recipe"], results["steps"]) == (
        "completed", "cifar10_resnet20", 10)
    # --model=resnet20 with another depth and widths is recorded as what it is.
    assert results["model"] == "resnet8_widths4-8-16"
    assert (results["architecture"]["depth"], results["architecture"]["stage_widths"]) == (
        8, [4, 8, 16])
    assert ("Training resnet8_widths4-8-16 (ResNet-8: cifar stem, basic blocks 1-1-1, widths "
            f"4-8-16, original units, shortcut A; {results['parameters'] / 1e6:.2f}M "
            "parameters) on synthetic") in result.stdout
    assert re.search(r"^Epoch 1/2: loss .*\(\d+\.\ds\); run ETA \d+s$", result.stdout, re.M)
    assert re.search(r"^Epoch 2/2: loss .*\(\d+\.\ds\)$", result.stdout, re.M)
    assert results["config"]["runtime"]["seed"] == 3
    assert results["config"]["data"]["validation_images"] == 16


def test_rerunning_the_command_resumes(cli_run):
    _, model_dir = cli_run
    again = run_cli(
        "training.fit", "--recipe=cifar10_resnet20", "--dataset=synthetic",
        "--synthetic_examples=96", "--image_size=8", "--num_classes=4",
        "--max_test_examples=20", "--validation_images=16", "--epochs=3", "--batch_size=16",
        "--model_overrides={\"depth\": 8, \"stage_widths\": [4, 8, 16]}", "--verbose=2",
        f"--model_dir={model_dir}", "--seed=3", "--save_model=false")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming from " in again.stdout and "epoch 3, batch 0, step 10" in again.stdout
    assert "Epoch 1/3" not in again.stdout and "Epoch 3/3: loss " in again.stdout


def test_evaluate_cli_ten_crops(cli_run):
    _, model_dir = cli_run
    result = run_cli("training.evaluate", f"--model_dir={model_dir}", "--eval_crops=10",
                     "--checkpoint=latest")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert (metrics["eval_crops"], metrics["examples"], metrics["split"]) == (10, 20, "test")
    assert metrics["checkpoint"].endswith("checkpoints/ckpt-" + str(metrics["step"]))
    with open(os.path.join(model_dir, "evaluation_latest_test_10crop.json")) as file:
        assert json.load(file) == metrics
    bad = run_cli("training.evaluate", "--model_dir=/no/such/run")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("training.evaluate: error: model_dir='/no/such/run' has no "
                                  "config.json; is it a training.fit model directory?")


def test_a_diverging_run_exits_1_with_the_message(tmp_path):
    result = run_cli(
        "training.fit", "--dataset=synthetic", "--synthetic_examples=64", "--image_size=8",
        "--epochs=1", "--batch_size=16", "--model_overrides={\"depth\": 8}", "--verbose=0",
        "--learning_rate=1e6", f"--model_dir={tmp_path / 'run'}", "--save_model=false")
    assert result.returncode == 1
    # TensorFlow's native start-up lines come first (they ignore TF_CPP_MIN_LOG_LEVEL).
    assert result.stderr.splitlines()[-1].startswith("training.fit: Training diverged in update ")
    assert "Traceback" not in result.stderr


TINY_RUN = ("--dataset=synthetic", "--synthetic_examples=64", "--image_size=8",
            "--num_classes=4", "--max_test_examples=16", "--batch_size=16",
            "--model_overrides={\"depth\": 8, \"stage_widths\": [4, 8, 16]}", "--verbose=2",
            "--save_model=false", "--deterministic")


def one_error_line(result, program="training.fit"):
    """The single line a failed command printed on stderr (after checking it is single)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[0].startswith(f"{program}: "), lines[0]
    return lines[0]


def test_a_second_run_on_a_model_dir_in_use_exits_2_and_touches_nothing(tmp_path):
    from training.dirlock import DirectoryLock

    model_dir = str(tmp_path / "run")
    assert run_cli("training.fit", *TINY_RUN, "--epochs=1",
                   f"--model_dir={model_dir}").returncode == 0
    before = {name: os.stat(os.path.join(model_dir, name)).st_mtime_ns
              for name in os.listdir(model_dir)}
    with DirectoryLock(model_dir, program="another run"):
        second = run_cli("training.fit", *TINY_RUN, "--epochs=3", f"--model_dir={model_dir}")
    assert second.returncode == 2
    line = one_error_line(second)
    assert line.startswith(f"training.fit: error: model_dir={model_dir} is in use by another "
                           f"run (pid {os.getpid()} on ")
    assert {name: os.stat(os.path.join(model_dir, name)).st_mtime_ns
            for name in os.listdir(model_dir)} == before


def test_resuming_another_model_or_batch_is_one_line(tmp_path):
    model_dir = str(tmp_path / "run")
    assert run_cli("training.fit", *TINY_RUN, "--epochs=1",
                   f"--model_dir={model_dir}").returncode == 0
    other_model = run_cli("training.fit", *TINY_RUN, "--epochs=2", f"--model_dir={model_dir}",
                          "--model_overrides={\"depth\": 14}")
    assert other_model.returncode == 2
    assert "holds a checkpoint (" in one_error_line(other_model)
    assert "of a different model: --model=resnet20 --model_overrides={\"depth\": 8, " \
           "\"stage_widths\": [4, 8, 16]}, not --model=resnet20 --model_overrides=" \
           "{\"depth\": 14}" in other_model.stderr
    other_batch = run_cli("training.fit", *TINY_RUN, "--epochs=2", f"--model_dir={model_dir}",
                          "--batch_size=32")
    assert other_batch.returncode == 2
    assert "holds a run with global_batch_size=16, but this run has global_batch_size=32" in (
        one_error_line(other_batch))


def test_a_model_dir_that_cannot_be_written_is_one_line(tmp_path, read_only_dir):
    (tmp_path / "file").write_text("x")
    cases = {
        str(tmp_path / "file"): "is a file, not a directory.",
        str(tmp_path / "file" / "run"): "cannot be created: Not a directory.",
        read_only_dir: "is not writable: ",
    }
    for model_dir, expected in cases.items():
        result = run_cli("training.fit", *TINY_RUN, "--epochs=1", f"--model_dir={model_dir}")
        assert result.returncode == 2, result.stderr[-2000:]
        assert one_error_line(result).startswith(
            f"training.fit: error: model_dir={model_dir} {expected}")


def test_a_zero_length_is_named():
    for flag in ("--epochs=0", "--total_steps=0"):
        result = run_cli("training.fit", "--recipe=cifar10_resnet20", flag)
        assert result.returncode == 2
        name = flag[2:].split("=")[0]
        assert one_error_line(result) == (
            f"training.fit: error: {name} must be a positive integer; got 0.")


def test_tensorflow_log_lines_are_hidden_unless_verbose_3(tmp_path):
    env = subprocess_env()
    del env["TF_CPP_MIN_LOG_LEVEL"]  # as a user runs it

    def fit_cli(*args):
        return subprocess.run([sys.executable, "-m", "training.fit", *TINY_RUN, "--epochs=1",
                               *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=240)

    quiet = fit_cli()
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stderr == ""
    loud = fit_cli("--verbose=3")
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert re.search(r"^[IWE]\d{4} .*\] ", loud.stderr, re.M), loud.stderr
    assert "Epoch 1/1: loss " in loud.stdout


_FULL_DISK = """
import resource, runpy, signal, sys
# The kernel's answer to a write past RLIMIT_FSIZE is EFBIG and SIGXFSZ; ignoring the signal
# leaves the failed write, as on a full disk.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))
sys.argv = ["training.fit"] + sys.argv[1:]
runpy.run_module("training.fit", run_name="__main__")
"""


@pytest.mark.slow  # tests/training/test_outputs.py checks the same handling in-process
def test_a_failed_checkpoint_write_stops_with_one_line_and_keeps_the_last_good_one(tmp_path):
    model_dir = str(tmp_path / "run")
    assert run_cli("training.fit", *TINY_RUN, "--epochs=1",
                   f"--model_dir={model_dir}").returncode == 0
    folder = os.path.join(model_dir, "checkpoints")
    full = subprocess.run([sys.executable, "-c", _FULL_DISK, *TINY_RUN, "--epochs=3",
                           f"--model_dir={model_dir}"], cwd=REPO_ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=240)
    assert full.returncode == 2, full.stderr[-3000:]
    assert re.fullmatch(
        rf"training.fit: error: Could not write the checkpoint of step 8 to {folder}: "
        rf"{folder}/ckpt-8_temp/part-00000-of-00001\.data-00000-of-00001\S*; File too large\. "
        rf"The last good checkpoint, {folder}/ckpt-4, is kept; rerun to resume from it\.",
        one_error_line(full))
    assert [name for name in os.listdir(folder) if name.endswith("_temp")] == []
    assert tf_latest(folder) == os.path.join(folder, "ckpt-4")
    again = run_cli("training.fit", *TINY_RUN, "--epochs=3", f"--model_dir={model_dir}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming from " + os.path.join(folder, "ckpt-4") in again.stdout


def tf_latest(folder):
    import tensorflow as tf

    return tf.train.latest_checkpoint(folder)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("uninterrupted") / "run")
    result = run_cli("training.fit", *SIGNAL_RUN, f"--model_dir={model_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir


SIGNAL_RUN = (*TINY_RUN, "--synthetic_examples=128", "--epochs=12")  # 8 steps an epoch


def model_tensors(model_dir):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(
        os.path.join(model_dir, "checkpoints")))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith("model/")}


@pytest.mark.parametrize("signum", [
    pytest.param(signal.SIGINT, marks=pytest.mark.slow),  # the same path as SIGTERM
    signal.SIGTERM])
def test_a_signal_checkpoints_the_step_and_the_rerun_ends_like_an_uninterrupted_run(
        tmp_path, uninterrupted, signum):
    model_dir = str(tmp_path / "run")
    process = subprocess.Popen([sys.executable, "-m", "training.fit", *SIGNAL_RUN,
                                f"--model_dir={model_dir}"], cwd=REPO_ROOT,
                               env=subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("Epoch 2/12: "):
            process.send_signal(signum)
            break
    out, err = process.communicate(timeout=240)
    assert process.returncode == 128 + signum, err[-3000:]
    name = signal.Signals(signum).name
    last = err.strip().splitlines()[-1]
    match = re.fullmatch(rf"training.fit: Interrupted by {name} at step (\d+) of 96: checkpoint "
                         rf"{re.escape(model_dir)}/checkpoints/ckpt-(\d+) saved; rerun the same "
                         r"command to resume\.", last)
    assert match and match.group(1) == match.group(2), last
    step = int(match.group(1))
    assert 16 <= step < 96
    with open(os.path.join(model_dir, "results.json")) as file:
        results = json.load(file)
    assert (results["status"], results["steps"]) == ("interrupted", step)
    assert results["message"] == last.split("training.fit: ")[1]
    again = run_cli("training.fit", *SIGNAL_RUN, f"--model_dir={model_dir}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"step {step}." in again.stdout.split("Resuming from ")[1].splitlines()[0]
    reference = model_tensors(uninterrupted)
    resumed = model_tensors(model_dir)
    assert sorted(resumed) == sorted(reference)
    for key, value in reference.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)
