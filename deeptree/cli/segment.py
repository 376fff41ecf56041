"""``deeptree segment``: the full two-stage DeepTree segmentation of one CT.

Example::

    deeptree segment ct.nii.gz airway.nii.gz
    deeptree segment ct.nii.gz airway.nii.gz --checkpoint runs/s1/last.pt --stage2-checkpoint runs/s2/best.pt
    deeptree segment ct.nii.gz airway.nii.gz --checkpoint runs/s1/last.pt --gapfill intensity

Stage 1, the breakage attention map, stage 2 at its centres, the union and the largest
component (:func:`deeptree.pipeline.segment_file`), written to ``OUT`` (binary airway, uint8,
the CT's affine) through a temporary name. The same as
``deeptree predict --two-stage --input CT --out OUT``, with the CT and the output as
positional arguments. An existing ``OUT`` is refused unless ``--overwrite``, as is an ``OUT``
in a dataset's ``imagesTr``/``labelsTr`` folder (always). Without ``--checkpoint``, the demo
weights shipped in the package (both stages; ``deeptree.demo``) are used, and a line says so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deeptree.cli import predict
from deeptree.io import InputError

NAME = "segment"
HELP = "segment the airway tree of one CT with both stages (stage 1 + breakage connection)"


def add_arguments(parser) -> None:
    parser.add_argument("ct", help="the CT, .nii or .nii.gz (HU)")
    parser.add_argument("out", help="the airway mask to write (.nii.gz)")
    parser.add_argument(
        "--checkpoint", help="stage-1 last.pt of deeptree train (default: the demo weights)"
    )
    parser.add_argument(
        "--stage2-checkpoint", help="stage-2 best.pt (or last.pt) of deeptree train --stage 2"
    )
    parser.add_argument(
        "--gapfill",
        choices=("straight", "intensity"),
        help="the non-learned gap filler instead of the stage-2 network",
    )
    parser.add_argument(
        "--overlap", type=float, help="sliding-window overlap (default: the model's)"
    )
    parser.add_argument("--device", help="cpu, cuda ... (default: cuda if available)")
    predict.add_model_spacing_argument(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args) -> int:
    if Path(args.ct).is_dir():
        raise InputError(
            f"{args.ct}: a folder; segment takes one CT (deeptree predict --two-stage --input "
            "FOLDER does a folder)"
        )
    if not str(args.out).endswith((".nii.gz", ".nii")):
        raise InputError(f"{args.out}: the output must be a .nii.gz (or .nii) file")
    if args.checkpoint is not None and not args.stage2_checkpoint and not args.gapfill:
        raise InputError("stage 2 missing: give --stage2-checkpoint (or --gapfill straight|intensity)")
    as_predict = argparse.Namespace(
        stage=2,
        two_stage=True,
        checkpoint=args.checkpoint,
        stage2_checkpoint=args.stage2_checkpoint,
        gapfill=args.gapfill,
        input=args.ct,
        out=args.out,
        ct=None,
        out_file=None,
        classes=False,
        overlap=args.overlap,
        device=args.device,
        model_spacing=args.model_spacing,
        overwrite=args.overwrite,
    )
    return predict.run(as_predict)
