"""bench.trainer_overhead end to end on a few synthetic images (a smoke run, not a measurement)."""

import json
import os

import pytest

from bench import trainer_overhead


def test_trainer_overhead_benchmark_writes_rates_and_overheads(tmp_path):
    result = trainer_overhead.main([
        "--dataset=synthetic", "--synthetic_examples=32", "--batch=16", "--windows=1",
        f"--results_dir={tmp_path}"])
    rows = {row["name"]: row for row in result["throughput"]}
    assert list(rows) == [trainer_overhead.BASELINE, trainer_overhead.OURS,
                          trainer_overhead.OURS_DIR]
    assert all(row["images_per_s"] > 0 and len(row["windows"]) == 1 for row in rows.values())
    assert rows["model.fit"]["images_per_epoch"] == 32
    comparisons = result["comparisons"]
    assert [(c["candidate"], c["baseline"]) for c in comparisons] == [
        ("trainer", "model.fit"), ("trainer+model_dir", "model.fit")]
    for row in comparisons:
        assert row["overhead"] == pytest.approx(1.0 / row["ratio"] - 1.0)
    assert all(t["met"] == (t["value"] <= 0.03) for t in result["targets"])
    files = sorted(os.listdir(tmp_path))
    assert files == [f"trainer_overhead-{result['created']}.json",
                     f"trainer_overhead-{result['created']}.md"]
    with open(tmp_path / files[0], encoding="utf-8") as handle:
        assert json.load(handle)["settings"]["timed"].startswith("each epoch")
    assert "| trainer+model_dir | model.fit |" in (tmp_path / files[1]).read_text()


def test_epoch_meter_times_an_epoch_and_can_stop_the_run():
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    meter = trainer_overhead.EpochMeter(stop_after_epoch=True)
    history = model.fit(np.zeros((8, 2)), np.zeros((8, 1)), epochs=5, verbose=0,
                        callbacks=[meter])
    assert len(history.epoch) == 1
    assert meter.last["seconds"] > 0 and meter.last["cores_busy"] >= 0
