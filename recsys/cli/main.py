"""The ``recsys`` command: thin entry points that parse a Hydra config, call one library
function and print its summary.

    recsys train experiment=dcn_movielens data.path=../shared/data/ml-100k
    recsys train --multirun experiment=dlrm_movielens trainer.batch_size=512,1024
    recsys train --multirun hydra/launcher=ray experiment=... optimizer.lr=0.001,0.003
    recsys evaluate evaluate.run_dir=outputs/runs/...
    recsys data prepare data=criteo data.path=...
    recsys quickstart
    recsys index build index.run_dir=outputs/runs/two_tower_social/...
    recsys explore explore.ranker_run=DIR explore.retrieval_run=DIR [explore.user=ID]
    recsys export export.run_dir=outputs/runs/...
    recsys bench train [--steps N ...]

``-v`` / ``--verbose`` anywhere brings back the libraries' log lines and the traceback of an
error (by default an error is one line on stderr, exit status 1); a plugin command (``recsys
backend``, ``recsys serve``) gets it passed on as its last argument.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from recsys.apps.console import quiet_libraries
from recsys.cli import errors
from recsys.config.compose import config_dir, repo_root

USAGE = """usage: recsys COMMAND [hydra overrides ...]

commands:
  train          train a ranker or a two-tower (recsys train experiment=dcn_movielens)
  evaluate       evaluate a finished run   (recsys evaluate evaluate.run_dir=DIR)
  data prepare   read, preprocess and split a data set to Parquet
  quickstart     train the multi-task ranker on synthetic social data
  index build    ANN indexes from a two-tower run  (recsys index build index.run_dir=DIR)
  explore        the Explore funnel: retrieve -> rank -> re-rank (recsys explore
                 explore.ranker_run=DIR explore.retrieval_run=DIR [explore.evaluate=true])
  export         ONNX models + manifest of a finished run for serving
                 (recsys export export.run_dir=DIR)
  bench train    training throughput: our trainer vs a plain TorchRec loop
  bench retrieval  our FAISS wrapper vs raw FAISS
  bench backend  fanout inserts/s and feed read latency of the social backend
  bench inference  ranking latency: eager vs bare ONNX Runtime vs ours vs HTTP
  bench features   feature store: online fetch (Feast SQLite/Redis, fast path) vs direct Redis,
                   historical retrieval (Feast) vs a Polars join_asof
  bench distributed  1 process vs 2 Ray Train workers vs torch.distributed.run, Ray Serve
                   p50/p99 vs the embedded server (batching on and off)
  bench all      every benchmark at a small size, one report in benchmarks/results/
{plugins}
Hydra options work after the command: --multirun, --cfg job, hydra.run.dir=DIR, --help.
-v / --verbose: library log lines and the full traceback of an error.
Configs live in {configs}.
"""


def _hydra_app(config_name: str, task: Callable, argv: Sequence[str], prog: str) -> None:
    """Runs ``task`` as a Hydra app. Hydra raises its own errors (composition, overrides) to us
    (``HYDRA_FULL_ERROR=1``), and :func:`recsys.cli.tasks.command` turns the task's errors into
    one line; either way the user sees one line, the traceback only with ``-v``."""
    import hydra
    from hydra.core.plugins import Plugins

    from hydra_plugins.recsys_ray_launcher.ray_launcher import RayLauncher

    # Hydra finds plugins by walking the hydra_plugins namespace, which an editable install
    # hides from it; registering ours makes `hydra/launcher=ray` work in every install mode
    Plugins.instance().register(RayLauncher)
    os.environ["HYDRA_FULL_ERROR"] = "1"
    errors.STATE.prog = prog
    sys.argv = [prog, *argv]
    app = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(
        task
    )
    try:
        app()
    except Exception as exc:  # composition errors: Hydra's, before the task starts
        if errors.STATE.verbose:
            raise
        errors.fail(prog, errors.composition_message(exc))


def _bench(argv: Sequence[str]) -> None:
    import runpy

    if not argv:
        raise SystemExit("usage: recsys bench train [options]  (see --help)")
    name, rest = argv[0], list(argv[1:])
    scripts = {
        "train": "train_throughput.py",
        "retrieval": "retrieval_bench.py",
        "backend": "backend_bench.py",
        "inference": "inference_bench.py",
        "features": "features_bench.py",
        "distributed": "distributed_bench.py",
        "all": "bench_all.py",
    }
    if name not in scripts:
        raise SystemExit(f"recsys bench: unknown benchmark {name!r}; known: {sorted(scripts)}")
    script = repo_root() / "benchmarks" / scripts[name]
    if not script.is_file():
        raise SystemExit(
            f"recsys bench: {script} not found (benchmarks live in the source checkout)"
        )
    sys.argv = [str(script), *rest]
    runpy.run_path(str(script), run_name="__main__")


def plugin_commands() -> dict[str, object]:
    """Commands that live outside the library (entry point group ``recsys.commands``), e.g.
    ``backend`` from ``serving.social``: recsys finds them without importing them."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="recsys.commands")}


def _usage() -> str:
    plugins = "".join(
        f"  {name:<14} (from {ep.value.split(':')[0]}; recsys {name} --help)\n"
        for name, ep in sorted(plugin_commands().items())
    )
    return USAGE.format(configs=repo_root() / "configs", plugins=plugins)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``recsys`` console script."""
    # Must precede the first torch import: OpenMP's default active waiting makes 2 threads next
    # to any other busy thread (the loader's prefetch thread) run FBGEMM kernels 30-50x slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = list(sys.argv[1:] if argv is None else argv)
    errors.STATE.verbose = any(a in ("-v", "--verbose") for a in args)
    args = [a for a in args if a not in ("-v", "--verbose")]
    quiet_libraries(errors.STATE.verbose)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return
    command, rest = args[0], args[1:]
    plugins = plugin_commands()
    if command in plugins:
        plugins[command].load()([*rest, "-v"] if errors.STATE.verbose else rest)
        return
    from recsys.cli import tasks

    if command == "train":
        _hydra_app("train", tasks.train_task, rest, "recsys train")
    elif command == "quickstart":
        _hydra_app("quickstart", tasks.train_task, rest, "recsys quickstart")
    elif command == "evaluate":
        _hydra_app("evaluate", tasks.evaluate_task, rest, "recsys evaluate")
    elif command == "data":
        if not rest or rest[0] != "prepare":
            raise SystemExit("usage: recsys data prepare data=NAME [data.path=...] [overrides]")
        _hydra_app("train", tasks.prepare_task, rest[1:], "recsys data prepare")
    elif command == "index":
        if not rest or rest[0] != "build":
            raise SystemExit("usage: recsys index build index.run_dir=DIR [index.kind=hnsw]")
        _hydra_app("index", tasks.index_task, rest[1:], "recsys index build")
    elif command == "explore":
        _hydra_app("explore", tasks.explore_task, rest, "recsys explore")
    elif command == "export":
        _hydra_app("export", tasks.export_task, rest, "recsys export")
    elif command == "bench":
        _bench(rest)
    else:
        raise SystemExit(f"recsys: unknown command {command!r}\n\n" + _usage())


if __name__ == "__main__":
    main()
