"""Breakage attention map (DeepTree paper, Sec. 2.2, Eq. 2) and breakage centres.

Definition (paper Eq. 2, conventions fixed in docs/design.md):

* the components :math:`\\hat Y_k` of the mask are its 26-connected components;
* :math:`D_k(j)` is the Euclidean distance from voxel ``j`` to the nearest voxel of component
  ``k``, **in voxels**: the grid is treated as isotropic whatever the physical spacing. The
  paper calls the map a morphological (image) operation and does not give units; docs/design.md
  fixes its :math:`\\alpha = 5` as a distance in voxels. On an anisotropic scan the
  attention ball is therefore an ellipsoid in mm; voxel units keep the map the paper's
  image operation on each case's native grid, without resampling;
* :math:`H(j)` is the second-smallest :math:`D_k(j)` over ``k``; inside a component its own
  distance is 0, so there ``H`` is the distance to the nearest *other* component;
* :math:`\\bar H = \\mathrm{sigmoid}(\\alpha - H)`; with fewer than two components ``H = +inf``
  and :math:`\\bar H = 0` everywhere.

The naive computation (:func:`breakage_attention_naive`) runs one full-volume distance
transform per component: minutes on a CT-sized mask with dozens of components.
:func:`breakage_attention` computes the same map in local boxes; see its notes for the method
and the proof that it is exact (to ``sigmoid(alpha - cutoff) < 1e-6`` in :math:`\\bar H`).

Distances use the exact Euclidean distance transform of Maurer et al. (IEEE TPAMI 2003,
the paper's ref. [10]) as implemented by :func:`scipy.ndimage.distance_transform_edt`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from scipy.special import expit

from deeptree.io import InputError, check_volume
from deeptree.masks import as_binary_mask, bounding_box, label_components

#: Paper: alpha = 5 (voxels).
DEFAULT_ALPHA = 5.0

#: ``H`` is computed exactly below ``alpha + TAIL``; beyond it sigmoid(alpha - H) <= sigmoid(-14)
#: = 8.3e-7 < 1e-6, so the map differs from the definition there by less than 1e-6.
TAIL = 14.0


Box = tuple[tuple[int, int], ...]  # ((lo_i, hi_i), (lo_j, hi_j), (lo_k, hi_k)), hi exclusive


def attention_cutoff(alpha: float = DEFAULT_ALPHA) -> float:
    """Distance (voxels) beyond which :math:`\\bar H` is below 1e-6: ``alpha + 14``."""
    return float(alpha) + TAIL


def check_alpha(alpha, name: str = "alpha") -> float:
    """``alpha`` as a finite float (voxels), or an error naming it.

    Parameters
    ----------
    alpha : number
        The attention map's alpha (voxels).
    name : str
        What to call it in the message (e.g. ``"--alpha"``).

    Returns
    -------
    float

    Raises
    ------
    InputError
        Not a number, or NaN or infinite.
    """
    try:
        alpha = float(alpha)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name} must be a number (voxels), got {alpha!r}") from err
    if not math.isfinite(alpha):
        raise InputError(f"{name} must be finite (voxels), got {alpha}")
    return alpha


def _sigmoid_map(h: np.ndarray, alpha: float) -> np.ndarray:
    """float32 sigmoid(alpha - h), computed in float64 (h may hold +inf -> 0)."""
    return expit(alpha - h.astype(np.float64, copy=False)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# the definition, one full-volume distance transform per component (reference)
# --------------------------------------------------------------------------------------------
def breakage_attention_naive(
    mask: np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    *,
    return_h: bool = False,
    name: str = "mask",
):
    """Breakage attention by the literal definition (reference; slow on large volumes).

    One Euclidean distance transform of the whole volume per 26-connected component, keeping
    the two smallest distances per voxel. Same parameters and returns as
    :func:`breakage_attention`, except that ``H`` is exact everywhere. Time grows as
    (number of components) x (volume): use it on small volumes or to check the fast version.
    """
    alpha = check_alpha(alpha)
    labels, n = label_components(mask, name)
    smallest = np.full(labels.shape, np.inf)
    second = np.full(labels.shape, np.inf)
    if n >= 2:
        for k in range(1, n + 1):
            _fold_component(labels, k, smallest, second)
    h_bar = _sigmoid_map(second, alpha)
    return (h_bar, second.astype(np.float32)) if return_h else h_bar


def _fold_component(labels: np.ndarray, k: int, smallest: np.ndarray, second: np.ndarray) -> None:
    """One step of the naive loop: D_k over the whole volume, folded into the running two
    smallest distances (in place). Its cost does not depend on the component."""
    d_k = ndi.distance_transform_edt(labels != k)
    np.minimum(second, np.maximum(smallest, d_k), out=second)
    np.minimum(smallest, d_k, out=smallest)


# --------------------------------------------------------------------------------------------
# the fast computation in local boxes
# --------------------------------------------------------------------------------------------
def _grow(box: Box, margin: int, shape) -> Box:
    """``box`` grown by ``margin`` voxels on every side, clipped to the volume."""
    return tuple(
        (max(lo - margin, 0), min(hi + margin, size))
        for (lo, hi), size in zip(box, shape, strict=True)
    )


def _volume(box: Box) -> int:
    return math.prod(hi - lo for lo, hi in box)


def _union(a: Box, b: Box) -> Box:
    return tuple((min(la, lb), max(ha, hb)) for (la, ha), (lb, hb) in zip(a, b, strict=True))


def _slices(box: Box, origin: tuple[int, ...] = (0, 0, 0)) -> tuple[slice, ...]:
    """Slices of ``box`` in an array whose first voxel is at ``origin``."""
    return tuple(slice(lo - o, hi - o) for (lo, hi), o in zip(box, origin, strict=True))


def _group_boxes(boxes: dict[int, Box]) -> list[tuple[list[int], Box]]:
    """Greedily merge boxes whose union costs no more voxels than the two apart.

    Returns a list of (component ids, union box). Merging never increases the total number
    of voxels handed to distance transforms, and neighbouring fragments (which often share
    most of their box) then share one transform of "everything else".
    """
    groups = [([k], box, _volume(box)) for k, box in sorted(boxes.items())]
    merged = True
    while merged:
        merged = False
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                union = _union(groups[a][1], groups[b][1])
                volume = _volume(union)
                if volume <= groups[a][2] + groups[b][2]:
                    groups[a] = (groups[a][0] + groups[b][0], union, volume)
                    del groups[b]
                    merged = True
                    break
            if merged:
                break
    return [(members, box) for members, box, _ in groups]


def breakage_attention(
    mask: np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    *,
    return_h: bool = False,
    cutoff: float | None = None,
    name: str = "mask",
):
    """Breakage attention map :math:`\\bar H = \\mathrm{sigmoid}(\\alpha - H)` (paper Eq. 2).

    Parameters
    ----------
    mask : ndarray, shape (I, J, K), bool or 0/1 integers
        Airway mask (e.g. a stage-1 prediction or a simulated broken GT). Not modified.
        An empty mask or a single component gives :math:`\\bar H = 0`, ``H = +inf``.
    alpha : float
        Attention range in **voxels** (paper: 5). Distances are measured on the voxel grid,
        not in mm (see the module notes).
    return_h : bool
        Also return the raw ``H``.
    cutoff : float, optional
        ``H`` is computed exactly where it is below ``cutoff`` voxels (default
        ``alpha + 14``) and reported as ``+inf`` elsewhere. :math:`\\bar H` then differs from
        the definition by at most ``sigmoid(alpha - cutoff)`` (8.3e-7 by default).
        ``numpy.inf`` gives the exact map everywhere (at the naive cost).
    name : str
        What to call the mask in errors.

    Returns
    -------
    h_bar : ndarray of float32, shape (I, J, K)
        Attention in [0, 1]; 1/(1 + e^-alpha) on a one-voxel gap, about 0.5 at ``alpha``
        voxels from the second component.
    h : ndarray of float32, shape (I, J, K)
        Only with ``return_h``: second-smallest distance (voxels) to the components; exact
        below ``cutoff``, ``+inf`` where it is at least ``cutoff`` or where there are fewer
        than two components.

    Raises
    ------
    InputError
        Not a 3D binary volume; ``alpha`` not a finite number; ``cutoff`` not positive.

    Notes
    -----
    Let ``m = ceil(cutoff)`` and ``box_k(r)`` the bounding box of component ``k`` grown by
    ``r`` voxels on each side (clipped to the volume). Two facts make local boxes exact:

    (a) *Outside* ``box_k(m)``, ``D_k >= m + 1 > cutoff``: such a voxel differs from every
        voxel of ``k`` by at least ``m + 1`` along one axis.
    (b) A distance transform computed on a crop is the distance to the feature voxels *in
        the crop*: exact everywhere if the crop holds all of them, an over-estimate
        otherwise, and still exact at ``j`` if the crop holds the nearest one. For ``j`` in
        ``box_k(m)`` and a true distance ``d < cutoff <= m``, the nearest feature ``p`` has
        ``|p - j|_inf <= d < m``, so it lies in ``box_k(2m)``: a crop holding every feature
        voxel of ``box_k(2m)`` gives exact values below the cutoff on ``box_k(m)``.

    Algorithm: the component whose ``box(2m)`` is largest (usually the main tree) is left
    out; every other component ``k`` gets the crop ``C_k`` = smallest box holding
    ``box_k(m)`` and the voxels of the other components inside ``box_k(2m)``; overlapping
    crops are merged into groups (never increasing the voxels transformed). For a group
    ``G`` with crop ``C`` (the union of its ``C_k``): one transform gives ``D_rest``, the
    distance to all components outside ``G`` (exact in each ``box_k(m)`` below the cutoff,
    by (b)); one small transform per ``k`` in ``G`` gives ``D_k`` on ``box_k(m)`` (exact,
    taken as ``+inf`` outside, an over-estimate). The group's value is the second smallest
    of ``{D_k : k in G} + {D_rest}``; ``H`` is the minimum over groups.

    Proof of exactness. *Never below H*: each group's multiset holds over-estimates of the
    distances to distinct components (those of ``G`` and the nearest one outside ``G``), a
    sub-multiset of all ``D_k``; removing or increasing elements never lowers the second
    smallest. *Equal to H when H < cutoff*: let ``c1, c2`` be the nearest and second-nearest
    components, ``D_c1 <= D_c2 = H``. At most one of them is the left-out component, so one,
    ``c``, is in a group ``G``, and ``j`` lies in ``box_c(m)`` by (a). There ``D_c`` is exact;
    the other one, ``c'``, is either in ``G`` (then ``j`` is in ``box_c'(m)`` too and ``D_c'``
    is exact) or outside (then it is the nearest component outside ``G``, so
    ``D_rest = D_c'``, exact by (b)). All other elements are >= their true values >= ``H``,
    so the group gives exactly ``H``. *Voxels in no crop* have ``H >= cutoff`` by (a).
    Distances come from the same transform as the naive version (square roots of integers),
    so ``H`` agrees bit for bit below the cutoff, and :math:`\\bar H` to float32 rounding.
    """
    alpha = check_alpha(alpha)
    cutoff = attention_cutoff(alpha) if cutoff is None else float(cutoff)
    if not cutoff > 0:
        raise InputError(f"cutoff must be a positive distance in voxels, got {cutoff}")
    mask = as_binary_mask(mask, name, allow_empty=True)
    shape = mask.shape
    h_bar = np.zeros(shape, dtype=np.float32)
    h_full = np.full(shape, np.inf, dtype=np.float32) if return_h else None
    done = (h_bar, h_full) if return_h else h_bar

    # Label only inside the mask's bounding box: labelling a CT-sized volume costs seconds.
    found = bounding_box(mask)
    if found is None:
        return done  # empty mask: no component
    tight = tuple((s.start, s.stop) for s in found)
    labels_tight, n = label_components(mask[found])
    if n < 2:
        return done

    m = int(math.ceil(cutoff)) if math.isfinite(cutoff) else max(shape)
    component_boxes = {
        k: tuple((s.start + lo, s.stop + lo) for s, (lo, _) in zip(sl, tight, strict=True))
        for k, sl in enumerate(ndi.find_objects(labels_tight), start=1)
    }
    near = {k: _grow(b, m, shape) for k, b in component_boxes.items()}  # box_k(m)
    far = {k: _grow(b, 2 * m, shape) for k, b in component_boxes.items()}  # box_k(2m)
    left_out = max(far, key=lambda k: (_volume(far[k]), -k))
    crops = {k: _needed_box(labels_tight, tight, k, near[k], far[k]) for k in far if k != left_out}

    for members, crop in _group_boxes(crops):
        crop_labels = _crop(labels_tight, tight, crop)
        in_group = np.zeros(n + 1, dtype=bool)
        in_group[members] = True
        rest = (crop_labels > 0) & ~in_group[crop_labels]
        smallest = ndi.distance_transform_edt(~rest) if rest.any() else np.full(rest.shape, np.inf)
        second = np.full(rest.shape, np.inf)
        crop_origin = tuple(lo for lo, _ in crop)
        for k in members:
            view = _slices(near[k], crop_origin)
            d_k = ndi.distance_transform_edt(crop_labels[view] != k)
            np.minimum(second[view], np.maximum(smallest[view], d_k), out=second[view])
            np.minimum(smallest[view], d_k, out=smallest[view])
        # H is the minimum over groups, so H_bar (decreasing in H) is the maximum; float32
        # rounding is monotone, so the order of the groups does not matter.
        near_gap = second < cutoff
        out = h_bar[_slices(crop)]
        out[near_gap] = np.maximum(out[near_gap], _sigmoid_map(second[near_gap], alpha))
        if return_h:
            out_h = h_full[_slices(crop)]
            out_h[near_gap] = np.minimum(out_h[near_gap], second[near_gap])
    return done


def _needed_box(labels: np.ndarray, box: Box, k: int, near: Box, far: Box) -> Box:
    """``near`` grown to hold every voxel of another component that lies in ``far``."""
    others = _crop(labels, box, far)
    others = (others > 0) & (others != k)
    found = bounding_box(others)
    if found is None:
        return near
    return _union(
        near, tuple((s.start + lo, s.stop + lo) for s, (lo, _) in zip(found, far, strict=True))
    )


def _crop(labels: np.ndarray, box: Box, crop: Box) -> np.ndarray:
    """The part ``crop`` of a label array that covers ``box``, zero outside ``box``."""
    out = np.zeros([hi - lo for lo, hi in crop], dtype=labels.dtype)
    both = tuple((max(a, c), min(b, d)) for (a, b), (c, d) in zip(box, crop, strict=True))
    if all(lo < hi for lo, hi in both):
        out[_slices(both, tuple(lo for lo, _ in crop))] = labels[
            _slices(both, tuple(lo for lo, _ in box))
        ]
    return out


# --------------------------------------------------------------------------------------------
# centres
# --------------------------------------------------------------------------------------------
def breakage_centres(h_bar: np.ndarray, threshold: float = 0.5, name: str = "h_bar") -> np.ndarray:
    """One centre per gap region of the attention map.

    A gap region is a 26-connected region of voxels with ``h_bar > threshold``; its centre is
    the centre of mass of the region weighted by ``h_bar`` (so it sits at the attention peak
    of a ball-like region), rounded to the nearest voxel. The rounded centre of a strongly
    curved region may fall just outside it.

    Parameters
    ----------
    h_bar : ndarray, shape (I, J, K), float
        Attention map in [0, 1] (from :func:`breakage_attention`).
    threshold : float
        In [0, 1). With alpha = 5, ``h_bar > 0.5`` means ``H < 5`` voxels.
    name : str
        What to call the array in errors.

    Returns
    -------
    ndarray of int64, shape (n_regions, 3)
        Voxel (i, j, k) coordinates, one row per region, in scan order of the regions'
        first voxels; shape (0, 3) when no voxel exceeds the threshold.

    Raises
    ------
    InputError
        Not a finite 3D float volume, values outside [0, 1], or threshold outside [0, 1).
    """
    h_bar = check_volume(h_bar, name)
    if h_bar.dtype.kind != "f":
        raise InputError(
            f"{name}: expected a float attention map in [0, 1], got dtype {h_bar.dtype}"
        )
    try:
        threshold = float(threshold)
    except (TypeError, ValueError) as err:
        raise InputError(f"threshold must be a number in [0, 1), got {threshold!r}") from err
    if not 0.0 <= threshold < 1.0:
        raise InputError(f"threshold must be in [0, 1), got {threshold}")
    low, high = h_bar.min(), h_bar.max()
    if low < 0 or high > 1:
        raise InputError(f"{name}: values must lie in [0, 1], found [{low}, {high}]")
    above = h_bar > threshold
    box = bounding_box(above)  # label only inside the box of the voxels above the threshold
    if box is None:
        return np.zeros((0, 3), dtype=np.int64)
    regions, n = label_components(above[box])
    weights = h_bar[box].astype(np.float64)
    centres = ndi.center_of_mass(weights, regions, index=np.arange(1, n + 1))
    offset = np.array([s.start for s in box], dtype=np.float64)
    return np.rint(np.asarray(centres, dtype=np.float64).reshape(n, 3) + offset).astype(np.int64)


def nearest_centre_distance(points, centres) -> np.ndarray:
    """Distance (voxels) from each point to its nearest breakage centre.

    Parameters
    ----------
    points : array-like, shape (n, 3)
        Voxel coordinates, e.g. the centres of simulated gaps.
    centres : array-like, shape (m, 3)
        Voxel coordinates from :func:`breakage_centres`.

    Returns
    -------
    ndarray of float64, shape (n,)
        Euclidean distance in voxels; ``inf`` for every point when there is no centre.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    if len(centres) == 0:
        return np.full(len(points), np.inf)
    return np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=-1).min(axis=1)
