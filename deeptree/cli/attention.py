"""``deeptree attention``: breakage attention maps and centres of airway masks.

For every mask (one file, a folder of masks, or a dataset root with ``labelsTr/``) it writes,
in ``--out``:

* ``<id>_attention.nii.gz``: H_bar = sigmoid(alpha - H), float32 in [0, 1] (paper Eq. 2);
* ``<id>_centres.json``: alpha, threshold, the number of 26-connected components and one
  breakage centre (voxel i, j, k) per region of H_bar > threshold;
* with ``--save-h``, ``<id>_h.nii.gz``: the raw H in voxels, clipped at the cutoff
  ``alpha + 14`` (NIfTI holds no infinity: a value equal to the cutoff means "at least").

With ``--dataset-layout`` the files go into ATM'22-style folders instead,
``attentionTr/<id>.nii.gz``, ``centresTr/<id>.json`` and ``hTr/<id>.nii.gz``: with ``--out``
the dataset root, ``deeptree view DATASET --case ID`` then shows them with the case.

alpha is in voxels (see :mod:`deeptree.attention`). A case that fails is reported and the
others go on; the exit status is then 1.

A rerun skips the cases already complete (recorded in the hidden
``<out>/.deeptree-attention.json``) and says so; ``--overwrite`` computes them again, and is
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

NAME = "attention"
#: The kinds of output file (``<id>_<kind>`` or ``<kind>Tr/<id>``).
KINDS = ("attention", "centres", "h")
HELP = "breakage attention map (H_bar) and breakage centres of airway masks"


def add_arguments(parser) -> None:
    parser.add_argument(
        "input", help="a mask (.nii.gz), a folder of masks, or a dataset root with labelsTr/"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--profile", default="cpu", help="run profile for the defaults")
    parser.add_argument("--alpha", type=float, default=None, help="alpha in voxels (paper: 5)")
    parser.add_argument(
        "--threshold", type=float, default=None, help="centre regions: H_bar > threshold (0.5)"
    )
    parser.add_argument("--save-h", action="store_true", help="also write the raw H")
    parser.add_argument(
        "--dataset-layout",
        action="store_true",
        help="write <kind>Tr/<id>.nii.gz (ATM'22 layout) instead of <id>_<kind>.nii.gz",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--overwrite", action="store_true", help="compute again the cases already complete in --out"
    )


def attention_case(
    path, out_dir, alpha: float, threshold: float, save_h: bool, dataset_layout: bool = False
) -> dict:
    """Attention map and centres of one mask file; returns the JSON record written."""
    import numpy as np

    from deeptree.attention import attention_cutoff, breakage_attention, breakage_centres
    from deeptree.masks import as_binary_mask, label_components

    volume = read_nifti(path)
    mask = as_binary_mask(volume.array, str(path), allow_empty=True)
    h_bar, h = breakage_attention(mask, alpha, return_h=True, name=str(path))
    centres = breakage_centres(h_bar, threshold)
    case_id = case_id_from_path(path)
    where = {"out_dir": out_dir, "case_id": case_id, "dataset_layout": dataset_layout}
    write_nifti(output_path(kind="attention", suffix=".nii.gz", **where), h_bar, volume.affine)
    if save_h:
        clipped = np.minimum(h, attention_cutoff(alpha))
        write_nifti(output_path(kind="h", suffix=".nii.gz", **where), clipped, volume.affine)
    record = {
        "case": case_id,
        "source": str(path),
        "alpha_voxels": alpha,
        "threshold": threshold,
        "n_components": label_components(mask)[1],
        "centres": centres.tolist(),
    }
    write_json(output_path(kind="centres", suffix=".json", **where), record)
    return record


def run(args) -> int:
    from deeptree.attention import check_alpha

    config = get_config(args.profile).attention
    alpha = config.alpha if args.alpha is None else args.alpha
    check_alpha(alpha, "--alpha")  # once, before the batch (not once per case)
    threshold = config.centre_threshold if args.threshold is None else args.threshold
    files, out_dir = mask_inputs(args, KINDS)

    def outputs_of(case_id: str, path: Path) -> list[Path]:
        where = {"out_dir": out_dir, "case_id": case_id, "dataset_layout": args.dataset_layout}
        kinds = [("attention", ".nii.gz"), ("centres", ".json")]
        kinds += [("h", ".nii.gz")] if args.save_h else []
        return [output_path(kind=k, suffix=x, **where) for k, x in kinds]

    def work(case_id: str, path: Path):
        record = attention_case(path, out_dir, alpha, threshold, args.save_h, args.dataset_layout)
        outputs = outputs_of(case_id, path)
        line = f"{case_id}: {record['n_components']} components, {len(record['centres'])} centres"
        return line, outputs

    settings = {
        "alpha": alpha,
        "threshold": threshold,
        "save_h": bool(args.save_h),
        "dataset_layout": bool(args.dataset_layout),
    }
    problems = run_cases_locked(
        NAME, out_dir, settings, files, work, overwrite=args.overwrite,
        progress=not args.no_progress, targets=outputs_of,
        subfolders=[f.name for f in output_folders(out_dir, KINDS, args.dataset_layout)
                    if f != out_dir],
    )  # fmt: skip
    print(f"{len(files) - len(problems)}/{len(files)} masks -> {out_dir}")
    return report_problems(NAME, problems, "mask(s) failed")
