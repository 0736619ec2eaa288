"""``recsys train --multirun hydra/launcher=ray ...``: every trial of a Hydra sweep a Ray task.

Hydra finds this launcher in the ``hydra_plugins`` namespace package. Each trial runs the
same task function as a plain ``--multirun`` run (its own run folder under the sweep folder,
its own MLflow run), in a Ray worker process that reserves ``cpus_per_trial`` CPUs and
``gpus_per_trial`` GPUs, so Ray runs as many trials at once as the cluster holds: a local Ray
started for the sweep (``num_cpus``, default the machine's) or an existing cluster at
``address``. Ray sets each trial's thread count to its CPUs, so trials side by side do not
oversubscribe the cores.

A trial that fails does not stop the others; the sweep then ends with one error naming every
failed trial and its overrides.

    recsys train --multirun hydra/launcher=ray experiment=multitask_social_tiny \\
        optimizer.lr=0.001,0.003 hydra.launcher.cpus_per_trial=1
"""

import contextlib
import io
import logging
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

#: environment every trial gets from the driver (OpenMP's waiting policy matters on few cores)
PASSED_ENV = ("OMP_WAIT_POLICY", "HYDRA_FULL_ERROR", "RECSYS_DATA_ROOT", "RECSYS_OUTPUT_ROOT")


@dataclass
class RayLauncherConf:
    """``hydra.launcher.*``: see the module docstring."""

    _target_: str = "hydra_plugins.recsys_ray_launcher.ray_launcher.RayLauncher"
    address: str | None = None
    num_cpus: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0


ConfigStore.instance().store(
    group="hydra/launcher", name="ray", node=RayLauncherConf, provider="recsys"
)


class SweepError(RuntimeError):
    """Trials of a sweep on Ray that failed (each named with its overrides)."""


def _run_trial(
    hydra_context: HydraContext,
    task_function: TaskFunction,
    config: DictConfig,
    singletons: Any,
    cli_state: dict[str, Any],
) -> tuple[JobReturn, str, str]:
    """One trial, in a Ray worker: the driver's Hydra state (config store, version base,
    resolvers), then the task as Hydra's own launcher runs it. Returns the job's result and
    what the task printed (stdout, stderr), which the driver prints in trial order. A task
    that exits (the CLI's one-line errors) comes back as a failed ``JobReturn``."""
    setup_globals()
    Singleton.set_state(singletons)
    HydraConfig.instance().set_config(config)
    try:
        from recsys.cli import errors

        errors.STATE.prog = cli_state.get("prog", errors.STATE.prog)
        errors.STATE.verbose = bool(cli_state.get("verbose", False))
    except ImportError:  # the launcher also serves other Hydra apps
        pass
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            ret = run_job(
                hydra_context=hydra_context,
                task_function=task_function,
                config=config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
        except SystemExit as e:
            ret = JobReturn(overrides=list(config.hydra.overrides.task), cfg=config)
            ret.status = JobStatus.FAILED
            ret._return_value = SweepError(f"the trial exited with status {e.code}")
    return ret, out.getvalue(), err.getvalue()


def _check_address(address: str, timeout_s: float = 5.0) -> None:
    bare = address.split("://", 1)[-1]
    if bare in ("auto", "local"):
        return
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"hydra.launcher.address={address!r} is not host:port or ray://host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise SweepError(
            f"no Ray cluster answers at hydra.launcher.address={address!r} ({e}); start one with "
            "`ray start --head` or leave the address null for a local Ray"
        ) from None


class RayLauncher(Launcher):
    """Runs each job of a sweep as a Ray task (see the module docstring)."""

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0,
    ) -> None:
        if cpus_per_trial <= 0 or gpus_per_trial < 0:
            raise SweepError(
                "hydra.launcher.cpus_per_trial must be > 0 and gpus_per_trial >= 0, got "
                f"{cpus_per_trial} and {gpus_per_trial}"
            )
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_trial = cpus_per_trial
        self.gpus_per_trial = gpus_per_trial
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def _connect(self) -> bool:
        import ray

        if ray.is_initialized():
            return False
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        if self.address:
            _check_address(self.address)
            ray.init(address=self.address, runtime_env={"env_vars": env}, log_to_driver=False)
        else:
            ray.init(
                num_cpus=self.num_cpus or os.cpu_count() or 1,
                num_gpus=None if self.gpus_per_trial else 0,
                include_dashboard=False,
                runtime_env={"env_vars": env},
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        have = ray.cluster_resources()
        for kind, each in (("CPU", self.cpus_per_trial), ("GPU", self.gpus_per_trial)):
            if each and have.get(kind, 0.0) + 1e-9 < each:
                ray.shutdown()
                raise SweepError(
                    f"a trial asks for {each:g} {kind} (hydra.launcher.{kind.lower()}s_per_trial)"
                    f" but the Ray cluster has {have.get(kind, 0.0):g}: no trial could start"
                )
        return True

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import ray

        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        started = self._connect()
        try:
            cli_state: dict[str, Any] = {}
            try:
                from recsys.cli import errors

                cli_state = {"prog": errors.STATE.prog, "verbose": errors.STATE.verbose}
            except ImportError:
                pass
            trial = ray.remote(_run_trial).options(
                num_cpus=self.cpus_per_trial, num_gpus=self.gpus_per_trial, max_retries=0
            )
            pending = []
            singletons = Singleton.get_state()
            log.info("Launching %d jobs on Ray", len(job_overrides))
            for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
                log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
                sweep_config = self.hydra_context.config_loader.load_sweep_config(
                    self.config, list(overrides)
                )
                with open_dict(sweep_config):
                    sweep_config.hydra.job.id = f"ray_{idx}"
                    sweep_config.hydra.job.num = idx
                pending.append(
                    trial.remote(
                        self.hydra_context, self.task_function, sweep_config, singletons, cli_state
                    )
                )
            runs: list[JobReturn] = []
            for idx, ref in enumerate(pending, start=initial_job_idx):
                ret, out, err = ray.get(ref)
                runs.append(ret)
                where = ret.hydra_cfg.hydra.runtime.output_dir if ret.hydra_cfg else ""
                log.info("#%d %s %s", idx, ret.status.name.lower(), where)
                sys.stdout.write(out)
                sys.stderr.write(err)
                sys.stdout.flush()
        finally:
            if started:
                ray.shutdown()
        failed = [
            f"#{initial_job_idx + i} ({' '.join(filter_overrides(r.overrides or []))}): "
            f"{r._return_value}"
            for i, r in enumerate(runs)
            if r.status == JobStatus.FAILED
        ]
        if failed:
            raise SweepError(f"{len(failed)} of {len(runs)} trials failed: " + "; ".join(failed))
        return runs
