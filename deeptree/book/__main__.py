"""``python -m deeptree.book build|check|publish``: build the book, check it in headless
Chromium, publish a finished run beside the committed results."""

from __future__ import annotations

import argparse
import sys

from deeptree.book.browser import check_site
from deeptree.book.build import build_book
from deeptree.book.publish import publish_run
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
        Exit status: 0 on success, 1 on a failed build, check or publish.
    """
    parser = argparse.ArgumentParser(prog="python -m deeptree.book", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the static site from a run folder")
    build.add_argument("--run", default=None,
                       help="run folder or published results folder (default: latest "
                            "complete runs/*-cpu, else results/*-cpu-synthetic with notebooks, "
                            "else runs/ci or the latest runs/*-smoke)")
    build.add_argument("--out", default="site", help="site folder (default: site)")
    check = sub.add_parser("check", help="open every page in headless Chromium")
    check.add_argument("site", help="the built site folder")
    check.add_argument("--screenshots", required=True, help="folder for the page screenshots")
    check.add_argument("--chromium", default=None, help="browser executable (default: found)")
    publish = sub.add_parser("publish", help="copy a finished cpu run's executed notebooks, "
                             "tables and summary into a results folder")
    publish.add_argument("run", help="the run folder, e.g. runs/20261207-cpu")
    publish.add_argument("dest", help="the results folder, e.g. results/20261207-cpu-synthetic")
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            build_book(args.out, args.run)
            return 0
        if args.command == "publish":
            done = publish_run(args.run, args.dest)
            print(f"published {args.run} to {args.dest}: {len(done['files'])} files, "
                  f"{done['bytes'] / 1e6:.1f} MB in all")
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
