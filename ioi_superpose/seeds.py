"""The one rule for every seed a user sets (`--seed_everything`, `--data.seed`, `--model.gate_seed`, a toy model's
seeds): a whole number in [0, 2³² − 1], the range NumPy's and Lightning's seeding accept. Outside it, Lightning's
`seed_everything` ends in a traceback and other seeds wrap around silently (issue 24)."""

from __future__ import annotations

from ioi_superpose.errors import ConfigError

SEED_MAX = 2**32 - 1


def valid_seed(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= SEED_MAX


def seed_rule(value: object) -> str:
    """What a seed must be, with the value given (for messages that name the option themselves)."""
    return f"must be a whole number in [0, {SEED_MAX}], got {value!r}"


def check_seed(option: str, value: object) -> None:
    """Refuse a seed outside `valid_seed`, naming `option` (e.g. `--data.seed`)."""
    if not valid_seed(value):
        raise ConfigError(f"{option} {seed_rule(value)}; give another seed (e.g. 0).")
