"""Realism checks: HU per tissue, and what a segmentation finds of a phantom's tree."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from deeptree.io import check_binary_mask, check_same_grid, check_spacing, check_volume
from deeptree.phantom.growth import AirwayTreeSpec
from deeptree.phantom.raster import Grid, centreline_voxels


def tissue_samples(
    ct: np.ndarray, airway: np.ndarray, lung: np.ndarray, spacing, margin_mm: float = 3.0
) -> dict[str, np.ndarray]:
    """HU values of lung parenchyma, airway lumen and airway wall.

    Works the same on a phantom and on a real CT with airway and lung masks, so the two can
    be compared.

    Parameters
    ----------
    ct : ndarray, shape (I, J, K), HU
    airway, lung : ndarray, shape (I, J, K), binary
    spacing : 3 floats, mm
    margin_mm : float
        Parenchyma = lung voxels farther than this from the airway (mm).

    Returns
    -------
    dict of 1D float arrays
        ``"parenchyma"``, ``"lumen"`` (airway voxels whose 6 neighbours are airway),
        ``"wall"`` (the one-voxel shell just outside the airway).
    """
    ct = check_volume(ct, "ct")
    airway = check_binary_mask(airway, "airway")
    lung = check_binary_mask(lung, "lung")
    check_same_grid(ct, airway, "ct", "airway")
    check_same_grid(ct, lung, "ct", "lung")
    sp = check_spacing(spacing)
    far = ndimage.distance_transform_edt(~airway, sampling=sp) > margin_mm
    lumen = ndimage.binary_erosion(airway)
    wall = ndimage.binary_dilation(airway) & ~airway
    return {
        "parenchyma": ct[lung & far].astype(float),
        "lumen": ct[lumen].astype(float),
        "wall": ct[wall].astype(float),
    }


def hu_summary(values: np.ndarray) -> dict[str, float]:
    """Median, quartiles and interquartile range (HU) of a sample."""
    q25, med, q75 = np.percentile(values, [25, 50, 75]) if len(values) else (np.nan,) * 3
    return {
        "median": float(med),
        "q25": float(q25),
        "q75": float(q75),
        "iqr": float(q75 - q25),
        "n": int(len(values)),
    }


def branch_detection(pred: np.ndarray, tree: AirwayTreeSpec, affine: np.ndarray) -> np.ndarray:
    """Share of each branch's centreline voxels inside a predicted mask.

    Parameters
    ----------
    pred : ndarray, shape (I, J, K), binary
    tree : AirwayTreeSpec
        The phantom's branches (world mm).
    affine : ndarray (4, 4)
        The phantom's affine (spacing on the diagonal).

    Returns
    -------
    ndarray of float, shape (n_branches,)
        In [0, 1]; NaN for a branch outside the volume.
    """
    pred = check_binary_mask(pred, "prediction", allow_empty=True)
    grid = Grid(
        pred.shape,
        tuple(float(v) for v in np.diag(affine)[:3]),
        tuple(float(v) for v in affine[:3, 3]),
    )
    out = np.full(len(tree.branches), np.nan)
    for b in tree.branches:
        idx = centreline_voxels(grid, b.start_mm, b.end_mm)
        if len(idx):
            out[b.id] = pred[tuple(idx.T)].mean()
    return out


#: Lumen diameter (mm) per generation of Weibel's symmetric model A (Weibel 1963,
#: "Morphometry of the Human Lung", Springer; at 3/4 of total lung capacity), for comparison.
WEIBEL_DIAMETER_MM: tuple[float, ...] = (
    18.0,
    12.2,
    8.3,
    5.6,
    4.5,
    3.5,
    2.8,
    2.3,
    1.86,
    1.54,
    1.30,
    1.09,
    0.95,
    0.82,
    0.74,
    0.66,
)


def generation_table(tree: AirwayTreeSpec) -> list[dict]:
    """Anatomy in numbers: per generation, the branch count and mean lumen diameter,
    length, wall thickness (mm), with Weibel's diameter for comparison.

    Returns
    -------
    list of dict
        One row per generation: ``generation, branches, diameter_mm, length_mm, wall_mm,
        length_over_diameter, weibel_diameter_mm`` (NaN beyond Weibel's table).
    """
    arr = tree.arrays()
    gen, diam = arr["generation"], 2 * arr["radius"]
    length = np.linalg.norm(arr["end"] - arr["start"], axis=1)
    rows = []
    for g in range(int(gen.max()) + 1):
        sel = gen == g
        if not sel.any():
            continue
        rows.append(
            {
                "generation": g,
                "branches": int(sel.sum()),
                "diameter_mm": float(diam[sel].mean()),
                "length_mm": float(length[sel].mean()),
                "wall_mm": float(arr["wall"][sel].mean()),
                "length_over_diameter": float((length[sel] / diam[sel]).mean()),
                "weibel_diameter_mm": WEIBEL_DIAMETER_MM[g]
                if g < len(WEIBEL_DIAMETER_MM)
                else float("nan"),
            }
        )
    return rows


def format_table(rows: list[dict], digits: int = 1) -> str:
    """Rows of dicts (same keys) as a fixed-width text table."""
    if not rows:
        return ""
    keys = list(rows[0])
    cells = [
        [f"{r[k]:.{digits}f}" if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows
    ]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
