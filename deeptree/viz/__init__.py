"""Figures for the notebooks and interactive inspection, one module per kind:

* :mod:`~deeptree.viz.colors`: the project's colours, palettes and legend names;
* :mod:`~deeptree.viz.planes`: matplotlib planes, maximum-intensity projections, overlays;
* :mod:`~deeptree.viz.widgets`: ipywidgets slice viewers;
* :mod:`~deeptree.viz.napari_layers`: napari layers, 3D renderings and screenshots;
* :mod:`~deeptree.viz.napari_case`: a whole case in napari (:func:`show_case`);
* :mod:`~deeptree.viz.napari_navigator`: the breakage navigator;
* :mod:`~deeptree.viz.network_figure`: a sketch of the U-Net of a network config
  (:func:`draw_unet`);
* :mod:`~deeptree.viz.case_folder` and :mod:`~deeptree.viz.napari_reader`: case folders, as
  ``deeptree view`` and napari's File > Open read them.

The notebooks use this package as one namespace (``viz.show_planes``, ``viz.render_3d``,
``viz.show_case``, ...): the names below are those of the modules above. napari and
ipywidgets are imported only when a function that needs them runs, so importing this package
is cheap. napari needs a display: under CI it runs inside ``xvfb-run`` (see the Makefile).

Display conventions, the same in every figure: arrays are in nibabel's (i, j, k) order with k
the cranio-caudal axis (head up); slices are shown in voxel orientation with k pointing up,
and the physical spacing sets the aspect ratio (no resampling); napari layers get the spacing
(mm) as scale.
"""

from deeptree.viz.case_folder import ViewCase, load_view_case
from deeptree.viz.colors import (
    CLASS_COLORS,
    COLORS,
    COMPARISON_COLORS,
    COMPARISON_NAMES,
    LUNG_WINDOW,
    REPAIR_COLORS,
    REPAIR_NAMES,
    SAMPLE_COLORS,
    SAMPLE_NAMES,
    SOURCE_COLORS,
    SOURCE_NAMES,
    distinct_colors,
    label_cmap,
)
from deeptree.viz.napari_case import (
    KIND_KEY,
    LAYER_NAMES,
    add_layer_data,
    case_layer_data,
    show_case,
)
from deeptree.viz.napari_layers import (
    FRONTAL_VIEW,
    ImageLayer,
    LabelLayer,
    MaskLayer,
    add_layers,
    crop_layers,
    fit_view,
    fit_window,
    napari_screenshot,
    render_3d,
    render_comparison,
    save_png,
    screenshot,
)
from deeptree.viz.napari_navigator import BreakageNavigator, add_breakage_navigator
from deeptree.viz.network_figure import draw_unet
from deeptree.viz.planes import (
    case_overlays,
    comparison_labels,
    comparison_mip,
    is_blank,
    label_mip,
    mip,
    mip_overlay,
    show_image,
    show_planes,
    show_slices,
)
from deeptree.viz.widgets import slice_slider, slice_viewer

__all__ = [
    "BreakageNavigator",
    "ViewCase",
    "load_view_case",
    "CLASS_COLORS",
    "COLORS",
    "COMPARISON_COLORS",
    "COMPARISON_NAMES",
    "FRONTAL_VIEW",
    "ImageLayer",
    "KIND_KEY",
    "LAYER_NAMES",
    "LUNG_WINDOW",
    "LabelLayer",
    "MaskLayer",
    "REPAIR_COLORS",
    "REPAIR_NAMES",
    "SAMPLE_COLORS",
    "SAMPLE_NAMES",
    "SOURCE_COLORS",
    "SOURCE_NAMES",
    "add_breakage_navigator",
    "add_layer_data",
    "add_layers",
    "case_layer_data",
    "case_overlays",
    "comparison_labels",
    "comparison_mip",
    "crop_layers",
    "distinct_colors",
    "draw_unet",
    "fit_view",
    "fit_window",
    "is_blank",
    "label_cmap",
    "label_mip",
    "mip",
    "mip_overlay",
    "napari_screenshot",
    "render_3d",
    "render_comparison",
    "save_png",
    "screenshot",
    "show_case",
    "show_image",
    "show_planes",
    "show_slices",
    "slice_slider",
    "slice_viewer",
]
