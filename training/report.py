"""What a training run tells: its log lines and the contents of its `results.json`.

Everything here reads a `training.trainer.Trainer` and its `training.run_state.RunState` and
returns text or a dict; nothing trains and nothing is written (`training.outputs` writes).
"""

import dataclasses
import math
import signal
from typing import Any, Dict, List, Optional

import keras

from training import initial_weights


def percent(value: float) -> str:
    """`0.0643` -> `6.43%`."""
    return f"{100 * value:.2f}%"


def duration(seconds: float) -> str:
    """`1h02m`, `4m05s` or `9s`."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def architecture_line(arch) -> str:
    """`ResNet-56: cifar stem, basic blocks 9-9-9, widths 16-32-64, original units, shortcut A`
    for a `keras_resnets.builder.Architecture`."""
    def dashed(values):
        return "-".join(map(str, values))

    parts = [f"{arch.stem} stem", f"{arch.block} blocks {dashed(arch.stage_blocks)}",
             f"widths {dashed(arch.stage_widths)}"]
    if arch.cardinality > 1:
        parts.append(f"cardinality {arch.cardinality} (group widths "
                     f"{dashed(arch.bottleneck_widths)})")
    parts.append(f"{arch.unit} units")
    if not arch.plain:
        parts.append(f"shortcut {arch.shortcut}")
    return f"{'Plain' if arch.plain else 'ResNet'}-{arch.depth}: " + ", ".join(parts)


def describe(trainer) -> str:
    """The first line of a run: the model, the data, the length and where it runs."""
    rt, info = trainer.runtime, trainer.info
    split = f"{info.train_examples} train"
    if info.validation_examples:
        split += f" / {info.validation_examples} validation"
    split += f" / {info.test_examples} test"
    replicas = (f"{rt.num_replicas} replicas x {rt.per_replica_batch_size}"
                if rt.num_replicas > 1 else "1 replica")
    return (
        f"Training {trainer.model.name} ({architecture_line(trainer.architecture)}; "
        f"{trainer.model.count_params() / 1e6:.2f}M parameters) on {info.name} ({split} "
        f"images): {trainer.epochs} epochs of {trainer.steps_per_epoch} steps "
        f"({trainer.total_steps} steps), global batch "
        f"{rt.global_batch_size} = {replicas} ({rt.strategy_name} on {rt.device_type}, "
        f"{rt.num_workers} worker{'s' if rt.num_workers > 1 else ''}, XLA "
        f"{'on' if rt.jit_compile else 'off'}, {rt.dtype_policy})."
    )


def start_lines(trainer, state, resumed: bool) -> List[str]:
    """The lines a session of `fit` opens with: `describe`, the fine-tuning settings (notes,
    where the weights came from or that a `resumed` run ignores `init_weights`, what is
    frozen) and the step boundaries the run does not reach."""
    settings = trainer.config.finetune
    lines = [describe(trainer), *trainer.finetune_notes]
    if resumed and settings.init_weights:
        lines.append(f"init_weights={settings.init_weights!r} is ignored: the run resumes "
                     "from its own checkpoint.")
    elif state.initialization:
        lines.append(initial_weights.Initialization(**state.initialization).line())
    if trainer.freezing.frozen_parameters:
        lines.append(trainer.freezing.line())
    if trainer.unreached_boundaries:
        lines.append(f"Note: the step schedule's boundaries {trainer.unreached_boundaries} lie "
                     f"at or after the last step ({trainer.total_steps}); they are not reached.")
    return lines + [optimizer_line(trainer.config.optimization)]


def optimizer_line(optimization) -> str:
    """`Optimizer: AdamW (beta_1 0.9, beta_2 0.999), weight decay 0.05 decoupled, gradients
    clipped to norm 1; evaluated and exported: the weights' moving average (decay 0.9999).`"""
    name = {"sgd": "SGD", "adamw": "AdamW", "lamb": "LAMB"}[optimization.optimizer]
    if optimization.optimizer == "sgd":
        details = f"momentum {optimization.momentum:g}" + (
            ", Nesterov" if optimization.nesterov else "")
    else:
        details = f"beta_1 {optimization.momentum:g}, beta_2 {optimization.beta_2:g}"
    line = (f"Optimizer: {name} ({details}), weight decay {optimization.weight_decay:g} "
            f"{optimization.decay_mode()}")
    if optimization.clip_global_norm is not None:
        line += f", gradients clipped to norm {optimization.clip_global_norm:g}"
    if optimization.loss == "binary_cross_entropy":
        line += "; loss: binary cross-entropy" + (
            "" if optimization.bce_target_threshold is None else
            f" of targets binarised at {optimization.bce_target_threshold:g}")
    if optimization.ema_decay is not None:
        line += (f"; evaluated and exported: the weights' moving average (decay "
                 f"{optimization.ema_decay:g})")
    return line + "."


class Progress:
    """The display of an epoch's steps: a `keras.utils.Progbar` (with `verbose=1`, on the
    chief) and, with a model directory, TensorBoard scalars every `summary_every_steps`.

    Args:
        trainer: `training.trainer.Trainer`.
        epoch: int. The epoch (0-based).
        steps: int. The steps this session trains of it.
    """

    def __init__(self, trainer, epoch: int, steps: int):
        settings = trainer.config.runtime
        self.schedule, self.outputs = trainer.schedule, trainer.outputs
        self.every = settings.summary_every_steps
        self.progbar = None
        if settings.verbose == 1 and trainer.runtime.is_chief:
            print(f"Epoch {epoch + 1}/{trainer.epochs}", flush=True)
            self.progbar = keras.utils.Progbar(
                steps, stateful_metrics=["loss", "accuracy", "lr", "images/s"])

    def update(self, seen: int, step: int, loss: float, regularization: float,
               logs: Dict[str, float], images: float, elapsed: float) -> None:
        """After `seen` steps of the session's epoch (update `step` of the run), with the
        step's losses, the epoch's running `logs` and its `images` in `elapsed` seconds."""
        summarize = self.outputs and step % self.every == 0
        if self.progbar is None and not summarize:
            return  # the learning rate is not computed for nothing
        learning_rate = float(self.schedule(step - 1))
        if self.progbar is not None:
            self.progbar.update(seen, [
                ("loss", logs["loss"]), ("accuracy", logs["accuracy"]), ("lr", learning_rate),
                ("images/s", images / elapsed if elapsed else 0.0)])
        if summarize:
            self.outputs.scalars("train", step, {
                "batch_loss": loss, "learning_rate": learning_rate,
                "regularization_loss": regularization,
                "images_per_second": images / max(elapsed, 1e-9)})


def resume_lines(before: Optional[dict], config, checkpoint: str, epoch, batch, step
                 ) -> List[str]:
    """What a resumed run says: the settings changed since `before` (the model directory's
    `config.json`) and where it continues (`epoch`, `batch`, `step`: the checkpoint's
    variables)."""
    changes = config_changes(before, config.to_dict())
    lines = ["Resuming with changed settings: " + ", ".join(changes) + "."] if changes else []
    return lines + [f"Resuming from {checkpoint}: epoch {int(epoch.numpy()) + 1}, batch "
                    f"{int(batch.numpy())}, step {int(step.numpy())}."]


def config_changes(before: Optional[dict], now: dict) -> List[str]:
    """`section.key: old -> new` for the settings of `now` that differ from `before`."""
    if not before:
        return []
    return [f"{section}.{key}: {before[section].get(key)!r} -> {value!r}"
            for section in ("model", "optimization", "runtime", "data", "finetune")
            for key, value in now[section].items()
            if isinstance(before.get(section), dict) and before[section].get(key) != value]


def epoch_line(epoch: int, epochs: int, logs: Dict[str, float], seconds: float,
               remaining_s: Optional[float] = None) -> str:
    """`Epoch 3/10: loss 0.4123, error 12.50%, val_loss ..., lr 0.1, 2048 images/s (5.2s)`,
    with the run's ETA before the last epoch."""
    parts = [f"loss {logs['loss']:.4f}", f"error {percent(logs['error'])}"]
    for prefix, name in (("val_", "val"), ("test_", "test")):
        if prefix + "error" in logs:
            parts.append(f"{name}_loss {logs[prefix + 'loss']:.4f}")
            parts.append(f"{name}_error {percent(logs[prefix + 'error'])}")
    parts.append(f"lr {logs['learning_rate']:.4g}")
    parts.append(f"{logs['images_per_second']:.0f} images/s")
    line = f"Epoch {epoch}/{epochs}: " + ", ".join(parts) + f" ({seconds:.1f}s)"
    if remaining_s is not None and epoch < epochs:
        line += f"; run ETA {duration(remaining_s)}"
    return line


def loss_problem(total: float, max_loss: float) -> Optional[str]:
    """What is wrong with a step's loss (not finite, above `max_loss`), or `None`."""
    if not math.isfinite(total):
        return f"the loss is {total}"
    if total > max_loss:
        return f"the loss {total:.4g} exceeds max_loss={max_loss:g}"
    return None


def diverged_message(trainer, update: int, what: str, last: Optional[str]) -> str:
    kept = (f"the last good checkpoint, {last}, is kept" if last
            else "no checkpoint was written (no model_dir)")
    return (
        f"Training diverged in update {update} of {trainer.total_steps} "
        f"(epoch {int(trainer.epoch.numpy()) + 1}): {what}. Stopped without saving this "
        f"state; {kept}. "
        f"Lower the learning rate (now {trainer.config.optimization.learning_rate}) or check "
        "the data."
    )


def interrupt_notice(signum: int) -> str:
    """What a run prints when SIGINT or SIGTERM asks it to stop."""
    return (f"\n{signal.Signals(signum).name}: stopping after this step and saving a "
            "checkpoint (send it again to stop at once).")


def interrupted_message(signum: int, step: int, total_steps: int,
                        latest: Optional[str]) -> str:
    where = (f"checkpoint {latest} saved; rerun the same command to resume" if latest
             else "nothing saved (no model_dir)")
    return (f"Interrupted by {signal.Signals(signum).name} at step {step} of {total_steps}: "
            f"{where}.")


def finished_line(status: str, results: Dict[str, Any], model_dir: Optional[str]) -> str:
    final = results.get("final_test_error")
    summary = "no test evaluation" if final is None else (
        f"final test error {percent(final)}, best {percent(results['best_test_error'])}")
    where = f"; results in {model_dir}" if model_dir else ""
    return f"Finished ({status}): {results['steps']} steps, {summary}{where}."


def split_results(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The final and best accuracy and error of each evaluated split."""
    results = {}
    for split, prefix in (("test", "test_"), ("validation", "val_")):
        split_rows = [r for r in rows if prefix + "accuracy" in r]
        if not split_rows:
            continue
        final = split_rows[-1]
        best = max(split_rows, key=lambda r: r[prefix + "accuracy"])
        results.update({
            f"final_{split}_accuracy": final[prefix + "accuracy"],
            f"final_{split}_error": final[prefix + "error"],
            **({f"final_{split}_top5_error": final[prefix + "top5_error"]}
               if prefix + "top5_error" in final else {}),
            f"best_{split}_accuracy": best[prefix + "accuracy"],
            f"best_{split}_error": best[prefix + "error"],
            f"best_{split}_epoch": best["epoch"],
            f"{split}_examples": final[prefix + "examples"],
        })
    evaluated = [r for r in rows if "test_accuracy" in r]
    if evaluated:
        results["final_test_loss"] = evaluated[-1]["test_loss"]
    return results


def monitor_of(info) -> str:
    """The log key that picks a run's best checkpoint: validation accuracy where the data
    (a `training.sources` info) has a validation split, else test accuracy."""
    return "val_accuracy" if info.validation_examples else "test_accuracy"


def optimizer_summary(optimization) -> Dict[str, Any]:
    """The optimizer, its weight decay (with the mode `"auto"` resolved), clipping and
    weight average of an `OptimizationConfig`, as `results.json` records them."""
    return {"optimizer": optimization.optimizer, "weight_decay": optimization.weight_decay,
            "weight_decay_mode": optimization.decay_mode(),
            "clip_global_norm": optimization.clip_global_norm,
            "ema_decay": optimization.ema_decay,
            "evaluated_weights": "ema" if optimization.ema_decay is not None else "trained"}


def results(trainer, state, status: str, message: str = "") -> Dict[str, Any]:
    """The contents of `results.json`: what ran, how it went, where its checkpoints are."""
    rt, architecture, freezing = trainer.runtime, trainer.architecture, trainer.freezing
    rows = state.history
    summary = {
        "status": status,
        "message": message,
        "recipe": trainer.config.name,
        "model": trainer.model.name,
        "architecture": {"depth": architecture.depth, **dataclasses.asdict(architecture)},
        "parameters": int(trainer.model.count_params()),
        "trainable_parameters": freezing.trainable_parameters,
        "frozen_parameters": freezing.frozen_parameters,
        "frozen_groups": list(freezing.frozen_groups),
        "initialization": state.initialization,
        "dataset": trainer.info.name,
        "class_names": list(trainer.info.class_names),
        "epochs": len(rows),
        "epochs_planned": trainer.epochs,
        "steps": int(trainer.step.numpy()),
        "total_steps": trainer.total_steps,
        "steps_per_epoch": trainer.steps_per_epoch,
        "global_batch_size": rt.global_batch_size,
        "num_replicas": rt.num_replicas,
        "num_workers": rt.num_workers,
        "strategy": rt.strategy_name,
        "device": rt.device_type,
        "dtype_policy": rt.dtype_policy,
        "jit_compile": rt.jit_compile,
        **optimizer_summary(trainer.config.optimization),
        "train_seconds": state.train_seconds,
        "wall_seconds": state.wall_seconds,
        "images_per_second": (state.images / state.train_seconds
                              if state.train_seconds else None),
        "skipped_files": len(getattr(trainer.pipeline, "skipped_files", ())),
        "monitor": trainer.monitor,
        "best_epoch": state.best_epoch,
        **split_results(rows),
    }
    outputs = trainer.outputs
    if outputs:
        summary["best_checkpoint"] = outputs.best_checkpoint()
        summary["latest_checkpoint"] = outputs.latest_checkpoint()
    summary["config"] = trainer.config.to_dict()
    return summary
