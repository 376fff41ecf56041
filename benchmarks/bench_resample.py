"""Voxel size at inference (``deeptree.resample``): what the round trip to a model's spacing and
back costs and keeps.

1. A hand-built anisotropic CT (0.7 x 0.7 x 1.0 mm, an oblique air capsule of radius 3 mm in
   soft tissue, ``tests/test_resample.py``'s case) through ``predict_file`` and the two-stage
   ``segment_file`` with a stand-in network (airway where the normalised CT is below 0.35) at
   1.5 mm: the tube's volume against the exact capsule, and Dice with the prediction on the
   CT's own grid.
2. The real sample ``data/samples/totalseg_chest/ct.nii.gz`` (1.5 mm, 120 x 126 x 164):
   seconds of ``to_model_grid`` (CT to the model's spacing) and ``from_model_grid`` (a
   probability back, trilinear + threshold; a mask back, nearest) for models at 0.7, 1.0, 1.5
   (identity path) and 2.0 mm, one thread, after a warm-up call (MONAI's imports).
3. The stand-in network through ``predict_file`` on the real samples (copies) with a model
   spacing other than theirs: the output's grid, and Dice with the prediction on the CT's own
   grid (the stand-in finds the air inside the body: lungs and airways).

    .venv/bin/python benchmarks/bench_resample.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_resample import ANISO, affine_of, capsule_ct, dice, loaded  # noqa: E402

from deeptree.io import SAMPLES_DIR, read_nifti, write_nifti  # noqa: E402
from deeptree.pipeline import segment_file  # noqa: E402
from deeptree.resample import from_model_grid, to_model_grid  # noqa: E402
from deeptree.stage1.predict import predict_file, predict_stage1  # noqa: E402


def tube(folder: Path) -> None:
    ct, volume = capsule_ct(ANISO, (96, 84, 64))
    path = write_nifti(folder / "ct.nii.gz", ct, affine_of(ANISO))
    model = loaded()
    voxel = float(np.prod(ANISO))
    direct = predict_stage1(model.model, ct, (32, 32, 32), overlap=0.25, device="cpu").mask
    stage1 = read_nifti(predict_file(None, path, folder / "p.nii.gz", device="cpu", loaded=model))
    two = read_nifti(segment_file(path, folder / "s.nii.gz", model, "gapfill", device="cpu"))
    print(f"tube, 0.7x0.7x1.0 mm CT, model at 1.5 mm: exact capsule volume {volume:.1f} mm^3")
    for name, mask in (
        ("no resampling (CT's own grid)", direct),
        ("predict: probability trilinear, > 0.5", stage1.array),
        ("segment_file: mask nearest", two.array),
    ):
        print(
            f"  {name:40s} volume {mask.sum() * voxel / volume - 1:+.1%}, "
            f"Dice with no resampling {dice(mask, direct):.3f}"
        )


def real_sample() -> None:
    volume = read_nifti(SAMPLES_DIR / "totalseg_chest" / "ct.nii.gz")
    print(f"totalseg_chest {volume.array.shape} at {volume.spacing[0]:.2f} mm, one thread:")
    warm, grid = to_model_grid(volume.array[:8, :8, :8], volume.affine, (2.0,) * 3)  # imports
    from_model_grid(warm, grid, "mask")
    for mm in (0.7, 1.0, 1.5, 2.0):
        start = time.perf_counter()
        ct, grid = to_model_grid(volume.array, volume.affine, (mm,) * 3, "totalseg")
        t_in = time.perf_counter() - start
        probability = np.clip((-400.0 - ct) / 600.0, 0, 1).astype(np.float32)  # any smooth map
        start = time.perf_counter()
        back = from_model_grid(probability, grid, "probability")
        t_prob = time.perf_counter() - start
        start = time.perf_counter()
        from_model_grid((probability > 0.5).astype(np.uint8), grid, "mask")
        t_mask = time.perf_counter() - start
        assert back.shape == volume.array.shape
        print(
            f"  model at {mm} mm: model grid {ct.shape}, CT in {t_in:.2f} s, probability back "
            f"{t_prob:.2f} s, mask back {t_mask:.2f} s, resampled: {grid.resampled}"
        )


def real_round_trips(folder: Path) -> None:
    print("real samples through predict_file with the stand-in network:")
    for sample, mm in (("totalseg_chest", 2.0), ("totalseg_chest", 1.0), ("cip_ct64", 2.6)):
        path = folder / f"{sample}.nii.gz"
        shutil.copy(SAMPLES_DIR / sample / "ct.nii.gz", path)
        model = loaded((mm,) * 3)
        out = read_nifti(
            predict_file(None, path, folder / "out.nii.gz", device="cpu", loaded=model)
        )
        ct = read_nifti(path)
        direct = predict_stage1(model.model, ct.array, (32, 32, 32), overlap=0.25, device="cpu")
        same_grid = out.array.shape == ct.array.shape and np.array_equal(out.affine, ct.affine)
        print(
            f"  {sample} ({'x'.join(f'{v:.2f}' for v in ct.spacing)} mm) via {mm} mm: same shape "
            f"and affine {same_grid}, Dice {dice(out.array, direct.mask):.3f}, volume "
            f"{out.array.sum() / direct.mask.sum() - 1:+.1%}"
        )


def main() -> int:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as folder:
        tube(Path(folder))
    real_sample()
    with tempfile.TemporaryDirectory() as folder:
        real_round_trips(Path(folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
