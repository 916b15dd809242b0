"""bench.gpu_check: its jobs, budget, ratios and tables with a fake runner; the step timer on a
tiny model; and (slow) the whole check as a CPU smoke run on JAX."""

import json
import os
import subprocess
import sys

import pytest

from bench import gpu_check, keras_speed, torch_speed
from tests.conftest import REPO_ROOT

RATES = {"training": 90.0, "bare_fit": 100.0, "torch_eager": 60.0, "torch_compile": 75.0}


class FakeRunner:
    """Stands in for `harness.run_isolated`: records each call, advances a fake clock."""

    def __init__(self, platform="gpu", seconds=10.0, fail=()):
        self.calls, self.now, self.platform = [], 0.0, platform
        self.seconds, self.fail = seconds, fail

    def clock(self):
        return self.now

    def __call__(self, target, kwargs, timeout, env):
        self.calls.append((target, dict(kwargs), timeout, dict(env)))
        self.now += self.seconds
        if target.endswith("device_description"):
            return {"backend": env["KERAS_BACKEND"], "platform": self.platform, "device": "X"}
        contender = {"bench.keras_speed:training_loop": "training",
                     "bench.keras_speed:bare_fit": "bare_fit"}.get(target) or (
            "torch_compile" if kwargs["compiled"] else "torch_eager")
        if contender in self.fail:
            raise RuntimeError("isolated run failed:\nTraceback...\nModuleNotFoundError: "
                               "No module named 'tensorflow'")
        return {"contender": contender, "images_per_s": RATES[contender]}


def test_run_times_each_contender_in_its_own_process_and_computes_the_ratios():
    runner = FakeRunner()
    result = gpu_check.run(["resnet50"], batch_size=8, steps=3, epochs=2, image_size=32,
                           torch=True, time_budget_s=100.0, runner=runner, clock=runner.clock)
    targets = [call[0] for call in runner.calls]
    assert targets == ["bench.keras_speed:device_description", "bench.keras_speed:training_loop",
                       "bench.keras_speed:bare_fit", "bench.torch_speed:train_speed",
                       "bench.torch_speed:train_speed"]
    common = dict(model="resnet50", batch_size=8, steps=3, epochs=2, image_size=32,
                  classes=1000, policy="mixed_bfloat16")
    assert [call[1] for call in runner.calls[1:]] == [
        common, common, dict(common, compiled=True, compile_backend="inductor"),
        dict(common, compiled=False)]
    assert [call[3] for call in runner.calls[1:]] == [{"KERAS_BACKEND": "jax"}] * 2 + [{}] * 2
    # 90 s left after the probe, 12.5 s reserved for each later job.
    assert [call[2] for call in runner.calls[1:]] == [52.5, 55.0, 57.5, 60.0]
    assert result["results"]["resnet50"]["ratios"] == {
        "training/bare_fit": 0.9, "training/torch_compile": 1.2,
        "bare_fit/torch_compile": 100.0 / 75.0, "torch_compile/torch_eager": 1.25}
    assert result["targets"] == [
        {"target": "resnet50: training / bare_fit >= 0.97", "value": 0.9, "threshold": 0.97,
         "met": False},
        {"target": "resnet50: training / torch_compile >= 1", "value": 1.2, "threshold": 1.0,
         "met": True}]
    assert result["seconds"] == 50.0 and result["device"]["platform"] == "gpu"
    assert {"keras", "jax", "jaxlib", "torch", "torchvision"} <= set(
        result["machine"]["versions"])
    markdown = gpu_check.to_markdown(result)
    assert "| resnet50 | 90 | 100 | 60 | 75 | 0.900 | 1.200 | 1.333 | 1.250 |" in markdown
    assert "| resnet50: training / bare_fit >= 0.97 | 0.900 | **no** |" in markdown


def test_failures_and_a_spent_budget_leave_the_ratios_they_need_unmeasured():
    runner = FakeRunner(seconds=30.0, fail=("training",))
    result = gpu_check.run(["resnet50", "resnext50_32x4d"], torch=False, time_budget_s=100.0,
                           runner=runner, clock=runner.clock)
    assert len(runner.calls) == 3  # the probe, then two jobs; the budget is spent after them
    found = result["results"]
    assert found["resnet50"]["contenders"]["training"] == {
        "error": "ModuleNotFoundError: No module named 'tensorflow'"}
    assert found["resnext50_32x4d"]["contenders"] == {
        "training": {"error": "skipped: the time budget was spent"},
        "bare_fit": {"error": "skipped: the time budget was spent"}}
    assert set(found["resnet50"]["ratios"].values()) == {None}
    assert [t["met"] for t in result["targets"]] == [None] * 4
    markdown = gpu_check.to_markdown(result)
    assert "| resnet50: training / bare_fit >= 0.97 |  | not measured |" in markdown
    assert "- resnet50 training: ModuleNotFoundError: No module named 'tensorflow'" in markdown


def test_a_cpu_only_backend_stops_the_check_unless_allowed():
    runner = FakeRunner(platform="cpu")
    result = gpu_check.run(runner=runner, clock=runner.clock, torch=False)
    assert len(runner.calls) == 1 and "results" not in result
    assert result["error"] == ("no GPU visible to jax; --allow_cpu runs the check on the CPU (a "
                               "smoke run: give small --models, --image_size and --steps).")
    assert gpu_check.to_markdown(result).endswith("Error: " + result["error"])
    with pytest.raises(ValueError, match=r"^backend must be one of jax, torch; got 'mxnet'\.$"):
        gpu_check.run(backend="mxnet", runner=runner)


def test_flags_are_checked_before_anything_runs(capsys):
    for argv, message in [(["--steps=1"], "--steps must be at least 2; got 1"),
                          (["--epochs=1"], "--epochs must be at least 2; got 1"),
                          (["--models=,"], "argument --models: give at least one model name")]:
        with pytest.raises(SystemExit) as exit_info:
            gpu_check.main(argv)
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.strip().endswith(message)


def test_main_passes_every_flag_to_run_and_writes_the_json(tmp_path, monkeypatch, capsys):
    runner, calls, real_run = FakeRunner(), [], gpu_check.run

    def fake_run(*args):
        calls.append(args)
        return real_run(*args, runner=runner, clock=runner.clock)

    monkeypatch.setattr(gpu_check, "run", fake_run)
    output = tmp_path / "check.json"
    code = gpu_check.main([
        "--models=resnet18, resnet34", "--backend=torch", "--batch_size=8", "--steps=4",
        "--epochs=3", "--image_size=64", "--classes=10", "--policy=float32", "--torch",
        "--compile_backend=eager", "--time_budget_s=500", "--allow_cpu", f"--output={output}"])
    assert code == 0
    assert calls == [(["resnet18", "resnet34"], "torch", 8, 4, 3, 64, 10, "float32", True,
                      "eager", 500.0, True)]
    result = json.loads(output.read_text())
    assert result["settings"]["policy"] == "float32"
    assert runner.calls[3][1] == dict(model="resnet18", batch_size=8, steps=4, epochs=3,
                                      image_size=64, classes=10, policy="float32",
                                      compiled=True, compile_backend="eager")
    assert "| resnet34 | 90 | 100 | 60 | 75 |" in capsys.readouterr().out
    assert gpu_check.main(["--no-torch", f"--output={output}"]) == 0
    assert calls[-1][8] is False and len(runner.calls) == 14  # 1 + 2 * 4, then 1 + 2 * 2
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name: None)
    assert gpu_check.main([f"--output={output}"]) == 0  # torch: when it is installed
    assert calls[-1][8] is None and json.loads(output.read_text())["settings"]["torch"] is False


def test_step_timer_times_every_epoch_after_the_first_from_its_second_step():
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    timer = keras_speed.StepTimer()
    x, y = np.ones((20, 2), "float32"), np.ones((20, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=3, callbacks=[timer], verbose=0)
    assert [w["steps"] for w in timer.windows] == [4, 4]
    summary = timer.summary(4)
    assert summary["timed_steps"] == 8
    assert summary["images_per_s"] == pytest.approx(32 / summary["timed_seconds"])
    assert keras_speed.settled_iterations(model) == 15
    with pytest.raises(ValueError, match="no step was timed"):
        keras_speed.StepTimer().summary(4)


def test_torch_counterparts_have_torchvision_parameter_counts():
    pytest.importorskip("torch")
    network, _ = torch_speed.build("resnext50_32x4d")
    assert sum(p.numel() for p in network.parameters()) == 25_028_904
    network, source = torch_speed.build("resnet20", classes=10)
    assert (sum(p.numel() for p in network.parameters()), source) == (
        269_722, "bench.torch_resnets")  # Keras' ResNet-20 adds BN's 1,376 moving statistics
    with pytest.raises(ValueError, match=r"^model 'plain20' has no PyTorch counterpart here; "):
        torch_speed.build("plain20")


@pytest.mark.slow  # 2-3 minutes on 2 busy cores: each process imports JAX or PyTorch
@pytest.mark.parametrize("backend, torch", [("jax", "--torch"), ("torch", "--no-torch")])
def test_the_check_runs_end_to_end_on_the_cpu(tmp_path, backend, torch):
    pytest.importorskip(backend)
    pytest.importorskip("torch")
    output = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--allow_cpu", "--models=resnet20",
         f"--backend={backend}", torch, "--batch_size=4", "--image_size=16", "--steps=3",
         "--epochs=2", "--compile_backend=eager", f"--output={output}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())
    assert list(result) == ["benchmark", "created", "machine", "settings", "device", "results",
                            "targets", "seconds"]
    assert result["device"] == {"backend": backend, "platform": "cpu", "device": "cpu"}
    found = result["results"]["resnet20"]
    figures = found["contenders"]
    names = ["training", "bare_fit"] + (["torch_compile", "torch_eager"] if backend == "jax"
                                        else [])
    assert list(figures) == names
    assert [figures[name]["timed_steps"] for name in names] == [2, 2, 3, 3][:len(names)]
    assert figures["training"]["parameters"] == figures["bare_fit"]["parameters"] == 335_448
    rates = {name: figure["images_per_s"] for name, figure in figures.items()}
    expected = {f"{a}/{b}": rates[a] / rates[b] if a in rates and b in rates else None
                for a, b in [("training", "bare_fit"), ("training", "torch_compile"),
                             ("bare_fit", "torch_compile"), ("torch_compile", "torch_eager")]}
    assert found["ratios"] == expected
    assert "| resnet20 | " in done.stdout
