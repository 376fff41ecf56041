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
"""

from __future__ import annotations

NAME = "attention"
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


def mask_files(path) -> dict:
    """Masks to process, keyed by case id: one file, a folder, or ``root/labelsTr``.

    Raises
    ------
    InputError
        Nothing readable there, or two files with the same case id.
    """
    from pathlib import Path

    from deeptree.io import InputError, case_id_from_path

    path = Path(path)
    if path.is_file():
        return {case_id_from_path(path): path}
    if not path.is_dir():
        raise InputError(f"{path}: no such file or folder")
    folder = path / "labelsTr" if (path / "labelsTr").is_dir() else path
    found: dict = {}
    for file in sorted(folder.iterdir()):
        if file.name.startswith(".") or not file.name.endswith((".nii.gz", ".nii")):
            continue
        case_id = case_id_from_path(file)
        if case_id in found:
            raise InputError(
                f"{folder}: two files for case {case_id}: {found[case_id].name}, {file.name}"
            )
        found[case_id] = file
    if not found:
        raise InputError(f"{folder}: no .nii/.nii.gz mask in this folder")
    return found


def output_path(out_dir, case_id: str, kind: str, suffix: str, dataset_layout: bool):
    """``out/<id>_<kind><suffix>``, or ``out/<kind>Tr/<id><suffix>`` in the dataset layout."""
    from pathlib import Path

    if dataset_layout:
        return Path(out_dir) / f"{kind}Tr" / f"{case_id}{suffix}"
    return Path(out_dir) / f"{case_id}_{kind}{suffix}"


def write_json(path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""
    import json

    from deeptree.io import atomic_write

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)

    atomic_write(path, write)


def attention_case(
    path, out_dir, alpha: float, threshold: float, save_h: bool, dataset_layout: bool = False
) -> dict:
    """Attention map and centres of one mask file; returns the JSON record written."""
    import numpy as np

    from deeptree.attention import (
        as_binary_mask,
        attention_cutoff,
        breakage_attention,
        breakage_centres,
        label_components,
    )
    from deeptree.io import case_id_from_path, read_nifti, write_nifti

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
    import sys
    from pathlib import Path

    from tqdm import tqdm

    from deeptree.config import get_config
    from deeptree.io import InputError

    config = get_config(args.profile).attention
    alpha = config.alpha if args.alpha is None else args.alpha
    threshold = config.centre_threshold if args.threshold is None else args.threshold
    files = mask_files(args.input)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    problems = []
    for case_id, path in tqdm(
        files.items(), desc="attention", unit="case", disable=args.no_progress
    ):
        try:
            record = attention_case(
                path, out_dir, alpha, threshold, args.save_h, args.dataset_layout
            )
        except InputError as err:
            problems.append(f"{case_id}: {err}")
            continue
        print(f"{case_id}: {record['n_components']} components, {len(record['centres'])} centres")
    print(f"{len(files) - len(problems)}/{len(files)} masks -> {out_dir}")
    if problems:
        print(f"deeptree attention: {len(problems)} mask(s) failed:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0
