"""Search results: the trials table (CSV and Markdown), the Pareto front, error-vs-FLOPs plots.

Failed trials are listed after the completed ones with their reason and no error; the Pareto
front, the plot and the exported models hold completed trials only.
"""

import csv
import dataclasses
import os
from typing import Dict, List, Optional

from tuning import failures
from tuning.hypermodel import named_model

METRICS = ("val_error", "params", "macs", "wall_time")
COMPLETED, FAILED = "completed", "failed"
_FAILED_STATUSES = ("FAILED", "INVALID")  # INVALID: ended by KerasTuner itself, not retried


@dataclasses.dataclass
class TrialRecord:
    """One finished trial, as the report shows it (a failed one has no error or wall time)."""

    trial_id: str
    values: Dict[str, object]
    arguments: Dict[str, object]  # keras_resnets.ResNet(...) arguments
    val_error: Optional[float]
    params: Optional[int]
    macs: Optional[int]
    wall_time: Optional[float]
    name: Optional[str] = None  # the registry name when the point is a named model
    pareto: bool = False
    status: str = COMPLETED
    reason: str = ""  # why a failed trial failed, in one line

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED


def collect(oracle, hypermodel, project_dir: Optional[str] = None,
            cost_model=None) -> List[TrialRecord]:
    """Finished trials of a search: the completed ones sorted by validation error (best
    first), then the failed ones by trial id. `project_dir` locates the failures' reasons;
    `cost_model` gives failed trials their parameters and multiply-adds."""
    completed, failed = [], []
    for trial in oracle.trials.values():
        values = trial.hyperparameters.values
        arguments = hypermodel.architecture(hypermodel.values_to_hp(values))
        common = dict(trial_id=trial.trial_id, arguments=arguments, name=named_model(arguments),
                      values={k: v for k, v in values.items() if not k.startswith("tuner/")})
        if trial.status == "COMPLETED":
            metrics = {name: trial.metrics.get_last_value(name) for name in METRICS}
            if any(value is None for value in metrics.values()):
                continue
            completed.append(TrialRecord(
                val_error=float(metrics["val_error"]), params=int(metrics["params"]),
                macs=int(metrics["macs"]), wall_time=float(metrics["wall_time"]), **common))
        elif trial.status in _FAILED_STATUSES:
            try:
                cost = cost_model(values) if cost_model is not None else None
            except Exception:  # the point itself may be what failed; the report goes on
                cost = None
            failed.append(TrialRecord(
                val_error=None, wall_time=None, status=FAILED,
                params=cost.trainable_params if cost else None, macs=cost.macs if cost else None,
                reason=_reason(trial, project_dir), **common))
    completed.sort(key=lambda r: (r.val_error, r.macs))
    mark_pareto_front(completed)
    failed.sort(key=lambda r: r.trial_id)
    return completed + failed


def _reason(trial, project_dir):
    # The file is written by whoever ran the trial; a worker's message does not reach the chief.
    recorded = project_dir and failures.recorded_reason(
        os.path.join(project_dir, f"trial_{trial.trial_id}"))
    if recorded:
        return recorded
    lines = [line.strip() for line in (trial.message or "").splitlines() if line.strip()]
    return lines[-1] if lines else "unknown (no reason was recorded)"


def summary(records: List[TrialRecord]) -> str:
    """`12 trials: 10 completed, 2 failed`."""
    done = sum(record.completed for record in records)
    trials = "trial" if len(records) == 1 else "trials"
    return f"{len(records)} {trials}: {done} completed, {len(records) - done} failed"


def mark_pareto_front(records: List[TrialRecord]) -> List[TrialRecord]:
    """Mark the completed trials no other one beats on both validation error and
    multiply-adds."""
    best_error = float("inf")
    for record in sorted((r for r in records if r.completed), key=lambda r: (r.macs, r.val_error)):
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
        "params", "macs", "val_error", "wall_time_s", "pareto", "status", "reason"]
    rows, rank = [], 0
    for r in records:
        rank += r.completed
        rows.append([rank if r.completed else "", r.trial_id, r.name or ""]
                    + [r.values.get(k, "") for k in hp_names]
                    + [_blank(r.params), _blank(r.macs), _blank(r.val_error, "{:.4f}"),
                       _blank(r.wall_time, "{:.1f}"), "yes" if r.pareto else "", r.status,
                       r.reason])
    paths = {"csv": os.path.join(directory, "results.csv"),
             "markdown": os.path.join(directory, "results.md")}
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |"
              for row in rows]
    lines.append("")
    lines.append(f"{summary(records)}; {rejected} candidates rejected over budget before "
                 "training. Pareto front: lowest validation error for its multiply-adds among "
                 "the completed trials; failed trials have no error and are not ranked.")
    with open(paths["markdown"], "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return paths


def _blank(value, form="{}"):
    return "" if value is None else form.format(value)


def plot(records: List[TrialRecord], path: str, title: str = "Search results") -> str:
    """Validation error against multiply-adds and parameters of the completed trials, the
    Pareto front drawn and the papers' named models labelled (in the spirit of Xie et al.
    2016, Figure 7)."""
    import matplotlib

    records = [r for r in records if r.completed]
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
