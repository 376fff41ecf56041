"""Mask helpers shared by every step: the binary check, the bounding box, connected
components and the largest of them.

Masks are 3D arrays in nibabel's (i, j, k) order, ``bool`` or 0/1 numbers. Components are
26-connected (faces, edges and corners) unless a function says otherwise; component labels
follow the scan order of :func:`scipy.ndimage.label`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from deeptree.io import InputError, check_binary_mask

#: 26-connectivity (faces, edges and corners): the components of the attention map (Eq. 2),
#: the regions of its centres, the final largest component.
CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)

#: 6-connectivity (faces only): the ATM'22 parsing keeps the largest 6-connected component.
CONNECTIVITY_6 = ndi.generate_binary_structure(3, 1)

_STRUCTURES = {26: CONNECTIVITY_26, 6: CONNECTIVITY_6}


def as_binary_mask(mask, name: str = "mask", allow_empty: bool = False) -> np.ndarray:
    """Validate a binary 3D mask and return it as ``bool`` (never modifying the input).

    Same checks and messages as :func:`deeptree.io.check_binary_mask`, with a fast path for
    ``bool`` and unsigned-integer masks (min/max instead of :func:`numpy.unique`, which takes
    seconds on a 512 x 512 x 679 volume).

    Parameters
    ----------
    mask : ndarray, shape (I, J, K), bool or 0/1 numbers
    name : str
        What to call the array in errors.
    allow_empty : bool
        Accept an all-zero mask.

    Returns
    -------
    ndarray of bool, shape (I, J, K)
        ``mask`` itself when it already is ``bool``, else a new array.
    """
    array = np.asarray(mask)
    if array.ndim == 3 and array.size and array.dtype.kind in "bu" and array.max() <= 1:
        if allow_empty or array.any():
            return array if array.dtype == bool else array != 0
    return check_binary_mask(array, name, allow_empty=allow_empty)


def bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Smallest box holding every nonzero voxel of a 3D array, or None if there is none.

    Parameters
    ----------
    mask : ndarray, shape (I, J, K)

    Returns
    -------
    tuple of 3 slice, or None

    Notes
    -----
    Uses ``any`` reductions, which follow the memory layout: on a Fortran-ordered NIfTI
    volume :func:`scipy.ndimage.find_objects` is a hundred times slower.
    """
    plane = mask.any(axis=2)
    i = np.flatnonzero(plane.any(axis=1))
    if i.size == 0:
        return None
    j = np.flatnonzero(plane.any(axis=0))
    k = np.flatnonzero(mask.any(axis=(0, 1)))
    return tuple(slice(int(a[0]), int(a[-1]) + 1) for a in (i, j, k))  # type: ignore[return-value]


def check_connectivity(connectivity: int) -> int:
    """Return ``connectivity`` if it is 6 or 26 (voxel neighbours), else raise InputError."""
    if connectivity not in _STRUCTURES:
        raise InputError(f"connectivity must be 6 or 26, got {connectivity!r}")
    return connectivity


def _label(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """scipy.ndimage.label on a C-ordered copy (faster than strided)."""
    check_connectivity(connectivity)
    labels, n = ndi.label(np.ascontiguousarray(mask), structure=_STRUCTURES[connectivity])
    return labels.astype(np.int32, copy=False), int(n)


def label_components(
    mask: np.ndarray, name: str = "mask", connectivity: int = 26
) -> tuple[np.ndarray, int]:
    """Label the connected components of a binary mask.

    Parameters
    ----------
    mask : ndarray, shape (I, J, K), bool or 0/1 integers
        May be empty.
    name : str
        What to call the array in errors.
    connectivity : {26, 6}
        Voxel connectivity (26: faces, edges and corners; 6: faces only).

    Returns
    -------
    labels : ndarray of int32, shape (I, J, K)
        0 for background, 1..n for the components (scan order of scipy.ndimage.label).
    n : int
        Number of components.

    Raises
    ------
    InputError
        Not a 3D binary volume.
    """
    mask = as_binary_mask(mask, name, allow_empty=True)
    labels = np.zeros(mask.shape, dtype=np.int32)  # pages outside the box stay unmapped
    box = bounding_box(mask)
    if box is None:
        return labels, 0
    # Labelling only the bounding box is much faster on a CT-sized volume and numbers the
    # components identically (the raster order of the voxels is the same).
    labels[box], n = _label(mask[box], connectivity)
    return labels, n


def largest_components(
    mask: np.ndarray, limit: int | None, connectivity: int = 26
) -> tuple[np.ndarray, int]:
    """A binary mask restricted to its ``limit`` largest connected components.

    Parameters
    ----------
    mask : ndarray of bool, shape (I, J, K)
    limit : int or None
        How many components to keep (1: the largest component); None keeps all.
    connectivity : {26, 6}

    Returns
    -------
    kept : ndarray of bool, shape (I, J, K)
        ``mask`` itself when nothing is left out, else a new array. Among components of
        equal size the first in scan order is kept.
    left_out : int
        How many components were left out.

    Raises
    ------
    InputError
        ``limit`` below 1.
    """
    if limit is None:
        return mask, 0
    if limit < 1:
        raise InputError(f"max_components must be at least 1 or None, got {limit}")
    labels, n = label_components(mask, connectivity=connectivity)
    if n <= limit:
        return mask, 0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = np.zeros(n + 1, dtype=bool)
    keep[1 + np.argsort(-sizes, kind="stable")[:limit]] = True
    return keep[labels], n - limit


def grow_box(box: tuple[slice, ...], margin: int, shape) -> tuple[slice, ...]:
    """A box grown by ``margin`` voxels on every side, clipped to a volume of ``shape``.

    Parameters
    ----------
    box : tuple of 3 slice
        With ``start`` and ``stop`` set (as :func:`bounding_box` returns).
    margin : int
        Voxels added on each side.
    shape : 3 ints
        The volume's shape.

    Returns
    -------
    tuple of 3 slice
    """
    return tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, int(n)))
        for s, n in zip(box, shape, strict=True)
    )
