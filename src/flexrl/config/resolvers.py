"""OmegaConf resolvers used by the YAML configs."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from flexrl.runs.run_dir import new_run_id


def _run_dir(workspace: str, experiment: str, resume: str | None) -> str:
    """A fresh ``<workspace>/<experiment>/<run-id>``, or the run being resumed."""
    if resume not in (None, "None", "null", ""):
        return str(Path(str(resume)))
    return str(Path(workspace) / experiment / new_run_id())


def register() -> None:
    """Register ``flexrl_run_dir`` (idempotent). Cached per config, so every reader sees one directory."""
    if not OmegaConf.has_resolver("flexrl_run_dir"):
        OmegaConf.register_new_resolver("flexrl_run_dir", _run_dir, use_cache=True)
