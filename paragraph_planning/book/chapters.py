"""The chapters of the book (the notebooks ``_toc.yml`` lists) and their profiles (``book/params.yml``)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

ROOT = Path(__file__).resolve().parents[2]
"""The repository root (where ``_config.yml`` and ``_toc.yml`` live)."""
PROFILES_FILE = Path("book") / "params.yml"


class BookError(RuntimeError):
    """A problem the user can fix (unknown chapter or parameter, a failing chapter, ...)."""


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


def check_profile(root: Path, profile: str, chs: list[Chapter]) -> None:
    """Raise if ``profile`` is unknown or names chapters that are not in the toc."""
    profiles = load_profiles(root)
    if profile not in profiles:
        raise BookError(f"Unknown profile {profile!r}. Profiles in {PROFILES_FILE}: {', '.join(profiles)}.")
    stray = sorted(set(profiles[profile]) - {c.name for c in chs})
    if stray:
        raise BookError(f"Profile {profile!r} in {PROFILES_FILE} names chapters that are not in _toc.yml: "
                        f"{', '.join(stray)}. Chapters: {', '.join(c.name for c in chs)}.")
