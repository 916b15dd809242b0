"""A training run in its own process, for the tests that need one (a SIGKILL, logical CPU
devices, multi-worker): `python tests/training/worker.py SPEC.json`.

The spec is a JSON object: `settings` (flat `training.config` settings), `pipeline` (keyword
arguments of `FakePipeline`), `output` (an .npz path for the final weights and results, written
outside the model directory), and optionally `sleep_per_batch` (seconds, to give a test time to
kill the run), `compare_strategies` (a list of strategy names: the run is repeated under each,
in this process). The arrays saved are `weight_<name>_<index>`, `loss_<name>`,
`results_<name>` and `output_dtype_<name>`, with `<name>` = `run` without `compare_strategies`.
A run that SIGINT or SIGTERM stops exits with 130 or 143 and saves nothing.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class _Sleep:
    def __init__(self, seconds):
        import keras

        class Sleep(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                time.sleep(seconds)

        self.callback = Sleep()


def main(path):
    with open(path) as file:
        spec = json.load(file)
    import numpy as np

    from tests.training import fakes
    from training import config, runtime, trainer
    from training.interrupts import TrainingInterrupted

    settings = spec["settings"]
    if "model_overrides" in settings:
        settings["model_overrides"] = {
            k: tuple(v) if isinstance(v, list) else v
            for k, v in settings["model_overrides"].items()}
    callbacks = [_Sleep(spec["sleep_per_batch"]).callback] if spec.get("sleep_per_batch") else []
    arrays = {}
    names = spec.get("compare_strategies") or [None]
    if spec.get("compare_strategies"):
        runtime.split_cpu(settings.get("cpu_devices", 0))
    for name in names:
        run_settings = dict(settings, **({"strategy": name} if name else {}))
        experiment = config.from_settings(run_settings)
        pipeline = fakes.FakePipeline(**spec["pipeline"])
        try:
            result = trainer.run(experiment, pipeline=pipeline, callbacks=callbacks)
        except TrainingInterrupted as error:  # as python -m training.fit exits
            print(error, flush=True)
            sys.exit(error.exit_code)
        suffix = f"_{name or 'run'}"
        for index, weight in enumerate(result.model.get_weights()):
            arrays[f"weight{suffix}_{index:03d}"] = weight
        arrays[f"loss{suffix}"] = np.array(result.history.history["loss"])
        arrays[f"results{suffix}"] = np.array(json.dumps(
            {k: v for k, v in result.results.items() if k != "config"}))
        arrays[f"output_dtype{suffix}"] = np.array(result.model.output.dtype)
    np.savez(spec["output"], **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
