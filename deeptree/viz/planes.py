"""Figures for the notebooks and interactive inspection: matplotlib planes, MIPs and
overlays, ipywidgets slice viewers, and napari layers, screenshots and a breakage navigator.

Display conventions, the same in every figure of the project:

* arrays are in nibabel's (i, j, k) order with k the cranio-caudal axis (head up);
  slices are shown in voxel orientation with k pointing up, and the physical spacing sets
  the aspect ratio (no resampling); napari layers get the spacing (mm) as scale;
* colours (:data:`COLORS`): true positive red, false negative blue, false positive green
  (the paper's Fig. 3); the three anatomy classes in fixed colours (:data:`CLASS_COLORS`);
  the attention map as a translucent heat map; breakage centres magenta.

Overlays (``overlays=`` of :func:`show_planes`, :func:`slice_slider`, :func:`slice_viewer`)
map a legend name to ``(mask, colour)`` or, for label volumes, ``(labels, {value: colour})``
or ``(labels, {value: colour}, {value: legend name})``; :func:`case_overlays` builds them for
a case (ground truth, prediction comparison, anatomy) in the project's colours.

The napari parts live in :mod:`deeptree.napari_viz` (layers, renderings, screenshots),
:mod:`deeptree.napari_case` (a whole case: :func:`show_case`) and
:mod:`deeptree.napari_navigator` (the breakage navigator), the ipywidgets viewers in
:mod:`deeptree.slice_viewer`; all are reachable from here (``viz.render_3d``,
``viz.show_case``, ``viz.BreakageNavigator``, ``viz.screenshot``, ``viz.slice_viewer``, ...).
napari needs a display: under CI it runs inside ``xvfb-run`` (see the Makefile). A hidden
viewer's first screenshot is blank unless its window is grabbed once; :func:`screenshot`
does that.

Case folders (what ``deeptree view CASE_OR_DATASET [--case ID] [--add KIND=PATH]`` and
napari's File > Open read; full description in :mod:`deeptree.view_case`): a folder holding
any of ``ct.nii.gz``, ``gt.nii.gz`` (or ``airway.nii.gz``, ``label.nii.gz``), ``lung.nii.gz``,
``anatomy.nii.gz``, ``broken.nii.gz`` and ``breakage.nii.gz`` (simulated breakages),
``stage1.nii.gz``, ``final.nii.gz``, ``attention.nii.gz``, ``centres.json`` (or ``.csv``);
a run folder of such case folders; or an ATM'22-layout dataset (``imagesTr/ID_0000.nii.gz``,
``labelsTr/ID.nii.gz``, and ``<kind>Tr/ID.nii.gz``, ``<kind>/ID.nii.gz``,
``predictions/<kind>/ID.nii.gz`` or ``ID_<kind>.nii.gz`` for the other kinds). Missing
files are skipped with a message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap, to_rgba

#: Fixed colours of the project (matplotlib colour names or hex).
COLORS: dict[str, str] = {
    "tp": "#e41a1c",  # true positive: red (paper Fig. 3)
    "fn": "#377eb8",  # false negative: blue
    "fp": "#4daf4a",  # false positive: green
    "class1": "#ffb000",  # trachea + main bronchi
    "class2": "#dc267f",  # bronchi > 2 mm
    "class3": "#00b4d8",  # bronchi <= 2 mm
    "airway": "#f4a261",
    "gap": "#ff00ff",  # simulated or detected breakage (paper: pink arrows)
    "lung": "#8ecae6",
    "attention": "magma",  # colormap name for H_bar
}

#: Anatomy class -> colour.
CLASS_COLORS: dict[int, str] = {1: COLORS["class1"], 2: COLORS["class2"], 3: COLORS["class3"]}

#: CT window (HU) that shows airway lumen, wall and lung parenchyma.
LUNG_WINDOW: tuple[float, float] = (-1000.0, 200.0)


# --------------------------------------------------------------------------------------------
# matplotlib
# --------------------------------------------------------------------------------------------
_PLANES = {
    # name: (axis fixed, (row axis, column axis) of the shown image after transposition)
    "axial": 2,
    "coronal": 1,
    "sagittal": 0,
}


def _plane(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The 2D slice of ``volume`` in ``plane`` at ``index``, transposed so that rows run
    along the second remaining axis (shown with ``origin="lower"``)."""
    axis = _PLANES[plane]
    return np.take(volume, index, axis=axis).T


def _aspect(spacing: Sequence[float], plane: str) -> float:
    axis = _PLANES[plane]
    col_axis, row_axis = [a for a in range(3) if a != axis]
    return float(spacing[row_axis]) / float(spacing[col_axis])


def _overlay_rgba(mask: np.ndarray, color, alpha: float) -> np.ndarray:
    """RGBA float image of a mask in one colour, or of a label image with ``color`` a mapping
    value -> colour (other values transparent)."""
    mask = np.asarray(mask)
    rgba = np.zeros(mask.shape + (4,), dtype=np.float32)
    if isinstance(color, Mapping):
        for value, c in color.items():
            rgba[mask == value] = to_rgba(c, alpha)
    else:
        rgba[mask.astype(bool)] = to_rgba(color, alpha)
    return rgba


def _legend_entries(overlays: Mapping) -> list[tuple[str, str]]:
    """(legend text, colour) of each overlay, one per label value for label overlays."""
    entries = []
    for name, spec in overlays.items():
        color = spec[1]
        if isinstance(color, Mapping):
            names = spec[2] if len(spec) > 2 else {}
            entries += [(names.get(v, f"{name} {v}"), c) for v, c in color.items()]
        else:
            entries.append((name, color))
    return entries


def _draw_legend(fig, overlays: Mapping) -> None:
    entries = _legend_entries(overlays)
    if entries:
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for _, c in entries]
        fig.legend(
            handles,
            [t for t, _ in entries],
            loc="lower center",
            ncol=min(len(entries), 6),
            frameon=False,
        )


def show_planes(
    volume: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    overlays: Mapping[str, tuple] | None = None,
    index: Sequence[int] | None = None,
    window: tuple[float, float] | None = LUNG_WINDOW,
    alpha: float = 0.6,
    title: str | None = None,
    cmap: str = "gray",
):
    """Axial, coronal and sagittal slices of a volume, with optional mask overlays.

    Parameters
    ----------
    volume : ndarray, shape (I, J, K)
        CT in HU (or any scalar volume).
    spacing : 3 floats
        Voxel size in mm; sets each panel's aspect ratio.
    overlays : mapping name -> (mask, colour) or (labels, {value: colour}[, {value: name}])
        Masks (or label volumes) of the volume's shape drawn in translucent colour, with a
        legend; see :func:`case_overlays`.
    index : 3 ints, optional
        Slice indices (i, j, k); default: the centre, or the centre of mass of the first
        overlay when given.
    window : (low, high) or None
        Display window in the volume's units (default the lung window, HU).
    alpha : float
        Overlay opacity.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    volume = np.asarray(volume)
    overlays = dict(overlays or {})
    if index is None:
        index = _default_index(volume, overlays)
    vmin, vmax = window if window is not None else (float(volume.min()), float(volume.max()))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    for ax, plane in zip(axes, _PLANES, strict=True):
        i = index[_PLANES[plane]]
        ax.imshow(
            _plane(volume, plane, i),
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            origin="lower",
            aspect=_aspect(spacing, plane),
            interpolation="nearest",
        )
        for mask, color, *_ in overlays.values():
            ax.imshow(
                _overlay_rgba(_plane(mask, plane, i), color, alpha),
                origin="lower",
                aspect=_aspect(spacing, plane),
                interpolation="nearest",
            )
        ax.set_title(f"{plane} (slice {i})")
        ax.set_xticks([])
        ax.set_yticks([])
    _draw_legend(fig, overlays)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 if overlays else 0, 1, 1))
    return fig


def mip(
    volume: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    axis: int = 1,
    ax=None,
    cmap: str = "bone",
    title: str | None = None,
    window: tuple[float, float] | None = None,
):
    """Maximum intensity projection of a volume or mask along one axis.

    Parameters
    ----------
    volume : ndarray, shape (I, J, K)
        A mask (bool/uint8; anatomy labels project to their maximum class) or a scalar
        volume. For an airway in a CT, pass ``-ct`` or a mask: air is dark in HU.
    spacing : 3 floats
        mm, for the aspect ratio.
    axis : int
        Projection axis: 1 = coronal view (default), 0 = sagittal, 2 = axial.
    ax : matplotlib Axes, optional
        Draw into it; otherwise a new figure is made.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plane = {2: "axial", 1: "coronal", 0: "sagittal"}[axis]
    projection = np.asarray(volume).max(axis=axis).T
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 5))
    else:
        fig = ax.figure
    vmin, vmax = window if window is not None else (None, None)
    ax.imshow(
        projection,
        cmap=cmap,
        origin="lower",
        aspect=_aspect(spacing, plane),
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"MIP ({plane})")
    return fig


def comparison_labels(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Voxel-wise comparison of a prediction with ground truth.

    Parameters
    ----------
    pred, gt : ndarray of bool or uint8 {0, 1}, shape (I, J, K)

    Returns
    -------
    ndarray of uint8, shape (I, J, K)
        0 background, 1 true positive, 2 false negative, 3 false positive
        (coloured red, blue, green by :data:`COMPARISON_COLORS`).
    """
    pred = np.asarray(pred).astype(bool)
    gt = np.asarray(gt).astype(bool)
    if pred.shape != gt.shape:
        raise ValueError(f"comparison_labels: pred shape {pred.shape} != gt shape {gt.shape}")
    out = np.zeros(pred.shape, dtype=np.uint8)
    out[pred & gt] = 1
    out[~pred & gt] = 2
    out[pred & ~gt] = 3
    return out


#: Colours of :func:`comparison_labels`.
COMPARISON_COLORS: dict[int, str] = {1: COLORS["tp"], 2: COLORS["fn"], 3: COLORS["fp"]}


def distinct_colors(
    values, cmap: str = "tab20", fixed: Mapping[int, str] | None = None
) -> dict[int, str]:
    """Distinct colours for many labels (branches, connected components), cycling through a
    qualitative colormap.

    Parameters
    ----------
    values : iterable of int
        Label values (e.g. branch ids); 0 gets no colour unless listed in ``fixed``.
    cmap : str
        A qualitative matplotlib colormap ("tab20", "tab10", ...).
    fixed : mapping value -> colour, optional
        Colours that override the cycle (e.g. ``{1: "#bbbbbb"}`` for the main tree).

    Returns
    -------
    dict int -> str
        Hex colours, usable by :func:`label_cmap` and napari label layers.
    """
    from matplotlib.colors import to_hex

    palette = plt.get_cmap(cmap)
    n = getattr(palette, "N", 20)
    colors = {int(v): to_hex(palette(int(v) % n)) for v in values if int(v) != 0}
    colors.update({int(k): c for k, c in (fixed or {}).items()})
    return colors


def label_cmap(colors: Mapping[int, str]) -> ListedColormap:
    """A matplotlib colormap for a small label volume: 0 transparent, k -> ``colors[k]``."""
    n = max(colors) + 1
    table = [(0.0, 0.0, 0.0, 0.0)] * n
    for k, c in colors.items():
        table[k] = to_rgba(c)
    return ListedColormap(table)


def _default_index(volume: np.ndarray, overlays: Mapping) -> tuple[int, int, int]:
    first = next(iter(overlays.values()), None)
    if first is not None and np.any(first[0]):
        return tuple(int(round(c)) for c in np.argwhere(first[0]).mean(axis=0))
    return tuple(s // 2 for s in volume.shape)


#: Legend names of :func:`comparison_labels` values and of the anatomy classes.
COMPARISON_NAMES: dict[int, str] = {1: "true positive", 2: "false negative", 3: "false positive"}
CLASS_NAMES: dict[int, str] = {
    1: "trachea + main bronchi",
    2: "bronchi > 2 mm",
    3: "bronchi <= 2 mm",
}


def case_overlays(
    gt: np.ndarray | None = None,
    pred: np.ndarray | None = None,
    anatomy: np.ndarray | None = None,
    *,
    lung: np.ndarray | None = None,
) -> dict[str, tuple]:
    """Overlays of a case for :func:`show_planes` / :func:`slice_viewer`, in the colours of
    the napari layers of :func:`~deeptree.napari_case.show_case`.

    Parameters
    ----------
    gt, pred : ndarray of bool/uint8, shape (I, J, K), optional
        Ground truth and prediction. Both: one comparison overlay (TP red, FN blue, FP green);
        one of them: a mask overlay in the airway colour.
    anatomy : ndarray of uint8 {0, 1, 2, 3}, optional
        Anatomy classes in :data:`CLASS_COLORS`.
    lung : ndarray of bool/uint8, optional

    Returns
    -------
    dict name -> overlay tuple
        Drawn in order: lung, anatomy, then the airway / comparison on top.
    """
    overlays: dict[str, tuple] = {}
    if lung is not None:
        overlays["lung"] = (np.asarray(lung).astype(bool), COLORS["lung"])
    if anatomy is not None:
        overlays["anatomy"] = (np.asarray(anatomy), CLASS_COLORS, CLASS_NAMES)
    if gt is not None and pred is not None:
        overlays["comparison"] = (comparison_labels(pred, gt), COMPARISON_COLORS, COMPARISON_NAMES)
    elif gt is not None:
        overlays["ground truth"] = (np.asarray(gt).astype(bool), COLORS["airway"])
    elif pred is not None:
        overlays["prediction"] = (np.asarray(pred).astype(bool), COLORS["airway"])
    return overlays


def label_mip(
    labels: np.ndarray,
    colors: Mapping[int, str],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    axis: int = 1,
    priority: Sequence[int] | None = None,
    names: Mapping[int, str] | None = None,
    ax=None,
    title: str | None = None,
):
    """Projection of a label volume along one axis, each pixel in the colour of the most
    important label on its ray.

    Parameters
    ----------
    labels : ndarray of int, shape (I, J, K)
    colors : mapping value -> colour
        Values not in the mapping (and 0) are not drawn.
    spacing : 3 floats
        mm, for the aspect ratio.
    axis : int
        1 = coronal view (default), 0 = sagittal, 2 = axial.
    priority : sequence of values, optional
        Most important first (default: the order of ``colors``). For a comparison,
        ``(2, 3, 1)`` puts missed (FN) and false branches over the true positives.
    names : mapping value -> legend text, optional
        Adds a legend.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    labels = np.asarray(labels)
    plane = {2: "axial", 1: "coronal", 0: "sagittal"}[axis]
    order = list(priority) if priority is not None else list(colors)
    shown = np.zeros(labels.shape[:axis] + labels.shape[axis + 1 :], dtype=labels.dtype)
    for value in reversed(order):  # paint the least important first
        shown[(labels == value).any(axis=axis)] = value
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 5))
    else:
        fig = ax.figure
    ax.set_facecolor("black")
    ax.imshow(
        _overlay_rgba(shown.T, dict(colors), 1.0),
        origin="lower",
        aspect=_aspect(spacing, plane),
        interpolation="nearest",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"projection ({plane})")
    if names:
        handles = [plt.Rectangle((0, 0), 1, 1, color=colors[v]) for v in names]
        ax.legend(handles, list(names.values()), loc="lower right", fontsize=8, framealpha=0.6)
    return fig


def comparison_mip(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    axis: int = 1,
    ax=None,
    title: str | None = None,
):
    """Projection of a prediction compared with ground truth: true positive red, false
    negative blue, false positive green (paper Fig. 3); errors drawn over true positives.

    Parameters
    ----------
    pred, gt : ndarray of bool/uint8, shape (I, J, K)
    spacing : 3 floats
        mm.
    axis : int
        1 = coronal view (default), 0 = sagittal, 2 = axial.
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    return label_mip(
        comparison_labels(pred, gt),
        COMPARISON_COLORS,
        spacing,
        axis=axis,
        priority=(2, 3, 1),
        names=COMPARISON_NAMES,
        ax=ax,
        title=title,
    )


def mip_overlay(
    mask: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    heat: np.ndarray | None = None,
    centres: np.ndarray | None = None,
    axis: int = 1,
    ax=None,
    title: str | None = None,
    heat_alpha: float = 0.7,
):
    """Projection of a mask in grey with a translucent heat map (the attention map) and
    points (breakage centres) on top.

    Parameters
    ----------
    mask : ndarray of bool/uint8, shape (I, J, K)
        E.g. a stage-1 prediction or a broken mask.
    spacing : 3 floats
        mm.
    heat : ndarray of float in [0, 1], shape (I, J, K), optional
        Maximum along the rays, in the "magma" colormap, transparent where 0.
    centres : ndarray, shape (n, 3), optional
        Voxel (i, j, k), drawn as magenta circles.
    axis : int
        1 = coronal view (default), 0 = sagittal, 2 = axial.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    plane = {2: "axial", 1: "coronal", 0: "sagittal"}[axis]
    aspect = _aspect(spacing, plane)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 5))
    else:
        fig = ax.figure
    ax.imshow(
        np.asarray(mask).astype(np.uint8).max(axis=axis).T,
        cmap="gray",
        vmin=0,
        vmax=1.5,
        origin="lower",
        aspect=aspect,
        interpolation="nearest",
    )
    if heat is not None:
        projection = np.asarray(heat, dtype=np.float32).max(axis=axis).T
        rgba = plt.get_cmap(COLORS["attention"])(projection)
        rgba[..., 3] = heat_alpha * np.clip(projection, 0, 1)
        ax.imshow(rgba, origin="lower", aspect=aspect, interpolation="nearest")
    if centres is not None and len(centres):
        centres = np.asarray(centres).reshape(-1, 3)
        cols = [a for a in range(3) if a != axis]
        ax.scatter(
            centres[:, cols[0]],
            centres[:, cols[1]],
            s=60,
            facecolors="none",
            edgecolors=COLORS["gap"],
            linewidths=1.5,
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"MIP ({plane})")
    return fig


def show_slices(
    panels: Mapping[str, tuple],
    *,
    aspect: float = 1.0,
    colorbar: bool = True,
    title: str | None = None,
):
    """Side-by-side 2D slices of different quantities on the same grid.

    Parameters
    ----------
    panels : mapping title -> (image, cmap, (low, high))
        ``image`` is a 2D array in (i, j) order of one axial slice (shown with j up);
        ``cmap`` a matplotlib colormap name or object (e.g. :func:`label_cmap`);
        ``(low, high)`` the display range. NaN pixels are left blank.
    aspect : float
        Pixel aspect ratio (spacing along j / spacing along i).
    colorbar : bool
        Add a colour bar to the last panel.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    image = None
    for ax, (name, (array, cmap, (low, high))) in zip(axes[0], panels.items(), strict=True):
        image = ax.imshow(np.asarray(array, dtype=float).T, origin="lower", cmap=cmap, vmin=low,
                          vmax=high, aspect=aspect, interpolation="nearest")
        ax.set(title=name, xticks=[], yticks=[])
    if colorbar and image is not None:
        fig.colorbar(image, ax=axes[0][-1], shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def is_blank(image: np.ndarray, min_std: float = 1.0) -> bool:
    """True if an RGB(A) image is (nearly) uniform: its RGB standard deviation is below
    ``min_std`` (on the 0-255 scale)."""
    image = np.asarray(image)
    return float(image[..., :3].std()) < min_std


def show_image(image: np.ndarray, title: str | None = None, ax=None):
    """Show an RGB(A) picture (a napari rendering) with matplotlib.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(image.shape[1] / 100, image.shape[0] / 100))
    else:
        fig = ax.figure
    ax.imshow(image)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


# --------------------------------------------------------------------------------------------
# napari and ipywidgets parts (other modules), reachable here without importing napari or
# ipywidgets up front
# --------------------------------------------------------------------------------------------
#: Where the names that this module serves lazily live (they import this module, so they
#: cannot be imported at its top; napari and ipywidgets load only when used).
_LAZY_MODULES: dict[str, tuple[str, ...]] = {
    "deeptree.slice_viewer": ("slice_slider", "slice_viewer"),
    "deeptree.napari_viz": (
        "LabelLayer",
        "MaskLayer",
        "ImageLayer",
        "add_layers",
        "FRONTAL_VIEW",
        "screenshot",
        "fit_window",
        "fit_view",
        "render_3d",
        "napari_screenshot",
        "render_comparison",
        "crop_layers",
        "save_png",
    ),
    "deeptree.napari_case": (
        "LAYER_NAMES",
        "KIND_KEY",
        "case_layer_data",
        "add_layer_data",
        "show_case",
        "show_view_case",
    ),
    "deeptree.napari_navigator": ("BreakageNavigator", "add_breakage_navigator"),
}
_LAZY_NAMES = {name: module for module, names in _LAZY_MODULES.items() for name in names}


def __getattr__(name: str):
    # PEP 562: ``viz.render_3d``, ``viz.show_case``, ... are imported on first use
    if name in _LAZY_NAMES:
        import importlib

        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))
