"""``deeptree predict``: stage-1 airway masks for CT files.

Example::

    deeptree predict ct.nii.gz airway.nii.gz
    deeptree predict --stage 1 --checkpoint runs/s1/last.pt --input data/cohort/imagesTr --out runs/s1/pred
    deeptree predict --two-stage --checkpoint runs/s1/last.pt --stage2-checkpoint runs/s2/best.pt --input data/cohort/imagesTr --out runs/s2/pred

Without ``--checkpoint``, the demo weights shipped in the package (``deeptree.demo``, trained
on phantoms; ``deeptree/weights/MODEL_CARD.md``) are used, and a line says so; with
``--two-stage`` also their stage 2 when no ``--stage2-checkpoint`` or ``--gapfill`` is given.
``deeptree predict CT OUT`` (two positional files) is the same as ``--input CT --out OUT``.

``--input`` is one CT (``.nii.gz``) or a folder of them; each ``<id>_0000.nii.gz`` gives
``<out>/<id>.nii.gz`` (binary airway, uint8, the CT's affine), and with ``--classes`` also
``<out>/<id>_classes.nii.gz`` (the most probable anatomy class). Each CT is resampled to the
voxel size the checkpoint was trained at and the outputs back onto the CT's exact grid
(``deeptree.resample``); a checkpoint without that record assumes its profile's phantom
spacing and says so. Hidden files (names
starting with ``.``) in the folder are ignored. ``--out`` may not be an input, nor the folder
the inputs were listed from, nor a dataset's ``imagesTr``/``labelsTr`` folder. An existing
file is not replaced unless ``--overwrite``: the output file of one CT, or in a folder a file
that an earlier ``predict`` there did not write (not in its record, below). A CT that cannot be used (unreadable, not in Hounsfield units,
...) is reported and the others go on; the exit status is then 1 and the failed cases are
listed at the end.

Into a folder, a rerun skips the cases already complete (recorded in the hidden
``<out>/.deeptree-predict.json`` with the checksums of the CT, the checkpoints and the outputs)
and says so; ``--overwrite`` predicts them again. A folder holding the predictions of other
settings (another checkpoint, ``--overlap``, ...) is refused unless ``--overwrite``. The folder
is locked while the command runs (a second process writing there is refused), and the
temporary files of a killed run are removed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from deeptree.cli._cases import (
    check_writable_folder,
    for_each_case,
    refuse_out_over_inputs,
    report_problems,
    run_cases_locked,
    warn_thick_inputs,
)
from deeptree.files import file_sha256
from deeptree.io import (
    InputError,
    case_id_from_path,
    check_case_id_unique,
    check_spacing,
    nifti_inputs,
    read_nifti,
)
from deeptree.io_checks import check_ct_in_hu

NAME = "predict"
HELP = "predict stage-1 airway masks with a trained checkpoint"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--stage", type=int, choices=(1, 2), default=1, help="1: stage-1 mask; 2: same as --two-stage"
    )
    parser.add_argument("ct", nargs="?", help="one CT (the same as --input CT)")
    parser.add_argument("out_file", nargs="?", metavar="out", help="the mask (as --out OUT)")
    parser.add_argument(
        "--checkpoint", help="last.pt of deeptree train (default: the shipped demo weights)"
    )
    parser.add_argument("--input", help="a CT .nii(.gz) or a folder of them")
    parser.add_argument("--out", help="output folder (or a .nii.gz file for one input)")
    parser.add_argument("--classes", action="store_true", help="also write the anatomy classes")
    parser.add_argument(
        "--overlap", type=float, help="sliding-window overlap (default: the model's)"
    )
    parser.add_argument("--device", help="cpu, cuda ... (default: cuda if available)")
    add_model_spacing_argument(parser)
    # two stages (deeptree.pipeline.segment_file): stage 1, attention, stage 2, union, largest CC
    parser.add_argument(
        "--two-stage", action="store_true", help="full DeepTree: stage 1 + stage-2 connection"
    )
    parser.add_argument(
        "--stage2-checkpoint",
        help="best.pt (or last.pt) of deeptree train --stage 2",
    )
    parser.add_argument(
        "--gapfill",
        choices=("straight", "intensity"),
        help="with --two-stage: the non-learned gap filler instead of the stage-2 network",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="predict again the cases already complete in --out, and replace the outputs of "
        "other settings and existing files this command did not write",
    )


def add_model_spacing_argument(parser) -> None:
    """``--model-spacing MM``: the voxel size the model runs at (predict and segment)."""
    parser.add_argument(
        "--model-spacing", type=float, metavar="MM",
        help="run the model at this isotropic voxel size (mm) instead of the checkpoint's "
        "(the demo weights: the real-CT voxel size of their card; e.g. for a child's chest, "
        "whose anatomy is smaller, a finer one)",
    )  # fmt: skip


def run(args) -> int:
    import torch  # noqa: F401  (loaded here, not at import: `deeptree --help` stays fast)

    from deeptree.networks import choose_device
    from deeptree.pipeline import model_spacing, segment_file
    from deeptree.stage1.predict import load_stage1_model, predict_file
    from deeptree.stage2.predict import load_stage2_model

    _positional_files(args)
    check_overlap(args.overlap)  # once, before the batch
    two_stage = args.two_stage or args.stage == 2
    _demo_weights(args, two_stage)
    if two_stage and args.classes:
        raise InputError("--classes is a stage-1 output; it is not available with --two-stage")
    device = choose_device(args.device)
    inputs = nifti_inputs(args.input)
    cases = {}
    for path in inputs:
        case_id = case_id_from_path(path)
        check_case_id_unique(cases, case_id, path)
        cases[case_id] = path
    out = Path(args.out)
    single_file = (
        len(inputs) == 1 and out.name.endswith((".nii.gz", ".nii")) and not out.is_dir()
    )
    refuse_out_over_inputs(out, inputs, from_folder=Path(args.input).is_dir())
    if single_file:
        check_writable_folder(out.parent)
        if out.exists() and not getattr(args, "overwrite", False):
            raise InputError(f"{out}: exists; give --overwrite to replace it, or another output name")
    else:
        check_writable_folder(out)
    stage1 = load_stage1_model(args.checkpoint, device)
    if not two_stage:
        stage2 = None
    elif args.gapfill:
        stage2 = f"gapfill-{args.gapfill}"
    elif args.stage2_checkpoint:
        stage2 = load_stage2_model(args.stage2_checkpoint, device)
    else:
        raise InputError("--two-stage needs --stage2-checkpoint (or --gapfill straight|intensity)")

    with warnings.catch_warnings():  # a missing record is said once per CT, by the work
        warnings.simplefilter("ignore")
        spacing = model_spacing(stage1, stage2, args.checkpoint)  # refuses a stage mismatch
    chosen = getattr(args, "model_spacing", None)
    override = None  # the spacing given to the work below: None = the checkpoint's
    if chosen is not None:
        spacing = override = check_spacing((chosen,) * 3, "--model-spacing")
        print(f"--model-spacing: the model runs at {chosen:g} mm, not at the checkpoint's")
    if stage1.meta.get("spacing") is not None or chosen is not None:
        print(
            f"model spacing {'x'.join(f'{v:g}' for v in spacing)} mm: each CT is brought to RAS "
            "voxel order and resampled to it, and the mask back onto the CT's grid and voxel "
            "order (not resampled when its spacing is already that)"
        )
    warn_thick_inputs(list(cases.values()))

    def targets(case_id: str, path: Path) -> list[Path]:
        """The mask (and the classes beside it) that ``work`` writes for a case."""
        target = out if single_file else out / f"{case_id}.nii.gz"
        classes = [target.with_name(f"{case_id}_classes.nii.gz")] if args.classes else []
        return [target, *classes]

    def work(case_id: str, path: Path):
        check_ct_in_hu(read_nifti(path).array, str(path))
        target = out if single_file else out / f"{case_id}.nii.gz"
        classes = None
        if two_stage:
            segment_file(
                path, target, stage1, stage2, device=device, overlap=args.overlap,
                spacing=override,
            )  # fmt: skip
        else:
            classes = target.with_name(f"{case_id}_classes.nii.gz") if args.classes else None
            predict_file(
                args.checkpoint,
                path,
                target,
                device=device,
                overlap=args.overlap,
                classes_path=classes,
                loaded=stage1,
                spacing=override,
            )
        return f"{path.name} -> {target}", [target] + ([classes] if classes else [])

    if single_file:
        problems = for_each_case(cases, work, desc="predict", progress=False)
        return report_problems(NAME, problems, "CT(s) failed")
    settings = {
        "checkpoint": file_sha256(args.checkpoint),
        "two_stage": two_stage,
        "stage2": (
            file_sha256(args.stage2_checkpoint)
            if two_stage and args.stage2_checkpoint and not args.gapfill
            else None
        ),
        "gapfill": args.gapfill if two_stage else None,
        "model_spacing": chosen,
        "overlap": args.overlap,
        "classes": bool(args.classes),
    }
    problems = run_cases_locked(
        NAME, out, settings, cases, work, overwrite=getattr(args, "overwrite", False),
        targets=targets,
    )  # fmt: skip
    return report_problems(NAME, problems, "CT(s) failed")


#: The largest ``--overlap``: windows step by a tenth of the patch, about 125 times as many as
#: at nnU-Net's 0.5; above it their number explodes (0.97: 4,600 times, minutes on a tiny CT).
MAX_OVERLAP = 0.9


def check_overlap(overlap: float | None, option: str = "--overlap") -> None:
    """Refuse a sliding-window overlap outside ``[0, MAX_OVERLAP]`` (None: the model's).

    Raises
    ------
    InputError
        One line with the value, the bound and how many times more windows it would take.
    """
    if overlap is None:
        return
    if not 0.0 <= overlap <= MAX_OVERLAP:  # also NaN
        more = f" ({(0.5 / (1 - overlap)) ** 3:,.0f} times the windows of 0.5)" if 0.9 < overlap < 1 else ""
        raise InputError(
            f"{option} {overlap:g}: must be between 0 and {MAX_OVERLAP:g}{more}; "
            "without it, the checkpoint's overlap is used (nnU-Net: 0.5)"
        )


def _positional_files(args) -> None:
    """``predict CT OUT``: fill ``--input`` and ``--out`` from the positional files."""
    ct, out = getattr(args, "ct", None), getattr(args, "out_file", None)
    if ct is not None or out is not None:
        if args.input is not None or args.out is not None:
            raise InputError("give the CT and the output either as CT OUT or as --input/--out")
        if ct is None or out is None:
            raise InputError("predict CT OUT: both the CT and the output file are needed")
        args.input, args.out = ct, out
    if args.input is None or args.out is None:
        raise InputError("predict: give CT OUT, or --input and --out")


def _demo_weights(args, two_stage: bool) -> None:
    """No ``--checkpoint``: the shipped demo weights (and their stage 2 for two stages, unless
    another connector is given), said in one line."""
    if args.checkpoint is not None:
        return
    from deeptree.demo import demo_checkpoints, describe

    stage1, stage2 = demo_checkpoints()
    args.checkpoint = str(stage1)
    both = two_stage and not args.stage2_checkpoint and not args.gapfill
    if both:
        args.stage2_checkpoint = str(stage2)
    print(describe(stage1, stage2=both))
