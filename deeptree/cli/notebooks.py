"""``deeptree notebooks``: execute the tutorial notebooks with papermill."""

from __future__ import annotations

from datetime import datetime

from deeptree.config import check_profile
from deeptree.io import InputError
from deeptree.locations import runs_root
from deeptree.notebooks import NOTEBOOKS_DIR, list_notebooks, run_notebooks

NAME = "notebooks"
HELP = "execute the notebooks with papermill (fresh kernel each) into a run folder"


def add_arguments(parser) -> None:
    parser.add_argument("--profile", default="cpu", help="smoke, cpu or gpu (default cpu)")
    parser.add_argument("--out", default=None,
                        help="run folder (default runs/<date-time>-<profile>)")
    parser.add_argument("--html", action="store_true", help="export each notebook to HTML")
    parser.add_argument("--summary", action="store_true", help="write summary.md")
    parser.add_argument("--stop-on-error", action="store_true")
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: all, in order)")


def run(args) -> int:

    check_profile(args.profile)
    if not args.notebooks and not list_notebooks(NOTEBOOKS_DIR):
        raise InputError(
            f"no notebooks in {NOTEBOOKS_DIR}: the tutorial notebooks come with a clone of the "
            "repository, not with an installed package; run this command in a clone "
            "(git clone ..., then make setup), or name the notebooks to run"
        )
    out = args.out or runs_root() / f"{datetime.now():%Y%m%d-%H%M%S}-{args.profile}"
    runs = run_notebooks(args.profile, out, args.notebooks or None, html=args.html,
                         summary=args.summary, stop_on_error=args.stop_on_error)
    failed = [r.name for r in runs if not r.ok]
    print(f"notebooks: {len(runs) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or not runs else 0
