"""Classical airway segmentation baseline: threshold region growing with leak control.

The classical methods the paper compares with grow the airway lumen from a seed in the
trachea through voxels darker than a threshold, raising the threshold step by step while
the grown volume stays plausible and stopping before the region "explodes" into the lung
parenchyma (region growing with an automatically raised threshold, Mori et al. 1996,
"Recognition of bronchus in three-dimensional X-ray CT images with applications to
virtualized bronchoscopy system", Proc. ICPR; the explosion test of van Rikxoort et al.
2009, "Automatic
segmentation of the airway tree from thoracic CT scans using a multi-threshold approach",
Proc. Second International Workshop on Pulmonary Image Analysis). This module implements
the global multi-threshold variant: one threshold for the whole tree, the largest one whose
region does not explode.

Such a baseline finds the trachea and the large bronchi but stops where partial volume,
noise and mucus raise the lumen density of thin branches above the parenchyma threshold:
exactly the failure the learned method addresses.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from deeptree.io import InputError, check_spacing, check_volume


def find_trachea_seed(
    ct: np.ndarray,
    spacing,
    *,
    air_hu: float = -900.0,
    search_mm: float = 60.0,
    min_diameter_mm: float = 4.0,
    max_diameter_mm: float = 30.0,
) -> tuple[int, int, int]:
    """Find a voxel inside the trachea near the top of a chest CT.

    Scans axial slices from the cranial end (highest k) downwards over ``search_mm``; in
    each, the dark 2D components (HU < ``air_hu``) that do not touch the slice border (outside
    air), are about round with a diameter in ``[min_diameter_mm, max_diameter_mm]``, and lie
    near the body's left-right centre (the lung apices lie to the sides) are trachea
    candidates; the first slice with one gives the seed (the candidate closest to the body
    centre line).

    Parameters
    ----------
    ct : ndarray, shape (I, J, K), HU
        Axes (i, j, k) with k increasing towards the head.
    spacing : sequence of 3 float
        mm.

    Returns
    -------
    (i, j, k) : tuple of int
        A voxel of the trachea lumen.

    Raises
    ------
    InputError
        If no trachea-like component is found.
    """
    ct = check_volume(ct, "ct")
    sx, sy, sz = check_spacing(spacing, "spacing")
    n_slices = max(1, int(round(search_mm / sz)))
    area_lo = np.pi * (min_diameter_mm / 2) ** 2
    area_hi = np.pi * (max_diameter_mm / 2) ** 2
    for k in range(ct.shape[2] - 1, max(-1, ct.shape[2] - 1 - n_slices), -1):
        plane = ct[:, :, k]
        body = plane > -500
        if body.sum() < 10:
            continue
        centre_x = np.nonzero(body)[0].mean()
        width = np.ptp(np.nonzero(body)[0]) + 1
        labels, n = ndimage.label(plane < air_hu)
        if n == 0:
            continue
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        best, best_off = None, np.inf
        for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
            if lab in border or sl is None:
                continue
            comp = labels[sl] == lab
            area = comp.sum() * sx * sy
            ext_x, ext_y = (sl[0].stop - sl[0].start) * sx, (sl[1].stop - sl[1].start) * sy
            if not (area_lo <= area <= area_hi) or max(ext_x, ext_y) > 2.0 * min(
                ext_x, ext_y
            ) + 2 * max(sx, sy):
                continue
            ci, cj = ndimage.center_of_mass(comp)
            off = abs(ci + sl[0].start - centre_x)
            if off < 0.15 * width and off < best_off:
                pts = np.argwhere(comp)
                # the component voxel nearest to its centroid (the centroid may miss a ring)
                p = pts[np.argmin(((pts - (ci, cj)) ** 2).sum(1))]
                best, best_off = (int(p[0] + sl[0].start), int(p[1] + sl[1].start), k), off
        if best is not None:
            return best
    raise InputError(
        f"ct: no trachea found in the top {search_mm:g} mm (no round dark component of "
        f"{min_diameter_mm:g}-{max_diameter_mm:g} mm near the centre line below {air_hu:g} HU); "
        "give the seed explicitly"
    )


def region_growing(
    ct: np.ndarray,
    spacing,
    seed: tuple[int, int, int] | None = None,
    *,
    start_hu: float = -990.0,
    stop_hu: float = -500.0,
    step_hu: float = 10.0,
    explosion_ratio: float = 1.5,
    max_volume_ml: float | None = None,
    return_info: bool = False,
):
    """Multi-threshold region growing from a trachea seed with leak control.

    For thresholds ``T = start_hu, start_hu + step_hu, ...`` up to ``stop_hu`` the region
    is the 26-connected component of ``ct <= T`` that holds the seed. The threshold rises
    while the region grows smoothly; the first step whose volume exceeds ``explosion_ratio``
    times the previous volume (or ``max_volume_ml``) is a leak into the parenchyma, and the
    previous region is returned.

    Parameters
    ----------
    ct : ndarray, shape (I, J, K), HU
        Any numeric dtype; not modified.
    spacing : sequence of 3 float
        mm.
    seed : (i, j, k), optional
        A voxel in the trachea; default :func:`find_trachea_seed`.
    start_hu, stop_hu, step_hu : float
        Threshold schedule (HU).
    explosion_ratio : float
        Largest accepted volume ratio between two consecutive thresholds.
    max_volume_ml : float, optional
        Largest accepted airway volume (ml); default 400 ml scaled by nothing (an adult
        airway tree is about 100-200 ml down to 1-2 mm branches).
    return_info : bool
        Also return a dict with the accepted threshold, the seed, and the volumes (ml) per
        threshold.

    Returns
    -------
    mask : ndarray of uint8, shape (I, J, K)
        1 = airway.
    info : dict, only with ``return_info``

    Raises
    ------
    InputError
        Bad CT or spacing, a seed outside the volume, or a seed not darker than
        ``start_hu`` (not in air).
    """
    ct = check_volume(ct, "ct")
    spacing = check_spacing(spacing, "spacing")
    if seed is None:
        seed = find_trachea_seed(ct, spacing)
    seed = tuple(int(s) for s in seed)
    if len(seed) != 3 or not all(0 <= s < n for s, n in zip(seed, ct.shape, strict=True)):
        raise InputError(f"seed: {seed} is outside the CT of shape {ct.shape}")
    if ct[seed] > start_hu:
        # start just above the seed's own density so that the seed belongs to the region
        start_hu = float(ct[seed])
    if max_volume_ml is None:
        max_volume_ml = 400.0
    voxel_ml = float(np.prod(spacing)) / 1000.0
    structure = np.ones((3, 3, 3), dtype=bool)
    accepted = None
    accepted_t = None
    volumes = []
    for t in np.arange(start_hu, stop_hu + step_hu / 2, step_hu):
        region = _component_with(ct <= t, seed, structure)
        vol = region.sum() * voxel_ml
        volumes.append((float(t), float(vol)))
        prev = volumes[-2][1] if len(volumes) > 1 else None
        if vol > max_volume_ml or (prev is not None and prev > 0 and vol > explosion_ratio * prev):
            break
        accepted, accepted_t = region, float(t)
    if accepted is None:  # even the first threshold leaked: keep the seed's component at it
        accepted = _component_with(ct <= start_hu, seed, structure)
        accepted_t = float(start_hu)
    mask = accepted.astype(np.uint8)
    if return_info:
        return mask, {"threshold_hu": accepted_t, "seed": seed, "volumes_ml": volumes}
    return mask


def _component_with(binary: np.ndarray, seed, structure) -> np.ndarray:
    """The connected component of ``binary`` that contains ``seed`` (bool array)."""
    if not binary[seed]:
        return np.zeros(binary.shape, dtype=bool)
    labels, _ = ndimage.label(binary, structure=structure)
    return labels == labels[seed]
