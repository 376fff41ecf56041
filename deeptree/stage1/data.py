"""Stage-1 data: CT normalisation, case preparation, class-balanced patch sampling and
augmentation, as a map-style torch dataset for :func:`deeptree.train.train`. Cases are read
from a dataset and cached on disk by :mod:`deeptree.stage1.cache`.

CT intensities (:func:`normalize_ct`)
    Airway lumen is air (about -1000 HU), the airway wall and vessels are soft tissue (about
    -100 to +100 HU), lung parenchyma lies around -850 HU. We clip to ``CT_WINDOW_HU =
    (-1000, 600)`` HU (everything below is air; above 600 HU is bone whose detail does not
    matter for airways) and map linearly to [0, 1]. Unlike nnU-Net's CT scheme (clip to the
    0.5/99.5 percentiles of the *foreground* and z-score), which would centre everything on
    the air of the lumen, a fixed window keeps lumen, wall and parenchyma apart and is the
    same for every scanner. Padding (volumes smaller than a patch) uses 0 = air.

Case preparation (:func:`prepare_stage1_case`, cached by :mod:`deeptree.stage1.cache`)
    From a CT and its binary airway mask: the normalised CT, the anatomy label (classes 1-3,
    ``deeptree.anatomy``; a phantom's from its generator's radii, ``treesTr/<id>.json``), the GUL distance weight ``d`` (``deeptree.stage1.losses``) and, per class,
    the voxel positions used to centre patches. The tree parse and the skeletons are the
    slow part (seconds per case); :mod:`deeptree.stage1.cache` runs them once per case and
    keeps the arrays on disk, so a training run's data side only crops and augments.

Patch sampling (:mod:`deeptree.stage1.sampling`, :class:`Stage1PatchDataset`)
    Each patch is centred (up to a random shift of a quarter patch) on a voxel drawn as
    follows: with probability ``ratios[0]`` anywhere in the volume, with ``ratios[c]`` on a
    voxel of anatomy class ``c``. Classes absent from a case are left out and the other
    ratios renormalised.

    The training tasks use nnU-Net's own rule instead (``oversample`` of
    :class:`Stage1PatchDataset`, :func:`nnunet_forced`): in each batch, the samples at
    positions ``>= round(batch_size * (1 - oversample))`` are *forced foreground* and the
    others are drawn anywhere (nnU-Net's ``oversample_foreground_percent = 0.33``: with batch
    2, one patch of two). A forced patch is centred on the foreground *of the network's own
    labels*: with the anatomy classes (AMC, 4 outputs) a present class is drawn uniformly,
    then a voxel of it, as nnU-Net does for multi-class labels; with a binary airway label
    (plain, GUL, clDice: 2 outputs) a voxel of the whole airway is drawn uniformly, so that
    those variants never sample by the anatomy classes they do not see.

Augmentation (:func:`spatial_matrix`, :func:`resample_patch`, :func:`augment_intensity`)
    Small rotations (up to 15 degrees about each axis) and scaling (0.85-1.25) with
    probability 0.2 each (nnU-Net's ranges, narrowed rotation), applied by resampling a
    larger crop so that no empty corners appear; then intensity: brightness (x0.85-1.15),
    contrast, Gaussian noise, each with probability 0.15. Our own code rather than MONAI's
    dictionary transforms: the same augmentation built from those
    (``benchmarks/_monai_augment.py``) was 1.1-3.4x slower per patch
    (``benchmarks/bench_augmentation.py``, ``benchmarks/RESULTS.md``).

Randomness: item ``index`` of :class:`Stage1PatchDataset` draws everything from
``numpy.random.default_rng([seed, index])``, so the data stream is a pure function of the
seed and the iteration, identical with any number of workers and after a resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from deeptree.anatomy import anatomy_labels, generator_diameters
from deeptree.io import InputError, check_same_grid, check_spacing, check_volume
from deeptree.stage1.losses import gul_distance_weight
from deeptree.stage1.sampling import (
    MAX_LOCATIONS_PER_CLASS,
    check_ratios,
    choose_centre,
    foreground_locations,
    nnunet_forced,
)
from deeptree.tree import parse_tree

#: CT window (HU) mapped to [0, 1]; see the module docstring.
CT_WINDOW_HU: tuple[float, float] = (-1000.0, 600.0)


def normalize_ct(ct: np.ndarray, window: tuple[float, float] = CT_WINDOW_HU) -> np.ndarray:
    """Clip a CT to a HU window and map it linearly to [0, 1].

    Parameters
    ----------
    ct : ndarray, shape (I, J, K), any numeric dtype
        Hounsfield units. Not modified.
    window : (low, high)
        HU mapped to 0 and 1.

    Returns
    -------
    ndarray of float32, same shape, values in [0, 1].
    """
    low, high = window
    ct = np.asarray(ct, dtype=np.float32)
    return ((np.clip(ct, low, high) - low) / (high - low)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------
@dataclass
class Stage1Case:
    """One prepared training case.

    Attributes
    ----------
    id : str
    image : ndarray of float32, shape (I, J, K)
        Normalised CT (:func:`normalize_ct`); may be a read-only memory map.
    label : ndarray of uint8, shape (I, J, K)
        Anatomy classes {0, 1, 2, 3}; ``label > 0`` is the whole airway.
    distance : ndarray of float32, shape (I, J, K)
        GUL weight ``d`` (:func:`deeptree.stage1.losses.gul_distance_weight`).
    locations : list of 4 ndarrays of int32, shape (n_c, 3)
        Voxel positions per class (index 0 unused: empty); at most
        :data:`MAX_LOCATIONS_PER_CLASS` each, drawn without replacement.
    spacing : tuple of 3 float (mm)
    affine : ndarray (4, 4)
    """

    id: str
    image: np.ndarray
    label: np.ndarray
    distance: np.ndarray
    locations: list[np.ndarray]
    spacing: tuple[float, float, float]
    affine: np.ndarray


def anatomy_label_map(
    airway: np.ndarray,
    spacing: Sequence[float],
    name: str = "airway",
    affine: np.ndarray | None = None,
    tree_spec=None,
) -> np.ndarray:
    """Anatomy classes of every airway voxel.

    ``deeptree.anatomy.anatomy_labels`` labels the parsed tree (the largest 6-connected
    component of the mask); airway voxels outside it (small detached pieces, voxels the
    parse leaves at 0) take the class of the nearest labelled voxel, so that the union of
    the classes is exactly the given airway mask and nothing of it is trained as background.

    Parameters
    ----------
    airway : ndarray, shape (I, J, K), binary
    spacing : 3 floats (mm)
    name : str
        What to call the mask in errors.
    affine : ndarray (4, 4), optional
        Voxel-to-world transform: which end is cranial for the anatomical root of the
        parse (:func:`deeptree.tree.parse_tree`; None: +k).
    tree_spec : deeptree.phantom.AirwayTreeSpec, optional
        A phantom's own tree: the class-2/3 split then uses its true lumen radii
        (:func:`deeptree.anatomy.generator_diameters`, world mm through ``affine``, which is
        then required) instead of the diameters measured on the mask.

    Returns
    -------
    ndarray of uint8, shape (I, J, K), values {0, 1, 2, 3}; ``> 0`` exactly where ``airway``.
    """

    mask = np.asarray(airway) > 0
    tree = parse_tree(mask, spacing, affine=affine, name=name)
    diameters = None
    if tree_spec is not None:
        if affine is None:
            raise InputError(f"{name}: a phantom tree needs the mask's affine (world mm)")
        diameters = generator_diameters(tree, tree_spec, affine)
    classes = np.asarray(anatomy_labels(tree, diameters=diameters), dtype=np.uint8)
    classes = np.where(mask, classes, 0).astype(np.uint8)
    unlabelled = mask & (classes == 0)
    if unlabelled.any():
        _, nearest = ndimage.distance_transform_edt(
            classes == 0, sampling=spacing, return_indices=True
        )
        classes[unlabelled] = classes[tuple(n[unlabelled] for n in nearest)]
    return classes


def class_locations(
    label: np.ndarray, rng: np.random.Generator, max_per_class: int = MAX_LOCATIONS_PER_CLASS
) -> list[np.ndarray]:
    """Voxel positions of each class 1..3 (index 0 is an empty array), subsampled.

    Returns
    -------
    list of 4 int32 arrays of shape (n_c, 3)
    """
    out = [np.zeros((0, 3), np.int32)]
    for c in (1, 2, 3):
        where = np.argwhere(label == c).astype(np.int32)
        if len(where) > max_per_class:
            where = where[np.sort(rng.choice(len(where), max_per_class, replace=False))]
        out.append(where)
    return out


def prepare_stage1_case(
    ct: np.ndarray,
    airway: np.ndarray,
    spacing: Sequence[float],
    affine: np.ndarray | None = None,
    case_id: str = "case",
    seed: int = 0,
    tree_spec=None,
) -> Stage1Case:
    """Everything stage-1 training needs from one case (see the module docstring).

    Parameters
    ----------
    ct : ndarray, shape (I, J, K)
        HU. Not modified.
    airway : ndarray, shape (I, J, K), binary
        Airway mask. Not modified.
    spacing : 3 floats (mm)
    affine : ndarray (4, 4), optional
        Default: diagonal with the spacing.
    case_id : str
        Used in error messages and as the cache key.
    seed : int
        Seeds the subsampling of :func:`class_locations`.
    tree_spec : deeptree.phantom.AirwayTreeSpec, optional
        A phantom's own tree: anatomy classes from its true radii (:func:`anatomy_label_map`).

    Raises
    ------
    InputError
        Non-3D or non-finite arrays, a label of another shape than the CT, a non-binary or
        empty label, bad spacing.
    """

    spacing = check_spacing(spacing, f"{case_id} spacing")
    ct = check_volume(ct, f"{case_id} CT")
    airway = check_volume(airway, f"{case_id} label")
    check_same_grid(ct, airway, f"{case_id} CT", f"{case_id} label")
    if not np.isin(np.unique(airway), (0, 1)).all():
        raise InputError(f"{case_id} label: expected a binary airway mask (0/1)")
    if not airway.any():
        raise InputError(f"{case_id} label: the airway mask is empty")
    if tree_spec is not None and affine is None:
        affine = np.diag([*spacing, 1.0])
    label = anatomy_label_map(
        airway, spacing, name=f"{case_id} label", affine=affine, tree_spec=tree_spec
    )
    return Stage1Case(
        id=case_id,
        image=normalize_ct(ct),
        label=label,
        distance=gul_distance_weight(label, spacing, name=f"{case_id} label"),
        locations=class_locations(label, np.random.default_rng(seed)),
        spacing=spacing,
        affine=np.diag([*spacing, 1.0]) if affine is None else np.asarray(affine, float),
    )


# --------------------------------------------------------------------------------------------
# patches
# --------------------------------------------------------------------------------------------
def crop_patch(
    volume: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float = 0
) -> np.ndarray:
    """The box ``[start, start + size)`` of ``volume``; parts outside it are ``fill``.

    Parameters
    ----------
    volume : ndarray (I, J, K)
    start : 3 ints (may be negative or run past the end)
    size : 3 ints

    Returns
    -------
    ndarray, shape ``size``, ``volume``'s dtype (a new array).
    """
    out = np.full(tuple(size), fill, dtype=volume.dtype)
    src, dst = [], []
    for s, n, dim in zip(start, size, volume.shape, strict=True):
        lo, hi = max(s, 0), min(s + n, dim)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def patch_start(
    centre: np.ndarray, shape: Sequence[int], size: Sequence[int], rng: np.random.Generator | None
) -> np.ndarray:
    """Start of a patch of ``size`` containing ``centre``: centred, shifted at random by up to
    a quarter patch (if ``rng``), then moved inside the volume where the volume is larger than
    the patch (a smaller volume is padded symmetrically)."""
    size = np.asarray(size)
    start = np.asarray(centre) - size // 2
    if rng is not None:
        start = start + rng.integers(-(size // 4), size // 4 + 1)
    shape = np.asarray(shape)
    inside = np.clip(start, 0, np.maximum(shape - size, 0))
    padded = (shape - size) // 2  # volume smaller than the patch: centre it
    return np.where(shape >= size, inside, padded).astype(np.int64)


def _rotation(angles: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation ranges and probabilities (nnU-Net's defaults, rotation narrowed)."""

    p_rotate: float = 0.2
    max_rotation_deg: float = 15.0
    p_scale: float = 0.2
    scale_range: tuple[float, float] = (0.85, 1.25)
    p_brightness: float = 0.15
    brightness_range: tuple[float, float] = (0.85, 1.15)
    p_contrast: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    p_noise: float = 0.15
    noise_sd_max: float = 0.03  # in normalised units (1 = 1600 HU): up to ~50 HU


def spatial_matrix(rng: np.random.Generator, aug: AugmentConfig) -> np.ndarray | None:
    """A random 3x3 rotation-scaling matrix (voxel space), or None when neither is drawn."""
    matrix = np.eye(3)
    drawn = False
    if rng.random() < aug.p_rotate:
        limit = np.deg2rad(aug.max_rotation_deg)
        matrix = _rotation(rng.uniform(-limit, limit, 3)) @ matrix
        drawn = True
    if rng.random() < aug.p_scale:
        matrix = matrix * rng.uniform(*aug.scale_range)
        drawn = True
    return matrix if drawn else None


def resample_patch(
    volume: np.ndarray,
    centre: np.ndarray,
    size: Sequence[int],
    matrix: np.ndarray,
    order: int,
    fill: float,
) -> np.ndarray:
    """Sample ``volume`` on a patch grid of ``size`` voxels centred at ``centre`` and
    transformed by ``matrix`` (output offset u -> input position centre + matrix u).

    A crop large enough for the transformed grid is read first (``fill`` outside the volume),
    then ``torch.nn.functional.grid_sample`` interpolates (``order`` 1: trilinear, 0: nearest).

    Returns
    -------
    ndarray of float32, shape ``size``.
    """
    return resample_patches([(volume, order, fill)], centre, size, matrix)[0]


def resample_patches(
    volumes: Sequence[tuple[np.ndarray, int, float]],
    centre: np.ndarray,
    size: Sequence[int],
    matrix: np.ndarray,
) -> list[np.ndarray]:
    """:func:`resample_patch` of several volumes of one shape on one grid.

    ``volumes`` holds ``(volume, order, fill)`` triples. The sampling grid (2 M points for a
    128^3 patch) is built once, in float32 from three per-axis terms, because building it
    was 3/4 of the cost of an augmented patch (measured: 0.11 s of 0.15 s per volume).

    Returns
    -------
    list of ndarray of float32, shape ``size``, in the order of ``volumes``.
    """
    size = np.asarray(size)
    half = (size - 1) / 2.0
    corners = np.array(np.meshgrid(*[[-h, h] for h in half], indexing="ij")).reshape(3, -1)
    reach = np.ceil(np.abs(matrix @ corners).max(axis=1)).astype(int) + 1
    start = np.floor(centre).astype(int) - reach
    crop_size = 2 * reach + 1
    # position of output voxel (x, y, z) in crop coordinates: c + M[:, 0] ux + M[:, 1] uy +
    # M[:, 2] uz, normalised to [-1, 1] (align_corners=True) and reversed to grid_sample's
    # (last, middle, first) axis order
    scale = 2.0 / (crop_size - 1.0)
    offset = (np.asarray(centre, float) - start) * scale - 1.0
    terms = []
    for axis in range(3):
        u = np.arange(size[axis], dtype=np.float64) - half[axis]
        term = (u[:, None] * matrix[:, axis][None, :] * scale[None, :])[:, ::-1]
        shape = [1, 1, 1, 3]
        shape[axis] = int(size[axis])
        terms.append(torch.from_numpy(term.astype(np.float32).copy()).reshape(shape))
    grid = terms[0] + terms[1] + terms[2] + torch.from_numpy(offset[::-1].astype(np.float32).copy())
    grid = grid[None]
    out = []
    for volume, order, fill in volumes:
        crop = crop_patch(volume, start, crop_size, fill).astype(np.float32)
        sampled = F.grid_sample(
            torch.from_numpy(crop)[None, None],
            grid,
            mode="bilinear" if order == 1 else "nearest",
            padding_mode="border",
            align_corners=True,
        )
        out.append(sampled[0, 0].numpy())
    return out


def augment_intensity(
    image: np.ndarray, rng: np.random.Generator, aug: AugmentConfig
) -> np.ndarray:
    """Brightness, contrast and Gaussian noise on a normalised patch (a new array)."""
    image = image.copy()
    if rng.random() < aug.p_brightness:
        image *= rng.uniform(*aug.brightness_range)
    if rng.random() < aug.p_contrast:
        mean = image.mean()
        image = (image - mean) * rng.uniform(*aug.contrast_range) + mean
    if rng.random() < aug.p_noise:
        image += rng.normal(0.0, rng.uniform(0, aug.noise_sd_max), image.shape).astype(np.float32)
    return image.astype(np.float32)


def sample_patch(
    case: Stage1Case,
    patch_size: Sequence[int],
    ratios: Sequence[float],
    rng: np.random.Generator,
    augment: AugmentConfig | None = AugmentConfig(),
) -> dict:
    """One training patch of a case.

    Returns
    -------
    dict with ``"image"`` (1, X, Y, Z) float32, ``"label"`` (1, X, Y, Z) int64 classes,
    ``"distance"`` (1, X, Y, Z) float32 tensors, ``"centre_class"`` (int: the class drawn by
    :func:`choose_centre`, 0 = anywhere).
    """
    shape = case.image.shape
    centre, chosen = choose_centre(case.locations, shape, ratios, rng)
    matrix = spatial_matrix(rng, augment) if augment is not None else None
    if matrix is None:
        start = patch_start(centre, shape, patch_size, rng)
        image = crop_patch(case.image, start, patch_size, 0.0)
        label = crop_patch(case.label, start, patch_size, 0)
        distance = crop_patch(case.distance, start, patch_size, 1.0)
    else:
        size = np.asarray(patch_size)
        shift = rng.integers(-(size // 4), size // 4 + 1)
        centre = centre + shift  # keep the drawn voxel inside the patch, not always central
        image, label, distance = resample_patches(
            [(case.image, 1, 0.0), (case.label, 0, 0), (case.distance, 1, 1.0)],
            centre,
            patch_size,
            matrix,
        )
        label = label.astype(np.uint8)
    if augment is not None:
        image = augment_intensity(image, rng, augment)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image, np.float32))[None],
        "label": torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))[None],
        "distance": torch.from_numpy(np.ascontiguousarray(distance, np.float32))[None],
        "centre_class": chosen,
    }


class Stage1PatchDataset(torch.utils.data.Dataset):
    """Random training patches from prepared cases; item ``index`` is a pure function of
    ``(seed, index)`` (see the module docstring).

    Parameters
    ----------
    cases : list of Stage1Case
    patch_size : 3 ints (voxels)
    ratios : 4 floats
        Patch-centre class ratios (anywhere, class 1, 2, 3); used when ``oversample`` is None.
    seed : int
    augment : AugmentConfig or None
        None switches augmentation off.
    length : int
        Nominal length (the training loop asks for indices ``< iterations * batch_size``).
    oversample : float, optional
        nnU-Net's foreground oversampling (:func:`nnunet_forced`); replaces ``ratios``.
    batch_size : int
        Batch size of the training loop (where an item sits in its batch).
    by_class : bool
        With ``oversample``: forced patches draw an anatomy class first (AMC labels); False:
        a voxel of the whole airway (binary labels).
    """

    def __init__(
        self,
        cases,
        patch_size,
        ratios=(0.33, 0.17, 0.2, 0.3),
        seed=0,
        augment=AugmentConfig(),
        length=10**9,
        *,
        oversample: float | None = None,
        batch_size: int = 2,
        by_class: bool = True,
    ):
        if not cases:
            raise InputError("Stage1PatchDataset: no training cases")
        if oversample is not None and not 0.0 <= float(oversample) <= 1.0:
            raise InputError(f"Stage1PatchDataset: oversample must be in [0, 1], got {oversample}")
        if int(batch_size) < 1:
            raise InputError(f"Stage1PatchDataset: batch_size must be >= 1, got {batch_size}")
        self.cases, self.patch_size = list(cases), tuple(int(p) for p in patch_size)
        self.ratios, self.seed, self.augment, self.length = (
            check_ratios(ratios),
            int(seed),
            augment,
            int(length),
        )
        self.oversample, self.batch_size, self.by_class = oversample, int(batch_size), by_class
        empty = np.zeros((0, 3), np.int32)
        # binary labels: the whole airway is one foreground class
        self._pooled = (
            [[empty, foreground_locations(c.label), empty, empty] for c in self.cases]
            if oversample is not None and not by_class
            else None
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, int(index)])
        k = int(rng.integers(len(self.cases)))
        case = self.cases[k]
        if self.oversample is None:
            return sample_patch(case, self.patch_size, self.ratios, rng, self.augment)
        if not nnunet_forced(index, self.batch_size, self.oversample):
            return sample_patch(case, self.patch_size, (1.0, 0, 0, 0), rng, self.augment)
        if self._pooled is not None:
            case = replace(case, locations=self._pooled[k])
            return sample_patch(case, self.patch_size, (0, 1.0, 0, 0), rng, self.augment)
        return sample_patch(case, self.patch_size, (0, 1.0, 1.0, 1.0), rng, self.augment)


def split_cases(cases: list, n_val: int) -> tuple[list, list]:
    """Training and validation cases: the last ``n_val`` (by id order) are held out.

    Raises
    ------
    InputError
        If ``n_val`` is negative, or fewer than ``n_val + 1`` cases are given (at least one
        must be left to train on).
    """
    if n_val < 0:
        raise InputError(f"cases held out for validation: must be 0 or more, got {n_val}")
    if len(cases) < n_val + 1:
        raise InputError(
            f"need at least {n_val + 1} cases to hold out {n_val} for validation, got {len(cases)}"
        )
    return (
        (list(cases[: len(cases) - n_val]), list(cases[len(cases) - n_val :]))
        if n_val
        else (list(cases), [])
    )


def class_frequencies(cases: list[Stage1Case]) -> dict[int, int]:
    """Voxels per anatomy class {0, 1, 2, 3} summed over cases (the intra-class imbalance)."""
    counts = np.zeros(4, np.int64)
    for case in cases:
        counts += np.bincount(np.asarray(case.label).ravel(), minlength=4)[:4]
    return {c: int(n) for c, n in enumerate(counts)}
