"""The book runner: execute chapters with papermill, then render them with Jupyter Book (v1).

Pipeline (``python -m paragraph_planning build``):

1. The chapters are the notebooks that ``_toc.yml`` lists; their parameters come from one
   profile of ``book/params.yml`` (``full``: the rendered book; ``tiny``: tests, seconds each).
2. The sources are copied into a staging copy of the book (``_staging/``) and papermill executes
   every chapter there, injecting the profile's parameters after the cell tagged ``parameters``.
3. ``jupyter-book build`` renders the staging copy with ``execute_notebooks: "off"`` and the
   HTML is copied to ``_build/html`` (or ``--out``).

Adding a chapter: write ``book/NN_name.ipynb`` with its first code cell tagged ``parameters``
(every knob: model, sizes, seed, device, dtype) and outputs stripped; list it in ``_toc.yml``;
give it an entry under both ``full`` and ``tiny`` in ``book/params.yml`` (``tiny``: tiny random
models, a few seconds). ``tests/test_book.py`` then checks and runs it like every other chapter.
Kernels run with :data:`KERNEL_ENV` (book chart renderer on, progress bars off).

The Sphinx extension named in ``_config.yml`` (self-contained JavaScript) is
:mod:`paragraph_planning.book.sphinx`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

ROOT = Path(__file__).resolve().parents[2]
"""The repository root (where ``_config.yml`` and ``_toc.yml`` live)."""
PROFILES_FILE = Path("book") / "params.yml"
STAGING = "_staging"
BOOK_ENV = "PARAGRAPH_PLANNING_BOOK"  # same value as plots.BOOK_ENV; not imported (altair is slow)
_SKIP = {"_build", ".ipynb_checkpoints", "__pycache__"}



class BookError(RuntimeError):
    """A problem the user can fix (unknown chapter or parameter, a failing chapter, ...)."""


# ============================================================================ chapters and profiles
@dataclass(frozen=True)
class Chapter:
    """One notebook listed in the toc. ``path`` is relative to the root (``book/02_ablation.ipynb``)."""

    name: str
    path: Path

    @property
    def alias(self) -> str:
        """The name without its number prefix: ``02_ablation`` -> ``ablation``."""
        return re.sub(r"^\d+[_-]*", "", self.name) or self.name


def _toc_files(entry: Any) -> Iterator[str]:
    if isinstance(entry, dict):
        if "file" in entry:
            yield str(entry["file"])
        for key in ("root", "chapters", "sections", "parts"):
            value = entry.get(key)
            if isinstance(value, str):
                yield value
            elif isinstance(value, list):
                for item in value:
                    yield from _toc_files(item)
            elif isinstance(value, dict):
                yield from _toc_files(value)


def toc_files(root: Path = ROOT) -> list[str]:
    """Every document of ``_toc.yml`` in reading order (paths without suffix, relative to the root)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    return list(dict.fromkeys(_toc_files(toc)))


def chapters(root: Path = ROOT) -> list[Chapter]:
    """The notebooks listed in the toc, in order."""
    out = []
    for f in toc_files(root):
        path = Path(f) if f.endswith(".ipynb") else Path(f + ".ipynb")
        if (root / path).exists():
            out.append(Chapter(path.stem, path))
    return out


def find_chapter(name: str, root: Path = ROOT) -> Chapter:
    """A chapter by stem (``02_ablation``), alias (``ablation``), file name or unique substring."""
    chs = chapters(root)
    key = Path(name).stem.lower()
    for test in (lambda c: c.name.lower() == key, lambda c: c.alias.lower() == key,
                 lambda c: key in c.name.lower()):
        hits = [c for c in chs if test(c)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise BookError(f"{name!r} matches several chapters: {', '.join(c.name for c in hits)}.")
    valid = ", ".join(f"{c.name} ({c.alias})" for c in chs)
    raise BookError(f"Unknown chapter {name!r}. Chapters: {valid}.")


def load_profiles(root: Path = ROOT) -> dict[str, dict[str, dict[str, Any]]]:
    """``book/params.yml``: ``{profile: {chapter stem: {parameter: value}}}``."""
    path = root / PROFILES_FILE
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    return {p: {c: dict(v or {}) for c, v in (chs or {}).items()} for p, chs in (data or {}).items()}


def profile_parameters(profile: str, chapter: Chapter, root: Path = ROOT) -> dict[str, Any]:
    """The parameters ``profile`` sets for ``chapter`` (empty: the notebook's own defaults)."""
    profiles = load_profiles(root)
    if profile not in profiles:
        raise BookError(f"Unknown profile {profile!r}. Profiles in {PROFILES_FILE}: {', '.join(profiles)}.")
    return dict(profiles[profile].get(chapter.name) or {})


def declared_parameters(chapter: Chapter, root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """The chapter's ``parameters`` cell as papermill reads it: ``{name: {default, inferred_type_name, help}}``."""
    import papermill

    return dict(papermill.inspect_notebook(str(root / chapter.path)))


def check_parameters(chapter: Chapter, params: Mapping[str, Any], root: Path = ROOT) -> None:
    """Raise :class:`BookError` naming the valid parameters if ``params`` has unknown names."""
    declared = declared_parameters(chapter, root)
    unknown = [k for k in params if k not in declared]
    if unknown:
        valid = ", ".join(f"{k} (default {v['default']})" for k, v in declared.items()) or "none (no cell tagged 'parameters')"
        raise BookError(f"Unknown parameter(s) {', '.join(map(repr, unknown))} for chapter {chapter.name}. "
                        f"Valid parameters: {valid}.")


def parse_value(text: str) -> Any:
    """A command-line value parsed as YAML: ``3`` -> 3, ``0.5`` -> 0.5, ``[1, 2]`` -> list, ``abc`` -> 'abc'."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


# ============================================================================ staging and execution
def _same(a: Path, b: Path) -> bool:
    return b.exists() and a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def stage(root: Path, staging: Path) -> None:
    """Mirror the book sources into ``staging``, keeping executed chapter notebooks.

    Copies ``_config.yml``, ``_toc.yml`` and ``book/`` (files that differ only, so Sphinx's
    incremental build sees what changed); notebooks already executed there are kept;
    files whose source was deleted are removed.
    """
    staging.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        if not _same(root / name, staging / name):
            shutil.copy2(root / name, staging / name)
    src_book, dst_book = root / "book", staging / "book"
    executed = {c.path.relative_to("book") for c in chapters(root) if c.path.parts[0] == "book"}
    wanted = set()
    for src in src_book.rglob("*"):
        rel = src.relative_to(src_book)
        if src.is_dir() or _SKIP & set(rel.parts):
            continue
        wanted.add(rel)
        dst = dst_book / rel
        if rel in executed and dst.exists():
            continue  # an executed chapter: chapters are (re)executed explicitly
        if not _same(src, dst):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    if dst_book.exists():
        for dst in sorted(dst_book.rglob("*"), reverse=True):
            rel = dst.relative_to(dst_book)
            if _SKIP & set(rel.parts):
                continue
            if dst.is_file() and rel not in wanted:
                dst.unlink()
            elif dst.is_dir() and not any(dst.iterdir()):
                dst.rmdir()


def _stamp(root: Path, chapter: Chapter, params: Mapping[str, Any]) -> str:
    """What an executed notebook depends on: its source, its parameters and the package's code."""
    from ..cache import code_tag

    h = hashlib.sha256((root / chapter.path).read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(code_tag().encode())
    return h.hexdigest()[:20]


def _executed_stamp(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("metadata", {}).get("paragraph_planning", {}).get("stamp")
    except (OSError, ValueError):
        return None


KERNEL_ENV = {
    BOOK_ENV: "1",  # plots.setup() picks the book's renderer
    "TQDM_DISABLE": "1",  # a progress bar frozen at 100% is noise in a book
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bar
}
"""Environment of the kernels that execute chapters for the book."""


@contextlib.contextmanager
def _book_env() -> Iterator[None]:
    """Kernels started inside inherit :data:`KERNEL_ENV`."""
    old = {k: os.environ.get(k) for k in KERNEL_ENV}
    os.environ.update(KERNEL_ENV)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _failure_message(chapter: Chapter, err: Any, output: Path) -> str:
    source = (err.source or "").strip().splitlines()
    head = "\n".join("    " + line for line in source[:8]) + ("\n    ..." if len(source) > 8 else "")
    return (
        f"Chapter {chapter.name} failed in cell {err.cell_index} (execution count {err.exec_count}):\n"
        f"{head}\n{err.ename}: {err.evalue}\n"
        f"The executed notebook, with the traceback, is {output}"
    )


def execute_chapter(
    chapter: Chapter, params: Mapping[str, Any], staging: Path, root: Path = ROOT, *, reuse: bool = False,
) -> float | None:
    """Execute one chapter with papermill into ``staging``; returns the wall time (None if reused).

    ``reuse``: skip a chapter whose executed copy has the same source, parameters and package code.
    A failing cell raises :class:`BookError` naming the chapter, the cell and the error.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    check_parameters(chapter, params, root)
    output = staging / chapter.path
    stamp = _stamp(root, chapter, params)
    if reuse and output.exists() and _executed_stamp(output) == stamp:
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        with _book_env():
            papermill.execute_notebook(
                str(root / chapter.path), str(output), parameters=dict(params), kernel_name="python3",
                progress_bar=False, log_output=False, cwd=str(output.parent),
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],  # no start-up/shutdown chatter
            )
    except PapermillExecutionError as err:
        raise BookError(_failure_message(chapter, err, output)) from None
    nb = nbformat.read(str(output), as_version=4)
    nb.metadata["paragraph_planning"] = {"stamp": stamp, "parameters": json.loads(json.dumps(dict(params), default=str))}
    nbformat.write(nb, str(output))
    return time.perf_counter() - t0


def _resolve_profiles(root: Path, profile: str, chs: list[Chapter]) -> dict[str, dict[str, Any]]:
    """Every chapter's parameters for ``profile``, checked before anything runs."""
    params = {c.name: profile_parameters(profile, c, root) for c in chs}
    stray = sorted(set(load_profiles(root).get(profile, {})) - {c.name for c in chs})
    if stray:
        raise BookError(f"Profile {profile!r} in {PROFILES_FILE} names chapters that are not in _toc.yml: "
                        f"{', '.join(stray)}. Chapters: {', '.join(c.name for c in chs)}.")
    for c in chs:
        check_parameters(c, params[c.name], root)
    return params


def execute_all(root: Path, staging: Path, profile: str, *, reuse: bool = False) -> dict[str, float | None]:
    """Execute every chapter of the toc with ``profile``, printing each name and wall time."""
    chs = chapters(root)
    params = _resolve_profiles(root, profile, chs)
    times: dict[str, float | None] = {}
    for i, c in enumerate(chs, 1):
        print(f"[{i}/{len(chs)}] {c.name} ({profile})", end=" ... ", flush=True)
        try:
            times[c.name] = execute_chapter(c, params[c.name], staging, root, reuse=reuse)
        except BookError:
            print("FAILED", flush=True)
            raise
        print("unchanged, reused" if times[c.name] is None else f"{times[c.name]:.1f} s", flush=True)
    return times


# ============================================================================ HTML
def build_html(staging: Path, out: Path) -> Path:
    """Render the staging copy with Jupyter Book (no execution) and copy the HTML to ``out``."""
    from .sphinx import vendor_dir

    vendor_dir()  # fetch/generate the JavaScript now, with a clear error if npm is missing
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", str(staging), "--path-output", str(staging), "--builder", "html"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    for line in warnings:
        print("  " + line)
    html = staging / "_build" / "html"
    if proc.returncode != 0 or not (html / "index.html").exists():
        raise BookError("jupyter-book build failed:\n" + "\n".join(log.splitlines()[-40:]))
    out = out.resolve()
    if out != html.resolve():
        if out.exists() and any(out.iterdir()) and not (out / ".buildinfo").exists():
            raise BookError(f"Refusing to replace {out}: it is not empty and holds no earlier HTML build.")
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(html, out)
    print(f"HTML: {out / 'index.html'} ({time.perf_counter() - t0:.1f} s, {len(warnings)} warnings)")
    return out / "index.html"


def build(
    profile: str = "full", out: Path | str | None = None, *, root: Path = ROOT, staging: Path | str | None = None,
    reuse: bool = False, html: bool = True,
) -> Path | None:
    """Execute every chapter with ``profile`` and render the HTML; returns the path of ``index.html``."""
    root = Path(root)
    staging = Path(staging) if staging else root / STAGING
    out = Path(out) if out else root / "_build" / "html"
    t0 = time.perf_counter()
    _resolve_profiles(root, profile, chapters(root))  # unknown profile/parameters: fail before touching files
    stage(root, staging)
    execute_all(root, staging, profile, reuse=reuse)
    index = build_html(staging, out) if html else None
    print(f"Book built in {time.perf_counter() - t0:.0f} s")
    return index


def run(
    name: str, overrides: Mapping[str, Any] | None = None, profile: str = "full", out: Path | str | None = None,
    *, root: Path = ROOT, staging: Path | str | None = None, html: bool = True,
) -> Path | None:
    """Execute one chapter with ``profile``'s parameters updated by ``overrides``; then rebuild the HTML."""
    root = Path(root)
    staging = Path(staging) if staging else root / STAGING
    chapter = find_chapter(name, root)
    params = {**profile_parameters(profile, chapter, root), **dict(overrides or {})}
    check_parameters(chapter, params, root)
    fresh = not (staging / "book").exists()
    stage(root, staging)
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
    print(f"{chapter.name} ({profile}{': ' + shown if shown else ''})", end=" ... ", flush=True)
    seconds = execute_chapter(chapter, params, staging, root)
    print(f"{seconds:.1f} s", flush=True)
    if fresh and len(chapters(root)) > 1:
        print("note: the other chapters were never executed here; run `python -m paragraph_planning build` once.")
    return build_html(staging, Path(out) if out else root / "_build" / "html") if html else None


def describe(root: Path = ROOT) -> str:
    """The chapters, their aliases and parameters with defaults and profile values (``list``)."""
    profiles = load_profiles(root)
    lines = []
    for c in chapters(root):
        lines.append(f"{c.name}  (alias: {c.alias}; {c.path})")
        for k, v in declared_parameters(c, root).items():
            per = [f"{p}: {chs[c.name][k]!r}" for p, chs in profiles.items() if k in (chs.get(c.name) or {})]
            doc = f"  # {v['help']}" if v.get("help") else ""
            lines.append(f"    {k} = {v['default']}" + (f"   [{'; '.join(per)}]" if per else "") + doc)
    return "\n".join(lines)
