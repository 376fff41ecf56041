"""Stage 2 (notebook 06): simulated breakages and crops (``data``), the training task and its
validation (``task``), inference at the breakage centres (``predict``), the non-learned gap
filler (``gapfill``) and the notebook's figures (``figures``).
"""
