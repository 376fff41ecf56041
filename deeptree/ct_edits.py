"""Edited copies of a real CT: one way it differs from the training images at a time.

A model trained on synthetic CT meets real scans that differ in contrast agent, noise and
slice thickness. Each function here returns a copy of a CT (HU) with one of these changed, so
that :mod:`deeptree.transfer` can say which change a model's result depends on:

* :func:`remove_contrast`: dense contrast and bone taken out (an unenhanced scan);
* :func:`add_contrast`: the blood of the mediastinum enhanced (a scan with contrast agent);
* :func:`add_noise`: more, correlated noise (a low-dose scan, a soft or sharp kernel);
* :func:`thick_slices`: slabs averaged along the head-foot axis (a 5 mm scan resampled to
  thin voxels).

All are pure: the input is never modified, the output is a new float32 array of the input's
shape, on the same grid (the affine does not change). HU in, HU out.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from deeptree.io import InputError, check_spacing, check_volume
from deeptree.phantom.ct import gaussian_field

#: Unenhanced blood (HU): what :func:`remove_contrast` writes, and the centre of the
#: blood-density window of :func:`add_contrast` (myocardium and muscle share it: 40-60 HU).
BLOOD_HU = 40.0


def _check(ct: np.ndarray, spacing, name: str):
    ct = check_volume(ct, name)
    return ct, check_spacing(spacing, name)


def remove_contrast(
    ct: np.ndarray, spacing, *, threshold_hu: float = 120.0, blood_hu: float = BLOOD_HU
) -> np.ndarray:
    """An unenhanced-looking copy: every voxel above ``threshold_hu`` set to ``blood_hu``.

    Simulates a scan without contrast agent: enhanced blood (150-500 HU, more at the
    thoracic inlet where the bolus arrives) becomes unenhanced blood. Bone is also above the
    threshold and becomes soft tissue too (as the phantoms of the demo weights have little
    bone): the edit of ``benchmarks/demo_trachea_check.py`` that let the shipped model see
    most of the trachea of ``totalseg_chest``. The partial-volume rim of a bright structure
    (voxels between the threshold and the tissue beside it) is left as it is.

    Parameters
    ----------
    ct : ndarray, shape (I, J, K), numeric
        HU.
    spacing : 3 floats (mm)
        Checked only (the edit is per voxel).
    threshold_hu, blood_hu : float
        HU.

    Returns
    -------
    ndarray of float32, shape (I, J, K)
    """
    ct, _ = _check(ct, spacing, "remove_contrast: ct")
    out = np.asarray(ct, dtype=np.float32).copy()
    out[out > threshold_hu] = blood_hu
    return out


def mediastinum_mask(
    ct: np.ndarray,
    spacing,
    *,
    left_right_axis: int = 0,
    lung_hu: tuple[float, float] = (-950.0, -500.0),
    blood_range_hu: tuple[float, float] = (BLOOD_HU - 25.0, BLOOD_HU + 35.0),
    smooth_mm: float = 1.5,
    min_lung_mm: float = 6.0,
) -> np.ndarray:
    """Blood-density soft tissue between the lungs: the mediastinum, approximated without a label.

    Three rules, on the CT smoothed by a Gaussian of ``smooth_mm`` (so that noise does not
    decide):

    1. *lung*: voxels within ``lung_hu`` (parenchyma, about -850 HU; air outside the body and
       in the airway lumen is darker, near -1000 HU), opened by a ball of ``min_lung_mm``
       diameter, which removes the thin band that the smoothed skin edge and airway wall pass
       through on their way from air to tissue;
    2. *between the lungs*: along the left-right axis, a voxel with lung on both sides of its
       row (the mediastinum lies between the two lungs; the chest wall lies outside them);
    3. *blood density*: the smoothed HU within ``blood_range_hu``: heart, great vessels and
       the blood-density tissue beside them; fat (-100 HU), air and bone are left out.

    It also takes in the vessels inside a lung (lung on both sides of them along the row),
    which a contrast scan enhances too, and, where the lungs wrap round the spine or the
    diaphragm's dome, some paravertebral muscle, oesophagus and upper liver and spleen; it
    misses mediastinum above or below the lungs. An approximation for an edit, not a
    segmentation (on ``cip_ct64`` it holds the heart and the great vessels).

    Parameters
    ----------
    ct : ndarray, shape (I, J, K), numeric
        HU.
    spacing : 3 floats (mm)
    left_right_axis : int
        The voxel axis that runs left-right (0 for RAS and LPS files:
        ``nibabel.aff2axcodes``).
    lung_hu, blood_range_hu : (float, float)
        HU windows (low, high).
    smooth_mm, min_lung_mm : float
        mm.

    Returns
    -------
    ndarray of bool, shape (I, J, K)
    """
    ct, spacing = _check(ct, spacing, "mediastinum_mask: ct")
    if left_right_axis not in (0, 1, 2):
        raise InputError(
            f"mediastinum_mask: left_right_axis must be 0, 1 or 2, got {left_right_axis}"
        )
    sigma = [smooth_mm / s for s in spacing]
    smooth = ndimage.gaussian_filter(np.asarray(ct, dtype=np.float32), sigma, mode="nearest")
    lung = (smooth >= lung_hu[0]) & (smooth <= lung_hu[1])
    radius = [max(int(round(min_lung_mm / 2 / s)), 0) for s in spacing]
    ball = _ellipsoid(radius)
    lung = ndimage.binary_opening(lung, structure=ball) if ball.size > 1 else lung
    before = np.maximum.accumulate(lung, axis=left_right_axis)
    after = np.flip(np.maximum.accumulate(np.flip(lung, left_right_axis), axis=left_right_axis),
                    left_right_axis)  # fmt: skip
    blood = (smooth >= blood_range_hu[0]) & (smooth <= blood_range_hu[1])
    return before & after & ~lung & blood


def _ellipsoid(radius) -> np.ndarray:
    """A boolean ellipsoid with semi-axes ``radius`` (voxels per axis)."""
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    return sum((g / max(r, 1)) ** 2 for g, r in zip(grid, radius, strict=True)) <= 1.0


def add_contrast(
    ct: np.ndarray,
    spacing,
    *,
    enhanced_hu: float = 300.0,
    left_right_axis: int = 0,
    smooth_mm: float = 1.5,
) -> np.ndarray:
    """A contrast-enhanced-looking copy: the blood of the mediastinum raised to ``enhanced_hu``.

    Simulates a scan with contrast agent in the heart and great vessels (an arterial phase:
    250-400 HU). Where :func:`mediastinum_mask` finds blood-density tissue between the lungs,
    the local mean (the CT smoothed by ``smooth_mm``) is replaced by ``enhanced_hu`` and the
    voxel's noise (its difference from that mean) is kept: ``out = ct - smooth +
    enhanced_hu``. Everything else is unchanged.

    Parameters
    ----------
    ct : ndarray, shape (I, J, K), numeric
        HU.
    spacing : 3 floats (mm)
    enhanced_hu : float
        HU of the enhanced blood.
    left_right_axis : int
        See :func:`mediastinum_mask`.
    smooth_mm : float
        mm.

    Returns
    -------
    ndarray of float32, shape (I, J, K)
    """
    ct, spacing = _check(ct, spacing, "add_contrast: ct")
    mask = mediastinum_mask(ct, spacing, left_right_axis=left_right_axis, smooth_mm=smooth_mm)
    out = np.asarray(ct, dtype=np.float32).copy()
    smooth = ndimage.gaussian_filter(out, [smooth_mm / s for s in spacing], mode="nearest")
    out[mask] += np.float32(enhanced_hu) - smooth[mask]
    return out


def add_noise(
    ct: np.ndarray, spacing, *, sigma_hu: float = 30.0, correlation_mm: float = 0.8, seed: int = 0
) -> np.ndarray:
    """A noisier copy: correlated Gaussian noise of ``sigma_hu`` added.

    Simulates a lower dose (more noise) and the texture a reconstruction kernel gives it: the
    noise is a Gaussian random field of standard deviation ``sigma_hu`` with a Gaussian
    correlation of ``correlation_mm`` (sigma; 0 = white), made as the phantoms' image noise
    is (:func:`deeptree.phantom.ct.gaussian_field`). The same seed gives the same bytes.

    Parameters
    ----------
    ct : ndarray, shape (I, J, K), numeric
        HU.
    spacing : 3 floats (mm)
    sigma_hu : float
        HU, >= 0.
    correlation_mm : float
        mm, >= 0.
    seed : int

    Returns
    -------
    ndarray of float32, shape (I, J, K)
    """
    ct, spacing = _check(ct, spacing, "add_noise: ct")
    if sigma_hu < 0 or correlation_mm < 0:
        raise InputError(
            f"add_noise: sigma_hu and correlation_mm must be >= 0, got {sigma_hu}, {correlation_mm}"
        )
    field = gaussian_field(ct.shape, [correlation_mm / s for s in spacing],
                           np.random.default_rng(seed))  # fmt: skip
    return np.asarray(ct, dtype=np.float32) + np.float32(sigma_hu) * field


def thick_slices(
    ct: np.ndarray, spacing, *, thickness_mm: float = 5.0, axis: int = 2
) -> np.ndarray:
    """A thick-slice copy: slabs of ``thickness_mm`` averaged, then brought back to the grid.

    Simulates a scan reconstructed at thick slices and resampled to the original thin voxels,
    as a viewer or :func:`deeptree.resample.resample_to_spacing` would: along ``axis`` (the
    head-foot axis), consecutive slabs of ``n = round(thickness_mm / spacing[axis])`` voxels
    (at least 1; the last slab may be shorter) are averaged; each voxel then gets the value
    interpolated linearly between the centres of the slabs around it (voxels beyond the
    first or last centre take that slab's value). With ``n = 1`` the copy equals the CT.
    On a linear ramp along ``axis`` the result equals the ramp between the first and last
    slab centres.

    Parameters
    ----------
    ct : ndarray, shape (I, J, K), numeric
        HU.
    spacing : 3 floats (mm)
    thickness_mm : float
        Slab thickness (mm), > 0.
    axis : int
        The head-foot voxel axis (``deeptree.tree.cranial_direction(affine)[0]``).

    Returns
    -------
    ndarray of float32, shape (I, J, K)
    """
    ct, spacing = _check(ct, spacing, "thick_slices: ct")
    if axis not in (0, 1, 2) or not thickness_mm > 0:
        raise InputError(
            f"thick_slices: need axis 0-2 and thickness_mm > 0, got {axis}, {thickness_mm}"
        )
    data = np.moveaxis(np.asarray(ct, dtype=np.float64), axis, 0)
    size = data.shape[0]
    n = max(int(round(thickness_mm / spacing[axis])), 1)
    starts = np.arange(0, size, n)
    means = np.add.reduceat(data, starts, axis=0) / np.diff(np.append(starts, size))[:, None, None]
    centres = starts + (np.minimum(starts + n, size) - 1 - starts) / 2.0
    # each voxel's position in slab units, then linear interpolation between neighbour slabs
    position = np.interp(np.arange(size), centres, np.arange(len(starts)))
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(starts) - 1)
    weight = (position - low)[:, None, None]
    out = means[low] * (1.0 - weight) + means[high] * weight
    return np.ascontiguousarray(np.moveaxis(out, 0, axis).astype(np.float32))


__all__ = [
    "BLOOD_HU",
    "add_contrast",
    "add_noise",
    "mediastinum_mask",
    "remove_contrast",
    "thick_slices",
]
