"""The Sphinx extension of the book (``sphinx.extra_extensions`` in ``_config.yml``): local JavaScript only.

It copies the locally built JavaScript (vega, the widget manager, MathJax; see :func:`vendor_dir`)
into ``_static/local`` and loads the vega bundle on the pages that hold charts, so the HTML fetches
nothing from a CDN. ``npm`` is needed once to fetch MathJax and the widget manager.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ..util import atomic_dir, cache_dir
from .chapters import BookError

# Pinned versions of the JavaScript the HTML needs (fetched with npm once, then cached).
HTML_MANAGER = "1.0.15"  # @jupyter-widgets/html-manager for ipywidgets 8
MATHJAX = "3.2.2"


# ============================================================================ JavaScript assets
def _vega_tag() -> tuple[str, str]:
    import altair as alt
    import vl_convert

    vl = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return vl, f"vega-lite-{vl}_vl-convert-{vl_convert.__version__}"


def _write_vega_bundle(dest: Path) -> None:
    """vega + vega-lite + vega-embed from ``vl_convert.javascript_bundle``, wrapped in a function.

    The wrapper keeps the bundle's top-level names (e.g. ``const _``) out of the page's globals,
    where Sphinx's ``_`` lives. Charts queue themselves in ``window.ppVegaQueue`` until it loads.
    """
    import vl_convert

    vl, tag = _vega_tag()
    bundle = vl_convert.javascript_bundle("window.vegaEmbed = vegaEmbed;", vl)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(
        f"/* vega, vega-lite {vl} and vega-embed (BSD-3-Clause), bundled by vl-convert ({tag}). */\n"
        "(function () {\n" + bundle + "\n})();\n"
        "(function () { var q = window.ppVegaQueue || [];\n"
        "  window.ppVegaQueue = { push: function (f) { f(); } };\n"
        "  for (var i = 0; i < q.length; i++) { q[i](); } })();\n"
    )


def _npm_install(dest: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise BookError(
            "npm is needed once to fetch MathJax and the Jupyter widget manager for the self-contained "
            "HTML (Debian: apt-get install npm). They are then cached under "
            f"{cache_dir('vendor')}."
        )
    with tempfile.TemporaryDirectory(prefix="pp-npm-") as tmp:
        cmd = [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--no-save", "--prefix", tmp,
               f"@jupyter-widgets/html-manager@{HTML_MANAGER}", f"mathjax@{MATHJAX}"]
        print(f"fetching @jupyter-widgets/html-manager@{HTML_MANAGER} and mathjax@{MATHJAX} with npm (once) ...",
              flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BookError("npm install failed:\n" + (proc.stdout + proc.stderr)[-3000:])
        modules = Path(tmp) / "node_modules"
        manager = modules / "@jupyter-widgets" / "html-manager"
        (dest / "html-manager").mkdir(parents=True)
        for f in (manager / "dist").iterdir():  # embed.js plus the icon fonts it loads from beside itself
            if f.is_file() and not f.name.endswith((".map", "-amd.js")) and not f.name.startswith("libembed"):
                shutil.copy2(f, dest / "html-manager" / f.name)
        (dest / "mathjax").mkdir()
        shutil.copy2(modules / "mathjax" / "es5" / "tex-svg-full.js", dest / "mathjax" / "tex-svg-full.js")
        for package, folder in ((manager, "html-manager"), (modules / "mathjax", "mathjax")):
            for name in ("package.json", "LICENSE"):  # provenance: version and licence
                if (package / name).exists():
                    shutil.copy2(package / name, dest / folder / name)


def vendor_dir() -> Path:
    """The folder of JavaScript the HTML serves from ``_static/local``, built once and cached.

    ``vega/vega-embed.js`` is generated offline by vl-convert; ``html-manager/`` (embed.js and
    its fonts) and ``mathjax/tex-svg-full.js`` come from npm at the pinned versions. Nothing is
    committed: the folder lives in ``cache_dir("vendor")``, keyed by the versions.
    """
    _, tag = _vega_tag()
    folder = cache_dir("vendor") / f"html-manager-{HTML_MANAGER}_mathjax-{MATHJAX}_{tag}"
    if (folder / "COMPLETE").exists():
        return folder
    with atomic_dir(folder) as tmp:
        _npm_install(tmp)
        _write_vega_bundle(tmp / "vega" / "vega-embed.js")
        (tmp / "COMPLETE").write_text("ok\n")
    return folder


# ============================================================================ Sphinx extension
VEGA_JS = "local/vega/vega-embed.js"


def _copy_vendor(app: Any) -> None:
    if getattr(app.builder, "format", "") != "html":
        return
    src = vendor_dir()
    dest = Path(app.outdir) / "_static" / "local"
    for f in src.rglob("*"):
        if f.is_file() and f.name != "COMPLETE":
            target = dest / f.relative_to(src)
            if not (target.exists() and target.stat().st_size == f.stat().st_size
                    and target.stat().st_mtime >= f.stat().st_mtime):
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)


def _is_thebe(js: Any) -> bool:
    attributes = getattr(js, "attributes", {}) or {}
    return "thebe" in str(getattr(js, "filename", js) or "") or "THEBE_JS_URL" in str(attributes.get("body", ""))


def _page_assets(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    if 'class="pp-vega"' in (context.get("body") or ""):
        app.add_js_file(VEGA_JS, defer="defer")
    # jupyter-book always loads sphinx-thebe, which writes the thebe CDN address into every page.
    # The book has no live kernels (launch buttons are off), so the page does without it.
    if "script_files" in context:
        context["script_files"] = [js for js in context["script_files"] if not _is_thebe(js)]


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension (``sphinx.extra_extensions`` in ``_config.yml``): local JavaScript only."""
    app.connect("builder-inited", _copy_vendor)
    app.connect("html-page-context", _page_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
