"""``python -m codeFeature``: the command line (:mod:`codeFeature.cli`); the ``codefeature`` command is this main."""

import os
import sys

from .cli import main

if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # skip the interpreter's teardown: with TensorFlow loaded it joins thread pools and frees the graph for
    # seconds (bench/bench_cold.py) and has nothing left to save; the output is flushed above
    os._exit(status)
