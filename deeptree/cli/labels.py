"""``deeptree labels``: three-class anatomy labels for every airway mask of a folder.

Example::

    deeptree labels --in data/atm22/labelsTr --out data/atm22/anatomyTr

Each ``X.nii.gz`` in ``--in`` (a binary airway mask) is parsed into branches
(:func:`deeptree.tree.parse_tree`) and written as ``--out/X.nii.gz`` (uint8: 0 background,
1 trachea + main bronchi, 2 bronchi > 2 mm, 3 bronchi <= 2 mm), with the input's affine,
through a temporary name. A phantom cohort's mask (``treesTr/X.json`` beside ``--in``) is
split into classes 2 and 3 by its generator's true lumen radii, any other by the diameters
measured on the mask (:attr:`deeptree.tree.Branch.diameter_mm`). The cases already complete (recorded with the checksums of
input and output in the hidden ``--out/.deeptree-labels.json``) are kept unless
``--overwrite``, so an interrupted run resumes where it stopped and gives the same files as
an uninterrupted one; labels made with other options are refused unless ``--overwrite``. A bad
case (unreadable, not binary, a mask filling most of its volume, a full disk) is reported and
skipped; the exit status is 1 if any case failed. The output folder is locked while the
command runs, and the temporary files of a killed run are removed.
"""

from __future__ import annotations

from pathlib import Path

from deeptree.cli import os_error_message
from deeptree.cli._cases import (
    DoneRecord,
    check_writable_folder,
    locked_output,
    report_problems,
    warn_thick_inputs,
)
from deeptree.config import AnatomyConfig
from deeptree.io import (
    InputError,
    check_binary_mask,
    read_nifti,
    write_nifti,
)
from deeptree.io_checks import check_mask_fraction

NAME = "labels"
HELP = "write the three-class anatomy labels (AMC) of every airway mask in a folder"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--in",
        dest="inp",
        required=True,
        type=Path,
        help="folder of binary airway masks (*.nii.gz), e.g. labelsTr",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder for the anatomy labels, e.g. anatomyTr",
    )
    parser.add_argument(
        "--small-diameter-mm",
        type=float,
        default=None,
        help="class 3 if mean lumen diameter <= this (default: paper, 2.0 mm)",
    )
    parser.add_argument(
        "--central-max-generation",
        type=int,
        default=None,
        help="class 1 up to this generation (default: 1 = trachea + main bronchi)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def run(args) -> int:
    import dataclasses
    import warnings

    from tqdm import tqdm

    from deeptree.anatomy import anatomy_labels, class_summary, generator_diameters
    from deeptree.phantom.cases import read_tree, tree_beside
    from deeptree.tree import parse_tree

    config = AnatomyConfig()
    if args.small_diameter_mm is not None:
        config = dataclasses.replace(config, small_diameter_mm=args.small_diameter_mm)
    if args.central_max_generation is not None:
        config = dataclasses.replace(config, central_max_generation=args.central_max_generation)

    if not args.inp.is_dir():
        raise InputError(f"{args.inp}: input folder not found")
    if args.out.resolve() == args.inp.resolve():
        raise InputError(
            f"{args.out}: the output folder must differ from the input (inputs are never overwritten)"
        )
    masks = sorted(
        p
        for p in args.inp.iterdir()
        if p.name.endswith((".nii.gz", ".nii")) and not p.name.startswith(".")
    )
    if not masks:
        raise InputError(f"{args.inp}: no .nii.gz or .nii file")
    check_writable_folder(args.out)
    warn_thick_inputs(masks)
    settings = {
        "small_diameter_mm": config.small_diameter_mm,
        "central_max_generation": config.central_max_generation,
        "diameters": "cross-section or phantom radii",  # issue 30: no 2 x EDT labels kept
    }

    failed, skipped = [], 0
    with locked_output(args.out, NAME):
        record = DoneRecord(args.out, NAME, settings, overwrite=args.overwrite)
        progress = tqdm(masks, desc="anatomy labels", unit="case")
        for path in progress:
            target = args.out / path.name
            progress.set_postfix_str(path.name)
            try:
                tree_json = tree_beside(path)
                inputs = [path] if tree_json is None else [path, tree_json]
                if record.is_complete(path.name, inputs):
                    skipped += 1
                    tqdm.write(f"{path.name}: already complete, kept")
                    continue
                record.check_replaceable(target)  # a file of the user's: not without --overwrite
                volume = read_nifti(path)
                mask = check_binary_mask(volume.array, str(path))
                check_mask_fraction(mask, str(path))
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", UserWarning)
                    tree = parse_tree(
                        mask, volume.spacing, affine=volume.affine, name=str(path)
                    )
                diameters = None
                if tree_json is not None:
                    diameters = generator_diameters(tree, read_tree(tree_json), volume.affine)
                labels = anatomy_labels(tree, config, diameters)
                write_nifti(target, labels, volume.affine, dtype="uint8")
                record.add(path.name, inputs, [target])
            except (InputError, OSError) as err:
                failed.append(path.name)
                text = os_error_message(err) if isinstance(err, OSError) else str(err)
                tqdm.write(f"{path.name}: skipped: {text}")
                continue
            counts = class_summary(tree, labels, config, diameters)["branches"]
            note = f"; {tree.n_components_dropped} stray component(s) dropped" if caught else ""
            if tree_json is not None:
                note += f"; classes 2/3 by the phantom's radii ({tree_json.name})"
            tqdm.write(
                f"{path.name}: {len(tree.branches)} branches, per class {counts[1]}/{counts[2]}/{counts[3]}{note}"
            )
    done = len(masks) - len(failed) - skipped
    print(f"labels: {done} written, {skipped} already complete, {len(failed)} failed -> {args.out}")
    return report_problems(NAME, failed, "mask(s) failed")
