"""recsys: ranking and recommendation research at social-app scale.

The library: readers and the synthetic generator (``data``), building blocks (``modules``),
models (``models``), metrics, retrieval (negatives, ANN indexes, evaluation), the funnel
(``ranking``), the one training loop (``train``), config schemas and builders (``config``),
command runners (``apps``) and the ``recsys`` command (``cli``); the layout and the direction
of imports are in ARCHITECTURE.md (checked by import-linter in the tests). Importing it has no
side effects; it never imports ``pipelines``, ``serving``, ``benchmarks`` or ``tests``.
"""

__version__ = "0.1.0"
