import pytest
import torch

from ioi_superpose.baselines.ioi_heads import (
    IOI_CIRCUIT,
    IOI_HEAD_CLASSES,
    circuit_precision_recall,
    has_gpt2_small_shape,
)
from ioi_superpose.baselines.top_k import top_k_alpha
from ioi_superpose.results.baselines import spearman, top_k_overlap
from ioi_superpose.results.units import top_heads


def test_circuit_precision_and_recall_against_the_paper_heads():
    alpha = torch.zeros(12, 12)
    for layer, head in IOI_HEAD_CLASSES["name_mover"]:
        alpha[layer, head] = 0.9
    alpha[0, 0] = 0.5  # not in the circuit
    alpha[5, 5] = 0.01  # in the circuit, but below the threshold
    result = circuit_precision_recall(alpha, threshold=0.05)
    assert len(IOI_CIRCUIT) == 26
    assert result["precision"] == pytest.approx(3 / 4)
    assert result["recall"] == pytest.approx(3 / 26)
    assert result["recall_by_class"]["name_mover"] == 1.0 and result["recall_by_class"]["induction"] == 0.0
    assert result["selected_outside_circuit"] == [(0, 0)]
    assert has_gpt2_small_shape(12, 12, 768, 50257) and not has_gpt2_small_shape(12, 12, 768, 1000)


def test_rank_statistics():
    a = torch.tensor([[0.1, 0.5], [0.9, 0.3]])
    assert spearman(a, a * 10) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([0.0, 0.0, 5.0])) == pytest.approx(
        1.0, abs=1e-5
    )  # ties
    assert spearman(torch.zeros(2, 2), a) is None  # an all-zero α: undefined, not NaN
    assert top_k_overlap(a, torch.tensor([[0.0, 1.0], [2.0, 0.0]]), k=2) == 1.0
    assert top_k_overlap(a, torch.tensor([[1.0, 0.0], [0.0, 2.0]]), k=2) == 0.0


def test_top_heads_and_top_k_alpha():
    values = torch.tensor([[0.0, -0.7], [0.2, 0.9]])
    assert top_heads(values, k=2) == [{"layer": 1, "head": 1, "alpha": 0.9}, {"layer": 0, "head": 1, "alpha": -0.7}]
    assert top_heads(values, threshold=0.5, key="value") == [
        {"layer": 1, "head": 1, "value": 0.9},
        {"layer": 0, "head": 1, "value": -0.7},
    ]
    weights = torch.tensor([[0.3, 0.4], [0.5, 0.6]])
    assert torch.equal(top_k_alpha(values, 1, weights), torch.tensor([[0.0, 0.0], [0.0, 0.6]]))


def test_attention_weighted_alpha_patches_the_most_attending_head_fully():
    from ioi_superpose.baselines.top_k import attention_weighted_alpha

    attention = torch.tensor([[0.02, 0.05], [0.01, 0.04]])
    alpha = attention_weighted_alpha(attention, k=2)
    assert torch.allclose(alpha, torch.tensor([[0.0, 1.0], [0.0, 0.8]]))


def test_heatmap_numbers_are_white_on_dark_cells_and_black_on_light_ones():
    from ioi_superpose.plots import head_heatmap

    figure = head_heatmap(torch.tensor([[1.0, 0.0, -1.0]]), "t", label="u")
    colours = {text.get_text(): text.get_color() for text in figure.axes[0].texts}
    assert colours == {"1.00": "white", "0.00": "black", "-1.00": "white"}
