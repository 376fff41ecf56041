"""``python -m deeptree.book build|check``: build the book, check it in headless Chromium."""

from __future__ import annotations

import argparse
import sys

from deeptree.book.browser import check_site
from deeptree.book.build import build_book
from deeptree.io import InputError


def main(argv: list[str] | None = None) -> int:
    """Command line of the book (``make book``, ``make book-test``).

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 1 on a failed build or check.
    """
    parser = argparse.ArgumentParser(prog="python -m deeptree.book", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the static site from a run folder")
    build.add_argument("--run", default=None,
                       help="run folder (default: latest complete runs/*-cpu, else runs/ci, "
                            "else the latest runs/*-smoke)")
    build.add_argument("--out", default="site", help="site folder (default: site)")
    check = sub.add_parser("check", help="open every page in headless Chromium")
    check.add_argument("site", help="the built site folder")
    check.add_argument("--screenshots", required=True, help="folder for the page screenshots")
    check.add_argument("--chromium", default=None, help="browser executable (default: found)")
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            build_book(args.out, args.run)
            return 0
        problems = check_site(args.site, args.screenshots, chromium=args.chromium)
    except (InputError, RuntimeError) as err:
        print(f"book: {err}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"book check: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
