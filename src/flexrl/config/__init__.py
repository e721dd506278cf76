"""Hydra-facing configuration: schemas, resolvers and one-line config errors (entry points only)."""
