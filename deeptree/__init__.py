"""DeepTree: accurate airway tree segmentation in chest CT, in two stages:

1. an anatomy-aware multi-class 3D U-Net trained with the General Union Loss;
2. a breakage-connection network fed with CT and a breakage attention map.

One folder or module per step of the method; each notebook teaches these modules:

======================  ==========================================================================
notebook                modules
======================  ==========================================================================
00 overview             :mod:`~deeptree.io`, :mod:`~deeptree.viz`, :mod:`~deeptree.report`
01 synthetic data       :mod:`~deeptree.phantom`, :mod:`~deeptree.evaluation.baselines`,
                        :mod:`~deeptree.metrics`
02 anatomy labels       :mod:`~deeptree.tree`, :mod:`~deeptree.anatomy`
03 breakage simulation  :mod:`~deeptree.breakage`, :mod:`~deeptree.masks`
04 breakage attention   :mod:`~deeptree.attention`
05 stage-1 training     :mod:`~deeptree.stage1` (data, losses, task, predict),
                        :mod:`~deeptree.networks`, :mod:`~deeptree.train`,
                        :mod:`~deeptree.checkpoints`, :mod:`~deeptree.evaluation.compare`
06 stage-2 training     :mod:`~deeptree.stage2` (data, task, predict, gapfill, figures),
                        :mod:`~deeptree.pipeline`, :mod:`~deeptree.evaluation.compare`
07 evaluation           :mod:`~deeptree.evaluation` (reproduce, paper, outputs)
======================  ==========================================================================

Shared by all: :mod:`~deeptree.config` (every run profile and the stage-1 variants),
:mod:`~deeptree.masks`, :mod:`~deeptree.io`, :mod:`~deeptree.files` (atomic writes, orphan
temporary files, the lock of an output folder), :mod:`~deeptree.progress` (progress bars, quiet
under the notebook runner), :mod:`~deeptree.locations` (samples and runs, in a clone or
installed) and :mod:`~deeptree.extras` (the optional napari/notebooks/book parts);
:mod:`~deeptree.notebooks` runs the notebooks and :mod:`~deeptree.cli` is the ``deeptree``
command. Pure functions on numpy arrays in the middle
(tree, anatomy, breakage, attention, metrics), I/O at the edges (io, cli, notebooks), torch only
in the learning parts. The design, with the choices the paper leaves open: docs/design.md.
"""

from deeptree.threads import apply_policy

__version__ = "0.1.0"

# Before anything imports torch: how OpenMP threads wait, decided from the machine's load
# (deeptree/threads.py says why, and what an explicit setting of the user's changes).
apply_policy()
