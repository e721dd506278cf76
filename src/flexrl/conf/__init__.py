"""YAML config groups of the flexrl commands (Hydra primary configs: train, run, eval)."""
