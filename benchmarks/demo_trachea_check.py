"""Where does the shipped demo model lose the trachea: size or appearance?

Two measurements at the voxel sizes given (default: the one the weights record for real CT):

1. On the validation CTs of ``deeptree.real_scale`` (the real atm_001 tree at its real size,
   in the phantom's image): TLD per generation of the stage-1 and final masks (0 trachea,
   1 main bronchi, 2 lobar bronchi).
2. On the real ``totalseg_chest`` CT, which has no label: the share of a crude trachea that
   the stage-1 and final masks cover. The crude trachea is the air (< -900 HU) 3D-connected,
   within the top 14 slices, to the air blob nearest the centre of the top slice (the trachea
   in this crop; checked by eye in its planes). It is a diagnostic, not a label.
3. With ``--edits``: the same coverage on copies of ``totalseg_chest`` with one thing the
   phantom does not have taken out (:data:`EDITS`: contrast-enhanced blood and bone set to
   the phantom's 40 HU blood, mediastinal fat set to soft tissue, smoothing, extra noise).
   Which edit lets the model see the trachea says what the phantoms should learn next. An
   exploration on a sample the model card reports: it chooses no setting.

    .venv/bin/python benchmarks/demo_trachea_check.py [--spacing 1.65 --spacing 2.4] [--edits]

About 1 minute on 2 cores (the validation CTs are read from the ``scale`` step's cache in
``runs/demo-weights/scale-validation`` when present, else simulated: +1 minute).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import deeptree  # noqa: E402, F401, I001  (its thread policy must come before torch loads)
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

#: Top slices searched for the crude trachea of totalseg_chest.
TOP_SLICES = 14

#: ``--edits``: name -> function of the CT (HU, float32) giving the edited copy.
EDITS = {
    "as is": lambda ct: ct,
    "above 120 HU -> 40 HU (contrast blood and bone)": lambda ct: np.where(ct > 120, 40, ct),
    "120-400 HU -> 40 HU (contrast blood, little bone)": lambda ct: np.where(
        (ct > 120) & (ct < 400), 40, ct
    ),
    "above 400 HU -> 40 HU (dense contrast and bone)": lambda ct: np.where(ct > 400, 40, ct),
    "fat (-150 to -40 HU) -> 45 HU": lambda ct: np.where((ct > -150) & (ct < -40), 45, ct),
    "smoothed (Gaussian, sigma 1 voxel)": lambda ct: ndimage.gaussian_filter(ct, 1.0),
    "noise + 30 HU (seed 0)": lambda ct: ct + np.random.default_rng(0).normal(0, 30, ct.shape),
}


def crude_trachea(ct: np.ndarray) -> np.ndarray:
    """Air (< -900 HU) in the top :data:`TOP_SLICES` slices connected to the top slice's air
    blob nearest the slice centre (bool, the CT's shape)."""
    air = ct[:, :, -TOP_SLICES:] < -900
    labels, _ = ndimage.label(air)
    top = labels[:, :, -1]
    ids = [i for i in np.unique(top) if i]
    centre = np.asarray(top.shape) / 2
    nearest = min(ids, key=lambda i: np.linalg.norm(np.argwhere(top == i).mean(0) - centre))
    out = np.zeros(ct.shape, bool)
    out[:, :, -TOP_SLICES:] = labels == nearest
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spacing", type=float, action="append", help="mm (repeatable)")
    parser.add_argument("--edits", action="store_true", help="also the edited totalseg_chest")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    from deeptree.demo import demo_checkpoints
    from deeptree.io import read_nifti
    from deeptree.locations import samples_dir
    from deeptree.metrics import generation_metrics
    from deeptree.real_ct import segment_volume
    from deeptree.real_scale import validation_cts
    from deeptree.resample import real_ct_spacing
    from deeptree.stage1.predict import load_stage1_model
    from deeptree.stage2.predict import load_stage2_model

    path1, path2 = demo_checkpoints()
    stage1, stage2 = load_stage1_model(path1, "cpu"), load_stage2_model(path2, "cpu")
    spacings = args.spacing or [real_ct_spacing(stage1.meta)[0]]
    cache = ROOT / "runs" / "demo-weights" / "scale-validation"
    cts, tree = validation_cts(3, 2000, cache=cache)
    chest = read_nifti(samples_dir() / "totalseg_chest" / "ct.nii.gz")
    trachea = crude_trachea(chest.array)
    print("| voxel size (mm) | validation CTs, stage-1 TLD gen 0 / 1 / 2 | final gen 0 / 1 / 2 "
          "| totalseg_chest: crude trachea covered, stage 1 / final |")  # fmt: skip
    print("|---|---|---|---|")
    for mm in spacings:
        per = {"stage1": [], "final": []}
        for i, ct in enumerate(cts):
            seg = segment_volume(ct, stage1, stage2, spacing=(mm,) * 3, name=f"validation {i}")
            for key, mask in (("stage1", seg.stage1_mask), ("final", seg.mask)):
                rows = generation_metrics(mask, tree.array, tree.spacing, affine=tree.affine)
                per[key].append([r["TLD"] for r in rows[:3]])
        seg = segment_volume(chest, stage1, stage2, spacing=(mm,) * 3, name="totalseg_chest")
        covered = [float((m[trachea] > 0).mean()) for m in (seg.stage1_mask, seg.mask)]

        def fmt(values):
            return " / ".join(f"{100 * v:.0f}" for v in np.mean(values, axis=0))

        print(
            f"| {mm:g} | {fmt(per['stage1'])} | {fmt(per['final'])} | "
            f"{100 * covered[0]:.0f}% / {100 * covered[1]:.0f}% |",
            flush=True,
        )
    print(f"\ncrude trachea of totalseg_chest: {int(trachea.sum())} voxels in the top "
          f"{TOP_SLICES} slices; validation TLD means over {len(cts)} CTs, %")  # fmt: skip
    near = ndimage.binary_dilation(trachea, iterations=10) & ~trachea
    bright = chest.array[near] > 400
    print(f"within 10 voxels of it: {int(bright.sum())} of {int(near.sum())} voxels above 400 HU "
          f"(highest {int(chest.array[near].max())} HU)")  # fmt: skip
    if not args.edits:
        return
    from deeptree.io import Volume

    print("\n| totalseg_chest edit | voxel size (mm) | crude trachea covered, stage 1 / final "
          "| stage-1 volume (mL) |")  # fmt: skip
    print("|---|---|---|---|")
    original = chest.array.astype(np.float32)
    for name, edit in EDITS.items():
        edited = Volume(np.asarray(edit(original), np.float32), chest.affine, chest.spacing)
        for mm in spacings:
            seg = segment_volume(edited, stage1, stage2, spacing=(mm,) * 3, name=name)
            covered = [float((m[trachea] > 0).mean()) for m in (seg.stage1_mask, seg.mask)]
            volume = float((seg.stage1_mask > 0).sum() * np.prod(chest.spacing) / 1000)
            print(f"| {name} | {mm:g} | {100 * covered[0]:.0f}% / {100 * covered[1]:.0f}% | "
                  f"{volume:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
