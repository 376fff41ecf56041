"""DeepTree: accurate airway tree segmentation in chest CT.

Two stages (see ``notebooks/`` for the tutorial and ``../DESIGN`` notes in the
README):

1. an anatomy-aware multi-class 3D U-Net trained with the General Union Loss;
2. a breakage-connection network fed with CT and a breakage attention map.

The package is thin on purpose: pure functions on numpy arrays in the middle
(:mod:`deeptree.tree`, :mod:`deeptree.anatomy`, :mod:`deeptree.breakage`,
:mod:`deeptree.attention`, :mod:`deeptree.metrics`), I/O at the edges
(:mod:`deeptree.io`, :mod:`deeptree.cli`), torch only in the learning parts.
"""

from deeptree.threads import apply_policy

__version__ = "0.1.0"

# Before anything imports torch: OpenMP threads that sleep instead of spinning, as many as
# there are free cores (deeptree/threads.py says why and what an explicit setting changes).
apply_policy()
