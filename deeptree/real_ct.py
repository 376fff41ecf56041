"""A trained two-stage model on real CT: segment, describe the tree found, score against a label.

Used by notebook 08 and by ``benchmarks/demo_weights.py`` (the model card's figures):

* :func:`segment_volume`: the two-stage pipeline on a CT at any voxel size, the result back on
  the CT's grid (as ``deeptree segment`` writes it);
* :func:`deeptree.tree_summary.describe_tree` (imported here): what can be said of a mask
  without a label: trachea found, number of components, airway volume, generations reached,
  branches per generation, lobar bronchi;
* :func:`score_against_label`: the paper's metrics and TLD/BD per generation against a label;
* :func:`evaluate_demo`: all of it for a synthetic test set and the real samples;
* :func:`transfer_verdict`: what those figures say, in sentences (the model card of
  :mod:`deeptree.model_card` and notebook 08 print them).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeptree.io import Volume, list_cases, read_nifti
from deeptree.locations import samples_dir
from deeptree.metrics import airway_metrics, generation_metrics
from deeptree.pipeline import segment_at_model_spacing
from deeptree.resample import checkpoint_spacing, from_model_grid
from deeptree.stage1.predict import load_stage1_model
from deeptree.stage2.predict import load_stage2_model
from deeptree.tree_summary import LEAK_VOLUME_ML, describe_tree


@dataclass
class RealSegmentation:
    """The two-stage result on a CT's own grid.

    Attributes
    ----------
    mask : ndarray of uint8, shape (I, J, K)
        Final airway on the CT's grid (one component on the model's grid).
    stage1_mask : ndarray of uint8, shape (I, J, K)
        Stage-1 mask on the CT's grid.
    ct : ndarray, shape (I, J, K)
        The CT (HU) as read.
    spacing : tuple of 3 float
        The CT's voxel size (mm).
    affine : ndarray (4, 4)
    model_spacing : tuple of 3 float or None
        The voxel size the model ran at.
    seconds : float
        Wall time of the segmentation (resampling included).
    """

    mask: np.ndarray
    stage1_mask: np.ndarray
    ct: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    model_spacing: tuple[float, float, float] | None
    seconds: float


def crop_volume(volume: Volume, size_mm: float, centre=None) -> Volume:
    """A box of about ``size_mm`` per side cut from a volume, with its affine moved to match.

    Parameters
    ----------
    volume : deeptree.io.Volume
    size_mm : float
        Side of the box (mm); clipped to the volume.
    centre : 3 ints, optional
        Voxel at the box's centre (default: the volume's centre).

    Returns
    -------
    deeptree.io.Volume
        The cropped array (a copy) on the same world coordinates (``path`` None).
    """
    shape = np.asarray(volume.array.shape)
    centre = shape // 2 if centre is None else np.asarray(centre, dtype=int)
    half = np.ceil(float(size_mm) / np.asarray(volume.spacing, dtype=float) / 2).astype(int)
    start = np.clip(centre - half, 0, shape - 1)
    stop = np.clip(centre + half, start + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
    affine = np.array(volume.affine, dtype=float)
    affine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    return Volume(np.array(volume.array[box]), affine, volume.spacing)


def segment_volume(volume: Volume, stage1, stage2, *, device="cpu", name: str = "CT", spacing=None):
    """Two-stage segmentation of a CT at the model's voxel size, back on the CT's grid.

    :func:`deeptree.pipeline.segment_at_model_spacing`, as :func:`deeptree.pipeline.segment_file`
    (which ``deeptree segment`` runs) uses it, kept in memory and with the stage-1 mask too.

    Parameters
    ----------
    volume : deeptree.io.Volume
        The CT in HU (:func:`deeptree.io.read_nifti`).
    stage1, stage2 : LoadedModel
        From :func:`deeptree.stage1.predict.load_stage1_model` and
        :func:`deeptree.stage2.predict.load_stage2_model`.
    device : str
    name : str
        What to call the CT in messages.
    spacing : 3 floats (mm), optional
        Run the model at this voxel size instead of the checkpoints' real-CT voxel size
        (:func:`deeptree.pipeline.model_spacing`); :mod:`deeptree.real_scale` compares
        candidates with it.

    Returns
    -------
    RealSegmentation
    """

    start = time.perf_counter()
    result, grid = segment_at_model_spacing(
        volume.array, volume.affine, stage1, stage2, spacing=spacing, device=device, name=name
    )
    return RealSegmentation(
        mask=from_model_grid(result.mask, grid, "mask"),
        stage1_mask=from_model_grid(result.stage1_mask, grid, "mask"),
        ct=volume.array,
        spacing=tuple(float(v) for v in volume.spacing),
        affine=volume.affine,
        model_spacing=grid.model_spacing,
        seconds=time.perf_counter() - start,
    )


def score_against_label(
    mask: np.ndarray, label: np.ndarray, spacing, affine=None, protocol: str = "paper"
) -> dict:
    """The paper's metrics and TLD/BD per generation of a mask against a label.

    Parameters
    ----------
    mask, label : ndarray, shape (I, J, K), binary
    spacing : 3 floats (mm)
    affine : ndarray (4, 4), optional
    protocol : {"paper", "atm22"}
        Of :func:`deeptree.metrics.airway_metrics`; ``"atm22"`` (no branch excluded) for a
        label that stops at the main or lobar bronchi, which the paper protocol refuses.

    Returns
    -------
    dict
        ``metrics`` (:func:`deeptree.metrics.airway_metrics`, paper protocol: BD, TLD,
        precision, DSC, ...), ``protocol`` and ``by_generation``
        (:func:`deeptree.metrics.generation_metrics`).
    """

    reference = np.asarray(label) > 0
    metrics = airway_metrics(mask, reference, spacing, protocol, affine=affine)
    rows = generation_metrics(mask, reference, spacing, affine=affine)
    return {"metrics": dict(metrics), "protocol": protocol, "by_generation": rows}


def evaluate_demo(
    stage1_path: str | os.PathLike,
    stage2_path: str | os.PathLike,
    test_root: str | os.PathLike,
    samples: str | os.PathLike | None = None,
) -> dict:
    """The figures of the model card: synthetic test set and real samples.

    Parameters
    ----------
    stage1_path, stage2_path : path-like
        The checkpoints.
    test_root : path-like
        ATM'22-layout test cohort (``imagesTr``/``labelsTr``).
    samples : path-like, optional
        Default :func:`deeptree.locations.samples_dir`.

    Returns
    -------
    dict
        ``synthetic``: per case (``metrics``, ``stage1_metrics``, ``seconds``) and ``mean``;
        ``totalseg_chest``: :func:`describe_tree` of the final and the stage-1 mask, seconds;
        ``cip_ct64``: :func:`score_against_label` and :func:`describe_tree`, seconds.
    """

    stage1 = load_stage1_model(stage1_path, "cpu")
    stage2 = load_stage2_model(stage2_path, "cpu")
    # phantoms are at the training anatomy's size: run at the training spacing, not the
    # real-CT one (the anatomical scale is for adult-sized chests)
    phantom_spacing = checkpoint_spacing(stage1.meta, str(stage1_path))
    synthetic = {}
    for case in list_cases(test_root):
        ct, label = read_nifti(case.image), read_nifti(case.label)
        seg = segment_volume(ct, stage1, stage2, name=case.id, spacing=phantom_spacing)
        scored = score_against_label(seg.mask, label.array, seg.spacing, seg.affine)
        first = score_against_label(seg.stage1_mask, label.array, seg.spacing, seg.affine)
        synthetic[case.id] = {
            "metrics": scored["metrics"],
            "by_generation": scored["by_generation"],
            "stage1_metrics": first["metrics"],
            "seconds": seg.seconds,
        }
    keys = ("BD", "TLD", "precision", "DSC")
    mean = {k: float(np.mean([c["metrics"][k] for c in synthetic.values()])) for k in keys} | {
        f"stage1_{k}": float(np.mean([c["stage1_metrics"][k] for c in synthetic.values()]))
        for k in keys
    }
    root = Path(samples) if samples is not None else samples_dir()
    real = {}
    chest = read_nifti(root / "totalseg_chest" / "ct.nii.gz")
    seg = segment_volume(chest, stage1, stage2, name="totalseg_chest")
    real["totalseg_chest"] = {
        "spacing": list(seg.spacing),
        "shape": list(seg.mask.shape),
        "final": describe_tree(seg.mask, seg.spacing, seg.affine),
        "stage1": describe_tree(seg.stage1_mask, seg.spacing, seg.affine),
        "seconds": seg.seconds,
    }
    cip = read_nifti(root / "cip_ct64" / "ct.nii.gz")
    label = read_nifti(root / "cip_ct64" / "airway.nii.gz")
    seg = segment_volume(cip, stage1, stage2, name="cip_ct64")
    # the 4 mm label stops at the lobar bronchi: the paper protocol (generations >= 2 only)
    # has almost nothing to score, so the challenge's protocol (every branch) is used
    real["cip_ct64"] = {
        "spacing": list(seg.spacing),
        "shape": list(seg.mask.shape),
        **score_against_label(seg.mask, label.array, seg.spacing, seg.affine, "atm22"),
        "stage1_metrics": score_against_label(
            seg.stage1_mask, label.array, seg.spacing, seg.affine, "atm22"
        )["metrics"],
        "final": describe_tree(seg.mask, seg.spacing, seg.affine),
        "label": describe_tree(label.array, seg.spacing, seg.affine),
        "seconds": seg.seconds,
    }
    return {"synthetic": {"cases": synthetic, "mean": mean}, "real": real}


def _pct(value) -> str:
    return "n/a" if value is None else f"{100.0 * float(value):.1f}"


def _deg(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{float(value):.0f} degrees"


def transfer_verdict(real: dict, scale: dict | None = None) -> list[str]:
    """Plain sentences on what transfers to the real samples, from :func:`evaluate_demo`'s
    ``real`` figures (the aim of issue 19: trachea, both main bronchi and the lobar bronchi as
    one connected tree, without leaking into the lungs).

    Parameters
    ----------
    real : dict
        :func:`evaluate_demo`'s ``real`` (at least ``totalseg_chest["final"]`` and
        ``cip_ct64``'s scores).
    scale : dict, optional
        The checkpoint's ``scale_validation`` (:mod:`deeptree.real_scale`): adds what the
        model found on the validation CTs at the chosen voxel size.

    Returns
    -------
    list of str
    """
    lines = []
    chest = real["totalseg_chest"]["final"]
    found = "found" if chest["trachea_found"] else "NOT found"
    lines.append(
        f"totalseg_chest (1.5 mm, no label): trachea {found} "
        f"(root branch {chest['trachea_diameter_mm'] or 0:.1f} mm wide, "
        f"{chest['trachea_length_mm'] or 0:.1f} mm long, "
        f"{_deg(chest.get('trachea_tilt_deg'))} from the body's long axis); deepest generation reached "
        f"{chest['generations_reached']} (2 = lobar bronchi, which the CT shows); "
        f"{chest['components']} component(s), {chest['volume_ml']:.1f} mL."
    )
    gens = {row["generation"]: row for row in real["cip_ct64"]["by_generation"]}
    parts = [
        f"generation {g}: TLD {_pct(gens[g]['TLD'])}%, BD {_pct(gens[g]['BD'])}%"
        for g in sorted(gens)
    ]
    m = real["cip_ct64"]["metrics"]
    lines.append(
        f"cip_ct64 (4 mm, label, ATM'22 protocol): TLD {_pct(m['TLD'])}%, BD {_pct(m['BD'])}%, precision "
        f"{_pct(m['precision'])}%, DSC {_pct(m['DSC'])}%; " + "; ".join(parts) + "."
    )
    leaked = chest["volume_ml"] > LEAK_VOLUME_ML
    lines.append(
        f"Leak into the lungs on totalseg_chest: {'yes' if leaked else 'no'} ("
        f"{chest['volume_ml']:.1f} mL against at most {LEAK_VOLUME_ML:.0f} mL for a whole "
        "adult conducting airway)."
    )
    if scale:
        row = next(r for r in scale["rows"] if r["spacing_mm"] == scale["chosen_mm"])
        lines.append(
            f"On the validation CTs (the real atm_001 tree at its real size in the phantom's "
            f"image) at the same {scale['chosen_mm']:g} mm the trachea was found on "
            f"{row['trachea_found']} of {row['cases']}"
            + (
                ": the size alone no longer explains a miss on real CT; it points to what "
                "the phantoms do not yet look like (the trachea's surroundings, real noise "
                "and reconstruction)."
                if row["trachea_found"] == row["cases"] and not chest["trachea_found"]
                else "."
            )
        )
    aim = chest["trachea_found"] and chest["generations_reached"] >= 2 and not leaked
    lines.append(
        "The aim (trachea, main and lobar bronchi as one tree, no leak) is "
        + ("met on totalseg_chest" if aim else "NOT met on totalseg_chest")
        + "; "
        + (
            "on cip_ct64 the final mask is empty, so its precision says nothing."
            if real["cip_ct64"].get("final", {}).get("components", 1) == 0
            else f"precision on cip_ct64 {_pct(m['precision'])}% is the share of the mask "
            "inside the (coarse, automatic) airway label."
        )
    )
    return lines
