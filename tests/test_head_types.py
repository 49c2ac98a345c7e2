"""Head types on a hand-written attention-only model whose heads' types hold by construction: head 0 attends to the
previous token and copies, head 1 attends to earlier copies of the current token and suppresses it, head 2 has zero
weights (uniform causal attention, no OV). Expected scores are derived from the construction, not from the code."""

from __future__ import annotations

import pytest
import torch

from ioi_superpose.analyses.head_types import TYPES, head_types
from ioi_superpose.data.ioi import IOIBatch
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer, HookedTransformerConfig
from ioi_superpose.results.tables import head_types_table

VOCAB, CTX = 12, 10
D_MODEL = VOCAB + CTX  # token one-hot, then position one-hot
BIG = 100.0


def built_model() -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=1, n_heads=3, d_model=D_MODEL, d_head=D_MODEL, d_vocab=VOCAB, n_ctx=CTX,
                                  attn_only=True, normalization_type=None, act_fn=None)  # fmt: skip
    model = HookedTransformer(cfg)
    scale = BIG * D_MODEL**0.5  # TransformerLens divides scores by √d_head
    tok, pos = slice(0, VOCAB), slice(VOCAB, D_MODEL)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.W_E[:, tok] = torch.eye(VOCAB)
        model.W_pos[:, pos] = torch.eye(CTX)
        model.W_U[tok, :] = torch.eye(VOCAB)
        attn = model.blocks[0].attn
        # head 0: query at position i matches key at position j exactly when j = i − 1
        attn.W_Q[0, pos, pos] = torch.eye(CTX) * scale
        attn.W_K[0, pos, pos] = torch.diag(torch.ones(CTX - 1), 1)  # key j → coordinate j + 1
        # head 1: query matches keys with the same token, minus twice its own position: earlier duplicates win
        attn.W_Q[1, tok, tok] = torch.eye(VOCAB) * scale
        attn.W_K[1, tok, tok] = torch.eye(VOCAB)
        attn.W_Q[1, pos, pos] = torch.eye(CTX) * scale
        attn.W_K[1, pos, pos] = -2 * torch.eye(CTX)
        # OV: head 0 copies the attended token, head 1 suppresses it, head 2 writes nothing
        attn.W_V[0, tok, tok] = torch.eye(VOCAB)
        attn.W_O[0, tok, tok] = torch.eye(VOCAB)
        attn.W_V[1, tok, tok] = torch.eye(VOCAB)
        attn.W_O[1, tok, tok] = -torch.eye(VOCAB)
    model.eval()
    return model


def prompts() -> IOIBatch:
    # "BOS A B x A y B end" style rows: IO = A at 1, S1 = B at 2, S2 = B at 6, END at 7 (S2 = END − 1).
    rows = torch.tensor([[0, 3, 4, 5, 3, 6, 4, 7], [0, 8, 9, 5, 8, 6, 9, 7], [0, 10, 11, 5, 10, 6, 11, 7]])
    n = len(rows)
    return IOIBatch(clean_tokens=rows, corrupted_tokens=rows.clone(), answer_tokens=rows[:, [1, 2]],
                    end_pos=torch.full((n,), 7), index=torch.arange(n), io_pos=torch.full((n,), 1),
                    s1_pos=torch.full((n,), 2), s2_pos=torch.full((n,), 6),
                    template_id=torch.zeros(n, dtype=torch.long))  # fmt: skip


def test_types_by_construction():
    scores = head_types(built_model(), prompts())
    assert list(scores) == list(TYPES)
    length = 8
    # Previous-token head: every row but the first puts (all) its attention on the previous position.
    assert float(scores["previous_token"][0, 0]) == pytest.approx((length - 1) / length, abs=1e-3)
    # Uniform causal attention: row i gives 1/(i+1) to the previous position (row 0 has none).
    uniform = sum(1 / (i + 1) for i in range(1, length)) / length
    assert float(scores["previous_token"][0, 2]) == pytest.approx(uniform, abs=1e-4)
    # Duplicate-token head: rows with an earlier copy of their token (positions 4 and 6) attend to it only.
    assert float(scores["duplicate_token"][0, 1]) == pytest.approx(2 / length, abs=1e-3)
    assert float(scores["duplicate_token"][0, 0]) == pytest.approx(0.0, abs=1e-3)
    # Copying: M = +I (head 0), −I (head 1), 0 (head 2) over the 6 names.
    assert scores["copying"][0].tolist() == pytest.approx([1.0, -1.0, 0.0], abs=1e-5)
    assert scores["copying_cosine"][0].tolist() == pytest.approx([1.0, -1.0, 0.0], abs=1e-5)
    assert scores["copying_top5"][0, 0] == 1.0 and scores["copying_top5"][0, 1] == 0.0
    # END (position 7) → S2 (position 6) is the previous token: head 0 looks at S2, not at IO or S1.
    assert float(scores["attn_end_s2"][0, 0]) == pytest.approx(1.0, abs=1e-3)
    assert float(scores["attn_end_io"][0, 0]) == pytest.approx(0.0, abs=1e-3)
    assert float(scores["attn_end_s1"][0, 2]) == pytest.approx(1 / length, abs=1e-4)


def test_a_head_that_only_reads_one_name_is_no_copier_by_its_cosine():
    """One non-zero row (name 0 moved into what names 1 and 2 read, a tiny own logit): the eigenvalue score is +1
    (its only non-zero eigenvalue is the diagonal entry), the cosine with the identity about 0."""
    from ioi_superpose.analyses.head_types import copying_cosines, copying_scores

    reader = torch.zeros(1, 1, 3, 3)
    reader[0, 0, 0] = torch.tensor([0.01, 5.0, -5.0])
    copier = 2.0 * torch.eye(3)[None, None]
    assert float(copying_scores(reader)) == pytest.approx(1.0, abs=1e-5)
    assert float(copying_cosines(reader)) == pytest.approx(0.01 / (3**0.5 * (0.01**2 + 50) ** 0.5), abs=1e-6)
    assert float(copying_cosines(copier)) == pytest.approx(1.0, abs=1e-6)


def test_table_marks_selected_heads():
    scores = {"a": torch.tensor([[0.5, 0.25]]), "b": torch.tensor([[1.0, 0.0]])}
    table = head_types_table(scores, [(0, 1)])
    assert "| 0.0 | 0.50 | 1.00 |" in table and "| **0.1 ★** | **0.25** | **0.00** |" in table


def test_needs_ioi_positions():
    from ioi_superpose.data.batch import ContrastBatch

    rows = prompts()
    plain = ContrastBatch(rows.clean_tokens, rows.corrupted_tokens, rows.answer_tokens, rows.end_pos, rows.index)
    with pytest.raises(ConfigError, match="IOIBatch"):
        head_types(built_model(), plain)
