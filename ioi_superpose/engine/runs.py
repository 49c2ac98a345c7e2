"""Runs of a frozen model: capture, the reference runs of a contrast batch, and one patched run.

The words base run, source run and direction are `engine.vocabulary`'s.

- **variant**: one patched forward of the whole batch. Variants are folded into the batch (row
  `v * batch + b` is prompt `b` of variant `v`) and chunked to at most `max_rows` rows per forward.

Every patched run of head outputs goes through `patched_end_logits` with a `Combination`
(`engine.patch`): one-hot weights are single-head activation patching, 0/1 weights
subset patching, a learned α the learned combination. Variants that leave the first layers untouched
start from the base run's cached residual stream at their first patched layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ioi_superpose.data.answer_metrics import MetricName, answer_values
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.roles import batch_roles
from ioi_superpose.engine import fast_forward
from ioi_superpose.engine.fast_forward import Runner
from ioi_superpose.engine.metric import answer_metric, gather_end, normalised_recovery
from ioi_superpose.engine.patch import Combination, HeadWeights, ZFunction
from ioi_superpose.engine.rest import Rest, check_rest, run_tokens, with_rest
from ioi_superpose.engine.vocabulary import (
    Direction,
    Hook,
    base_and_source,
    clean_and_corrupted,
    hook_name,
    layer_of,
    z_names,
)
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer, HookPoint

DEFAULT_MAX_ROWS = 128
"""Rows (prompts × variants) per folded forward: GPT-2-small full logits of 128 × 16 tokens are 0.4 GB."""


# --------------------------------------------------------------------------------------------------
# Reading the answer at END.


def unembed_at_end(
    model: HookedTransformer,
    final_residual: Float[Tensor, "batch pos d_model"],
    end_positions: Int[Tensor, " batch"],
    vocab_index: Int[Tensor, "batch k"] | None = None,
    metric: MetricName = "logit_diff",
) -> Float[Tensor, "batch k"]:
    """Logits at END only, for the `vocab_index` tokens only (the whole vocabulary when None); with `vocab_index`,
    what `metric` reads of them (`unembed_residual`).

    Unembedding every position over 50k tokens costs about a third of a GPT-2-small forward; the
    metrics read two logits per prompt.
    """
    return unembed_residual(model, gather_end(final_residual, end_positions), vocab_index, metric)


def unembed_residual(
    model: HookedTransformer,
    residual: Float[Tensor, "batch d_model"],
    vocab_index: Int[Tensor, "batch k"] | None = None,
    metric: MetricName = "logit_diff",
) -> Float[Tensor, "batch k"]:
    """`ln_final` and the unembedding of one residual vector per prompt: the whole vocabulary's logits, or for the
    answer tokens `vocab_index` what the task's `metric` reads of them (`data.answer_metrics.answer_values`): their
    logits (`logit_diff`, only those columns unembedded), or their log-probabilities (`prob_diff`, whose normaliser
    needs every logit). This is where the engine reads every run it measures."""
    if hasattr(model, "ln_final"):  # models without normalisation have none
        residual = model.ln_final(residual[:, None, :])[:, 0, :]
    if vocab_index is None:
        return residual @ model.W_U + model.b_U
    if metric != "logit_diff":
        return answer_values(metric, residual @ model.W_U + model.b_U, vocab_index)
    vocab_index = vocab_index.to(residual.device)
    unembed_columns = model.W_U.T[vocab_index]  # [batch, k, d_model]
    return torch.einsum("bd,bkd->bk", residual, unembed_columns) + model.b_U[vocab_index]


def check_token_ids(model: HookedTransformer, tokens: Tensor, name: str, prompts: bool = True) -> None:
    """Token ids must index the model's vocabulary (an embedding lookup would raise IndexError), and prompts
    (`prompts`; not answer sets, [batch, k], which may be wider than the context) fit its context (positional
    embeddings past `n_ctx` do not exist)."""
    if prompts and tokens.dim() == 2 and tokens.shape[1] > model.cfg.n_ctx:
        raise ConfigError(
            f"{name} are {tokens.shape[1]} tokens long, more than the model's context of {model.cfg.n_ctx}: use "
            "shorter prompts (a task's length option, or leave out its long off-distribution set)."
        )
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= model.cfg.d_vocab):
        raise ConfigError(
            f"{name} holds token ids in [{int(tokens.min())}, {int(tokens.max())}], outside the model's "
            f"vocabulary [0, {model.cfg.d_vocab - 1}]: tokenize with the model's own tokenizer."
        )


# --------------------------------------------------------------------------------------------------
# The base run: embeddings once, residual prefix per layer, folded forwards from any layer.


def fold(x: Tensor | None, variants: int) -> Tensor | None:
    """Repeat a [batch, ...] tensor for `variants` variants, variant-major."""
    if x is None or variants == 1:
        return x
    return x.repeat(variants, *([1] * (x.dim() - 1)))


@dataclass
class BaseRun:
    """What every patched forward of one base batch shares: the embeddings and, when `prepare`d with
    `prefixes`, the residual stream before every layer (so a variant patched from layer L starts at L)."""

    model: HookedTransformer
    batch: int
    pos: int
    embed: Float[Tensor, "batch pos d_model"]
    shortformer_pos_embed: Float[Tensor, "batch pos d_model"] | None
    attention_mask: Int[Tensor, "batch pos"] | None
    acts: dict[str, Tensor]
    """Base activations recorded by `prepare`."""

    @classmethod
    def prepare(
        cls,
        model: HookedTransformer,
        tokens: Int[Tensor, "batch pos"],
        names: Sequence[str] = (),
        prefixes: bool = True,
    ) -> "BaseRun":
        """Embed the base tokens; record their residual prefixes (and `names`) in one no-grad forward."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}")
        check_token_ids(model, tokens, "tokens")
        embed, _, shortformer, mask = model.input_to_embed(tokens.to(model.cfg.device))
        run = cls(model, tokens.shape[0], tokens.shape[1], embed.detach(), shortformer, mask, {})
        wanted = [hook_name("resid_pre", layer) for layer in range(1, model.cfg.n_layers)] if prefixes else []
        run.acts = run.capture(list(dict.fromkeys(wanted + list(names))))
        return run

    def resid_pre(self, layer: int) -> Float[Tensor, "batch pos d_model"]:
        return self.embed if layer == 0 else self.acts[hook_name("resid_pre", layer)]

    def recorded_z(self) -> Float[Tensor, "layer batch pos head d_head"]:
        """The unpatched base run's z of every layer (recorded on first use, kept in `acts`): what a combination
        that patches from fixed activations reads (`reads_base_z`, e.g. the joint rotation)."""
        names = z_names(self.model)
        missing = [name for name in names if name not in self.acts]
        if missing:
            self.acts.update(self.capture(missing))
        return torch.stack([self.acts[name] for name in names])

    def capture(self, names: Sequence[str]) -> dict[str, Tensor]:
        """Activations at `names` of the unpatched run (stops after the last block needed)."""
        return _record(self, names)

    def run(
        self,
        resid: Float[Tensor, "rows pos d_model"],
        start: int,
        hooks: Sequence[Hook],
        stop: int | None = None,
        full_logits: bool = False,
    ) -> Float[Tensor, "rows pos d"]:
        """Blocks `start..stop` on a folded batch; the final residual (before ln_final) or the logits."""
        variants = resid.shape[0] // self.batch
        # TransformerLens computes these in input_to_embed; a start_at_layer forward needs them passed.
        kwargs = dict(
            shortformer_pos_embed=fold(self.shortformer_pos_embed, variants),
            attention_mask=fold(self.attention_mask, variants),
        )
        with self.model.hooks(fwd_hooks=list(hooks)):
            if full_logits:
                return self.model(resid, start_at_layer=start, **kwargs)
            stop = self.model.cfg.n_layers if stop is None else stop
            return self.model(resid, start_at_layer=start, stop_at_layer=stop, **kwargs)

    def end_logits(
        self,
        resid: Float[Tensor, "rows pos d_model"],
        start: int,
        hooks: Sequence[Hook],
        end_positions: Int[Tensor, " batch"],
        vocab_index: Int[Tensor, "batch k"] | None = None,
        runner: Runner = "auto",
        metric: MetricName = "logit_diff",
    ) -> Float[Tensor, "variants batch k"]:
        """Finish a folded forward from layer `start`; logits at END (the whole vocabulary), or what `metric` reads of
        the `vocab_index` tokens (`unembed_residual`).

        When every hook is on `hook_z`, `runner` ("auto" by default, see `fast_forward`) may run them on
        the fast runner, which calls each hook function where TransformerLens would; other hooks always
        run in TransformerLens.
        """
        variants = resid.shape[0] // self.batch
        ends, index = fold(end_positions, variants), fold(vocab_index, variants)
        if all(name.endswith(".attn.hook_z") for name, _ in hooks) and (
            fast_forward.resolve_runner(self.model, runner) == "fast"
        ):
            final = fast_forward.end_residual(
                self.model, resid, start, ends, self._z_function(hooks),
                fold(self.shortformer_pos_embed, variants), fold(self.attention_mask, variants),
            )  # fmt: skip
            return unembed_residual(self.model, final, index, metric).view(variants, self.batch, -1)
        final = self.run(resid, start, hooks)
        return unembed_at_end(self.model, final, ends, index, metric).view(variants, self.batch, -1)

    def z_patched_end_logits(
        self,
        resid: Float[Tensor, "rows pos d_model"],
        start: int,
        z_fn: ZFunction,
        end_positions: Int[Tensor, " batch"],
        vocab_index: Int[Tensor, "batch k"] | None = None,
        runner: Runner = "auto",
        metric: MetricName = "logit_diff",
    ) -> Float[Tensor, "variants batch k"]:
        """`end_logits` with every layer's z from `start` on replaced by `z_fn(layer, z)`: the fast runner calls
        it directly; the TransformerLens runner gets it as `hook_z` hooks, made here once."""
        variants = resid.shape[0] // self.batch
        if fast_forward.resolve_runner(self.model, runner) == "fast":
            final = fast_forward.end_residual(
                self.model, resid, start, fold(end_positions, variants), z_fn,
                fold(self.shortformer_pos_embed, variants), fold(self.attention_mask, variants),
            )  # fmt: skip
            index = fold(vocab_index, variants)
            return unembed_residual(self.model, final, index, metric).view(variants, self.batch, -1)
        hooks = [(hook_name("z", layer), _z_hook(z_fn, layer)) for layer in range(start, self.model.cfg.n_layers)]
        return self.end_logits(resid, start, hooks, end_positions, vocab_index, runner="hooks", metric=metric)

    def z_patched_capture(self, z_fn: ZFunction, layer: int) -> Float[Tensor, "batch pos head d_head"]:
        """The z of `layer` in a run of the base tokens whose every earlier layer's z is replaced by `z_fn(layer, z)`
        (TransformerLens hooks; the forward stops after `layer`)."""
        captured: dict[str, Tensor] = {}

        def save(z: Tensor, hook: HookPoint) -> None:
            captured["z"] = z

        hooks = [(hook_name("z", earlier), _z_hook(z_fn, earlier)) for earlier in range(layer)]
        self.run(self.embed, 0, [*hooks, (hook_name("z", layer), save)], stop=layer + 1)
        return captured["z"]

    def _z_function(self, hooks: Sequence[Hook]) -> ZFunction:
        """The hook_z hooks as the fast runner's (layer, z) -> z, in order, with their HookPoints."""
        by_layer: dict[int, list[Hook]] = {}
        for name, fn in hooks:
            by_layer.setdefault(layer_of(name), []).append((name, fn))

        def z_fn(layer: int, z: Tensor) -> Tensor:
            for name, fn in by_layer.get(layer, ()):
                out = fn(z, self.model.hook_dict[name])
                z = z if out is None else out
            return z

        return z_fn


def _z_hook(z_fn: ZFunction, layer: int) -> Callable[[Tensor, HookPoint], Tensor]:
    """`z_fn` at `layer` as a TransformerLens hook on that layer's `hook_z`."""

    def hook(z: Tensor, hook: HookPoint) -> Tensor:
        return z_fn(layer, z)

    return hook


def _record(run: BaseRun, names: Sequence[str]) -> dict[str, Tensor]:
    check_hooks_exist(run.model, names)
    store: dict[str, Tensor] = {}

    def save(act: Tensor, hook: HookPoint) -> None:
        store[hook.name] = act.detach()

    last_layer = max((layer_of(name) for name in names), default=-1)
    if last_layer >= 0:
        with torch.no_grad():
            run.run(run.embed, 0, [(name, save) for name in names], stop=last_layer + 1)
    return store


def check_hooks_exist(model: HookedTransformer, names: Sequence[str]) -> None:
    # Attention-only blocks still own MLP hook points, which never fire.
    never_fire = ("hook_mlp_out", "hook_resid_mid", "hook_mlp_in") if model.cfg.attn_only else ()
    missing = [n for n in names if n not in model.hook_dict or n.endswith(never_fire)]
    if missing:
        raise ValueError(f"the model has no hook point(s) {missing} (attn_only={model.cfg.attn_only})")


def capture(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], names: Sequence[str]) -> dict[str, Tensor]:
    """Activations at `names` of one unpatched, no-grad run of `tokens`."""
    return BaseRun.prepare(model, tokens, names, prefixes=False).acts


def head_z(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"]
) -> tuple[Float[Tensor, "layer batch pos head d_head"], Float[Tensor, "batch pos d_model"]]:
    """Every layer's head outputs z and the final residual stream (before `ln_final`), in one run."""
    final = hook_name("resid_post", model.cfg.n_layers - 1)
    acts = capture(model, tokens, [*z_names(model), final])
    return torch.stack([acts[name] for name in z_names(model)]), acts[final]


def end_logits(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    end_positions: Int[Tensor, " batch"],
    vocab_index: Int[Tensor, "batch k"] | None = None,
    metric: MetricName = "logit_diff",
) -> Float[Tensor, "batch k"]:
    """Logits at END of the unpatched run (the whole vocabulary), or what `metric` reads of the `vocab_index` tokens
    (`unembed_residual`)."""
    check_token_ids(model, tokens, "tokens")
    tokens = tokens.to(model.cfg.device)
    final = model(tokens, stop_at_layer=model.cfg.n_layers)
    return unembed_at_end(model, final, end_positions, vocab_index, metric)


# --------------------------------------------------------------------------------------------------
# The one patched run of head outputs.


def chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def variants_per_chunk(max_rows: int, batch: int) -> int:
    if max_rows < 1:
        raise ValueError(f"rows per folded forward (max_batch, max_rows) must be >= 1, got {max_rows}")
    return max(1, max_rows // batch)


def patched_end_logits(
    base: BaseRun,
    source_z: Float[Tensor, "layer batch pos head d_head"],
    combination: Combination,
    end_positions: Int[Tensor, " batch"],
    vocab_index: Int[Tensor, "batch k"] | None = None,
    *,
    roles: Int[Tensor, "batch pos"] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    runner: Runner = "auto",
    metric: MetricName = "logit_diff",
) -> Float[Tensor, "variants batch k"]:
    """Logits at END of the base run with every layer's z mixed towards `source_z` by `combination` (the whole
    vocabulary, or what `metric` reads of the `vocab_index` tokens: `unembed_residual`).

    `roles`: the batch's position roles (`data.roles.batch_roles`), for `per_position` combinations. Each
    chunk's forward binds them and `source_z` to the combination (`Combination.bind`): nothing is held on it.

    Runs under the caller's grad mode: with a learned combination, gradients reach its weights. Hooks
    live only inside the forward (TransformerLens removes them on exit, also on error). A `base`
    prepared with prefixes lets each chunk of variants start at its first patched layer.

    `runner`: "auto" uses `ioi_superpose.engine.fast_forward` (no hooks, fused kernels, the last block at END
    only) where it supports the model and otherwise TransformerLens hooks with a warning; "fast" and
    "hooks" force one (see `fast_forward`).
    """
    n_layers = base.model.cfg.n_layers
    if tuple(source_z.shape[:2]) != (n_layers, base.batch) or source_z.shape[2] < base.pos:
        raise ValueError(
            f"source_z has shape {tuple(source_z.shape)}; expected [n_layers={n_layers}, batch={base.batch}, "
            f"pos>={base.pos}, head, d_head] (clean and corrupted prompts must align)"
        )
    source_z = source_z[:, :, : base.pos]
    has_prefixes = n_layers == 1 or hook_name("resid_pre", 1) in base.acts
    per_chunk = variants_per_chunk(max_rows, base.batch)
    # A combination that patches from fixed activations also reads the unpatched base run's z (`reads_base_z`).
    base_z = {"base_z": base.recorded_z()} if combination.reads_base_z else {}
    outputs = []
    for rows in chunks(combination.n_variants, per_chunk):
        part = combination.select(rows)
        start = min(part.first_layer(), n_layers - 1) if has_prefixes else 0
        resid = fold(base.resid_pre(start), len(rows))
        z_fn = part.bind(source_z, roles, **base_z)
        outputs.append(base.z_patched_end_logits(resid, start, z_fn, end_positions, vocab_index, runner, metric))
    return torch.cat(outputs)


# --------------------------------------------------------------------------------------------------
# A contrast batch: the unpatched runs it is measured against, and patched runs on it.


@dataclass
class Reference:
    """The unpatched base and source runs of one batch, in one direction. The model is frozen, so per
    prompt these never change (`HeadSuperposition` caches them)."""

    direction: Direction
    source_z: Float[Tensor, "layer batch pos head d_head"]
    """The z a patch mixes against: the source run's for a cut (`rest="free"`), the base run's for a circuit
    (`rest="frozen"`, `ioi_superpose.engine.rest`)."""
    source_answer_logits: Float[Tensor, "batch 2"]
    """The source run's answer values at END: what `metric` reads (`unembed_residual`: logits, or log-probabilities
    for `prob_diff`), as are `base_answer_logits` and every patched run's answers measured against them."""
    base_answer_logits: Float[Tensor, "batch 2"]
    source_log_probs: Float[Tensor, "batch vocab"] | None = None
    """At END; only when asked for (the kl objective)."""
    answer_weights: Float[Tensor, "batch k"] | None = None
    """The batch's answer weights (`ContrastBatch.answer_weights`; None: the pair): what `measure` reads."""
    metric: MetricName = "logit_diff"
    """The task's metric (`ContrastBatch.metric`)."""

    def measure(self, answer_logits: Float[Tensor, "*variants batch k"]) -> Float[Tensor, "*variants batch"]:
        """The task's metric per prompt of these prompts' answer values (`engine.metric.answer_metric`)."""
        return answer_metric(answer_logits, self.answer_weights, self.metric)

    def clean_and_corrupted(self) -> tuple[Float[Tensor, "batch 2"], Float[Tensor, "batch 2"]]:
        return clean_and_corrupted(self.base_answer_logits, self.source_answer_logits, self.direction)

    def effect(self, patched: Float[Tensor, "*variants batch 2"]) -> Float[Tensor, "*variants"]:
        """How far a patch moves the mean metric from the base run (0) to the source run (1)."""
        base = self.measure(self.base_answer_logits).mean()
        source = self.measure(self.source_answer_logits).mean()
        return normalised_recovery(self.measure(patched).mean(-1), base, source)

    def recovery(self, patched: Float[Tensor, "*variants batch 2"]) -> Float[Tensor, "*variants"]:
        """(patched − corrupted) / (clean − corrupted) of the mean metric, in either direction:
        denoising aims for 1, noising for 0."""
        clean, corrupted = self.clean_and_corrupted()
        return normalised_recovery(
            self.measure(patched).mean(-1), self.measure(corrupted).mean(), self.measure(clean).mean()
        )


@torch.no_grad()
def reference_runs(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    end_positions: Int[Tensor, " batch"],
    answer_tokens: Int[Tensor, "batch 2"],
    direction: Direction,
    source_log_probs: bool = False,
    runner: Runner = "auto",
    base_answer_logits: Float[Tensor, "batch 2"] | None = None,
    rest: Rest = "free",
    answer_weights: Float[Tensor, "batch k"] | None = None,
    metric: MetricName = "logit_diff",
) -> Reference:
    """The source run (its z and answer logits) and the base run (answer logits) of a contrast batch.

    `runner` as in `patched_end_logits`: the fast runner does both runs in one folded forward.
    `base_answer_logits`: the base run's answer logits when already known (a cache): its run is skipped.
    `answer_weights`, `metric`: the batch's (`ContrastBatch.answer_weights`, None: the pair; `ContrastBatch.metric`),
    kept in the `Reference`; the answer values are what `metric` reads (`unembed_residual`).
    `rest` (`ioi_superpose.engine.rest`): "frozen" records the *base* run's z instead (in `Reference.source_z`, the
    z a patch mixes against): a circuit runs on the source tokens and freezes heads at their base values.
    """
    base_tokens, source_tokens = base_and_source(clean_tokens, corrupted_tokens, direction)
    check_token_ids(model, source_tokens, "the source tokens")
    frozen = check_rest(rest) == "frozen"
    need_base = base_answer_logits is None or frozen
    if fast_forward.resolve_runner(model, runner) == "fast":
        check_token_ids(model, base_tokens, "tokens")
        # The first run's z is recorded: the source run's for a cut, the base run's for a circuit.
        runs = [base_tokens, source_tokens] if frozen else [source_tokens, *([base_tokens] if need_base else [])]
        source_z, ends = _fast_reference(model, runs, end_positions)
        source_end = ends[1] if frozen else ends[0]
        if need_base:
            base_answer_logits = unembed_residual(model, ends[0] if frozen else ends[1], answer_tokens, metric)
    else:
        z, source_final = head_z(model, source_tokens)
        source_end = gather_end(source_final, end_positions)
        source_z = head_z(model, base_tokens)[0] if frozen else z
        if need_base:
            base_answer_logits = end_logits(model, base_tokens, end_positions, answer_tokens, metric)
    log_probs = unembed_residual(model, source_end).log_softmax(-1) if source_log_probs else None
    return Reference(
        direction=direction,
        source_z=source_z,
        source_answer_logits=unembed_residual(model, source_end, answer_tokens, metric),
        base_answer_logits=base_answer_logits,
        source_log_probs=log_probs,
        answer_weights=answer_weights,
        metric=metric,
    )


def _fast_reference(
    model: HookedTransformer, runs: Sequence[Int[Tensor, "batch pos"]], end_positions: Int[Tensor, " batch"]
) -> tuple[Float[Tensor, "layer batch pos head d_head"], list[Float[Tensor, "batch d_model"]]]:
    """The first run's z of every layer, and every run's final residual at END, in one folded forward."""
    batch = runs[0].shape[0]
    tokens = torch.cat(list(runs)).to(model.cfg.device)
    embed, _, shortformer, mask = model.input_to_embed(tokens)
    source_z: list[Tensor] = []

    def record(layer: int, z: Tensor) -> Tensor:
        source_z.append(z[:batch].contiguous())
        return z

    final = fast_forward.end_residual(model, embed, 0, fold(end_positions, len(runs)), record, shortformer, mask)
    return torch.stack(source_z), list(final.split(batch))


def notion_end_logits(
    model: HookedTransformer,
    batch: ContrastBatch,
    reference: Reference,
    combination: Combination,
    rest: Rest,
    vocab_index: Int[Tensor, "batch k"] | None = None,
    max_rows: int | None = None,
) -> Float[Tensor, "variants batch k"]:
    """The patched forward of a contrast batch in a notion: END logits of every variant of `combination` (row
    k * batch + b: variant k, prompt b), run on `rest`'s tokens (`engine.rest.run_tokens`: the base run's for a
    cut, the source run's for a circuit) with every layer's z mixed towards `reference.source_z`, the batch's position
    roles bound (`per_position`). `max_rows` None: every row in one forward. Under the caller's grad mode. With
    `vocab_index`, the answer values the batch's metric reads (`unembed_residual`)."""
    base_tokens, source_tokens = base_and_source(batch.clean_tokens, batch.corrupted_tokens, reference.direction)
    base = BaseRun.prepare(model, run_tokens(base_tokens, source_tokens, rest), prefixes=False)
    max_rows = combination.n_variants * len(batch) if max_rows is None else max_rows
    return patched_end_logits(
        base, reference.source_z, with_rest(combination, rest), batch.end_pos, vocab_index,
        roles=batch_roles(batch), max_rows=max_rows, metric=batch.metric,
    )  # fmt: skip


@torch.no_grad()
def recovery_of(
    model: HookedTransformer,
    prompts: ContrastBatch,
    alpha: Float[Tensor, "*variants n_layers n_heads"],
    direction: Direction = "denoising",
    rest: Rest = "free",
    *,
    reference: Reference | None = None,
) -> Float[Tensor, "*variants"]:
    """Recovery of fixed α (or of several at once, folded into one batched run) on `prompts`: every
    head's z becomes z_base + α (z_source − z_base) at every position (`rest="free"`), or, in a run on the
    source tokens, z_base + α (z_current − z_base) (`rest="frozen"`, `ioi_superpose.engine.rest`).
    `reference`: the prompts' reference runs when they are not the paired prompts' (an ablation's:
    `engine.ablations.notion_reference`); None: `reference_runs` of the prompts."""
    heads = (model.cfg.n_layers, model.cfg.n_heads)
    if alpha.dim() < 2 or tuple(alpha.shape[-2:]) != heads:
        raise ConfigError(
            f"alpha must be [..., n_layers, n_heads] = [..., {heads[0]}, {heads[1]}] for this model, got "
            f"{list(alpha.shape)}."
        )
    device = model.cfg.device
    prompts = prompts.to(device)
    combination = with_rest(HeadWeights(alpha.reshape(-1, *alpha.shape[-2:])).to(device), rest)
    if reference is None:
        reference = reference_runs(
            model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.end_pos, prompts.answer_tokens, direction,
            rest=rest, answer_weights=prompts.answer_weights, metric=prompts.metric,
        )  # fmt: skip
    base_tokens, source_tokens = base_and_source(prompts.clean_tokens, prompts.corrupted_tokens, direction)
    base = BaseRun.prepare(model, run_tokens(base_tokens, source_tokens, rest), prefixes=combination.n_variants > 1)
    patched = patched_end_logits(base, reference.source_z, combination, prompts.end_pos, prompts.answer_tokens,
                                 metric=reference.metric)  # fmt: skip
    return reference.recovery(patched).cpu().reshape(alpha.shape[:-2])
