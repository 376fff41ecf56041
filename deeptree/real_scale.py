"""The voxel size at which a phantom-trained model should see a real CT, chosen on validation.

A network learns anatomy in voxels. The cpu phantoms are chests at 0.42-0.55 of an adult's
size (:class:`deeptree.phantom.varied.Variation`), voxelised at 0.8 mm for the demo weights:
their trachea is a few millimetres wide. A real CT resampled to the 0.8 mm the checkpoint
records shows a trachea two to three times wider than any the model has seen, and the model
finds nothing (benchmarks/RESULTS.md, "The demo weights and the anatomical scale of the
phantoms"). Resampled to coarser voxels, a real chest spans the number of voxels of a
phantom chest.

The checkpoint therefore records an **anatomical scale** (``meta["anatomical_scale"]``,
:func:`deeptree.resample.real_ct_spacing`): real CT is resampled to ``spacing /
anatomical_scale``. The phantoms' mean chest scale (0.485 for the demo cohort: 1.65 mm) is the
geometric guess; the phantom's bronchi are not exactly a scaled adult's, so the value is chosen
on validation cases instead, none of which is a sample the model card reports:

* :func:`validation_cts`: chest CTs simulated (:func:`deeptree.phantom.simulate_ct`) around the
  real ATM'22 tree ``atm_001`` at its real size (1 mm voxels), with the image settings
  (point spread, noise, texture, HU offsets) drawn as for the demo phantoms;
* :func:`sweep_spacings`: the two-stage model on each of them at every candidate voxel size,
  scored against the tree (ATM'22 protocol: every branch, trachea included);
* :func:`choose_spacing`: the candidate with the highest mean tree length detected (ties:
  precision).

The validation CTs share one real tree (the only real tree with hundreds of branches in the
samples) and the phantom's appearance model: they test the scale, not the appearance.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deeptree.ground_truth import prepare_ground_truth
from deeptree.io import InputError, Volume, read_nifti, write_nifti
from deeptree.locations import samples_dir
from deeptree.metrics import airway_metrics
from deeptree.phantom import simulate_ct
from deeptree.phantom.varied import Variation, varied_profile
from deeptree.real_ct import segment_volume
from deeptree.resample import resample_to_spacing
from deeptree.tree_summary import describe_tree

#: Validation CTs: the atm_001 tree resampled to this voxel size (mm) before the CT is
#: simulated around it (a clinical thin-slice resolution; the 0.82 x 0.82 x 0.5 mm original
#: would cost three times the memory and time for nothing the candidates can resolve).
VALIDATION_SPACING_MM = 1.0

#: Margin (mm) of CT kept around the tree's bounding box: the sliding window needs context,
#: the rest of the chest only costs time.
VALIDATION_MARGIN_MM = 20.0

#: Candidate voxel sizes (mm) for real CT: the recorded 0.8 mm, the geometric guess (0.8 / 0.485)
#: and coarser ones up to where a 2 mm bronchus is under one voxel.
CANDIDATE_SPACINGS_MM = (0.8, 1.2, 1.65, 2.0, 2.4, 2.8, 3.2)


@dataclass(frozen=True)
class ScaleRow:
    """The model on the validation CTs at one voxel size (means over the CTs).

    Attributes
    ----------
    spacing_mm : float
        Isotropic voxel size the CT was resampled to.
    TLD, BD, precision, DSC : float
        Fractions in [0, 1] (:func:`deeptree.metrics.airway_metrics`, ATM'22 protocol).
    trachea_found : int
        On how many CTs :func:`deeptree.tree_summary.describe_tree` found a trachea.
    generations : float
        Mean deepest generation reached.
    volume_ml : float
        Mean volume of the final mask.
    cases : int
        Number of validation CTs.
    TLD_cases : tuple of float
        TLD on each CT (the spread behind the mean).
    """

    spacing_mm: float
    TLD: float
    BD: float
    precision: float
    DSC: float
    trachea_found: int
    generations: float
    volume_ml: float
    cases: int
    TLD_cases: tuple[float, ...] = ()


def validation_cts(
    n: int = 3,
    seed: int = 2000,
    *,
    cache: str | os.PathLike | None = None,
    spacing_mm: float = VALIDATION_SPACING_MM,
    tree_path: str | os.PathLike | None = None,
    variation: Variation | None = None,
) -> tuple[list[Volume], Volume]:
    """Chest CTs simulated around the real atm_001 airway tree, at its real size.

    Parameters
    ----------
    n : int
        Number of CTs (one tree, ``n`` draws of the image settings).
    seed : int
        CT ``i`` uses ``numpy.random.default_rng(seed + i)`` for its settings
        (:func:`deeptree.phantom.varied.varied_profile` of the cpu profile) and its noise.
    cache : path-like, optional
        Folder where the CTs and the resampled tree are kept as NIfTI (``ct_<i>.nii.gz``,
        ``airway.nii.gz``) and read back on the next call (the files do not record ``seed``
        or ``variation``: one folder per set).
    spacing_mm : float
        Isotropic voxel size (mm) of the simulated CTs.
    tree_path : path-like, optional
        Default: ``atm_001/airway.nii.gz`` of :func:`deeptree.locations.samples_dir`.
    variation : deeptree.phantom.varied.Variation, optional
        The ranges the image settings are drawn from (default: the demo phantoms'; its
        ``scale`` is not used: the tree keeps its real size).

    Returns
    -------
    cts : list of Volume
        int16 HU, shape (I, J, K) (about 240 x 200 x 250 at 1 mm: the tree's box plus
        :data:`VALIDATION_MARGIN_MM`), with the tree file's orientation.
    tree : Volume
        The tree (uint8, 0/1) on the same grid.
    """
    if n < 1:
        raise InputError(f"validation_cts: n must be at least 1, got {n}")
    folder = Path(cache) if cache is not None else None
    tree_file = folder / "airway.nii.gz" if folder is not None else None
    if tree_file is not None and tree_file.is_file():
        tree = read_nifti(tree_file)
    else:
        tree = validation_tree(spacing_mm, tree_path)
        if tree_file is not None:
            folder.mkdir(parents=True, exist_ok=True)
            write_nifti(tree_file, tree.array, tree.affine)
    cts = []
    for i in range(n):
        ct_file = folder / f"ct_{i}.nii.gz" if folder is not None else None
        if ct_file is not None and ct_file.is_file():
            cts.append(read_nifti(ct_file))
            continue
        ct = simulate_around(tree, seed + i, variation)
        if ct_file is not None:
            write_nifti(ct_file, ct.array, tree.affine)
        cts.append(ct)
    return cts, tree


def real_tree(path: str | os.PathLike, spacing_mm: float) -> Volume:
    """A real airway mask at an isotropic voxel size, cropped to its box plus a margin.

    Parameters
    ----------
    path : path-like
        Airway mask (NIfTI; nonzero = airway), e.g. ``atm_001/airway.nii.gz``.
    spacing_mm : float
        Voxel size (mm) it is resampled to (trilinear, then > 0.5).

    Returns
    -------
    Volume
        uint8 0/1 in the file's voxel order, the box of the tree plus
        :data:`VALIDATION_MARGIN_MM`, with its affine.
    """
    original = read_nifti(path)
    fine, affine = resample_to_spacing(original.array > 0, original.affine, (spacing_mm,) * 3)
    return _crop_to_tree(Volume((fine >= 0.5).astype(np.uint8), affine, (spacing_mm,) * 3))


def validation_tree(
    spacing_mm: float = VALIDATION_SPACING_MM, tree_path: str | os.PathLike | None = None
) -> Volume:
    """The atm_001 tree (or ``tree_path``) as :func:`real_tree` makes it.

    Parameters
    ----------
    spacing_mm : float
        Isotropic voxel size (mm).
    tree_path : path-like, optional
        Default: ``atm_001/airway.nii.gz`` of :func:`deeptree.locations.samples_dir`.

    Returns
    -------
    Volume
    """
    source = Path(tree_path) if tree_path else samples_dir() / "atm_001" / "airway.nii.gz"
    return real_tree(source, spacing_mm)


def simulate_around(tree: Volume, seed: int, variation: Variation | None = None) -> Volume:
    """One chest CT simulated around a tree with image settings drawn from ``variation``.

    Parameters
    ----------
    tree : Volume
        The airway mask (:func:`validation_tree`).
    seed : int
        ``numpy.random.default_rng(seed)`` draws the settings
        (:func:`deeptree.phantom.varied.varied_profile` of the cpu profile), then the CT.
    variation : deeptree.phantom.varied.Variation, optional
        Default: the demo phantoms' ranges.

    Returns
    -------
    Volume
        int16 HU on the tree's grid.
    """
    rng = np.random.default_rng(seed)
    # the image settings of a demo phantom; the size is the tree's own (scale 1)
    params = varied_profile("cpu", rng, variation or Variation()).ct
    ct = simulate_ct(tree.array, tree.spacing, rng, params=params, affine=tree.affine)
    return Volume(ct, tree.affine, tree.spacing)


def _crop_to_tree(tree: Volume) -> Volume:
    """The tree's bounding box plus :data:`VALIDATION_MARGIN_MM`, affine moved to match."""
    where = np.nonzero(tree.array)
    if not where[0].size:
        raise InputError("validation tree: the airway mask is empty")
    margin = np.ceil(VALIDATION_MARGIN_MM / np.asarray(tree.spacing)).astype(int)
    start = np.maximum([w.min() for w in where] - margin, 0)
    stop = np.minimum([w.max() + 1 for w in where] + margin, tree.array.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
    affine = np.array(tree.affine, dtype=float)
    affine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    return Volume(np.ascontiguousarray(tree.array[box]), affine, tree.spacing)


def sweep_spacings(
    stage1, stage2, cts: Sequence[Volume], tree: Volume, spacings: Sequence[float]
) -> list[ScaleRow]:
    """The two-stage model on every validation CT at every candidate voxel size.

    Parameters
    ----------
    stage1, stage2 : LoadedModel
        As :func:`deeptree.real_ct.segment_volume` takes them.
    cts : sequence of Volume
        From :func:`validation_cts`.
    tree : Volume
        Their airway tree (the reference).
    spacings : sequence of float
        Candidate isotropic voxel sizes (mm).

    Returns
    -------
    list of ScaleRow
        One per spacing, in the given order.
    """

    reference = prepare_ground_truth(tree.array, tree.spacing, affine=tree.affine, name="atm_001")
    rows = []
    for mm in spacings:
        scores, found, gens, volumes = [], 0, [], []
        for i, ct in enumerate(cts):
            seg = segment_volume(ct, stage1, stage2, spacing=(mm,) * 3, name=f"validation CT {i}")
            scores.append(airway_metrics(seg.mask, reference, tree.spacing, "atm22"))
            described = describe_tree(seg.mask, seg.spacing, seg.affine)
            found += bool(described["trachea_found"])
            gens.append(described["generations_reached"])
            volumes.append(described["volume_ml"])
        mean = {
            k: float(np.mean([s[k] for s in scores])) for k in ("TLD", "BD", "precision", "DSC")
        }
        rows.append(
            ScaleRow(
                spacing_mm=float(mm),
                **mean,
                trachea_found=found,
                generations=float(np.mean(gens)),
                volume_ml=float(np.mean(volumes)),
                cases=len(cts),
                TLD_cases=tuple(float(s["TLD"]) for s in scores),
            )  # fmt: skip
        )
    return rows


def choose_spacing(rows: Sequence[ScaleRow]) -> ScaleRow:
    """The row with the highest mean TLD; among equal TLDs the higher precision.

    Parameters
    ----------
    rows : sequence of ScaleRow
        From :func:`sweep_spacings` (validation CTs only).

    Returns
    -------
    ScaleRow
    """
    if not rows:
        raise InputError("choose_spacing: no rows to choose from")
    return max(rows, key=lambda r: (round(r.TLD, 6), round(r.precision, 6), -r.spacing_mm))


def rows_as_dicts(rows: Sequence[ScaleRow]) -> list[dict]:
    """The rows as JSON-able dicts (for the model card)."""
    return [asdict(r) for r in rows]


def rows_from_dicts(rows: Sequence[dict]) -> list[ScaleRow]:
    """Inverse of :func:`rows_as_dicts`."""
    return [ScaleRow(**{**r, "TLD_cases": tuple(r.get("TLD_cases", ()))}) for r in rows]


__all__ = [
    "CANDIDATE_SPACINGS_MM",
    "ScaleRow",
    "choose_spacing",
    "rows_as_dicts",
    "rows_from_dicts",
    "simulate_around",
    "sweep_spacings",
    "validation_cts",
    "validation_tree",
]
