"""Rendering the staging copy with Jupyter Book (v1, no execution) and publishing the HTML atomically."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..util import atomic_dir
from .chapters import BookError


def build_html(staging: Path, out: Path) -> Path:
    """Render ``staging`` with Jupyter Book and put the HTML in ``out``; returns ``out/index.html``.

    ``out`` is replaced in one rename, so a failed or interrupted build leaves the previous HTML.
    """
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
        raise BookError("jupyter-book build failed (the previous HTML is kept):\n" + "\n".join(log.splitlines()[-40:]))
    out = out.resolve()
    if out != html.resolve():
        if out.exists() and any(out.iterdir()) and not (out / ".buildinfo").exists():
            raise BookError(f"Refusing to replace {out}: it is not empty and holds no earlier HTML build.")
        with atomic_dir(out) as tmp:
            shutil.rmtree(tmp)
            shutil.copytree(html, tmp)
    print(f"HTML: {out / 'index.html'} ({time.perf_counter() - t0:.1f} s, {len(warnings)} warnings)")
    return out / "index.html"
