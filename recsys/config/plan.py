"""The :class:`~recsys.train.run.RunPlan` of a validated training config, for either task.

``plan_from_config`` is the bridge from configuration to the library: it checks that the
chosen groups are ones the task reads, then builds a ranker run
(:class:`~recsys.train.ranking_run.RankingExperiment`, from :mod:`recsys.config.build`) or a
two-tower run (:mod:`recsys.config.retrieval`), with the tracking settings and the resolved
config.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from recsys.config.build import _container, dataset_factory, recipe, trainer_config
from recsys.config.retrieval import retrieval_experiment
from recsys.config.schema import ConfigError
from recsys.train.ranking_run import RankingExperiment
from recsys.train.run import Experiment, RunPlan
from recsys.train.tracking import TrackingConfig

__all__ = ["TASKS", "check_task_keys", "plan_from_config", "ranking_experiment"]

TASKS = ("ranking", "retrieval")


def tracking_config(cfg: DictConfig) -> TrackingConfig:
    tracking: TrackingConfig = OmegaConf.to_object(cfg.tracking)  # type: ignore[assignment]
    if tracking.run_name is None:
        tracking.run_name = str(cfg.name)
    return tracking


def check_task_keys(cfg: DictConfig) -> str:
    """The run's task, after checking that no chosen group is one the task does not read."""
    task = str(cfg.task)
    if task not in TASKS:
        raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}")
    model = None if cfg.model is None else str(cfg.model.name)
    if task == "ranking":
        if cfg.retrieval is not None:
            raise ConfigError(
                "config group 'retrieval' is read only by task=retrieval (two-tower runs); "
                "drop it or set task=retrieval"
            )
        if model == "two_tower":
            raise ConfigError("model=two_tower needs task=retrieval (and a retrieval group)")
        return task
    if cfg.retrieval is None:
        raise ConfigError("task=retrieval needs the retrieval group: add retrieval=default")
    if model != "two_tower":
        raise ConfigError(f"task=retrieval trains model=two_tower, got model={model}")
    if cfg.baseline is not None:
        raise ConfigError(
            "'baseline' (a ranker baseline) is not read by task=retrieval; the two-tower's "
            "baselines are retrieval.baselines (group retrieval/baselines)"
        )
    if cfg.trainer.loss_weights:
        raise ConfigError("trainer.loss_weights is not read by task=retrieval (one loss)")
    if int(cfg.trainer.distributed.workers or 0) > 0:
        raise ConfigError(
            "trainer.distributed.workers applies to rankers (task=ranking); the two-tower "
            "trains in one process (its in-batch negatives are per process): set it to 0"
        )
    if cfg.model.fused:
        raise ConfigError(
            "model.fused=true is not supported by the two-tower (plain tables with mean-pooled "
            "bags); set model.fused=false"
        )
    return task


def plan_from_config(cfg: DictConfig, run_dir: Path) -> RunPlan:
    """The :class:`RunPlan` of a validated training config (either task)."""
    if cfg.model is None:
        raise ConfigError(
            "no model chosen: set model=dlrm|dcn|multitask|logreg|two_tower or an experiment"
        )
    experiment: Experiment
    if check_task_keys(cfg) == "retrieval":
        experiment = retrieval_experiment(cfg)
    else:
        experiment = ranking_experiment(cfg)
    return RunPlan(
        name=str(cfg.name),
        run_dir=run_dir,
        output_root=Path(cfg.paths.output_root),
        seed=int(cfg.seed),
        experiment=experiment,
        tracking=tracking_config(cfg),
        params=_container(cfg),
        resolved_config=OmegaConf.to_yaml(cfg, resolve=True),
    )


def ranking_experiment(cfg: DictConfig) -> RankingExperiment:
    """The ranker (and baseline) run of a validated ``task: ranking`` config."""
    baselines = []
    if cfg.baseline is not None:
        baselines.append(recipe(cfg.baseline, cfg, "baseline", trainer_config(cfg)))
    dataset, _ = dataset_factory(cfg)
    trainer = trainer_config(cfg)
    experiment = RankingExperiment(
        dataset_factory=dataset,
        model=recipe(cfg.model, cfg, "model", trainer),
        baselines=baselines,
    )
    if trainer.distributed.enabled:
        from recsys.distributed.launcher import train_and_test_distributed

        experiment.fit = train_and_test_distributed
    return experiment
