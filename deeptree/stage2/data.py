"""Stage-2 training data: simulated breakages, false-positive fragments, attention and crops.

DeepTree's second stage (paper Sec. 2.3) learns to reconnect an airway tree where the first
stage broke it. There is no breakage in ground truth, so training samples are *simulated*:

1. a training GT is broken afresh (:func:`deeptree.breakage.simulate_breakage`: 50% of the
   peripheral branches lose a contiguous run of 10-30% of their skeleton); the removed voxels
   are the target ``Y^B``;
2. a few small *false-positive fragments* are added near the airway (short blobs in the
   parenchyma, as a stage-1 network leaves them), so that attention peaks also appear where
   nothing should be connected (see :func:`add_fragments`);
3. the breakage attention :math:`\\bar H` (Eq. 2, :func:`deeptree.attention.breakage_attention`)
   of that mask is computed and its centres (:func:`deeptree.attention.breakage_centres`)
   are split into *positives* (within ``match_distance`` voxels of a simulated gap) and
   *negatives* (all others: fragments, nearby branch ends);
4. each training crop is a ``patch_size`` box (64^3 in the paper and the ``gpu`` profile,
   32^3 for ``cpu``: :func:`deeptree.config.stage2_settings`) of (normalised CT, :math:`\\bar H`) centred on
   a positive (or, with probability ``negative_fraction``, a negative) centre plus a random
   shift of up to a quarter patch per axis, with the target ``Y^B`` cropped alike. Boxes
   that run past the volume are padded (CT: 0 = air, as in stage 1; attention and target: 0).

The network sees CT and attention only (early fusion, paper Eq. 3); the loss is the plain
2-class Dice + CE of nnU-Net with deep supervision (``deeptree.stage1.losses.Stage1Loss("plain")``,
which is exactly that loss; the paper: "the default Dice + CE loss for the 2nd-stage").

The training task that draws on these crops is in :mod:`deeptree.stage2.task`.

Cost and determinism: a simulation (breakage + attention) costs about as much as a training
step on a CPU, so :class:`Stage2CropDataset` draws ``crops_per_simulation`` consecutive
crops from one simulation (simulation ``index // crops_per_simulation``, cached). With
DataLoader workers, consecutive batches go to different workers; ``simulation_streams``
deals batches to as many streams as there are workers so that each worker still reuses its
simulation. Every item is still a pure function of ``(seed, index)``, as
:func:`deeptree.train.train` requires for an exact resume; set ``crops_per_simulation=1``
for one fresh simulation per crop.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi

from deeptree.attention import breakage_attention, breakage_centres
from deeptree.breakage import simulate_breakage
from deeptree.config import (
    AttentionConfig,
    BreakageConfig,
    Stage2DataConfig,
)
from deeptree.io import InputError, check_same_grid, check_spacing, check_volume
from deeptree.masks import as_binary_mask, bounding_box, grow_box
from deeptree.stage1.data import augment_intensity, crop_patch, normalize_ct
from deeptree.tree import parse_tree


# --------------------------------------------------------------------------------------------
# sources and simulated samples
# --------------------------------------------------------------------------------------------
@dataclass
class Stage2Source:
    """One training case, prepared once for repeated breakage simulations.

    Attributes
    ----------
    id : str
    image : ndarray of float32, shape (I, J, K)
        Normalised CT (:func:`deeptree.stage1.data.normalize_ct`).
    airway : ndarray of bool, shape (I, J, K)
        The GT airway that is broken: the voxels of the parsed tree (largest 6-connected
        component of the GT).
    tree : deeptree.tree.AirwayTree
        ``parse_tree`` of the GT.
    spacing : tuple of 3 float (mm)
    room : ndarray of bool, shape (I, J, K), or None
        Where fragments may go (e.g. the lung mask); None: anywhere off the airway.
    """

    id: str
    image: np.ndarray
    airway: np.ndarray
    tree: object
    spacing: tuple[float, float, float]
    room: np.ndarray | None = None


def prepare_stage2_source(
    ct: np.ndarray,
    airway: np.ndarray,
    spacing: Sequence[float],
    case_id: str = "case",
    room: np.ndarray | None = None,
) -> Stage2Source:
    """Normalise the CT and parse the GT of one training case.

    Parameters
    ----------
    ct : ndarray, shape (I, J, K)
        HU. Not modified.
    airway : ndarray, shape (I, J, K), binary
        GT airway mask. Not modified.
    spacing : 3 floats (mm)
    case_id : str
        Used in error messages.
    room : ndarray (I, J, K), binary, optional
        Where simulated false-positive fragments may go (the lung mask of a phantom).

    Raises
    ------
    InputError
        Non-3D or non-finite arrays, shape mismatch, non-binary or empty GT, a GT too small
        to parse, bad spacing.
    """

    spacing = check_spacing(spacing, f"{case_id} spacing")
    ct = check_volume(ct, f"{case_id} CT")
    mask = as_binary_mask(airway, f"{case_id} label")
    check_same_grid(ct, mask, f"{case_id} CT", f"{case_id} label")
    if room is not None:
        room = as_binary_mask(room, f"{case_id} room", allow_empty=True)
        check_same_grid(ct, room, f"{case_id} CT", f"{case_id} room")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # several GT components: largest kept
        tree = parse_tree(mask, spacing, name=f"{case_id} label")
    return Stage2Source(
        id=case_id,
        image=normalize_ct(ct),
        airway=mask & tree.mask,
        tree=tree,
        spacing=spacing,
        room=room,
    )


@dataclass
class Stage2Sample:
    """One breakage simulation with its attention and crop centres.

    Attributes
    ----------
    source : Stage2Source
    mask : ndarray of bool, shape (I, J, K)
        Broken GT plus the fragments: what the attention is computed on (a stand-in for a
        stage-1 output).
    label : ndarray of bool, shape (I, J, K)
        ``Y^B``, the removed voxels (the stage-2 target).
    fragments : ndarray of bool, shape (I, J, K)
        The simulated false-positive fragments.
    h_bar : ndarray of float32, shape (I, J, K)
        Attention of ``mask``.
    gaps : list of deeptree.breakage.Gap
    positives, negatives : ndarray of int64, shape (n, 3)
        Crop centres (voxels) at the gaps and away from them.
    """

    source: Stage2Source
    mask: np.ndarray
    label: np.ndarray
    fragments: np.ndarray
    h_bar: np.ndarray
    gaps: list
    positives: np.ndarray
    negatives: np.ndarray


def add_fragments(
    airway: np.ndarray,
    n: int,
    rng: np.random.Generator,
    cfg: Stage2DataConfig = Stage2DataConfig(),
    avoid: np.ndarray | None = None,
    room: np.ndarray | None = None,
) -> np.ndarray:
    """Small blobs near the airway that never touch it: simulated stage-1 false positives.

    Each fragment is a capsule (axis length and radius drawn from ``cfg``, random direction)
    centred on a voxel whose distance to the airway lies in ``cfg.fragment_distance``
    (candidates are airway surface voxels moved by a random step, kept when their exact
    distance, from a k-d tree of the surface, is in range; up to 20 rounds of ``8 n``
    candidates); voxels closer than 2 voxels to the airway are removed, so a fragment is
    never 26-connected to it.

    Parameters
    ----------
    airway : ndarray of bool, shape (I, J, K)
        The (broken) airway. Not modified.
    n : int
        Fragments to draw (fewer if there is no room).
    rng : numpy Generator
    cfg : Stage2DataConfig
    avoid : ndarray of bool, shape (I, J, K), optional
        Fragment centres keep ``cfg.gap_clearance`` voxels from these voxels (the gaps).
    room : ndarray of bool, shape (I, J, K), optional
        Fragment centres must lie here (e.g. the lung).

    Returns
    -------
    ndarray of bool, shape (I, J, K)
        The fragments (disjoint from ``airway``).
    """
    from scipy.spatial import cKDTree

    out = np.zeros(airway.shape, dtype=bool)
    if n < 1 or not airway.any():
        return out
    lo_d, hi_d = cfg.fragment_distance
    reach = int(np.ceil(hi_d + cfg.fragment_length[1] + cfg.fragment_radius[1])) + 2
    box = grow_box(bounding_box(airway), reach, airway.shape)
    sub_airway = airway[box]
    # The airway voxel nearest to any voxel outside it is a surface voxel (one with a
    # 6-neighbour outside), so a k-d tree of the surface gives exact Euclidean distances to
    # the airway where they are needed. An EDT of the whole box costs ~5 s per call on a
    # standard phantom and made stage-2 data the bottleneck of a GPU run.
    surface = np.argwhere(sub_airway & ~ndi.binary_erosion(sub_airway))
    to_airway = cKDTree(surface)
    to_gap = None
    if avoid is not None and avoid[box].any():
        to_gap = cKDTree(np.argwhere(avoid[box]))
    sub_room = room[box] if room is not None else None
    shape = np.asarray(sub_airway.shape)
    centres: list[np.ndarray] = []
    seen: set[tuple[int, ...]] = set()
    for _ in range(20):  # rejection sampling: a surface voxel plus a step in [lo_d, hi_d]
        m = 8 * n
        direction = rng.normal(size=(m, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-12
        step = rng.uniform(lo_d, hi_d, size=(m, 1))
        cand = np.rint(surface[rng.integers(len(surface), size=m)] + step * direction)
        cand = cand.astype(np.int64)
        cand = cand[np.all((cand >= 0) & (cand < shape), axis=1)]
        d = to_airway.query(cand)[0]
        ok = (d >= lo_d) & (d <= hi_d)
        if to_gap is not None:
            ok &= to_gap.query(cand)[0] > cfg.gap_clearance
        if sub_room is not None:
            ok &= sub_room[tuple(cand.T)]
        for c in cand[ok]:
            if tuple(c) not in seen:
                seen.add(tuple(c))
                centres.append(c)
        if len(centres) >= n:
            break
    if not centres:
        return out
    sub = np.zeros(sub_airway.shape, dtype=bool)
    for centre in centres[:n]:
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-12
        half = rng.uniform(*cfg.fragment_length) / 2.0
        radius = rng.uniform(*cfg.fragment_radius)
        _draw_capsule(sub, centre - half * direction, centre + half * direction, radius)
    voxels = np.argwhere(sub)
    too_close = voxels[to_airway.query(voxels)[0] < 2.0]  # never 26-adjacent to the airway
    sub[tuple(too_close.T)] = False
    out[box] = sub
    return out


def _draw_capsule(mask: np.ndarray, p0: np.ndarray, p1: np.ndarray, radius: float) -> None:
    """Set (in place, on our own array) the voxels within ``radius`` of segment p0-p1."""
    lo = np.maximum(np.floor(np.minimum(p0, p1) - radius).astype(int), 0)
    hi = np.minimum(np.ceil(np.maximum(p0, p1) + radius).astype(int) + 1, mask.shape)
    if np.any(hi <= lo):
        return
    grid = np.stack(
        np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij"), -1
    )
    d = p1 - p0
    t = np.clip(((grid - p0) @ d) / max(float(d @ d), 1e-12), 0.0, 1.0)
    dist = np.linalg.norm(grid - (p0 + t[..., None] * d), axis=-1)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] |= dist <= radius


def split_centres(
    centres: np.ndarray, label: np.ndarray, gaps: Sequence, match_distance: float = 5.0
) -> tuple[np.ndarray, np.ndarray]:
    """Split attention centres into positives (near a gap) and negatives (the rest).

    Parameters
    ----------
    centres : ndarray of int, shape (n, 3)
        From :func:`deeptree.attention.breakage_centres`.
    label : ndarray of bool, shape (I, J, K)
        ``Y^B``.
    gaps : list of deeptree.breakage.Gap
        A gap that no attention centre matches (rare: its region merged with another one)
        adds its own ``centre`` to the positives, so that every gap is trained on.
    match_distance : float
        Voxels.

    Returns
    -------
    positives, negatives : ndarray of int64, shape (n_pos, 3), (n_neg, 3)
    """
    centres = np.asarray(centres, dtype=np.int64).reshape(-1, 3)
    gap_voxels = np.argwhere(label)
    if len(gap_voxels) == 0:
        return np.zeros((0, 3), np.int64), centres
    from scipy.spatial import cKDTree

    index = cKDTree(gap_voxels)
    near = index.query(centres)[0] <= match_distance if len(centres) else np.zeros(0, dtype=bool)
    positives = [c for c in centres[near]]
    for gap in gaps:
        voxels = np.asarray(gap.voxels)
        if len(centres) == 0 or cKDTree(voxels).query(centres)[0].min() > match_distance:
            positives.append(np.asarray(gap.centre, np.int64))
    pos = np.asarray(positives, np.int64).reshape(-1, 3)
    return pos, centres[~near]


def simulate_stage2_sample(
    source: Stage2Source,
    rng: np.random.Generator,
    cfg: Stage2DataConfig = Stage2DataConfig(),
    breakage: BreakageConfig | None = None,
    attention: AttentionConfig | None = None,
) -> Stage2Sample:
    """A fresh breakage simulation on a training GT, with fragments, attention and centres.

    Parameters
    ----------
    source : Stage2Source
    rng : numpy Generator
        All randomness (same seed, same bytes).
    cfg : Stage2DataConfig
    breakage : BreakageConfig
        ``branch_fraction`` and ``run_fraction`` (paper: 50%, 10-30%); the generation
        threshold comes from ``cfg.min_generation``.
    attention : AttentionConfig
        ``alpha`` (voxels) and the centre threshold.

    Returns
    -------
    Stage2Sample
    """

    breakage = breakage if breakage is not None else BreakageConfig()
    attention = attention if attention is not None else AttentionConfig()

    result = simulate_breakage(
        source.airway,
        source.tree,
        rng,
        breakage.branch_fraction,
        breakage.run_fraction,
        min_generation=cfg.min_generation,
        name=f"{source.id} label",
    )
    n_fragments = int(round(cfg.fragments_per_gap * len(result.gaps)))
    if cfg.fragments_per_gap > 0:
        n_fragments = max(n_fragments, 1)
    fragments = add_fragments(result.broken, n_fragments, rng, cfg, result.label, source.room)
    mask = result.broken | fragments
    h_bar = breakage_attention(mask, attention.alpha)
    centres = breakage_centres(h_bar, attention.centre_threshold)
    positives, negatives = split_centres(centres, result.label, result.gaps, cfg.match_distance)
    return Stage2Sample(
        source=source,
        mask=mask,
        label=result.label,
        fragments=fragments,
        h_bar=h_bar,
        gaps=result.gaps,
        positives=positives,
        negatives=negatives,
    )


# --------------------------------------------------------------------------------------------
# crops
# --------------------------------------------------------------------------------------------
def random_shift(
    size: Sequence[int], rng: np.random.Generator, fraction: float = 0.25
) -> np.ndarray:
    """A random integer shift per axis, uniform in ``[-fraction * size, fraction * size]``.

    Returns
    -------
    ndarray of int64, shape (3,)
    """
    limit = (np.asarray(size) * float(fraction)).astype(np.int64)
    return rng.integers(-limit, limit + 1).astype(np.int64)


def crop_start(
    centre: Sequence[int], size: Sequence[int], shift: Sequence[int] = (0, 0, 0)
) -> np.ndarray:
    """First voxel of the box of ``size`` centred on ``centre + shift`` (may lie outside the
    volume: the crop is then padded). The centre voxel is at offset ``size // 2``."""
    return (np.asarray(centre) + np.asarray(shift) - np.asarray(size) // 2).astype(np.int64)


def crop_stage2(
    image: np.ndarray,
    h_bar: np.ndarray,
    label: np.ndarray | None,
    start: Sequence[int],
    size: Sequence[int],
) -> dict:
    """The stage-2 input (and target) in the box ``[start, start + size)``.

    Parameters
    ----------
    image : ndarray of float32, shape (I, J, K)
        Normalised CT; padded with 0 (air) outside the volume.
    h_bar : ndarray of float32, shape (I, J, K)
        Attention; padded with 0.
    label : ndarray of bool, shape (I, J, K), or None
        ``Y^B``; padded with 0.
    start : 3 ints
        May be negative or run past the end.
    size : 3 ints

    Returns
    -------
    dict
        ``"image"``: tensor float32 (2, X, Y, Z) = (CT, attention); ``"label"`` (with a
        label): tensor int64 (1, X, Y, Z) in {0, 1}.
    """

    ct = crop_patch(image, start, size, 0.0).astype(np.float32)
    att = crop_patch(h_bar, start, size, 0.0).astype(np.float32)
    out = {"image": torch.from_numpy(np.stack([ct, att]))}
    if label is not None:
        target = crop_patch(np.asarray(label, dtype=np.uint8), start, size, 0)
        out["label"] = torch.from_numpy(target.astype(np.int64))[None]
    return out


class Stage2CropDataset(torch.utils.data.Dataset):
    """Stage-2 training crops; item ``index`` is a pure function of ``(seed, index)``.

    Item ``index`` comes from simulation :meth:`simulation_number` ``(index)`` (source and
    breakage drawn from ``default_rng([seed, simulation, 0])``); its centre, shift and
    augmentation from ``default_rng([seed, index, 1])``.

    Parameters
    ----------
    sources : list of Stage2Source
    patch_size : 3 ints (voxels)
    cfg : Stage2DataConfig
    breakage : BreakageConfig
    attention : AttentionConfig
    seed : int
    augment : deeptree.stage1.data.AugmentConfig or None
        Intensity augmentation of the CT channel (brightness, contrast, noise: nnU-Net's);
        None switches it off. No spatial augmentation: the attention and the target would
        have to be resampled alike, and the random shift already varies the position.
    length : int
        Nominal length.
    batch_size : int
        Items per training batch; only ``cfg.simulation_streams > 1`` uses it (streams deal
        out whole batches).

    Items
    -----
    dict with ``"image"`` float32 (2, X, Y, Z), ``"label"`` int64 (1, X, Y, Z),
    ``"negative"`` (int: 1 if centred on a negative centre) and ``"simulation"`` (int: the
    simulation it was cut from).
    """

    def __init__(
        self,
        sources: Sequence[Stage2Source],
        patch_size: Sequence[int],
        cfg: Stage2DataConfig = Stage2DataConfig(),
        breakage: BreakageConfig | None = None,
        attention: AttentionConfig | None = None,
        seed: int = 0,
        augment=None,
        length: int = 10**9,
        batch_size: int = 1,
    ):
        if not sources:
            raise InputError("Stage2CropDataset: no training cases")
        for name, value in (
            ("crops_per_simulation", cfg.crops_per_simulation),
            ("simulation_streams", cfg.simulation_streams),
            ("batch_size", batch_size),
        ):
            if value < 1:
                raise InputError(f"{name} must be at least 1, got {value}")
        self.batch_size = int(batch_size)
        self.sources = list(sources)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.cfg = cfg
        self.breakage = breakage if breakage is not None else BreakageConfig()
        self.attention = attention if attention is not None else AttentionConfig()
        self.seed, self.augment, self.length = int(seed), augment, int(length)
        self._cached: tuple[int, Stage2Sample] | None = None

    def __len__(self) -> int:
        return self.length

    def simulation(self, number: int) -> Stage2Sample:
        """Simulation ``number`` (cached: consecutive items share it)."""
        if self._cached is not None and self._cached[0] == number:
            return self._cached[1]
        rng = np.random.default_rng([self.seed, int(number), 0])
        source = self.sources[int(rng.integers(len(self.sources)))]
        sample = simulate_stage2_sample(source, rng, self.cfg, self.breakage, self.attention)
        self._cached = (number, sample)
        return sample

    def simulation_number(self, index: int) -> int:
        """The simulation item ``index`` is cut from.

        Batch ``b = index // batch_size`` belongs to stream ``b % S`` (S =
        ``cfg.simulation_streams``), where it is local batch ``b // S``; the item's position
        in its stream, ``p``, counts the stream's items in order, and every
        ``crops_per_simulation`` of them share one simulation, numbered ``(p // c) * S +
        stream``: a one-to-one numbering. With S = 1 that is ``index // c``.
        """
        streams, per_simulation = self.cfg.simulation_streams, self.cfg.crops_per_simulation
        batch, position = divmod(int(index), self.batch_size)
        stream = batch % streams
        in_stream = (batch // streams) * self.batch_size + position
        return (in_stream // per_simulation) * streams + stream

    def __getitem__(self, index: int) -> dict:
        number = self.simulation_number(index)
        sample = self.simulation(number)
        rng = np.random.default_rng([self.seed, int(index), 1])
        centre, negative = choose_crop_centre(sample, rng, self.cfg.negative_fraction)
        shift = random_shift(self.patch_size, rng, self.cfg.max_shift_fraction)
        start = crop_start(centre, self.patch_size, shift)
        item = crop_stage2(sample.source.image, sample.h_bar, sample.label, start, self.patch_size)
        if self.augment is not None:
            ct = augment_intensity(item["image"][0].numpy(), rng, self.augment)
            item["image"][0] = torch.from_numpy(ct)
        item["negative"] = int(negative)
        item["simulation"] = number
        return item


def choose_crop_centre(
    sample: Stage2Sample, rng: np.random.Generator, negative_fraction: float = 0.5
) -> tuple[np.ndarray, bool]:
    """Draw a crop centre: a negative with probability ``negative_fraction`` (if any, or if
    there is no positive), else a positive; with neither (no gap could be cut), a random
    airway voxel.

    Returns
    -------
    centre : ndarray of int64, shape (3,)
    negative : bool
    """
    pos, neg = sample.positives, sample.negatives
    take_negative = len(neg) > 0 and (len(pos) == 0 or rng.random() < negative_fraction)
    if take_negative:
        return neg[rng.integers(len(neg))].astype(np.int64), True
    if len(pos) > 0:
        return pos[rng.integers(len(pos))].astype(np.int64), False
    voxels = np.argwhere(sample.mask)
    return voxels[rng.integers(len(voxels))].astype(np.int64), False


# --------------------------------------------------------------------------------------------
# training task
# --------------------------------------------------------------------------------------------


__all__ = [
    "Stage2CropDataset",
    "Stage2Sample",
    "Stage2Source",
    "add_fragments",
    "choose_crop_centre",
    "crop_stage2",
    "crop_start",
    "prepare_stage2_source",
    "random_shift",
    "simulate_stage2_sample",
    "split_centres",
]
