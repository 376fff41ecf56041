"""Colours, palettes and names of every figure of the project (matplotlib and napari).

True positive red, false negative blue, false positive green (the paper's Fig. 3); the three
anatomy classes in fixed colours; breakages magenta; the attention map as a heat map.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
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


#: Colours of :func:`~deeptree.viz.planes.comparison_labels`.
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


#: Legend names of :func:`~deeptree.viz.planes.comparison_labels` values and of the anatomy classes.
COMPARISON_NAMES: dict[int, str] = {1: "true positive", 2: "false negative", 3: "false positive"}


#: Colours of :func:`~deeptree.stage2.figures.repair_labels`: kept stage-1 voxels, voxels added by the connector
#: (the repaired gaps; pink as the paper's Fig. 3 arrows), stage-1 pieces left out.
REPAIR_COLORS: dict[int, str] = {1: "#e8c39e", 2: "#ff2fd0", 3: "#7f7f7f"}


REPAIR_NAMES: dict[int, str] = {1: "stage 1 (kept)", 2: "added by stage 2", 3: "stage 1, discarded"}


SOURCE_NAMES: dict[int, str] = {
    1: "stage-1 false positive, touching the GT",
    2: "stage-1 false positive, elsewhere",
    3: "joined stage-1 piece, in the GT",
    4: "joined stage-1 piece, outside the GT",
    5: "drawn by the connector, in the GT",
    6: "drawn by the connector, outside the GT",
}


SOURCE_COLORS: dict[int, str] = {
    1: "#ffbf00", 2: "#2ca02c", 3: "#9ecae1", 4: "#d62728", 5: "#6baed6", 6: "#ff2fd0",
}  # fmt: skip


#: Colours of :func:`~deeptree.stage2.figures.sample_labels`: broken airway, removed gap voxels ``Y^B`` (red: the
#: target), simulated fragments (green: false positives, as in the paper's Fig. 3).
SAMPLE_COLORS: dict[int, str] = {1: "#e8c39e", 2: "#ff2020", 3: "#20c020"}


SAMPLE_NAMES: dict[int, str] = {1: "broken airway", 2: "gap Y^B (target)", 3: "fragments"}
