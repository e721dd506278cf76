"""Expand a Hydra sweep into the override sets of its trials, with Hydra's own basic-sweeper code.

A Kubernetes Indexed Job runs one trial per completion index; each pod needs the overrides of its trial
without running Hydra's multirun itself. ``BasicSweeper.split_arguments`` is the function Hydra's basic
sweeper uses to build its jobs, so the sets here (their order included) are the ones
``flexrl <command> -m <overrides>`` would launch, and ``hydra.job.num`` of a local sweep equals the index.
"""

from __future__ import annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

from flexrl.config.validate import ConfigError, compose_checked, concrete_overrides

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def expand_sweep(command: str, overrides: list[str]) -> list[list[str]]:
    """The override sets of the trials of ``flexrl <command> -m <overrides>``, in Hydra's job order.

    Args:
        command: a Hydra app of ``flexrl`` ("train", "run" or "eval").
        overrides: the command-line overrides, sweeps included (``ppo.gamma=0.95,0.97``); the sweeps of
            the selected config (``hydra.sweeper.params``, e.g. from ``experiment=sweep_ppo``) come first,
            as in Hydra. Overrides of ``hydra`` itself (launcher choice, sweep dir) are not part of a trial.

    Returns:
        One list of task overrides per trial; trial ``i`` is ``hydra.job.num == i`` of a local sweep.

    Raises:
        ConfigError: a config error (one line), or a sweeper other than Hydra's basic sweeper (Optuna
            chooses its trials as results come in, so its trials cannot be listed in advance).
    """
    concrete_overrides(overrides)  # one-line errors for unparsable overrides
    cfg = compose_checked(command, overrides)
    target = cfg.hydra.sweeper.get("_target_")
    if target != BASIC_SWEEPER:
        raise ConfigError(f"hydra.sweeper is {target}; only the basic sweeper's grids can be expanded into trials "
                          "(an Optuna study picks its trials as results arrive: run it with a Hydra launcher)")
    params = cfg.hydra.sweeper.get("params")
    arguments = [f"{key}={value}" for key, value in OmegaConf.to_container(params or OmegaConf.create()).items()]
    parser = OverridesParser.create()
    arguments += [o.input_line for o in parser.parse_overrides(overrides) if not o.is_hydra_override()]
    try:
        (batch,) = BasicSweeper.split_arguments(parser.parse_overrides(arguments), max_batch_size=None)
    except HydraException as err:
        raise ConfigError(str(err).strip().splitlines()[0]) from None
    return [list(trial) for trial in batch]
