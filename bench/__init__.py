"""Benchmark scripts: run each as a file (``python -P bench/bench_speed.py``); tests import them as ``affordance.bench``.

Nothing in the node pack imports this package; ``_common`` holds the helpers the scripts share.
"""
