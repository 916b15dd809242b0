"""`python -m training.fit` on the Keras loop with a pause after each training batch, so that a
test can signal or kill the run within an epoch:
`python tests/training/keras_worker.py SECONDS --flag=value ...` (the backend from
`KERAS_BACKEND`)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def main():
    seconds = float(sys.argv.pop(1))
    from training import backends

    backends.select()  # before Keras is imported
    import keras

    from training import fit, keras_loop

    class Pause(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(seconds)

    train = keras_loop.KerasTrainer.fit
    keras_loop.KerasTrainer.fit = lambda self, callbacks=None: train(
        self, [Pause(), *(callbacks or [])])
    fit.run_main()


if __name__ == "__main__":
    main()
