"""What the experiments share: the data, the short schedule, resumable runs, tables and curves.

Every run is a `training` run in `experiments/<name>/runs/<run>` (checkpoints, history, curves;
not committed); rerunning an experiment resumes an interrupted run and skips finished ones.
Committed results go to `experiments/<name>/results/`.
"""

import csv
import json
import os
from typing import Dict, List, Optional, Tuple

EXPERIMENTS = os.path.dirname(os.path.abspath(__file__))
CIFAR10 = os.environ.get(
    "CIFAR10", os.path.join(os.path.dirname(os.path.dirname(EXPERIMENTS)), "shared", "data",
                            "cifar10"))

# The comparison experiments (3-6) fit a 2-core CPU with a shortened version of the papers'
# schedule: 10,000 training images (the 45k/5k split's validation images stay out), 10 epochs of
# batch 128 (about 780 iterations, 1/80 of the papers' 64,000), lr 0.1 divided by 10 after epochs
# 5 and 8, weight decay 1e-4, momentum 0.9, the papers' augmentation (4-pixel pad, random crop,
# flip) and per-pixel mean subtraction.
SHORT_SCHEDULE = dict(
    dataset=CIFAR10, validation_images=5000, max_train_examples=10_000, epochs=10,
    schedule="step", decay_epochs=(5, 8), learning_rate=0.1, weight_decay=1e-4,
    global_batch_size=128, seed=0, verbose=2, save_model=False, keep_checkpoints=1)


def run_dir(experiment: str, run: str) -> str:
    return os.path.join(EXPERIMENTS, experiment, "runs", run)


def results_dir(experiment: str) -> str:
    path = os.path.join(EXPERIMENTS, experiment, "results")
    os.makedirs(path, exist_ok=True)
    return path


def train(experiment: str, run: str, model: str = "custom", **settings) -> Dict:
    """Train (or resume, or skip when finished) one run; returns its `results.json`."""
    from training import config, trainer

    model_dir = run_dir(experiment, run)
    finished = _results(model_dir)
    if finished and finished.get("status") == "completed":
        print(f"[{experiment}] {run}: finished earlier", flush=True)
        return finished
    print(f"[{experiment}] {run}: training", flush=True)
    experiment_config = config.recipe(
        "cifar10_resnet20", model=model, **{**SHORT_SCHEDULE, **settings}, model_dir=model_dir)
    return trainer.run(experiment_config).results


def _results(model_dir):
    path = os.path.join(model_dir, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as file:
        return json.load(file)


def history(experiment: str, run: str) -> List[Dict[str, float]]:
    """The per-epoch rows of a run's `history.csv`."""
    return read_history(run_dir(experiment, run))


def read_history(folder: str) -> List[Dict[str, float]]:
    """The per-epoch rows of the `history.csv` in `folder`."""
    with open(os.path.join(folder, "history.csv")) as file:
        return [{k: float(v) if v not in ("", None) else None for k, v in row.items()}
                for row in csv.DictReader(file)]


def write_table(experiment: str, name: str, rows: List[Dict]) -> str:
    """Write rows as `results/<name>.csv` and `results/<name>.json`; returns the CSV path."""
    folder = results_dir(experiment)
    with open(os.path.join(folder, f"{name}.json"), "w") as file:
        json.dump(rows, file, indent=2)
    path = os.path.join(folder, f"{name}.csv")
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def markdown(rows: List[Dict], columns: List[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(value):
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)


def summary(experiment: str, run: str, results: Dict, folder: Optional[str] = None) -> Dict:
    """The figures a table reports for a run, errors in percent; `folder` holds its
    `history.csv` when that is not the run's directory (a run's committed results)."""
    last = read_history(folder or run_dir(experiment, run))[-1]
    return {
        "run": run,
        "params": results["parameters"],
        "train_error": 100 * last["error"],
        "val_error": 100 * results["final_validation_error"],
        "test_error": 100 * results["final_test_error"],
        "epochs": results["epochs"],
        "hours": results["wall_seconds"] / 3600,
    }


def plot_curves(panels: Dict[str, Dict[Tuple[str, str], str]], path: str) -> str:
    """Training (dashed) and test (solid) error per epoch, one panel per title, each with the
    runs it maps (`(experiment, run)` to a label), in the style of He et al. 2015, Figure 6."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), sharey=True,
                                   squeeze=False)
    colors = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, (title, runs) in zip(axes[0], panels.items()):
        for ((experiment, run), label), color in zip(runs.items(), colors):
            rows = history(experiment, run)
            epochs = [row["epoch"] for row in rows]
            axis.plot(epochs, [100 * row["error"] for row in rows], "--", color=color,
                      label=f"{label} train")
            axis.plot(epochs, [100 * row["test_error"] for row in rows], "-", color=color,
                      label=f"{label} test")
        axis.set_xlabel("epoch")
        axis.set_ylim(0, None)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, ncol=2)
        axis.set_title(title)
    axes[0][0].set_ylabel("error (%)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return path
