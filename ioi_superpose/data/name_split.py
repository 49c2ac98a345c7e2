"""The train / held-out name split a toy checkpoint was trained with (issue 19).

A toy-IOI model never saw its held-out names; the main job's `held_out_names` test set must be those
names, whatever `--data.seed` shuffles the rest with. Splitting again by `--data.seed` would call names
the model was trained on "held out".
"""

from __future__ import annotations

from ioi_superpose.errors import ConfigError


def checkpoint_name_split(model_name: str, held_out_name_fraction: float) -> tuple[list[str], list[str]] | None:
    """(held-out names, training names) stored in the toy checkpoint `model_name`; None for other models
    and for checkpoints without a split. A `held_out_name_fraction` other than the checkpoint's is refused."""
    from ioi_superpose.models.loading import is_toy_checkpoint_path, load_toy_metadata

    if not is_toy_checkpoint_path(model_name):
        return None
    metadata = load_toy_metadata(model_name)
    held_out, train = metadata.get("held_out_names"), metadata.get("train_names")
    if held_out is None or train is None:
        return None
    stored = metadata.get("task_parameters", {}).get("held_out_name_fraction")
    if stored is not None and abs(float(stored) - held_out_name_fraction) > 1e-9:
        raise ConfigError(
            f"--data.held_out_name_fraction {held_out_name_fraction}: the toy model {model_name} was trained with "
            f"{len(held_out)} names held out (fraction {stored}); its held_out_names test set is those names. Use "
            f"--data.held_out_name_fraction {stored}, or train a toy model with the fraction you want."
        )
    return list(held_out), list(train)
