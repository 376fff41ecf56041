"""``deeptree phantom``: generate a synthetic airway CT cohort (ATM'22 layout), resumably.

``--out/cohort.json`` records the profile, seed, generator version and the checksums of the
cases written: running the same command again completes a partial cohort (a case killed
half-way is generated again, the same bytes); a folder holding a cohort of another profile,
seed or generator version is refused, as is a file changed since it was written, and a folder
whose ``imagesTr``/``labelsTr``/``lungsTr``/``treesTr`` hold files that are not phantom cases (a
real dataset: phantoms are never mixed into it). The folder is
locked while the command runs (a second ``deeptree phantom`` into it is refused), and the
temporary files of a killed run are removed.
"""

from __future__ import annotations

from deeptree.cli._cases import check_writable_folder, locked_output

NAME = "phantom"
HELP = "generate synthetic chest CTs with exact airway ground truth (resumable)"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--profile", default="cpu", help="smoke, cpu or gpu (= standard) (default: cpu)"
    )
    parser.add_argument("--n", type=int, default=12, help="number of cases (default: 12)")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed (default: 0)")
    parser.add_argument("--out", default="data/cohort", help="output folder (default: data/cohort)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:

    from deeptree.phantom import generate_cohort
    from deeptree.phantom.cases import COHORT_FOLDERS, refuse_foreign_cases

    check_writable_folder(args.out)
    refuse_foreign_cases(args.out)  # before the lock file is made in someone's dataset
    with locked_output(args.out, NAME, COHORT_FOLDERS):
        ids = generate_cohort(
            args.out, args.profile, n=args.n, seed=args.seed, progress=not args.no_progress
        )
    print(f"{len(ids)} cases in {args.out} (imagesTr, labelsTr, lungsTr, treesTr)")
    return 0
