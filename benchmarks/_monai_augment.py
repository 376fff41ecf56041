"""The stage-1 patch augmentation rebuilt from MONAI's dictionary transforms, seeded per item:
the candidate that ``bench_augmentation.py`` measured against the hand-written code of
``deeptree.stage1.data`` (issue 19). It was slower on every row (``benchmarks/RESULTS.md``,
augmentation), so the library keeps the hand-written code; this module stays as the rerunnable
comparison. ``sample_patch`` has the library's signature and crop path.

What is drawn (nnU-Net's ranges, rotation narrowed; :class:`AugmentConfig`):

spatial, applied together to the CT, the label and the GUL distance of a patch
    with probability ``p_rotate`` a rotation by angles drawn in ``[-max_rotation_deg,
    max_rotation_deg]`` about each axis, with probability ``p_scale`` an isotropic scaling
    by a factor drawn in ``scale_range`` (above 1 the patch shows a larger region, so
    anatomy looks smaller). :func:`draw_spatial` draws them from the item's generator as the
    hand-written code did; MONAI builds the matrix (``create_rotate``, ``create_scale``) and
    ``monai.transforms.Affined`` resamples the patch from a crop just large enough for it
    (:func:`spatial_reach`), once, CT and distance trilinearly, the label by nearest
    neighbour. ``RandAffined`` is not used because it draws rotation and scaling under one
    probability and scales each axis by its own factor: a different augmentation.
intensity, on the CT only
    brightness ``x * f`` (``RandScaleIntensityd``), contrast ``(x - mean) * f + mean``
    (``RandScaleIntensityFixedMeand``), Gaussian noise with a standard deviation drawn from
    ``[0, noise_sd_max]`` (``RandGaussianNoised(sample_std=True)``), each with its
    probability; seeded with ``set_random_state`` from the item's generator before each use
    (:func:`monai_seed`).

Randomness: everything comes from the caller's ``numpy.random.Generator``
(``default_rng([seed, index])`` in the datasets), so a patch is a pure function of the seed
and the item index: the same after a resume and with any number of workers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from deeptree.stage1.data import (
    AugmentConfig,
    Stage1Case,
    choose_centre,
    crop_patch,
    patch_start,
)

#: The keys of a stage-1 patch that the spatial augmentation moves together (the CT and the
#: distance trilinearly, the label by nearest neighbour).
PATCH_KEYS: tuple[str, ...] = ("image", "label", "distance")


DEFAULT = AugmentConfig()


def monai_seed(rng: np.random.Generator) -> int:
    """A seed for MONAI's ``set_random_state`` drawn from ``rng`` (an int in [0, 2**32))."""
    return int(rng.integers(2**32, dtype=np.uint64))


def _factors(bounds: tuple[float, float]) -> tuple[float, float]:
    """MONAI's ``factors`` (``x * (1 + f)``) for a multiplicative range ``(low, high)``."""
    return (float(bounds[0]) - 1.0, float(bounds[1]) - 1.0)


def draw_spatial(rng: np.random.Generator, aug: AugmentConfig) -> np.ndarray | None:
    """Draw the spatial step of one patch: a 4x4 matrix (MONAI's convention: it maps a
    patch voxel's offset from the patch centre to the input position's offset from the crop
    centre), or None when neither rotation nor scaling is drawn.

    Returns
    -------
    ndarray of float64 (4, 4) or None
    """
    from monai.transforms.utils import create_rotate, create_scale

    matrix = np.eye(4)
    drawn = False
    if rng.random() < aug.p_rotate:
        limit = np.deg2rad(aug.max_rotation_deg)
        matrix = matrix @ np.asarray(create_rotate(3, list(rng.uniform(-limit, limit, 3))))
        drawn = True
    if rng.random() < aug.p_scale:
        factor = float(rng.uniform(*aug.scale_range))
        matrix = matrix @ np.asarray(create_scale(3, [factor] * 3))
        drawn = True
    return matrix if drawn else None


def spatial_reach(patch_size: Sequence[int], matrix: np.ndarray) -> np.ndarray:
    """Half-size (voxels, per axis) of the crop that ``matrix`` reads for a patch: the
    farthest transformed patch corner, plus 2 voxels for the interpolation.

    Returns
    -------
    ndarray of int64, shape (3,)
    """
    half = (np.asarray(patch_size, float) - 1) / 2.0
    corners = np.array(np.meshgrid(*[[-h, h] for h in half], indexing="ij")).reshape(3, -1)
    return (np.ceil(np.abs(matrix[:3, :3] @ corners).max(axis=1)) + 2).astype(np.int64)


def apply_spatial(
    crops: dict[str, np.ndarray], matrix: np.ndarray, patch_size: Sequence[int]
) -> dict[str, np.ndarray]:
    """Resample a patch from crops centred on the patch centre with ``monai.transforms.Affined``.

    Parameters
    ----------
    crops : dict of ndarray, shape (2 r + 1) per axis (:func:`spatial_reach` ``r``)
        ``image``, ``label``, ``distance`` around the same centre voxel.
    matrix : ndarray (4, 4)
        From :func:`draw_spatial`.
    patch_size : 3 ints

    Returns
    -------
    dict of ndarray of float32, shape ``patch_size`` (the label holds whole classes).
    """
    from monai.transforms import Affined

    # CT and distance share their interpolation: as two channels of one tensor they share
    # one sampling grid (building a 128^3 grid costs about as much as sampling one volume)
    transform = Affined(
        ("linear", "label"),
        affine=torch.as_tensor(matrix),
        spatial_size=[int(p) for p in patch_size],
        mode=("bilinear", "nearest"),
        padding_mode="border",
        dtype=torch.float32,
    )
    data = {
        "linear": torch.from_numpy(
            np.stack([crops["image"], crops["distance"]]).astype(np.float32, copy=False)
        ),
        "label": torch.from_numpy(np.asarray(crops["label"], dtype=np.float32))[None],
    }
    out = transform(data)
    linear, label = _plain(out["linear"]).numpy(), _plain(out["label"])[0].numpy()
    return {"image": linear[0], "label": label, "distance": linear[1]}


@functools.lru_cache(maxsize=8)
def intensity_transform(aug: AugmentConfig):
    """The MONAI ``Compose`` of brightness, contrast and noise on the ``image`` key.

    Built once per configuration (about 8 ms each) and reused: its random state is set from
    the item's generator before every use, so reuse does not carry state from item to item.

    Returns
    -------
    monai.transforms.Compose
        Seed it with ``set_random_state`` before each call.
    """
    from monai.transforms import (
        Compose,
        RandGaussianNoised,
        RandScaleIntensityd,
        RandScaleIntensityFixedMeand,
    )

    return Compose(
        [
            RandScaleIntensityd(
                "image", factors=_factors(aug.brightness_range), prob=aug.p_brightness
            ),
            RandScaleIntensityFixedMeand(
                "image", factors=_factors(aug.contrast_range), prob=aug.p_contrast
            ),
            RandGaussianNoised(
                "image",
                prob=aug.p_noise,
                mean=0.0,
                std=aug.noise_sd_max,
                sample_std=True,
                dtype=np.float32,
            ),
        ]
    )


def augment_intensity(
    image: np.ndarray, rng: np.random.Generator, aug: AugmentConfig
) -> np.ndarray:
    """Brightness, contrast and Gaussian noise on a normalised patch (a new array).

    Parameters
    ----------
    image : ndarray, shape (X, Y, Z)
        Normalised CT patch. Not modified.
    rng : numpy Generator
        Seeds the MONAI transforms (:func:`monai_seed`).
    aug : AugmentConfig

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
    """
    transform = intensity_transform(aug)
    transform.set_random_state(seed=monai_seed(rng))
    data = {"image": torch.from_numpy(np.array(image, dtype=np.float32, copy=True))[None]}
    return _plain(transform(data)["image"])[0].numpy().astype(np.float32, copy=False)


def _plain(tensor) -> torch.Tensor:
    """A MONAI ``MetaTensor`` as a plain tensor (collates and trains as before)."""
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else torch.as_tensor(tensor)


def sample_patch(
    case: Stage1Case,
    patch_size: Sequence[int],
    ratios: Sequence[float],
    rng: np.random.Generator,
    augment: AugmentConfig | None = DEFAULT,
) -> dict:
    """``deeptree.stage1.data.sample_patch`` (same signature, same crop path) with the MONAI
    augmentation of this module.

    Without a spatial step the patch is a crop (:func:`deeptree.stage1.data.patch_start`); with one, a crop just
    large enough for it (:func:`spatial_reach`; air, background and
    distance 1 outside the volume), centred on the drawn voxel shifted by up to a quarter
    patch, is rotated and/or scaled about its centre into the patch.

    Returns
    -------
    dict with ``"image"`` (1, X, Y, Z) float32, ``"label"`` (1, X, Y, Z) int64 classes,
    ``"distance"`` (1, X, Y, Z) float32 tensors, ``"centre_class"`` (int: the class drawn by
    :func:`deeptree.stage1.data.choose_centre`, 0 = anywhere).
    """
    shape = case.image.shape
    centre, chosen = choose_centre(case.locations, shape, ratios, rng)
    matrix = draw_spatial(rng, augment) if augment is not None else None
    if matrix is None:
        start = patch_start(centre, shape, patch_size, rng)
        image = crop_patch(case.image, start, patch_size, 0.0)
        label = crop_patch(case.label, start, patch_size, 0)
        distance = crop_patch(case.distance, start, patch_size, 1.0)
    else:
        size = np.asarray(patch_size)
        centre = centre + rng.integers(-(size // 4), size // 4 + 1)  # drawn voxel off-centre
        reach = spatial_reach(patch_size, matrix)
        start, crop_size = centre - reach, 2 * reach + 1
        crops = {
            "image": crop_patch(case.image, start, crop_size, 0.0),
            "label": crop_patch(case.label, start, crop_size, 0),
            "distance": crop_patch(case.distance, start, crop_size, 1.0),
        }
        out = apply_spatial(crops, matrix, patch_size)
        image, label, distance = out["image"], np.rint(out["label"]), out["distance"]
    if augment is not None:
        image = augment_intensity(image, rng, augment)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image, np.float32))[None],
        "label": torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))[None],
        "distance": torch.from_numpy(np.ascontiguousarray(distance, np.float32))[None],
        "centre_class": chosen,
    }
