#!/usr/bin/env python3
"""Headless-Chromium screenshots and render checks of built book pages, with no network.

    python tools/screenshot.py                                   # every page of _build/html/book
    python tools/screenshot.py book/00_getting_started.html --height 6000
    python tools/screenshot.py "book/00_getting_started.html#patch-one-position-one-layer" --height 1800
    python tools/screenshot.py --html /tmp/html --out /tmp/shots --check --no-png
    python tools/screenshot.py "book/exercises/02_ablation.html#ex-02-1" --click ".solution .admonition-title"

For each page it writes ``<out>/<page>.png`` and prints what drew in the browser: vega charts
(``svg.marks`` per ``pp-vega`` div), typeset math (``mjx-container``) and widgets. ``--check``
exits 1 when a chart, formula or widget on a page did not render. Needs Debian's ``chromium``
(``apt-get install chromium``); ``$CHROMIUM`` overrides the binary.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--hide-scrollbars", "--mute-audio",
    "--proxy-server=127.0.0.1:9",  # anything that tries the network fails fast instead of hanging
]


WIDGET_CLASS = re.compile(r'class="[^"]*\bwidget-(?:tab|box|html|label|button|slider|dropdown|select|text|checkbox|'
                          r'accordion|output|inline-hbox|inline-vbox|hbox|vbox)\b')


def chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)  # type: ignore[return-value]
    sys.exit("chromium not found: apt-get install chromium (or set $CHROMIUM)")


def _run(args: list[str], budget_ms: int) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="pp-chromium-") as profile:
        cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def _uri(page: Path, fragment: str = "") -> str:
    return page.resolve().as_uri() + (f"#{fragment}" if fragment else "")


def inspect(page: Path, budget_ms: int = 15000) -> dict[str, int]:
    """What the page holds (charts, math, widgets) and what drew after scripts ran."""
    source = page.read_text(errors="replace")
    dom = _run(["--dump-dom", page.resolve().as_uri()], budget_ms).stdout
    return {
        "charts": source.count('class="pp-vega"'),
        "charts_drawn": len(re.findall(r'<svg[^>]*class="marks"', dom)),
        "math": len(re.findall(r'class="math[^"]*"', source)),
        "math_typeset": dom.count("<mjx-container"),
        "widgets": source.count("application/vnd.jupyter.widget-view+json"),
        "widgets_drawn": len(WIDGET_CLASS.findall(dom)),
        "network_errors": dom.count("Error loading script"),
    }


CLICK_JS = """<script>window.addEventListener("load", function () { setTimeout(function () {
  document.querySelectorAll(%s).forEach(function (e) { e.click(); }); }, 300); });</script>"""


def screenshot(
    page: Path, png: Path, width: int, height: int, budget_ms: int = 15000, fragment: str = "", top: int = 0,
    click: str = "",
) -> None:
    """Screenshot of ``width`` x ``height`` pixels of the page, from a section (``fragment``) or ``top`` px down.

    Headless Chromium draws a blank page when it scrolls to a fragment itself, so a scrolled
    view is taken through a wrapper page holding the book page in an iframe. ``click``: a CSS
    selector whose elements are clicked once the page has loaded (e.g. ``".solution .admonition-title"``
    opens the collapsed solutions); the page is then shown from a copy beside it, deleted afterwards.
    """
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    copy = page.with_name(f".pp-shot-{page.name}")
    if click:
        import json

        copy.write_text(page.read_text().replace("</body>", CLICK_JS % json.dumps(click) + "</body>", 1))
        page = copy
    try:
        _shoot(page, png, width, height, budget_ms, fragment, top)
    finally:
        copy.unlink(missing_ok=True)


def _shoot(page: Path, png: Path, width: int, height: int, budget_ms: int, fragment: str, top: int) -> None:
    with tempfile.TemporaryDirectory(prefix="pp-shot-") as tmp:
        target = _uri(page, fragment)
        if fragment or top:
            wrapper = Path(tmp) / "wrapper.html"
            wrapper.write_text(
                '<!doctype html><html><body style="margin:0;overflow:hidden">'
                f'<iframe src="{target}" style="border:0;position:absolute;left:0;top:-{top}px;'
                f'width:{width}px;height:{height + top}px"></iframe></body></html>'
            )
            target = wrapper.as_uri()
        _run([f"--window-size={width},{height}", f"--screenshot={png.resolve()}", target], budget_ms)
    if not png.exists():
        raise RuntimeError(f"chromium wrote no screenshot for {page}")


def problems(report: dict[str, int]) -> list[str]:
    out = []
    if report["charts_drawn"] < report["charts"]:
        out.append(f"{report['charts'] - report['charts_drawn']} chart(s) did not draw")
    if report["math"] and not report["math_typeset"]:
        out.append("math was not typeset")
    if report["widgets"] and not report["widgets_drawn"]:
        out.append("widgets did not render")
    if report["network_errors"]:
        out.append("a script failed to load")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*",
                        help="pages relative to --html, optionally with #section to scroll to (default: every book/*.html)")
    parser.add_argument("--html", type=Path, default=Path("_build/html"), help="built HTML folder")
    parser.add_argument("--out", type=Path, default=Path("_build/screenshots"), help="folder for the PNGs")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2400, help="viewport height: what the PNG shows")
    parser.add_argument("--top", type=int, default=0, help="start the screenshot this many pixels down the page")
    parser.add_argument("--budget", type=int, default=15000, help="virtual time for scripts, ms")
    parser.add_argument("--check", action="store_true", help="exit 1 if something did not render")
    parser.add_argument("--no-png", action="store_true", help="only inspect the rendered DOM")
    parser.add_argument("--click", default="", help="CSS selector clicked after load (\".solution .admonition-title\" "
                                                    "opens collapsed solutions); adds .clicked to the PNG's name")
    args = parser.parse_args(argv)
    targets = [(args.html / p.partition("#")[0], p.partition("#")[2]) for p in args.pages]
    targets = targets or [(p, "") for p in sorted((args.html / "book").rglob("*.html"))]
    failed = False
    for page, fragment in targets:
        if not page.exists():
            print(f"{page}: not found")
            failed = True
            continue
        report = inspect(page, args.budget)
        issues = problems(report)
        failed |= bool(issues)
        summary = ", ".join(f"{k}={v}" for k, v in report.items())
        line = f"{page.relative_to(args.html)}: {summary}" + (f"  PROBLEM: {'; '.join(issues)}" if issues else "")
        if not args.no_png:
            tag = (f".{fragment}" if fragment else "") + (f".{args.top}px" if args.top else "") + (
                ".clicked" if args.click else "")
            png = args.out / page.relative_to(args.html).with_suffix(f"{tag}.png")
            screenshot(page, png, args.width, args.height, args.budget, fragment, args.top, args.click)
            line += f"  -> {png}"
        print(line, flush=True)
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
