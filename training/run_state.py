"""The accounting of a training run: where it is, what it has seen, how long it took.

`RunState` is what `training.trainer` keeps between steps and writes, as JSON, into each
checkpoint (the `state` variable next to the model and optimizer), so that a resumed run
continues its history, its best epoch, its clocks and the running sums of a half-done epoch.
"""

import dataclasses
import json
import time
from typing import Any, Dict, List, Optional

# The saved fields, in the order of the JSON written into checkpoints.
_SAVED = ("history", "epoch_sums", "best", "best_epoch", "train_seconds", "wall_seconds",
          "images", "global_batch_size", "steps_per_epoch", "initialization", "random")


@dataclasses.dataclass
class EpochSums:
    """The running sums of the epoch in progress.

    Args:
        loss: float. Sum of the steps' mean losses (without regularisation).
        correct: float. Correctly classified training images.
        count: float. Training images seen.
        steps: int. Updates.
        seconds: float. Training time, saving excluded.
    """

    loss: float = 0.0
    correct: float = 0.0
    count: float = 0.0
    steps: int = 0
    seconds: float = 0.0

    def add(self, loss: float, correct: float, count: float) -> Dict[str, float]:
        """Adds one update and returns the running `loss` and `accuracy` of the epoch."""
        self.loss += loss
        self.steps += 1
        self.correct += correct
        self.count += count
        return {"loss": self.loss / self.steps, "accuracy": self.correct / self.count}

    def images_per_second(self, seconds: float) -> float:
        return self.count / seconds if seconds else 0.0

    def logs(self, learning_rate: float) -> Dict[str, float]:
        """The training part of the epoch's logs (the keys of `history.csv`)."""
        accuracy = self.correct / max(self.count, 1.0)
        return {"loss": self.loss / max(self.steps, 1), "accuracy": accuracy,
                "error": 1.0 - accuracy, "learning_rate": learning_rate,
                "images_per_second": self.images_per_second(self.seconds),
                "epoch_seconds": self.seconds}


@dataclasses.dataclass
class RunState:
    """A run's progress; the saved fields are the checkpoint's `state`, the rest is the
    loop's position and clock in this process.

    Args:
        global_batch_size: int. The batch the run was started with (a resume must keep it).
        steps_per_epoch: int. Likewise.
        history: list of dict. One row per finished epoch: `epoch`, `step` and its logs.
        epoch_sums: `EpochSums` of an epoch stopped halfway, or `None`.
        best: float or `None`. The best value of the monitored accuracy.
        best_epoch: int or `None`. The epoch (1-based) that reached it.
        train_seconds: float. Time in training steps, over all sessions of the run.
        wall_seconds: float. Time in `fit`, over all sessions of the run.
        images: int. Training images seen, over all sessions.
        initialization: dict or `None`. Where the first weights came from
            (`training.initial_weights.Initialization.to_dict`).
        random: list or `None`. The states of the model's random draws at the checkpoint
            (`training.loop_common.random_states`); `None` in checkpoints from before they
            were saved.
        epoch: int. The epoch in progress (0-based); not saved (the checkpoint's `epoch`).
        step: int. Updates done; not saved (the checkpoint's `step`).
        skip: int. Batches of `epoch` done before this session; not saved.
    """

    global_batch_size: int
    steps_per_epoch: int
    history: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    epoch_sums: Optional[EpochSums] = None
    best: Optional[float] = None
    best_epoch: Optional[int] = None
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    images: int = 0
    initialization: Optional[Dict[str, Any]] = None
    random: Optional[Dict[str, Any]] = None
    epoch: int = 0
    step: int = 0
    skip: int = 0
    _first_step: int = dataclasses.field(default=0, repr=False)
    _started: float = dataclasses.field(default=0.0, repr=False)
    _wall_before: float = dataclasses.field(default=0.0, repr=False)

    def to_json(self) -> str:
        saved = {key: getattr(self, key) for key in _SAVED}
        if saved["epoch_sums"] is not None:
            saved["epoch_sums"] = dataclasses.asdict(saved["epoch_sums"])
        for key in ("initialization", "random"):  # only some runs have them
            if saved[key] is None:
                del saved[key]
        return json.dumps(saved)

    @classmethod
    def from_json(cls, text: str) -> "RunState":
        saved = {key: value for key, value in json.loads(text).items() if key in _SAVED}
        if saved.get("epoch_sums"):
            saved["epoch_sums"] = EpochSums(**saved["epoch_sums"])
        return cls(**saved)

    def start(self, epoch: int, step: int, skip: int) -> None:
        """Starts this session's clock at the checkpoint's position."""
        self.epoch, self.step, self.skip, self._first_step = epoch, step, skip, step
        self._started, self._wall_before = time.time(), self.wall_seconds

    def stamp_wall(self) -> None:
        """Brings `wall_seconds` up to now."""
        self.wall_seconds = self._wall_before + time.time() - self._started

    def begin_epoch(self) -> EpochSums:
        """The sums to continue: those saved halfway through this epoch, or new ones."""
        return self.epoch_sums if self.skip and self.epoch_sums else EpochSums()

    def add_training(self, seconds: float, images: int) -> None:
        self.train_seconds += seconds
        self.images += images

    def snapshot(self, sums: EpochSums, seconds: float, images: int) -> "RunState":
        """A copy as it would be after `seconds` more training and `images` more images, with
        `sums` (their seconds included): what a checkpoint within the epoch saves."""
        copy = dataclasses.replace(
            self, epoch_sums=dataclasses.replace(sums, seconds=sums.seconds + seconds))
        copy.add_training(seconds, images)
        copy.stamp_wall()
        return copy

    def end_epoch(self, row: Dict[str, Any], monitor: str) -> bool:
        """Records a finished epoch's row (its logs with `epoch` and `step`) and moves to the
        next epoch; returns whether the monitored accuracy improved on the best."""
        self.history.append(row)
        self.epoch, self.skip, self.epoch_sums = self.epoch + 1, 0, None
        value = row.get(monitor)
        improved = value is not None and (self.best is None or value > self.best)
        if improved:
            self.best, self.best_epoch = value, self.epoch
        return improved

    def replay(self, history) -> None:
        """Adds the finished epochs to a `keras.callbacks.History` (after its
        `on_train_begin`), as if this session had trained them."""
        for row in self.history:
            history.epoch.append(row["epoch"] - 1)
            for key, value in row.items():
                if key != "epoch":
                    history.history.setdefault(key, []).append(value)

    def seconds_left(self, total_steps: int) -> Optional[float]:
        """The run's remaining time at this session's pace, or `None` before its first step."""
        if self.step <= self._first_step:
            return None
        return (time.time() - self._started) / (self.step - self._first_step) * (
            total_steps - self.step)

    def check_resumable(self, model_dir: str, global_batch_size: int,
                        steps_per_epoch: int) -> None:
        """Raises `ValueError` when this run (a checkpoint's) had another batch or epoch."""
        for key, now in (("global_batch_size", global_batch_size),
                         ("steps_per_epoch", steps_per_epoch)):
            if getattr(self, key) != now:
                raise ValueError(
                    f"model_dir={model_dir!r} holds a run with {key}={getattr(self, key)}, but "
                    f"this run has {key}={now}; resume with the same batch and data settings or "
                    "use a new model_dir."
                )


def check_same_run(model_dir: str, before: Optional[dict], now: dict,
                   checkpoints: List[str]) -> None:
    """Raises `ValueError` when the run that wrote `model_dir` (its `config.json`, `before`)
    trained another model, batch or optimizer than `now` (`ExperimentConfig.to_dict`), or
    kept a weight average (`ema_decay`) and `now` does not or the reverse; checked before
    restoring `checkpoints`, which would fail with a cascade of TensorFlow warnings or leave
    the optimizer's state or the average unrestored."""
    if before is None or not checkpoints:
        return
    model = {key: before.get("model", {}).get(key) for key in ("name", "overrides")}
    if model != now["model"]:
        raise ValueError(
            f"model_dir={model_dir!r} holds a checkpoint ({checkpoints[0]}) of a different "
            f"model: --model={model['name']} --model_overrides={json.dumps(model['overrides'])}"
            f", not --model={now['model']['name']} --model_overrides="
            f"{json.dumps(now['model']['overrides'])}; resume with the same model or use a "
            "new model_dir.")
    batch = before.get("optimization", {}).get("global_batch_size")
    if batch != now["optimization"]["global_batch_size"]:
        raise ValueError(
            f"model_dir={model_dir!r} holds a run with global_batch_size={batch}, but "
            f"this run has global_batch_size={now['optimization']['global_batch_size']}; "
            "resume with the same batch and data settings or use a new model_dir.")
    # Configs written before the optimizer could be chosen have neither key: SGD, no average.
    was, new = before.get("optimization", {}), now["optimization"]
    optimizer, new_optimizer = was.get("optimizer", "sgd"), new.get("optimizer", "sgd")
    if optimizer != new_optimizer:
        raise ValueError(
            f"model_dir={model_dir!r} holds a run with optimizer={optimizer!r}, whose state "
            f"the checkpoint holds, but this run has optimizer={new_optimizer!r}; resume with "
            "the same optimizer or use a new model_dir.")
    if (was.get("ema_decay") is None) != (new.get("ema_decay") is None):
        had = "keeps no weight average" if was.get("ema_decay") is None else (
            "keeps a weight average")
        raise ValueError(
            f"model_dir={model_dir!r} holds a run that {had} (ema_decay="
            f"{was.get('ema_decay')!r}), but this run has ema_decay={new.get('ema_decay')!r}; "
            "resume with ema_decay on or off as before (its value may change) or use a new "
            "model_dir.")
