"""evaluate_lm against direct computations on full logits, micro-batching, hooks, and bad input."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from paragraph_planning import load_model
from paragraph_planning.core.evaluation import evaluate_lm, evaluate_lm_rows, evaluate_many, most_common_tokens
from paragraph_planning.data.corpora import token_batches


@pytest.fixture(scope="module")
def model():
    return load_model("tiny-llama")


@pytest.fixture(scope="module")
def batches(model):
    return token_batches("bbc", model.tokenizer, n_tokens=6 * 48, seq_len=48, batch_size=3)  # [2, 3, 48]


@pytest.fixture(scope="module")
def skip(batches):
    return most_common_tokens(batches, k=8)  # a small sample: its 50 most common would be nearly every token


def reference(logits: torch.Tensor, rows: torch.Tensor, skip: torch.Tensor) -> dict[str, float]:
    """The metrics straight from full logits ``[rows, seq, vocab]``."""
    logits, target = logits[:, :-1].reshape(-1, logits.shape[-1]).double(), rows[:, 1:].reshape(-1)
    top = logits.topk(10, dim=-1).indices
    hit1, hit10 = top[:, 0] == target, (top == target[:, None]).any(-1)
    kept = ~torch.isin(target, skip)
    loss = F.cross_entropy(logits, target).item()
    return {"loss": loss, "perplexity": math.exp(loss), "top1": hit1.double().mean().item(),
            "top10": hit10.double().mean().item(), "skip50_top1": hit1[kept].double().mean().item(),
            "skip50_top10": hit10[kept].double().mean().item(), "n_tokens": target.numel()}


class Shift:
    """A stub LM whose logit for token ``b`` after ``a`` is ``-((b - a - 1) % V)``: the rank of ``b`` is known."""

    def __init__(self, vocab: int = 20):
        a, b = torch.arange(vocab)[:, None], torch.arange(vocab)[None, :]
        self.table = -((b - a - 1) % vocab).float()  # [vocab, vocab]
        self.cfg = SimpleNamespace(kind="causal-lm")
        self.hf = SimpleNamespace(get_output_embeddings=lambda: SimpleNamespace(weight=self.table))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x]


def test_metrics_equal_direct_computation_on_full_logits(model, batches, skip):
    rows = batches.reshape(-1, 48)
    expected = reference(model.hf(input_ids=rows).logits, rows, skip)
    got = evaluate_lm(model, batches, skip_ids=skip)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
    assert got["top10"] > 0 and got["n_tokens"] == 6 * 47


def test_per_row_sums_equal_each_row_alone_and_add_up_to_evaluate_lm(model, batches, skip):
    rows = batches.reshape(-1, 48)
    table = evaluate_lm_rows(model, batches, skip_ids=skip, max_logit_bytes=2 * 48 * 260 * 4)  # 2 rows per pass
    assert table.row.tolist() == list(range(6)) and (table.tokens == 47).all()
    for i in (0, 3, 5):  # each row's sums are that row evaluated on its own
        alone = evaluate_lm(model, rows[i:i + 1], skip_ids=skip)
        assert table.top1[i] == round(alone["top1"] * 47) and table.loss[i] == pytest.approx(alone["loss"] * 47)
        assert table.skip50_top1[i] == round(alone["skip50_top1"] * table.kept[i])
    whole = evaluate_lm(model, batches, skip_ids=skip)
    assert table.top10.sum() / table.tokens.sum() == pytest.approx(whole["top10"])
    assert table.skip50_top10.sum() / table.kept.sum() == pytest.approx(whole["skip50_top10"])


def test_ranks_and_skip_ids_on_a_stub_with_known_answers():
    model = Shift(vocab=20)
    rows = torch.tensor([[0, 1, 2, 3, 13, 14, 7, 9], [5, 6, 7, 8, 0, 19, 0, 1]])
    # steps: +1 +1 +1 +10 +1 -7(=+13) +2 | +1 +1 +1 -8(=+12) +19 +1(19->0) +1  ->  rank = step - 1 (mod 20)
    ranks = torch.tensor([0, 0, 0, 9, 0, 12, 1, 0, 0, 0, 11, 18, 0, 0])
    out = evaluate_lm(model, rows, skip_ids=torch.tensor([1, 7]))
    assert out["top1"] == pytest.approx(9 / 14) and out["top10"] == pytest.approx(11 / 14)
    # targets 1 and 7 (steps 1, 6, 9 and 14) are skipped: kept ranks 0 0 9 0 1 | 0 0 11 18 0
    assert out["skip50_top1"] == pytest.approx(6 / 10) and out["skip50_top10"] == pytest.approx(8 / 10)
    lse = torch.logsumexp(model.table[0].double(), 0).item()  # the same for every row of the table
    assert out["loss"] == pytest.approx(lse + ranks.double().mean().item())


def test_micro_batches_give_the_same_numbers_as_one_batch(model, batches, skip):
    calls = []
    one = evaluate_lm(model, batches, skip_ids=skip, max_logit_bytes=10**12)
    with model.hooks([("blocks.0.resid_pre", lambda act, hook: calls.append(act.shape[0]))]):
        small = evaluate_lm(model, batches, skip_ids=skip, max_logit_bytes=2 * 48 * 260 * 4)  # 2 rows per pass
        tiny = evaluate_lm(model, batches, skip_ids=skip, max_logit_bytes=1)  # at least one row
    assert calls == [2, 2, 2] + [1] * 6
    for key in one:
        assert small[key] == pytest.approx(one[key], rel=1e-6) and tiny[key] == pytest.approx(one[key], rel=1e-6)


def test_hooks_active_in_the_callers_context_apply(model, batches, skip):
    plain = evaluate_lm(model, batches, skip_ids=skip)
    with model.hooks([("blocks.1.mlp.out", lambda act, hook: act * 0)]):
        ablated = evaluate_lm(model, batches, skip_ids=skip)
    assert ablated["loss"] != pytest.approx(plain["loss"], rel=1e-4)
    assert evaluate_lm(model, batches, skip_ids=skip) == plain  # same input, same numbers


def test_n_tokens_limits_rows_and_warns_when_short(model, batches):
    assert evaluate_lm(model, batches, n_tokens=50)["n_tokens"] == 2 * 47
    with pytest.warns(UserWarning, match="only 282 targets, fewer than the 1000"):
        assert evaluate_lm(model, batches, n_tokens=1000)["n_tokens"] == 282


def test_most_common_tokens_counts_targets_only():
    batches = torch.tensor([[9, 1, 1, 2, 2, 3], [9, 3, 5, 5, 5, 4]])  # position 0 (9) is never a target
    assert most_common_tokens(batches, k=2).tolist() == [5, 1]  # 1, 2, 3 tie: the smaller id first
    assert most_common_tokens(batches, k=50).tolist() == [5, 1, 2, 3, 4]
    assert most_common_tokens(batches[None], k=1).tolist() == [5]


def test_bad_input_raises_clear_errors(model, batches):
    with pytest.raises(ValueError, match=r"\[n_batches, batch, seq\] or \[rows, seq\]"):
        evaluate_lm(model, batches.flatten())
    with pytest.raises(TypeError, match="integer token ids"):
        evaluate_lm(model, batches.float())
    with pytest.raises(ValueError, match="no targets"):
        evaluate_lm(model, batches[..., :1])
    with pytest.raises(ValueError, match="no targets"):
        evaluate_lm(model, batches[:0])
    with pytest.raises(ValueError, match=r"must lie in \[0, 260\)"):
        evaluate_lm(model, batches + 1000)
    with pytest.raises(ValueError, match="n_tokens must be >= 1"):
        evaluate_lm(model, batches, n_tokens=0)
    with pytest.raises(TypeError, match="causal language model"):
        evaluate_lm(SimpleNamespace(cfg=SimpleNamespace(kind="image"), name="vit"), batches)
    with pytest.raises(ValueError, match="corpora is empty"):
        evaluate_many(model, {})


def test_evaluate_many_is_one_row_per_corpus(model, batches):
    table = evaluate_many(model, {"bbc": batches, "bbc-half": batches[:1]})
    assert isinstance(table, pd.DataFrame) and list(table.index) == ["bbc", "bbc-half"]
    assert table.index.name == "corpus" and table.loc["bbc", "loss"] == evaluate_lm(model, batches)["loss"]
    assert table["n_tokens"].tolist() == [282, 141]


@pytest.mark.real_model
def test_smollm2_matches_direct_computation():
    real = load_model("smollm2-135m")
    batches = token_batches("wiki-en", real.tokenizer, n_tokens=2 * 32, seq_len=32, batch_size=2, split="test")
    rows = batches.reshape(-1, 32)
    skip = most_common_tokens(rows, k=5)
    expected = reference(real.hf(input_ids=rows).logits, rows, skip)
    got = evaluate_lm(real, batches, skip_ids=skip, max_logit_bytes=1)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key
    assert 1.5 < got["loss"] < 5 and got["top1"] > 0.2  # a trained model on English prose
