"""The instruction-following benchmark: task suites (YAML), success predicates, batched evaluation, reports."""
