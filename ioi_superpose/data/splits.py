"""The names of a run's prompt sets, and the prefix each evaluation set's metrics are logged under."""

from __future__ import annotations

TRAIN_SET = "train"
VAL_SET = "val"
IN_DISTRIBUTION = "in_distribution"
"""The in-distribution test set (the off-distribution ones are named by `datamodule.OFF_DISTRIBUTION_SETS`)."""


def metric_prefix(stage: str, set_name: str) -> str:
    """`val/`, `test/` for the in-distribution set, `test/<set>/` for the others."""
    return f"{stage}/" if set_name == IN_DISTRIBUTION else f"{stage}/{set_name}/"
