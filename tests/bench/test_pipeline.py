"""bench.pipeline end to end on a tiny image folder (a smoke run, not a measurement)."""

import json
import os

import numpy as np
import pytest

from bench import harness, pipeline


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    import tensorflow as tf

    root = tmp_path_factory.mktemp("cifar_like")
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                (folder / f"{i:04d}.jpg").write_bytes(tf.io.encode_jpeg(image).numpy())
    return str(root)


def test_pipeline_benchmark_writes_rates_and_ratios(image_folder, tmp_path):
    result = pipeline.main([
        f"--data_dir={image_folder}", "--max_train_examples=0", "--batch=8", "--windows=1",
        "--warmup_steps=1", "--min_window_s=0.05", f"--results_dir={tmp_path}"])
    names = [row["name"] for row in result["throughput"]]
    assert names == ["pipeline(cached)", "pipeline(uncached)", pipeline.CONSUMER, pipeline.FED]
    assert all(row["images_per_s"] > 0 and len(row["windows"]) == 1
               for row in result["throughput"])
    assert result["data"]["train_examples"] == 24
    assert result["data"]["cached"] == {"pipeline(cached)": True, "pipeline(uncached)": False}
    pairs = [(row["candidate"], row["baseline"]) for row in result["comparisons"]]
    assert pairs == [("pipeline(cached)", pipeline.CONSUMER),
                     ("pipeline(uncached)", pipeline.CONSUMER), (pipeline.FED, pipeline.CONSUMER)]
    assert all(row["ratio"] > 0 for row in result["comparisons"])
    assert [t["threshold"] for t in result["targets"]] == [10.0, 10.0]
    assert all(t["met"] == (t["value"] >= 10.0) for t in result["targets"])
    files = sorted(os.listdir(tmp_path))
    assert files == [f"pipeline-{result['created']}.json", f"pipeline-{result['created']}.md"]
    with open(tmp_path / files[0], encoding="utf-8") as handle:
        saved = json.load(handle)
    assert saved["comparisons"][0]["ratio"] == pytest.approx(result["comparisons"][0]["ratio"])
    assert saved["machine"]["usable_cores"] == harness.usable_cores()
    markdown = (tmp_path / files[1]).read_text()
    assert "## Input pipeline" in markdown and "| pipeline(uncached) |" in markdown


def test_pipeline_benchmark_names_a_missing_data_folder(tmp_path):
    with pytest.raises(SystemExit, match="no CIFAR-10 image folder"):
        pipeline.main([f"--data_dir={tmp_path / 'missing'}"])
