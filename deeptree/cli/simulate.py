"""``deeptree simulate``: breakages simulated on ground-truth airway masks (stage-2 data).

For every GT mask (one file, a folder of masks, or a dataset root with ``labelsTr/``) it
parses the tree, cuts gaps into a random half of the peripheral branches
(:func:`deeptree.breakage.simulate_breakage`) and writes, in ``--out``:

* ``<id>_broken.nii.gz``: the GT with the gaps removed (uint8);
* ``<id>_breakage.nii.gz``: the breakage label Y^B (uint8);
* ``<id>_gaps.json``: the seed, the counts, and one record per gap (branch, run, voxel
  count, centre voxel, the components it separates);
* with ``--attention``, ``<id>_attention.nii.gz``: H_bar of the broken mask (float32).

With ``--dataset-layout`` they go into ``brokenTr/<id>.nii.gz``, ``breakageTr/<id>.nii.gz``,
``gapsTr/<id>.json`` and ``attentionTr/<id>.nii.gz`` (ATM'22-style folders beside
``labelsTr/``).

Each case gets its own random stream from ``--seed`` and its id, so a case's result does
not depend on which other cases are in the folder. A failing case is reported and the
others go on; the exit status is then 1. A mask filling most of its volume is refused.

A rerun skips the cases already complete (recorded in the hidden
``<out>/.deeptree-simulate.json``) and says so; ``--overwrite`` simulates them again, and is
needed to replace outputs made with other options. The folder is locked while the command
runs, and the temporary files of a killed run are removed.
"""

from __future__ import annotations

from pathlib import Path

from deeptree.cli._cases import (
    mask_inputs,
    output_folders,
    output_path,
    report_problems,
    run_cases_locked,
    write_json,
)
from deeptree.config import get_config
from deeptree.io import case_id_from_path, read_nifti, write_nifti
from deeptree.io_checks import check_mask_fraction

NAME = "simulate"
#: The kinds of output file (``<id>_<kind>`` or ``<kind>Tr/<id>``).
KINDS = ("broken", "breakage", "attention", "gaps")
HELP = "simulate breakages on ground-truth airway masks (broken mask + breakage label Y^B)"


def add_arguments(parser) -> None:
    parser.add_argument(
        "input", help="a GT mask (.nii.gz), a folder of masks, or a dataset root with labelsTr/"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--profile", default="cpu", help="run profile for the defaults")
    parser.add_argument(
        "--branch-fraction", type=float, default=None, help="share of peripheral branches cut (0.5)"
    )
    parser.add_argument(
        "--run-fraction",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="removed share of a branch's skeleton (0.1 0.3)",
    )
    parser.add_argument(
        "--attention", action="store_true", help="also write H_bar of the broken mask"
    )
    parser.add_argument(
        "--dataset-layout",
        action="store_true",
        help="write <kind>Tr/<id>.nii.gz (ATM'22 layout) instead of <id>_<kind>.nii.gz",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--overwrite", action="store_true", help="simulate again the cases already complete in --out"
    )


def case_rng(seed: int, case_id: str):
    """The random generator of one case: from the base seed and a checksum of its id."""
    import zlib

    import numpy as np

    return np.random.default_rng([int(seed), zlib.crc32(case_id.encode("utf-8"))])


def simulate_case(
    path,
    out_dir,
    seed: int,
    branch_fraction,
    run_fraction,
    attention: bool,
    dataset_layout: bool = False,
) -> dict:
    """Parse, simulate and write one case; returns the JSON record written."""
    import warnings

    from deeptree.attention import breakage_attention
    from deeptree.breakage import simulate_breakage
    from deeptree.masks import as_binary_mask
    from deeptree.tree import parse_tree

    case_id = case_id_from_path(path)
    volume = read_nifti(path)
    mask = as_binary_mask(volume.array, str(path))
    check_mask_fraction(mask, str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        tree = parse_tree(mask, volume.spacing, affine=volume.affine, name=str(path))
    result = simulate_breakage(
        mask, tree, case_rng(seed, case_id), branch_fraction, run_fraction, name=str(path)
    )
    where = {"out_dir": out_dir, "case_id": case_id, "dataset_layout": dataset_layout}
    write_nifti(output_path(kind="broken", suffix=".nii.gz", **where), result.broken, volume.affine)
    write_nifti(
        output_path(kind="breakage", suffix=".nii.gz", **where), result.label, volume.affine
    )
    if attention:
        h_bar = breakage_attention(result.broken)
        write_nifti(output_path(kind="attention", suffix=".nii.gz", **where), h_bar, volume.affine)
    record = {
        "case": case_id,
        "source": str(path),
        "seed": [int(seed), case_id],
        "branch_fraction": branch_fraction,
        "run_fraction": list(run_fraction),
        "parse_warnings": [str(w.message) for w in caught],
        "n_branches": tree.n_branches,
        "n_peripheral": result.n_peripheral,
        "n_target": result.n_target,
        "n_gaps": len(result.gaps),
        "n_rejected": result.n_rejected,
        "n_components": result.n_components,
        "n_breakage_voxels": int(result.label.sum()),
        "gaps": [gap.record() for gap in result.gaps],
    }
    write_json(output_path(kind="gaps", suffix=".json", **where), record)
    return record


def run(args) -> int:
    from deeptree.breakage import check_fractions

    config = get_config(args.profile).breakage
    branch_fraction = (
        config.branch_fraction if args.branch_fraction is None else args.branch_fraction
    )
    run_fraction = tuple(config.run_fraction if args.run_fraction is None else args.run_fraction)
    # once, before the batch (not once per case)
    check_fractions(branch_fraction, run_fraction, ("--branch-fraction", "--run-fraction"))
    files, out_dir = mask_inputs(args, KINDS)

    def outputs_of(case_id: str, path: Path) -> list[Path]:
        where = {"out_dir": out_dir, "case_id": case_id, "dataset_layout": args.dataset_layout}
        kinds = [("broken", ".nii.gz"), ("breakage", ".nii.gz"), ("gaps", ".json")]
        kinds += [("attention", ".nii.gz")] if args.attention else []
        return [output_path(kind=k, suffix=x, **where) for k, x in kinds]

    def work(case_id: str, path: Path):
        record = simulate_case(
            path, out_dir, args.seed, branch_fraction, run_fraction, args.attention,
            args.dataset_layout,
        )  # fmt: skip
        outputs = outputs_of(case_id, path)
        return (
            f"{case_id}: {record['n_gaps']} gaps in {record['n_peripheral']} peripheral branches, "
            f"{record['n_components']} components"
        ), outputs

    settings = {
        "seed": args.seed,
        "branch_fraction": branch_fraction,
        "run_fraction": list(run_fraction),
        "attention": bool(args.attention),
        "dataset_layout": bool(args.dataset_layout),
    }
    problems = run_cases_locked(
        NAME, out_dir, settings, files, work, overwrite=args.overwrite,
        progress=not args.no_progress, targets=outputs_of,
        subfolders=[f.name for f in output_folders(out_dir, KINDS, args.dataset_layout)
                    if f != out_dir],
    )  # fmt: skip
    print(f"{len(files) - len(problems)}/{len(files)} cases -> {out_dir}")
    return report_problems(NAME, problems, "case(s) failed")
