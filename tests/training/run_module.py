"""`python tests/training/run_module.py MODULE ARGS...`: runs `python -m MODULE ARGS...` with the
test double of `training.data` installed when the real one has not landed yet."""

import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

if __name__ == "__main__":
    from tests.training import fakes

    fakes.install()
    module = sys.argv[1]
    sys.argv = [module] + sys.argv[2:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
