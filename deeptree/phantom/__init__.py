"""Synthetic airway CT: procedural airway trees and chest CT simulated around them.

The embedded default dataset of the project (notebook 01). A phantom case is a
chest CT in Hounsfield units with its exact airway lumen ground truth, a lung mask and the
tree as data (branch id, parent, generation, end points, radius), in the ATM'22 layout.

Axes and orientation: arrays are (i, j, k); the affine is RAS with the spacing on the
diagonal, so i runs towards the patient's right, j anterior, and k towards the head: the
trachea is at high k (cranial end), the diaphragm at low k.

Parts
-----
* :mod:`~deeptree.phantom.thorax`: lungs, mediastinum, bones, body wall as implicit shapes;
* :mod:`~deeptree.phantom.growth`: airway tree growth with Kitaoka's rules;
* :mod:`~deeptree.phantom.raster`: capsules on a grid with analytic partial volume;
* :mod:`~deeptree.phantom.ct`: HU model, vessels, plugs, point spread and noise;
* :mod:`~deeptree.phantom.around`: the same CT simulation around any airway mask;
* :mod:`~deeptree.phantom.cases`: profiles, one case, a resumable cohort on disk;
* :mod:`~deeptree.phantom.stats`, :mod:`~deeptree.phantom.figures`: realism checks and the
  figures of notebook 01.
"""

from deeptree.phantom.around import simulate_ct
from deeptree.phantom.cases import (
    PhantomCase,
    case_is_complete,
    case_paths,
    generate_case,
    generate_cohort,
    read_tree,
    write_case,
)
from deeptree.phantom.growth import (
    DIAMETER_EXPONENT,
    AirwayTreeSpec,
    Branch,
    grow_airway_tree,
    kitaoka_angle,
    wall_thickness_mm,
)
from deeptree.phantom.thorax import ThoraxGeometry
from deeptree.phantom_config import CTParams, PhantomProfile, phantom_profile

__all__ = [
    "DIAMETER_EXPONENT",
    "AirwayTreeSpec",
    "Branch",
    "CTParams",
    "PhantomCase",
    "PhantomProfile",
    "ThoraxGeometry",
    "case_is_complete",
    "case_paths",
    "generate_case",
    "generate_cohort",
    "grow_airway_tree",
    "kitaoka_angle",
    "phantom_profile",
    "read_tree",
    "simulate_ct",
    "wall_thickness_mm",
    "write_case",
]
