"""Where stage-1 patches are centred: the class-ratio draw (:func:`choose_centre`) and
nnU-Net's foreground oversampling (:func:`nnunet_forced`, :func:`foreground_locations`), used
by :class:`deeptree.stage1.data.Stage1PatchDataset` (its module docstring describes the rules).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deeptree.io import InputError

#: Most voxel positions kept per class for patch centring (nnU-Net keeps 10,000).
MAX_LOCATIONS_PER_CLASS = 10_000


def check_ratios(ratios: Sequence[float]) -> np.ndarray:
    """Return the 4 sampling ratios (anywhere, class 1, 2, 3) normalised to sum 1."""
    r = np.asarray(ratios, dtype=float)
    if r.shape != (4,) or (r < 0).any() or r.sum() <= 0:
        raise InputError(
            f"patch class ratios: expected 4 non-negative numbers, got {tuple(ratios)}"
        )
    return r / r.sum()


def choose_centre(
    locations: Sequence[np.ndarray],
    shape: Sequence[int],
    ratios: Sequence[float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, int]:
    """Draw a patch centre.

    Parameters
    ----------
    locations : 4 int arrays (n_c, 3)
        Voxel positions per class (:attr:`Stage1Case.locations`).
    shape : 3 ints
        Volume shape.
    ratios : 4 floats
        Probability of centring on any voxel / on class 1, 2, 3.
    rng : numpy Generator

    Returns
    -------
    centre : ndarray of int64, shape (3,)
        Voxel index.
    chosen : int
        The class drawn (0 = anywhere). Classes without locations are never drawn: the
        ratios of the present ones are renormalised.
    """
    ratios = check_ratios(ratios)
    present = np.array([True] + [len(locations[c]) > 0 for c in (1, 2, 3)])
    if ratios[present].sum() == 0:  # only absent classes requested: anywhere
        present, ratios = np.array([True, False, False, False]), np.array([1.0, 0, 0, 0])
    probabilities = np.where(present, ratios, 0.0) / ratios[present].sum()
    chosen = int(rng.choice(4, p=probabilities))
    if chosen > 0:
        return np.asarray(locations[chosen][rng.integers(len(locations[chosen]))], np.int64), chosen
    return np.array([rng.integers(n) for n in shape], np.int64), 0


def nnunet_forced(index: int, batch_size: int, oversample: float) -> bool:
    """True when dataset item ``index`` is a forced-foreground sample under nnU-Net's rule:
    its position in the batch, ``index % batch_size``, is at least
    ``round(batch_size * (1 - oversample))`` (nnU-Net v2 ``get_do_oversample``)."""
    return int(index) % int(batch_size) >= round(int(batch_size) * (1.0 - float(oversample)))


def foreground_locations(label: np.ndarray, max_n: int = MAX_LOCATIONS_PER_CLASS) -> np.ndarray:
    """Positions of airway voxels (``label > 0``, all classes pooled), at most ``max_n`` drawn
    without replacement by a fixed generator: int32 (n, 3)."""
    where = np.argwhere(np.asarray(label) > 0).astype(np.int32)
    if len(where) > max_n:
        where = where[np.sort(np.random.default_rng(0).choice(len(where), max_n, replace=False))]
    return where
