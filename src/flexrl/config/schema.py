"""Typed schemas of the ``flexrl`` commands, registered in Hydra's ConfigStore.

The library's own dataclasses are the schemas of the config groups (PPOConfig, SkillConfig, RobotConfig,
EnvConfig, EncoderConfig inside AgentConfig, LLMConfig, PlannerConfig, ExperimentConfig, TrackingConfig)
and of ``flexrl run`` as a whole (:class:`~flexrl.agent.session.RunConfig`), so each field is typed and
documented once, where it is used. The values live in YAML config groups
under ``flexrl/conf``. Only entry points (``flexrl.cli``) and this package import Hydra or OmegaConf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

from flexrl.agent.runner import AgentConfig
from flexrl.agent.session import RunConfig
from flexrl.data.offline import OfflineConfig
from flexrl.distill.pipeline import DistillConfig
from flexrl.envs.config import RobotConfig
from flexrl.llm.config import LLMConfig
from flexrl.planners.config import PlannerConfig
from flexrl.runs.config import ExperimentConfig, check_seed
from flexrl.skills.training_run import TrainingRunConfig


@dataclass
class TrainAppConfig(TrainingRunConfig):
    """``flexrl train``: one PPO training run of a skill family, in its own run directory.

    Attributes:
        resume: a run directory to continue from its last checkpoint, with the config stored there.
    """

    resume: Optional[str] = None


@dataclass
class EvalAppConfig:
    """``flexrl eval``: skill success rates over seeded episodes.

    Attributes:
        experiment: name, workspace, seed (the first episode's seed).
        skills: the skills to evaluate (empty: all). Not ``skill``: that name is the training config group.
        episodes: episodes per skill.
        checkpoints: directory with a checkpoint of every skill family (None: the shipped ones).
        policies: per-family checkpoint directories that replace ``checkpoints`` for those families.
        bar: exit non-zero when any skill's success rate is below this.
        robot: the body the skills run on.
    """

    experiment: ExperimentConfig = field(default_factory=lambda: ExperimentConfig(name="eval", seed=50_000))
    skills: list[str] = field(default_factory=list)
    episodes: int = 100
    checkpoints: Optional[str] = None
    policies: dict[str, str] = field(default_factory=dict)
    bar: float = 0.95
    robot: RobotConfig = field(default_factory=RobotConfig)

    def __post_init__(self) -> None:
        from flexrl.skills.library import MOTOR_SKILLS as SKILLS

        unknown = [name for name in self.skills if name not in SKILLS]
        if unknown:
            raise ValueError(f"skills entry {unknown[0]!r}; allowed: {', '.join(SKILLS)}")
        _positive("episodes", self.episodes)
        if not isinstance(self.bar, (int, float)) or not 0 <= self.bar <= 1:
            raise ValueError(f"bar={self.bar!r}; allowed: a success rate in [0, 1]")


@dataclass
class SuiteConfig:
    """Which benchmark tasks run.

    Attributes:
        files: task files (YAML); empty: the suite shipped with flexrl.
        tasks: only these task ids (empty: all).
        categories: only these categories (empty: all).
    """

    files: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from flexrl.bench.tasks import CATEGORIES

        bad = [c for c in self.categories if c not in CATEGORIES]
        if bad:
            raise ValueError(f"suite.categories entry {bad[0]!r}; allowed: {', '.join(CATEGORIES)}")


@dataclass
class BenchAppConfig:
    """``flexrl bench``: the instruction-following benchmark, one report per run directory.

    Attributes:
        planner: the planner under test.
        llm: its model, when it is the LLM planner.
        baselines: reference planners evaluated into the same report ("oracle", "random").
        suite: the tasks.
        agent: episode settings; only ``agent.encoder`` is used (task files set the episode length).
        episodes: seeded episodes per task.
        first_seed: seed of each task's first episode.
        n_envs: environments stepped together in batched mode.
        batched: batch decisions and actions across environments (False: one episode after another).
        experiment: name, workspace.
        robot: the body the skills run on.
    """

    planner: PlannerConfig = field(default_factory=PlannerConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    baselines: list[str] = field(default_factory=lambda: ["oracle", "random"])
    suite: SuiteConfig = field(default_factory=SuiteConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    episodes: int = 5
    first_seed: int = 1000
    n_envs: int = 16
    batched: bool = True
    experiment: ExperimentConfig = field(default_factory=lambda: ExperimentConfig(name="bench"))
    robot: RobotConfig = field(default_factory=RobotConfig)

    def __post_init__(self) -> None:
        from flexrl.planners.config import PLANNERS

        for name in self.baselines:
            if name not in PLANNERS:
                raise ValueError(f"baselines entry {name!r}; allowed: {', '.join(PLANNERS)}")
        _positive("episodes", self.episodes)
        _positive("n_envs", self.n_envs)
        check_seed("first_seed", self.first_seed)


TASK_SOURCES = ("generated", "suite")


@dataclass
class CollectAppConfig:
    """``flexrl collect``: record episodes of a planner into a Minari dataset.

    Attributes:
        planner: the planner whose episodes are recorded (the oracle: expert data; random: exploration).
        llm: its model, when it is the LLM planner.
        tasks: "generated" (instructions from the distillation grammar in random layouts: what training data
            should use; it never reads the benchmark suite) or "suite" (the benchmark's tasks: evaluation data).
        suite: the tasks, when ``tasks=suite``.
        episodes: episodes in all (generated tasks: one episode each; the suite: episodes per task).
        first_seed: seed of the first generated task and of each suite task's first episode.
        n_envs: environments stepped together.
        dataset: the dataset id ``flexrl/<name>-v<N>`` (None: ``flexrl/arena-<robot>-<planner>-v<next free N>``).
        root: where datasets live (None: ``<workspace>/datasets``); ``MINARI_DATASETS_PATH`` for minari.
        agent: episode settings; only ``agent.encoder`` is used (the LLM planner's view).
        experiment: name, workspace (the collection's run directory holds its datasheet).
        robot: the body.
    """

    planner: PlannerConfig = field(default_factory=lambda: PlannerConfig(name="oracle"))
    llm: LLMConfig = field(default_factory=LLMConfig)
    tasks: str = "generated"
    suite: SuiteConfig = field(default_factory=SuiteConfig)
    episodes: int = 2000
    first_seed: int = 0
    n_envs: int = 16
    dataset: Optional[str] = None
    root: Optional[str] = None
    agent: AgentConfig = field(default_factory=AgentConfig)
    experiment: ExperimentConfig = field(default_factory=lambda: ExperimentConfig(name="collect"))
    robot: RobotConfig = field(default_factory=RobotConfig)

    def __post_init__(self) -> None:
        if self.tasks not in TASK_SOURCES:
            raise ValueError(f"tasks={self.tasks!r}; allowed: {', '.join(TASK_SOURCES)}")
        _positive("episodes", self.episodes)
        _positive("n_envs", self.n_envs)
        check_seed("first_seed", self.first_seed)
        if self.dataset is not None:
            from flexrl.data.collect import check_dataset_id

            check_dataset_id(self.dataset)


@dataclass
class TrainOfflineAppConfig(OfflineConfig):
    """``flexrl train-offline``: a language-conditioned policy trained from a recorded dataset.

    Attributes:
        experiment: name, workspace (datasets are read from ``<workspace>/datasets`` unless ``root`` says).
        resume: a run directory to continue from its last checkpoint, with the config stored there.
    """

    experiment: ExperimentConfig = field(default_factory=lambda: ExperimentConfig(name="offline"))
    resume: Optional[str] = None


def _positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r}; allowed: a positive integer")


SCHEMAS: dict[str, Any] = {"train": TrainAppConfig, "run": RunConfig, "ui": RunConfig, "eval": EvalAppConfig, "bench": BenchAppConfig,
                           "distill": DistillConfig, "collect": CollectAppConfig,
                           "train-offline": TrainOfflineAppConfig}


def register() -> None:
    """Store each command's schema as ``<command>_schema``; its YAML lists it first in its defaults."""
    cs = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        cs.store(name=f"{name}_schema", node=schema)
