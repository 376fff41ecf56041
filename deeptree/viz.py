"""Figures for the notebooks: matplotlib planes and MIPs, an ipywidgets slice viewer, and
napari 3D renderings returned as images.

Display conventions, the same in every figure of the project:

* arrays are in nibabel's (i, j, k) order with k the cranio-caudal axis (head up);
  slices are shown in voxel orientation with k pointing up, and the physical spacing sets
  the aspect ratio (no resampling);
* colours (:data:`COLORS`): true positive red, false negative blue, false positive green
  (the paper's Fig. 3); the three anatomy classes in fixed colours; the attention map as a
  translucent heat map.

napari needs a display: under CI it runs inside ``xvfb-run`` (see the Makefile). A hidden
viewer's first screenshot is blank unless its window is grabbed once; :func:`render_3d`
does that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

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


def _overlay_rgba(mask: np.ndarray, color: str, alpha: float) -> np.ndarray:
    rgba = np.zeros(mask.shape + (4,), dtype=np.float32)
    rgba[mask.astype(bool)] = to_rgba(color, alpha)
    return rgba


def show_planes(
    volume: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    overlays: Mapping[str, tuple[np.ndarray, str]] | None = None,
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
    overlays : mapping name -> (mask, colour), optional
        Boolean masks of the volume's shape drawn in translucent colour, with a legend.
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
        first = next(iter(overlays.values()), None)
        if first is not None and np.any(first[0]):
            index = tuple(int(round(c)) for c in np.argwhere(first[0]).mean(axis=0))
        else:
            index = tuple(s // 2 for s in volume.shape)
    vmin, vmax = window if window is not None else (float(volume.min()), float(volume.max()))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    for ax, plane in zip(axes, _PLANES, strict=True):
        i = index[_PLANES[plane]]
        ax.imshow(_plane(volume, plane, i), cmap=cmap, vmin=vmin, vmax=vmax, origin="lower",
                  aspect=_aspect(spacing, plane), interpolation="nearest")
        for mask, color in overlays.values():
            ax.imshow(_overlay_rgba(_plane(mask, plane, i), color, alpha), origin="lower",
                      aspect=_aspect(spacing, plane), interpolation="nearest")
        ax.set_title(f"{plane} (slice {i})")
        ax.set_xticks([])
        ax.set_yticks([])
    if overlays:
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for _, c in overlays.values()]
        fig.legend(handles, list(overlays), loc="lower center", ncol=len(overlays), frameon=False)
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
    ax.imshow(projection, cmap=cmap, origin="lower", aspect=_aspect(spacing, plane),
              vmin=vmin, vmax=vmax, interpolation="nearest")
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


def label_cmap(colors: Mapping[int, str]) -> ListedColormap:
    """A matplotlib colormap for a small label volume: 0 transparent, k -> ``colors[k]``."""
    n = max(colors) + 1
    table = [(0.0, 0.0, 0.0, 0.0)] * n
    for k, c in colors.items():
        table[k] = to_rgba(c)
    return ListedColormap(table)


# --------------------------------------------------------------------------------------------
# ipywidgets
# --------------------------------------------------------------------------------------------
def slice_slider(
    volume: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    overlays: Mapping[str, tuple[np.ndarray, str]] | None = None,
    plane: str = "axial",
    window: tuple[float, float] = LUNG_WINDOW,
):
    """An ipywidgets slider that scrolls through the slices of a volume in a notebook.

    Parameters
    ----------
    volume : ndarray, shape (I, J, K)
    spacing : 3 floats, mm
    overlays : mapping name -> (mask, colour), optional
    plane : {"axial", "coronal", "sagittal"}
    window : (low, high)
        Display window (HU).

    Returns
    -------
    ipywidgets.VBox
        Slider + output area; display it as the last expression of a cell.
    """
    import ipywidgets as widgets

    if plane not in _PLANES:
        raise ValueError(f"slice_slider: plane must be one of {list(_PLANES)}, got {plane!r}")
    axis = _PLANES[plane]
    overlays = dict(overlays or {})
    slider = widgets.IntSlider(value=volume.shape[axis] // 2, min=0, max=volume.shape[axis] - 1,
                               description=plane, continuous_update=False)
    out = widgets.Output()

    def draw(index: int) -> None:
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5, 5))
            ax.imshow(_plane(volume, plane, index), cmap="gray", vmin=window[0], vmax=window[1],
                      origin="lower", aspect=_aspect(spacing, plane))
            for mask, color in overlays.values():
                ax.imshow(_overlay_rgba(_plane(mask, plane, index), color, 0.6), origin="lower",
                          aspect=_aspect(spacing, plane))
            ax.set_axis_off()
            ax.set_title(f"{plane} slice {index}")
            plt.show()

    slider.observe(lambda change: draw(change["new"]), names="value")
    draw(slider.value)
    return widgets.VBox([slider, out])


# --------------------------------------------------------------------------------------------
# napari
# --------------------------------------------------------------------------------------------
@dataclass
class LabelLayer:
    """A label volume shown as coloured 3D surfaces.

    Attributes
    ----------
    name : str
    labels : ndarray of int, shape (I, J, K)
        0 is background (transparent).
    colors : mapping label -> colour
        Labels missing from the mapping are not shown.
    opacity : float
    """

    name: str
    labels: np.ndarray
    colors: Mapping[int, str] = field(default_factory=lambda: {1: COLORS["airway"]})
    opacity: float = 1.0


def MaskLayer(name: str, mask: np.ndarray, color: str = COLORS["airway"], opacity: float = 1.0):
    """A binary mask as a :class:`LabelLayer` of one colour."""
    return LabelLayer(name, np.asarray(mask).astype(np.uint8), {1: color}, opacity)


@dataclass
class ImageLayer:
    """A scalar volume rendered in 3D (maximum intensity projection by default).

    Attributes
    ----------
    name : str
    volume : ndarray, shape (I, J, K)
    colormap : str
        A napari colormap name.
    contrast_limits : (low, high) or None
    opacity : float
    rendering : str
        napari's 3D rendering mode (``"mip"``, ``"attenuated_mip"``, ``"translucent"``, ...).
    """

    name: str
    volume: np.ndarray
    colormap: str = "gray"
    contrast_limits: tuple[float, float] | None = None
    opacity: float = 0.5
    rendering: str = "mip"


def add_layers(viewer, layers: Sequence[LabelLayer | ImageLayer], spacing: Sequence[float]) -> None:
    """Add :class:`LabelLayer` / :class:`ImageLayer` objects to a napari viewer, with the
    physical spacing (mm) as scale."""
    from napari.utils.colormaps import DirectLabelColormap

    scale = tuple(float(s) for s in spacing)
    for layer in layers:
        if isinstance(layer, LabelLayer):
            color_dict = {None: "transparent", 0: "transparent", **dict(layer.colors)}
            viewer.add_labels(np.asarray(layer.labels).astype(np.uint8, copy=False), name=layer.name,
                              scale=scale, opacity=layer.opacity,
                              colormap=DirectLabelColormap(color_dict=color_dict))
        elif isinstance(layer, ImageLayer):
            kwargs = {}
            if layer.contrast_limits is not None:
                kwargs["contrast_limits"] = layer.contrast_limits
            viewer.add_image(layer.volume, name=layer.name, scale=scale, colormap=layer.colormap,
                             opacity=layer.opacity, rendering=layer.rendering,
                             blending="additive", **kwargs)
        else:
            raise TypeError(f"add_layers: unsupported layer {type(layer).__name__}")


#: Camera angles (degrees) of the default view: k (head) up, looking along the j axis
#: (front or back depending on the affine), i across the picture.
FRONTAL_VIEW: tuple[float, float, float] = (90.0, 90.0, 0.0)


def screenshot(viewer, size: tuple[int, int] = (600, 800)) -> np.ndarray:
    """A non-blank screenshot of a (possibly hidden) napari viewer's canvas.

    Parameters
    ----------
    viewer : napari.Viewer
    size : (height, width)
        Window size in pixels; the canvas is slightly smaller (the window's menu bar).

    Returns
    -------
    ndarray of uint8, shape (h, w, 4)
        RGBA.

    Notes
    -----
    A viewer created with ``show=False`` returns a blank first screenshot unless its Qt window
    has been grabbed once; this function grabs it first.
    """
    # napari offers no public hook for these: hide the docks so the canvas fills the window,
    # and grab the hidden window once so that the canvas is really drawn.
    qt_viewer = viewer.window._qt_viewer
    for dock in (qt_viewer.dockLayerList, qt_viewer.dockLayerControls):
        dock.setVisible(False)
    window = viewer.window._qt_window
    window.resize(size[1], size[0])
    window.grab()
    return np.asarray(viewer.screenshot(canvas_only=True, flash=False))


def render_3d(
    layers: Sequence[LabelLayer | ImageLayer],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    angles: tuple[float, float, float] = FRONTAL_VIEW,
    zoom: float = 0.85,
    size: tuple[int, int] = (600, 800),
    crop: bool = True,
) -> np.ndarray:
    """Render layers in 3D with napari and return the picture.

    Parameters
    ----------
    layers : sequence of LabelLayer or ImageLayer
    spacing : 3 floats
        mm; every layer is scaled by it.
    angles : 3 floats
        napari camera angles in degrees (default: frontal view, head up).
    zoom : float
        Camera zoom relative to napari's fit-to-view (which fits the unrotated view, hence
        a default a little below 1).
    size : (height, width)
        Window size in pixels.
    crop : bool
        Crop all layers to the bounding box of the label layers first (default), so that
        the structure fills the picture.

    Returns
    -------
    ndarray of uint8, shape (height, width, 4)
        RGBA; show it with :func:`show_image`.
    """
    import napari

    if crop:
        layers = crop_layers(layers)
    viewer = napari.Viewer(show=False, ndisplay=3)
    try:
        add_layers(viewer, layers, spacing)
        viewer.reset_view()  # fits the view, and resets the angles: set them afterwards
        viewer.scene.camera.angles = angles
        viewer.scene.camera.zoom = viewer.scene.camera.zoom * zoom
        return screenshot(viewer, size)
    finally:
        viewer.close()


def crop_layers(layers: Sequence[LabelLayer | ImageLayer], margin: int = 4) -> list:
    """Crop every layer to the bounding box of all label voxels (plus ``margin`` voxels),
    so that a rendering fills the picture. Layers are returned as new objects; the arrays
    are views of the inputs."""
    masks = [np.asarray(layer.labels) != 0 for layer in layers if isinstance(layer, LabelLayer)]
    if not masks or not any(m.any() for m in masks):
        return list(layers)
    union = np.logical_or.reduce(masks)
    nonzero = np.argwhere(union)
    lo = np.maximum(nonzero.min(axis=0) - margin, 0)
    hi = np.minimum(nonzero.max(axis=0) + margin + 1, union.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    cropped = []
    for layer in layers:
        if isinstance(layer, LabelLayer):
            cropped.append(replace(layer, labels=np.asarray(layer.labels)[box]))
        else:
            cropped.append(replace(layer, volume=np.asarray(layer.volume)[box]))
    return cropped


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
