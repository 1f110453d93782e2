"""The command line, run as ``python -m paragraph_planning {build,run,list}`` (see ``--help``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import runner as book
from .chapters import BookError
from .execution import Interrupted
from .parameters import CliText

EPILOG = """examples:
  python -m paragraph_planning build                      # the whole book, offline models -> _build/html
  python -m paragraph_planning build --profile tiny       # tiny random models, seconds per chapter
  python -m paragraph_planning build --student            # the student book: no solutions -> _build/student-html
  python -m paragraph_planning run ablation --profile workshop   # one chapter, sized for a class (<= 5 min, 2 cores)
  python -m paragraph_planning run getting_started -p patch_layer 4 -p model gemma3-270m
  python -m paragraph_planning list                       # chapters, parameters, types, defaults

A run that fails or is interrupted (Ctrl-C) leaves the previous page and HTML as they were.
"""


def make_parser() -> argparse.ArgumentParser:
    """The command line's parser (tests check the commands the book's pages quote against it)."""
    parser = argparse.ArgumentParser(
        prog="python -m paragraph_planning", description="Build the book or re-run one chapter.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profile", default="full", help="profile of book/params.yml (full, workshop, tiny; default full)")
        p.add_argument("--out", type=Path, default=None, help="folder for the HTML (default _build/html)")
        p.add_argument("--staging", type=Path, default=None, help="staging copy of the book (default _staging)")
        p.add_argument("--no-html", action="store_true", help="execute only; do not render the HTML")
        p.add_argument("--root", type=Path, default=book.ROOT, help="the book's folder (default: this repository)")
        p.add_argument("--no-wait", action="store_true",
                       help="refuse at once, instead of waiting, when another run or build uses the staging copy")

    b = sub.add_parser("build", help="execute every chapter of _toc.yml with papermill, then render the HTML")
    common(b)
    b.add_argument("--reuse", action="store_true",
                   help="skip chapters whose source, parameters and package code are unchanged since their last run")
    b.add_argument("--student", action="store_true",
                   help="render the student book (solutions removed, stubs empty) into _build/student-html")
    r = sub.add_parser("run", help="execute one chapter with changed parameters, then re-render the HTML")
    r.add_argument("chapter", help="stem (02_ablation), alias (ablation) or unique part of a name")
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="override a parameter; VALUE is read by the parameter's type (3, 0.5, [1, 2], text)")
    common(r)
    li = sub.add_parser("list", help="chapters and their parameters with defaults, types and profile values")
    li.add_argument("--root", type=Path, default=book.ROOT, help="the book's folder (default: this repository)")

    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        if args.command == "list":
            print(book.describe(args.root))
        elif args.command == "build":
            book.build(args.profile, args.out, root=args.root, staging=args.staging, reuse=args.reuse,
                       html=not args.no_html, wait=not args.no_wait, student=args.student)
        else:
            overrides = {k: CliText(v) for k, v in args.parameter}
            book.run(args.chapter, overrides, args.profile, args.out, root=args.root, staging=args.staging,
                     html=not args.no_html, wait=not args.no_wait)
    except Interrupted as err:
        print(f"\n{err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted (the previous pages and HTML are kept)", file=sys.stderr)
        return 130
    except BookError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # python -m paragraph_planning.book.cli
    sys.exit(main())
