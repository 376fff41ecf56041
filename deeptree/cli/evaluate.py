"""``deeptree evaluate``: airway metrics of a folder of predictions against a folder of GTs.

Cases are matched by id (``ATM_001.nii.gz``, ``ATM_001_0000.nii.gz`` and
``labelsTr/ATM_001.nii.gz`` all have the id ``ATM_001``). The CSV has one row per case
(metrics as fractions in [0, 1], the counts behind them, and a ``status``), then one
summary row with ``mean ± std`` in percent over the evaluated cases. A case missing on
either side, or one that fails (shape or spacing mismatch, non-binary mask, ...), gets a
row with its status and is reported on stderr; the exit status is then 1. ``--out`` may
not be one of the masks; it is checked for writing before any metric is computed. The
anatomy classes that ``predict --classes`` writes beside the masks (``<id>_classes.nii.gz``)
are not cases: they are skipped.

A GT with several 6-connected components is parsed on its largest one (holes filled, as
the ATM'22 code): a warning names the file, and the column ``gt_components_dropped`` gives
the number of components left out for each case. Under ``--protocol atm22`` they are also
left out of the GT that precision, DSC, sensitivity and FPR use (as the official
pipeline); under ``paper`` those four use the GT as given (see :mod:`deeptree.metrics`).
"""

from __future__ import annotations

from deeptree.cli import os_error_message
from deeptree.cli._cases import (
    check_writable_folder,
    masks_by_id,
    refuse_out_over_inputs,
    report_problems,
    warn_thick_inputs,
)
from deeptree.io import InputError, atomic_write, read_nifti
from deeptree.io_checks import affines_match, check_mask_fraction

NAME = "evaluate"
HELP = "airway metrics (BD, TLD, precision, DSC, ...) of predictions against ground truths"


def add_arguments(parser) -> None:
    parser.add_argument("--pred", required=True, help="folder of predicted masks (.nii.gz)")
    parser.add_argument(
        "--gt",
        required=True,
        help="folder of ground-truth masks (.nii.gz), or a dataset root with labelsTr/",
    )
    parser.add_argument("--out", required=True, help="CSV file to write (e.g. metrics.csv)")
    parser.add_argument(
        "--protocol",
        choices=("paper", "atm22"),
        default="paper",
        help="paper: exclude trachea and main bronchi (default); atm22: the challenge's "
        "numbers (precision and DSC against the GT's largest component, holes filled)",
    )
    parser.add_argument(
        "--connectivity",
        type=int,
        choices=(26, 6),
        default=26,
        help="connectivity of the prediction's largest component (default 26)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from pathlib import Path

    from tqdm import tqdm

    pred_files = masks_by_id(args.pred, "--pred", allow_file=False)
    gt_files = masks_by_id(args.gt, "--gt", allow_file=False)
    pred_files = skip_classes_files(pred_files, gt_files)
    ids = sorted(set(pred_files) | set(gt_files))
    if not ids:
        raise InputError(f"{args.pred} and {args.gt}: no .nii/.nii.gz file in either folder")
    out = Path(args.out)
    refuse_out_over_inputs(out, [*pred_files.values(), *gt_files.values()])
    if out.is_dir():
        raise InputError(f"{out}: --out is a folder; give the name of the CSV file to write")
    if out.name.endswith((".nii.gz", ".nii")):
        raise InputError(f"{out}: --out is the CSV file to write, not a NIfTI name")
    check_writable_folder(out.parent)  # before the metrics, not after
    warn_thick_inputs(list(gt_files.values()))

    rows, problems = [], []
    for case_id in tqdm(ids, desc="evaluate", unit="case", disable=args.no_progress):
        if case_id not in pred_files:
            status = f"missing prediction (no {case_id} in {args.pred})"
        elif case_id not in gt_files:
            status = f"missing ground truth (no {case_id} in {args.gt})"
        else:
            try:
                row = evaluate_case(
                    pred_files[case_id], gt_files[case_id], args.protocol, args.connectivity
                )
                rows.append({"case": case_id, "status": "ok"} | row)
                continue
            except InputError as err:
                status = f"error: {err}"
            except OSError as err:  # a file that cannot be read: this case fails, the rest go on
                status = f"error: {os_error_message(err)}"
        rows.append({"case": case_id, "status": status})
        problems.append(f"{case_id}: {status}")

    write_csv(out, rows)
    n_ok = sum(r["status"] == "ok" for r in rows)
    print(f"{n_ok}/{len(ids)} cases evaluated ({args.protocol} protocol) -> {args.out}")
    return report_problems(NAME, problems, "case(s) not evaluated")


def skip_classes_files(pred_files: dict, gt_files: dict) -> dict:
    """The predictions without the anatomy-class files ``predict --classes`` writes beside
    the masks (``<id>_classes.nii.gz``): they are not cases.

    Parameters
    ----------
    pred_files, gt_files : dict case id -> Path
        As :func:`~deeptree.cli._cases.masks_by_id`.

    Returns
    -------
    dict case id -> Path
        ``pred_files`` less each ``<id>_classes`` whose ``<id>`` is a prediction or a ground
        truth (and which is no ground-truth case of its own).
    """
    return {
        case_id: path
        for case_id, path in pred_files.items()
        if not (
            case_id.endswith("_classes")
            and case_id not in gt_files
            and (case_id[: -len("_classes")] in pred_files or case_id[: -len("_classes")] in gt_files)
        )
    }


def evaluate_case(pred_path, gt_path, protocol: str, connectivity: int) -> dict:
    """Read one prediction and its GT, check they share a grid, and return the metrics.

    Raises
    ------
    InputError
        Unreadable file, shape, spacing or affine mismatch, non-binary or empty mask.
    """
    import numpy as np

    from deeptree.metrics import airway_metrics

    gt = read_nifti(gt_path)
    pred = read_nifti(pred_path)
    check_mask_fraction(gt.array, str(gt_path))
    if pred.array.shape != gt.array.shape:
        raise InputError(
            f"{pred_path}: shape {pred.array.shape} does not match {gt_path} {gt.array.shape}"
        )
    if not affines_match(pred.affine, gt.affine):
        raise InputError(
            f"{pred_path}: affine does not match {gt_path} "
            f"(largest difference {np.abs(pred.affine - gt.affine).max():.4g} mm)"
        )
    return airway_metrics(
        pred.array,
        gt.array,
        gt.spacing,
        protocol,
        affine=gt.affine,
        pred_spacing=pred.spacing,
        connectivity=connectivity,
        pred_name=str(pred_path),
        gt_name=str(gt_path),
    )


def write_csv(path, rows: list[dict]) -> None:
    """Write the per-case rows and a summary row (``mean ± std`` in percent), atomically."""
    import csv

    from deeptree.metrics import COUNT_KEYS, METRIC_KEYS, format_summary, summarize

    columns = ["case", "status", "protocol", *METRIC_KEYS, *COUNT_KEYS]
    evaluated = [r for r in rows if r["status"] == "ok"]
    out_rows = list(rows)
    if evaluated:
        summary = format_summary(summarize(evaluated), digits=2)
        out_rows.append(
            {
                "case": "summary",
                "status": f"mean ± std (%) over {len(evaluated)} case(s)",
                "protocol": evaluated[0]["protocol"],
            }
            | summary
        )

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(out_rows)

    atomic_write(path, write)
