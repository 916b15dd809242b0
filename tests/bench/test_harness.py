"""The benchmark harness: statistics, timing, results files, isolated runs, and a tiny end-to-end
run of bench.models (real benchmark runs are not tests; see bench/README.md)."""

import json
import os

import pytest

from bench import harness, models


def test_median_spread_and_ratios():
    assert harness.median([3.0, 1.0, 2.0]) == 2.0
    assert harness.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert harness.relative_spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)
    assert harness.paired_ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]
    summary = harness.ratio_summary([10.0, 12.0, 9.0], [10.0, 10.0, 10.0])
    assert summary == {"ratio": pytest.approx(1.0), "ratio_low": pytest.approx(0.9),
                       "ratio_high": pytest.approx(1.2), "rounds": 3, "clean": True}
    # Only clean rounds count; with none clean, all rounds count and the figure says so.
    summary = harness.ratio_summary([10.0, 12.0, 9.0], [10.0, 10.0, 10.0], [False, True, True])
    assert summary["ratio"] == pytest.approx(1.05) and summary["rounds"] == 2
    assert summary["ratio_low"] == pytest.approx(0.9) and summary["clean"]
    summary = harness.ratio_summary([10.0, 12.0, 9.0], [10.0, 10.0, 10.0], [False] * 3)
    assert summary["ratio"] == pytest.approx(1.0) and summary["rounds"] == 3
    assert not summary["clean"]
    with pytest.raises(ValueError):
        harness.paired_ratios([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        harness.median([])


def test_summarize():
    summary = harness.summarize([100.0, 80.0, 120.0], [1.9, 2.0, 1.8], [0.0, 0.5, 0.1])
    assert summary["images_per_s"] == 100.0
    assert summary["spread"] == pytest.approx(0.4)
    assert summary["windows"] == [100.0, 80.0, 120.0]
    assert summary["cores_busy"] == 1.9 and summary["other_cores"] == 0.1
    assert summary["clean_windows"] == 3
    assert harness.summarize([5.0])["cores_busy"] is None
    clean = harness.summarize([100.0, 80.0, 120.0], clean=[True, False, True])
    assert clean["images_per_s"] == 110.0 and clean["clean_windows"] == 2


def test_quiet_and_clean_rounds():
    quiet = harness.Quiet(max_other_cores=0.5)
    assert quiet.is_clean(0.5) and quiet.is_clean(None) and not quiet.is_clean(0.6)
    waited, found = quiet.wait()  # timeout_s=0: never waits
    assert waited == pytest.approx(0.0, abs=0.05) and found
    series = {"a": {"rates": [1, 1, 1], "other_cores": [0.1, 0.9, 0.1]},
              "b": {"rates": [1, 1, 1], "other_cores": [0.1, 0.1, 0.7]}}
    assert harness.clean_rounds(series, ["a"], quiet) == [True, False, True]
    assert harness.clean_rounds(series, ["a", "b"], quiet) == [True, False, False]


def test_contended_windows_are_retimed(monkeypatch):
    others = iter([0.9, 0.5, 0.7, 0.1])
    monkeypatch.setattr(harness, "time_window", lambda workload, steps: {
        "rate": 1.0, "cores_busy": 1.0, "other_cores": next(others)})
    workload = harness.Workload("a", lambda: None, 1)
    quiet = harness.Quiet(max_other_cores=0.25, retries=2)
    series = harness.time_interleaved([workload], warmup_steps=0, windows=2, min_window_s=0.0,
                                      quiet=quiet)
    # Window 1: three contended attempts (0.9, 0.5, 0.7), the cleanest kept; window 2 is clean
    # at its first attempt.
    assert series["a"]["other_cores"] == [0.5, 0.1]


def test_cpu_meter_sees_this_process_work():
    meter = harness.CpuMeter()
    meter.start()
    deadline = harness.time.perf_counter() + 0.3
    while harness.time.perf_counter() < deadline:
        pass
    wall, own, others = meter.stop()
    assert wall >= 0.3 and 0.05 < own <= 1.2  # busy-waiting, descheduled on a loaded machine
    assert others is None or others >= 0.0


def test_time_interleaved_rotates_the_order_and_counts_images():
    calls = []

    def workload(name, items):
        return harness.Workload(name, lambda: calls.append(name), items)

    series = harness.time_interleaved(
        [workload("a", 4), workload("b", 8), workload("c", 2)],
        warmup_steps=1, windows=3, min_window_s=0.0)
    assert set(series) == {"a", "b", "c"}
    assert all(len(s[key]) == 3 for s in series.values() for key in harness.SERIES)
    assert all(rate > 0 for s in series.values() for rate in s["rates"])
    # Warm-up and calibration run a, b, c in order (2 steps each); then one step per window
    # (min_window_s=0) in rotated order.
    assert calls[6:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    with pytest.raises(ValueError, match="unique"):
        harness.time_interleaved([workload("a", 1), workload("a", 1)], windows=1)


def test_calibrate_fills_the_window():
    ticks = iter([0.0, 0.25])
    assert harness.calibrate(lambda: None, 1.0, clock=lambda: next(ticks)) == 4
    ticks = iter([0.0, 2.0])
    assert harness.calibrate(lambda: None, 1.0, clock=lambda: next(ticks)) == 1


def test_machine_info_and_memory():
    info = harness.machine_info()
    assert info["cores"] >= 1 and info["usable_cores"] >= 1
    assert set(harness.PACKAGES) <= set(info["versions"])
    assert info["versions"]["keras"]
    assert harness.peak_rss_mib() > 10


def test_markdown_table_and_results_files(tmp_path):
    table = harness.markdown_table(
        [("model", "name", "{}"), ("images/s", "rate", "{:.1f}"), ("ratio", "ratio", "{:.2f}")],
        [{"name": "a", "rate": 12.345, "ratio": 1.0}, {"name": "b", "rate": 3.0}])
    assert table.splitlines() == ["| model | images/s | ratio |", "|---|---|---|",
                                  "| a | 12.3 | 1.00 |", "| b | 3.0 |  |"]
    result = {"benchmark": "x", "created": "20250101-000000", "figures": [1.5]}
    paths = harness.write_results(result, table, "x", str(tmp_path))
    assert paths["json"] == str(tmp_path / "x-20250101-000000.json")
    assert json.loads(open(paths["json"]).read()) == result
    assert open(paths["markdown"]).read() == table + "\n"


def test_update_readme_replaces_only_the_marked_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- models:begin -->\nold\n<!-- models:end -->\ntail\n")
    assert harness.update_readme("models", "| new |", str(readme))
    assert readme.read_text() == (
        "intro\n<!-- models:begin -->\n| new |\n<!-- models:end -->\ntail\n")
    assert not harness.update_readme("build_time", "x", str(readme))
    assert not harness.update_readme("models", "x", str(tmp_path / "missing.md"))


def test_run_isolated_reports_the_childs_own_peak():
    # The parent's peak must not leak into the child's (getrusage's ru_maxrss survives exec).
    ballast = bytearray(300 * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])
    result = harness.run_isolated("bench.harness:package_versions", {"packages": ["keras"]})
    assert result["keras"]
    assert 0 < result["peak_rss_mib"] < harness.peak_rss_mib() - 200
    with pytest.raises(RuntimeError, match="failed"):
        harness.run_isolated("bench.harness:no_such_function", {})


def test_targets_compare_ratios_and_ratio_of_ratios():
    comparisons = [
        {"mode": "train", "candidate": "a", "baseline": "b", "ratio": 1.3, "memory_ratio": 0.9},
        {"mode": "train", "candidate": "c", "baseline": "d", "ratio": 1.1, "memory_ratio": 1.2},
    ]
    targets = [
        models.Target("t1", "train", "throughput", ("a", "b"), 1.2),
        models.Target("t2", "train", "memory", ("c", "d"), 1.0),
        models.Target("t3", "train", "throughput", ("c", "d"), ("a", "b")),
        models.Target("t4", "infer", "throughput", ("a", "b"), 1.0),
    ]
    evaluated = models.evaluate_targets(comparisons, targets)
    assert [t["met"] for t in evaluated] == [True, False, False, None]
    assert evaluated[2]["threshold"] == 1.3


def test_every_group_names_known_contenders_and_targets_name_comparisons():
    for group in models.GROUPS.values():
        assert set(group.members) <= set(models.CONTENDERS)
        assert all(c in group.members and b in group.members for c, b in group.comparisons)
    compared = {(c, b) for g in models.GROUPS.values() for c, b in g.comparisons}
    for target in models.TARGETS:
        assert target.comparison in compared
        assert not isinstance(target.threshold, tuple) or target.threshold in compared


def test_tiny_end_to_end_run_writes_the_result_schema(tmp_path):
    settings = models.Settings(device="cpu", windows=1, warmup_steps=1, min_window_s=0.0,
                               memory=True, memory_steps=1, max_other_cores=99.0)
    result = models.run(["smoke"], settings, log=lambda message: None)
    paths = models.write(result, str(tmp_path))
    saved = json.loads(open(paths["json"]).read())
    assert saved["benchmark"] == "models"
    assert {"machine", "settings", "groups", "throughput", "comparisons", "targets"} <= set(saved)
    assert saved["settings"]["jit_compile"] is False
    rows = saved["throughput"]
    assert {(r["mode"], r["name"]) for r in rows} == {
        (mode, name) for mode in ("train", "infer")
        for name in ("torch.cifar_resnet8", "keras_resnets.ResNet(8)")}
    for row in rows:
        assert row["images_per_s"] > 0 and len(row["windows"]) == 1
        assert row["peak_rss_mib"] > row["model_peak_mib"] > 0
    assert len(saved["comparisons"]) == 2
    for comparison in saved["comparisons"]:
        assert comparison["ratio"] > 0 and comparison["memory_ratio"] > 0
        assert comparison["rounds"] == 1 and comparison["clean"]
    assert len(saved["targets"]) == len(models.TARGETS)
    markdown = open(paths["markdown"]).read()
    assert "keras_resnets.ResNet(8)" in markdown and "### Targets" in markdown
    assert os.path.basename(paths["json"]).startswith("models-")
    # A saved result re-renders without measuring anything.
    os.remove(paths["markdown"])
    rendered = models.main(["--render", paths["json"]])
    assert rendered["comparisons"] == saved["comparisons"]
    assert "keras_resnets.ResNet(8)" in open(paths["markdown"]).read()
