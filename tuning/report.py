"""Search results: the trials table (CSV and Markdown), the Pareto front, error-vs-FLOPs plots."""

import csv
import dataclasses
import os
from typing import Dict, List, Optional

from tuning.hypermodel import named_model

METRICS = ("val_error", "params", "macs", "wall_time")


@dataclasses.dataclass
class TrialRecord:
    """One finished trial, as the report shows it."""

    trial_id: str
    values: Dict[str, object]
    arguments: Dict[str, object]  # keras_resnets.ResNet(...) arguments
    val_error: float
    params: int
    macs: int
    wall_time: float
    name: Optional[str] = None  # the registry name when the point is a named model
    pareto: bool = False


def collect(oracle, hypermodel) -> List[TrialRecord]:
    """Completed trials of a search, sorted by validation error (best first)."""
    records = []
    for trial in oracle.trials.values():
        if trial.status != "COMPLETED":
            continue
        metrics = {name: trial.metrics.get_last_value(name) for name in METRICS}
        if any(value is None for value in metrics.values()):
            continue
        hp = hypermodel.values_to_hp(trial.hyperparameters.values)
        arguments = hypermodel.architecture(hp)
        records.append(TrialRecord(
            trial_id=trial.trial_id,
            values={k: v for k, v in trial.hyperparameters.values.items()
                    if not k.startswith("tuner/")},
            arguments=arguments,
            val_error=float(metrics["val_error"]),
            params=int(metrics["params"]),
            macs=int(metrics["macs"]),
            wall_time=float(metrics["wall_time"]),
            name=named_model(arguments),
        ))
    records.sort(key=lambda r: (r.val_error, r.macs))
    mark_pareto_front(records)
    return records


def mark_pareto_front(records: List[TrialRecord]) -> List[TrialRecord]:
    """Mark the trials no other trial beats on both validation error and multiply-adds."""
    best_error = float("inf")
    for record in sorted(records, key=lambda r: (r.macs, r.val_error)):
        record.pareto = record.val_error < best_error
        best_error = min(best_error, record.val_error)
    return [r for r in records if r.pareto]


def _columns(records):
    names = []
    for record in records:
        names += [k for k in record.values if k not in names]
    return names


def write_tables(records: List[TrialRecord], directory: str, rejected: int = 0) -> Dict[str, str]:
    """Write `results.csv` and `results.md`; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    hp_names = _columns(records)
    header = ["rank", "trial", "model"] + hp_names + [
        "params", "macs", "val_error", "wall_time_s", "pareto"]
    rows = [[rank, r.trial_id, r.name or ""] + [r.values.get(k, "") for k in hp_names]
            + [r.params, r.macs, f"{r.val_error:.4f}", f"{r.wall_time:.1f}",
               "yes" if r.pareto else ""] for rank, r in enumerate(records, start=1)]
    paths = {"csv": os.path.join(directory, "results.csv"),
             "markdown": os.path.join(directory, "results.md")}
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    lines.append("")
    lines.append(f"{len(records)} completed trials; {rejected} candidates rejected over budget "
                 "before training. Pareto front: lowest validation error for its multiply-adds.")
    with open(paths["markdown"], "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return paths


def plot(records: List[TrialRecord], path: str, title: str = "Search results") -> str:
    """Validation error against multiply-adds and parameters, the Pareto front drawn and the
    papers' named models labelled (in the spirit of Xie et al. 2016, Figure 7)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, 2, figsize=(12, 4.5))
    for axis, attribute, label in ((axes[0], "macs", "multiply-adds (G)"),
                                   (axes[1], "params", "parameters (M)")):
        scale = 1e9 if attribute == "macs" else 1e6
        xs = [getattr(r, attribute) / scale for r in records]
        ys = [100 * r.val_error for r in records]
        axis.scatter(xs, ys, color="tab:blue", alpha=0.7, label="trial")
        front = sorted((r for r in records if r.pareto), key=lambda r: getattr(r, attribute))
        if attribute == "macs" and front:
            axis.plot([r.macs / scale for r in front], [100 * r.val_error for r in front],
                      color="tab:red", marker="o", label="Pareto front")
        for record in records:
            if record.name:
                axis.annotate(record.name, (getattr(record, attribute) / scale,
                                            100 * record.val_error),
                              textcoords="offset points", xytext=(4, 4), fontsize=8)
        axis.set_xlabel(label)
        axis.set_ylabel("validation error (%)")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return path
