"""The boxes at the end of each executed chapter: what produced this page, and how to run it again.

The runner appends two Markdown cells to the executed notebook (never to the source):

* **Provenance**: the models the kernel loaded (alias, dtype, device, weight fingerprint), every
  parameter with its value and whether it differs from the profile, the package version and git
  commit (or "uncommitted changes"), torch / transformers versions, device, wall time, and which
  cached results were loaded and which computed. Models and cache events come from the kernel
  through the events file (:func:`paragraph_planning.cache.log_event`).
* **Run this chapter**: the exact command that reproduces the page and the parameter table
  (name, default, type, help) read from the notebook's ``parameters`` cell.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from .chapters import Chapter
from .parameters import Parameter, cli_value

TAG = "pp-provenance"
"""Tag of the appended cells (tests find them by it; a re-run replaces them)."""
COMMAND = "python -m paragraph_planning"


def read_events(path: Path) -> list[dict[str, Any]]:
    """The JSON lines the kernel appended (unreadable lines are skipped)."""
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_state(root: Path) -> str:
    """``commit 1a2b3c4d5e6f`` plus ``(uncommitted changes)`` when the book's sources or package differ from it."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--", "paragraph_planning", "book", "_config.yml", "_toc.yml")
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    if not commit:
        return "not a git checkout"
    return f"commit `{commit}`" + (" (uncommitted changes)" if dirty else "")


def command(chapter: Chapter, profile: str, values: Mapping[str, Any], profile_values: Mapping[str, Any],
            declared: Mapping[str, Parameter]) -> str:
    """The command that reproduces a run: the profile plus ``-p`` for every value that differs from it."""
    parts = [COMMAND, "run", chapter.alias] + (["--profile", profile] if profile != "full" else [])
    for k, v in values.items():
        if k in declared and v != profile_values.get(k, declared[k].default):
            parts += ["-p", k, shlex.quote(cli_value(declared[k], v))]
    return " ".join(parts)


def _code(value: Any, limit: int = 60) -> str:
    """``value``'s repr as inline code for a table cell (long ones cut, with their length)."""
    text, more = repr(value), ""
    if len(text) > limit:
        text, more = text[:limit - 1] + "…", f" ({len(text)} characters)"
    text = text.replace("|", "\\|")
    return (f"``{text}``" if "`" in text else f"`{text}`") + more


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _models(events: list[dict[str, Any]]) -> list[str]:
    seen: dict[tuple, str] = {}
    for e in events:
        if e.get("event") == "model":
            key = (e.get("label"), e.get("dtype"), e.get("device"), e.get("weights"))
            seen.setdefault(key, f"`{e.get('label')}` ({e.get('dtype')}, {e.get('device')}, weights `{e.get('weights')}`, "
                                 f"loaded in {float(e.get('seconds') or 0):.1f} s)")
    return list(seen.values())


def _cache(events: list[dict[str, Any]]) -> str:
    hits = [e for e in events if e.get("event") == "cache"]
    if not hits:
        return "no cached results used"
    if any(e.get("off") for e in hits):
        return f"cache off ($PARAGRAPH_PLANNING_NO_CACHE): {len(hits)} results computed"

    def kinds(rows: list[dict[str, Any]]) -> str:
        counts = Counter(e.get("kind") for e in rows)
        return ", ".join(f"{k}" + (f" ×{n}" if n > 1 else "") for k, n in sorted(counts.items()))

    loaded = [e for e in hits if e.get("loaded")]
    computed = [e for e in hits if not e.get("loaded")]
    out = []
    if loaded:
        out.append(f"{len(loaded)} loaded from the cache ({kinds(loaded)})")
    if computed:
        secs = sum(float(e.get("seconds") or 0) for e in computed)
        out.append(f"{len(computed)} computed and stored ({kinds(computed)}; {secs:.0f} s)")
    return "; ".join(out)


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{seconds:.1f} s"


def provenance_markdown(chapter: Chapter, profile: str, values: Mapping[str, Any], profile_values: Mapping[str, Any],
                        declared: Mapping[str, Parameter], events: list[dict[str, Any]], seconds: float,
                        root: Path, git: str | None = None) -> str:
    """The provenance box (MyST Markdown). ``git``: :func:`git_state` read when the run started (default: now)."""
    model_events = [e for e in events if e.get("event") == "model"]
    first = model_events[0] if model_events else {}
    devices = sorted({f"{e.get('device')} ({e.get('hardware')})" for e in model_events}) or ["no model loaded"]
    rows = [
        ("Models", "; ".join(_models(events)) or "none loaded"),
        ("Package", f"paragraph_planning {_version('paragraph_planning')}, {git or git_state(root)}"),
        ("Libraries", f"torch {first.get('torch') or _version('torch')}, transformers "
                      f"{first.get('transformers') or _version('transformers')}, Python {sys.version.split()[0]}"),
        ("Device", ", ".join(devices)),
        ("Wall time", f"{_duration(seconds)}, finished {time.strftime('%Y-%m-%d %H:%M')}"),
        ("Expensive results", _cache(events)),
    ]
    summary = [f"- **{k}:** {_cell(v)}" for k, v in rows]
    params = ["| parameter | value | profile value | changed |", "|---|---|---|---|"]
    changed = 0
    for k, p in declared.items():
        base = profile_values.get(k, p.default)
        value = values.get(k, base)
        changed += value != base
        params.append(f"| `{k}` | {_code(value)} | {_code(base)} | {'**yes**' if value != base else ''} |")
    return "\n".join([
        ":::{admonition} Provenance of this page",
        f":class: note {TAG}",
        "",
        f"Computed with the `{profile}` profile of `book/params.yml`"
        + (f" and {changed} parameter(s) changed (marked below)." if changed else ", unchanged."),
        "",
        *summary,
        "",
        *params,
        ":::",
    ])


def run_markdown(chapter: Chapter, profile: str, values: Mapping[str, Any], profile_values: Mapping[str, Any],
                 declared: Mapping[str, Parameter]) -> str:
    """The "Run this chapter" box (MyST Markdown)."""
    cmd = command(chapter, profile, values, profile_values, declared)
    table = ["| parameter | default | type | help |", "|---|---|---|---|"]
    for k, p in declared.items():
        table.append(f"| `{k}` | {_code(p.default)} | {_cell(p.kind)} | {_cell(p.help)} |")
    return "\n".join([
        ":::{admonition} Run this chapter",
        f":class: tip {TAG}",
        "",
        "This page comes from:",
        "",
        "```bash",
        cmd,
        "```",
        "",
        f"Change any parameter with `-p NAME VALUE` (VALUE is read by the parameter's type; lists as `[1, 2]`); "
        f"`--profile tiny` runs tiny random models in seconds. `{COMMAND} list` shows every chapter's parameters. "
        "A run that fails or is interrupted leaves the page as it was.",
        "",
        *table,
        ":::",
    ])


def append_boxes(nb: Any, chapter: Chapter, profile: str, values: Mapping[str, Any],
                 profile_values: Mapping[str, Any], declared: Mapping[str, Parameter],
                 events: list[dict[str, Any]], seconds: float, root: Path, git: str | None = None) -> None:
    """Append (or replace) the two boxes at the end of the executed notebook ``nb`` (``git``: see
    :func:`provenance_markdown`)."""
    import nbformat

    nb.cells = [c for c in nb.cells if TAG not in c.metadata.get("tags", [])]
    for text in (provenance_markdown(chapter, profile, values, profile_values, declared, events, seconds, root, git),
                 run_markdown(chapter, profile, values, profile_values, declared)):
        nb.cells.append(nbformat.v4.new_markdown_cell(text, metadata={"tags": [TAG]}))
