"""Training: the one loop for every task (``trainer``) behind a small task interface
(``task``; the tasks in ``tasks/``), checkpoints with exact resume (``checkpoint``), the
learning-rate schedule, the sparse-optimizer registry (``optimizers``), evaluation of rankers,
MLflow tracking (``tracking``, the only importer of mlflow), the run's plots drawn after it
(``plots``: matplotlib, imported lazily), and the runs: one plan and one run
ending (``run``) around a ranker run (``ranking_run``) or a two-tower run (``retrieval_run``).

May import ``models``, ``modules``, ``retrieval``, ``metrics``, ``data`` and ``types``; never
``config``, ``apps``, ``cli``, Hydra or OmegaConf.
"""
