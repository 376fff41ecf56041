"""What an airway mask shows without a label: trachea, pieces, volume, branches, lobar bronchi.

Used for a model's masks on real CT (notebook 08, :mod:`deeptree.real_ct`,
:mod:`deeptree.transfer`, the model card):

* :func:`describe_tree`: trachea found (wide, long and upright enough), 26-connected pieces,
  volume, generations reached, branches per generation and lobar bronchi of the parse of the
  largest component, and the bar of issue 33 criterion by criterion (:func:`tree_bar`);
* :func:`lobar_bronchi` and :func:`bronchus_intermedius`: the lobar level, which is not one
  generation of the parse;
* :func:`branch_tilt_deg`: a branch's angle to the body's long axis.
"""

from __future__ import annotations

import warnings

import numpy as np

from deeptree.masks import label_components
from deeptree.tree import parse_tree

#: The trachea counts as found when the root branch of the parsed mask is at least this wide
#: (mm, mean lumen diameter; an adult trachea is 13-25 mm) and this long (mm; an adult trachea
#: is 100-120 mm, the right main bronchus about 25 mm) ...
TRACHEA_MIN_DIAMETER_MM, TRACHEA_MIN_LENGTH_MM = 8.0, 30.0

#: ... and runs within this angle (degrees) of the body's long axis. The parse calls the
#: cranial-most branch the root whatever it is: a mask holding only a main bronchus has that
#: bronchus as its root, and the main bronchi leave the carina at about 20-30 (right) and
#: 40-50 (left) degrees from the trachea. The labelled real trees measure 15 (atm_001) and 18
#: (cip_ct64) degrees.
TRACHEA_MAX_TILT_DEG = 30.0

#: A mask holding more than this (mL) has leaked into the lungs: the lumen of the whole
#: conducting airway, trachea to terminal bronchioles, is about 150 mL in an adult (the
#: anatomical dead space, which also counts the mouth and pharynx).
LEAK_VOLUME_ML = 150.0

#: The bar of issue 33 for a mask of a real CT without label: the trachea found and, in the
#: parse of its largest component, at least this many branches of generation 1 (both main
#: bronchi) and 3 (segmental, as the issue counts them), at least :data:`BAR_MIN_LOBAR` lobar
#: bronchi (:func:`lobar_bronchi`), and no leak (under :data:`LEAK_VOLUME_ML`). The generations
#: are those of the parse (:func:`deeptree.tree.parse_tree`, anatomical root).
BAR_MIN_BRANCHES = {1: 2, 3: 10}

#: The bar's lobar bronchi: one per lobe. They are not one generation of the parse: a typical
#: tree has 4 branches of generation 2 (right upper lobe, bronchus intermedius, left upper and
#: left lower lobe), and the middle and right lower lobe bronchi branch off the intermedius
#: at generation 3. The atm_001 label has 1, 2, 4 and 12 branches of generations 0-3 and its
#: 5 lobar bronchi.
BAR_MIN_LOBAR = 5


def _descendants(tree, branch_id: int) -> int:
    """Number of branches below ``branch_id`` in a parsed tree."""
    count, stack = 0, list(tree.branches[branch_id].children)
    while stack:
        count += 1
        stack.extend(tree.branches[stack.pop()].children)
    return count


def _world_centroid(tree, branch_id: int, affine: np.ndarray | None) -> np.ndarray:
    """Mean world position (mm, RAS+) of a branch's skeleton voxels."""
    points = np.argwhere(tree.skeleton_labels == branch_id).astype(float)
    if affine is None:  # the voxel axes taken as RAS, scaled by the voxel size
        return points.mean(axis=0) * np.asarray(tree.spacing, float)
    affine = np.asarray(affine, float)
    return points.mean(axis=0) @ affine[:3, :3].T + affine[:3, 3]


def bronchus_intermedius(tree, affine: np.ndarray | None = None) -> int | None:
    """The bronchus intermedius of a parsed tree: the right main bronchus's continuation.

    The right main bronchus is the generation-1 branch furthest to the patient's right
    (largest RAS x of its skeleton's centroid); the intermedius is its child with the most
    branches below it (ties: the more caudal one), the other child being the right upper lobe
    bronchus.

    Parameters
    ----------
    tree : deeptree.tree.AirwayTree
        Parsed with the anatomical root (:func:`deeptree.tree.parse_tree`).
    affine : ndarray (4, 4), optional
        Voxel-to-world (RAS+) transform of the parsed mask; None: the voxel axes are taken as
        RAS (i toward the patient's right), scaled by ``tree.spacing``.

    Returns
    -------
    int or None
        Its branch id; None when there is no generation-1 branch or the right one has fewer
        than two children.
    """
    main = [b.id for b in tree.branches.values() if b.generation == 1]
    if not main:
        return None
    right = max(main, key=lambda b: _world_centroid(tree, b, affine)[0])
    children = tree.branches[right].children
    if len(children) < 2:
        return None
    return max(
        children, key=lambda c: (_descendants(tree, c), -_world_centroid(tree, c, affine)[2])
    )


def lobar_bronchi(tree, affine: np.ndarray | None = None) -> int:
    """How many lobar bronchi a parsed tree reaches (0-5 in a normal tree).

    The branches of generation 2 (children of the main bronchi, and a tracheal bronchus)
    count, except the bronchus intermedius (:func:`bronchus_intermedius`), which stands for
    the middle and lower lobe bronchi it divides into: it counts as many of them as it has
    children, at most 2. The parse joins junctions closer than a few voxels, so the
    intermedius of a real tree often shows 3-4 children (middle lobe, the lower lobe's
    superior segment and basal trunk: atm_001); a mask that stops at the intermedius reaches
    3 lobar bronchi. The middle lobe bronchus is not told from a lower-lobe branch: a mask
    without the middle lobe but with two lower-lobe branches off the intermedius counts 5.

    Parameters
    ----------
    tree : deeptree.tree.AirwayTree
        Parsed with the anatomical root (:func:`deeptree.tree.parse_tree`).
    affine : ndarray (4, 4), optional
        As for :func:`bronchus_intermedius`.

    Returns
    -------
    int
    """
    generation2 = {b.id for b in tree.branches.values() if b.generation == 2}
    intermedius = bronchus_intermedius(tree, affine)
    if intermedius is None:
        return len(generation2)
    return len(generation2 - {intermedius}) + min(2, len(tree.branches[intermedius].children))


def describe_tree(mask: np.ndarray, spacing, affine: np.ndarray | None = None) -> dict:
    """What a mask shows without a label.

    Parameters
    ----------
    mask : ndarray, shape (I, J, K), binary
    spacing : 3 floats (mm)
    affine : ndarray (4, 4), optional
        Says which end is cranial (:func:`deeptree.tree.parse_tree`).

    Returns
    -------
    dict
        ``components`` (26-connected), ``volume_ml``, ``trachea_found`` (bool: the root branch
        at least :data:`TRACHEA_MIN_DIAMETER_MM` wide and :data:`TRACHEA_MIN_LENGTH_MM` long,
        its centreline within :data:`TRACHEA_MAX_TILT_DEG` of the cranio-caudal axis),
        ``trachea_diameter_mm``, ``trachea_length_mm``, ``trachea_tilt_deg`` (angle of the root
        branch's centreline to the cranio-caudal axis), ``generations_reached`` (deepest
        generation of the parsed largest component; -1 for an empty mask),
        ``branches_per_generation`` (dict generation -> count, of the parse of the largest
        6-connected component: its branches are in one component), ``lobar_bronchi`` (their
        number, :func:`lobar_bronchi`), and :func:`tree_bar`'s
        ``bar`` (each criterion of the bar, met or not) and ``bar_met``.
    """

    binary = np.asarray(mask) > 0
    _, n = label_components(binary)
    out = {
        "components": int(n),
        "volume_ml": float(binary.sum() * np.prod(spacing) / 1000.0),
        "trachea_found": False,
        "trachea_diameter_mm": None,
        "trachea_length_mm": None,
        "trachea_tilt_deg": None,
        "generations_reached": -1,
        "branches_per_generation": {},
        "lobar_bronchi": 0,
    }
    if n == 0:
        return out | tree_bar(out)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = parse_tree(binary, spacing, affine=affine)
    except Exception as err:  # a mask too small or shapeless to parse: say so, keep the rest
        out["parse_error"] = f"{type(err).__name__}: {err}"
        return out | tree_bar(out)
    trachea = tree.branches[tree.trachea_id]
    counts: dict[int, int] = {}
    for branch in tree.branches.values():
        counts[branch.generation] = counts.get(branch.generation, 0) + 1
    tilt = branch_tilt_deg(tree, tree.trachea_id, affine)
    out.update(
        trachea_found=bool(
            trachea.diameter_mm >= TRACHEA_MIN_DIAMETER_MM
            and trachea.length_mm >= TRACHEA_MIN_LENGTH_MM
            and tilt <= TRACHEA_MAX_TILT_DEG
        ),
        trachea_diameter_mm=float(trachea.diameter_mm),
        trachea_length_mm=float(trachea.length_mm),
        trachea_tilt_deg=float(tilt),
        generations_reached=int(max(counts)),
        branches_per_generation={int(g): counts[g] for g in sorted(counts)},
        lobar_bronchi=lobar_bronchi(tree, affine),
    )
    return out | tree_bar(out)


def tree_bar(
    described: dict, min_branches: dict | None = None, min_lobar: int | None = None
) -> dict:
    """Whether a described mask meets the bar of issue 33, criterion by criterion.

    Parameters
    ----------
    described : dict
        :func:`describe_tree`'s figures (``trachea_found``, ``volume_ml``,
        ``branches_per_generation``, ``lobar_bronchi``; the generation keys may be ints or,
        read back from JSON, strings).
    min_branches : dict int -> int, optional
        Least number of branches per generation; default :data:`BAR_MIN_BRANCHES`.
    min_lobar : int, optional
        Least number of lobar bronchi; default :data:`BAR_MIN_LOBAR`.

    Returns
    -------
    dict
        ``bar``: ``{"trachea": bool, "generation 1": bool, "lobar": bool, "generation 3":
        bool, "no leak": bool}`` (a generation's criterion: at least ``min_branches[g]``
        branches of that generation; ``lobar``: at least ``min_lobar`` lobar bronchi), and
        ``bar_met``: all of them.
    """
    need = BAR_MIN_BRANCHES if min_branches is None else min_branches
    lobar = BAR_MIN_LOBAR if min_lobar is None else min_lobar
    counts = {int(g): int(c) for g, c in described.get("branches_per_generation", {}).items()}
    bar = {"trachea": bool(described["trachea_found"])}
    bar |= {f"generation {g}": counts.get(g, 0) >= need[g] for g in sorted(need) if g < 2}
    bar["lobar"] = int(described.get("lobar_bronchi", 0)) >= lobar
    bar |= {f"generation {g}": counts.get(g, 0) >= need[g] for g in sorted(need) if g >= 2}
    bar["no leak"] = bool(described["volume_ml"] < LEAK_VOLUME_ML)
    return {"bar": bar, "bar_met": all(bar.values())}


def branch_tilt_deg(tree, branch_id: int, affine: np.ndarray | None = None) -> float:
    """Angle (degrees, 0-90) between a branch's centreline and the cranio-caudal axis.

    The centreline's direction is the first principal axis of the branch's skeleton voxels in
    world coordinates (mm).

    Parameters
    ----------
    tree : deeptree.tree.AirwayTree
    branch_id : int
    affine : ndarray (4, 4), optional
        Voxel-to-world (RAS+) transform; None: axes scaled by ``tree.spacing``, k cranial.

    Returns
    -------
    float
        NaN for a branch of fewer than 2 skeleton voxels.
    """
    points = np.argwhere(tree.skeleton_labels == branch_id).astype(float)
    if len(points) < 2:
        return float("nan")
    linear = np.asarray(affine, float)[:3, :3] if affine is not None else np.diag(tree.spacing)
    world = points @ linear.T
    _, _, axes = np.linalg.svd(world - world.mean(axis=0), full_matrices=False)
    cosine = abs(axes[0][2]) / np.linalg.norm(axes[0])
    return float(np.degrees(np.arccos(np.clip(cosine, 0.0, 1.0))))
