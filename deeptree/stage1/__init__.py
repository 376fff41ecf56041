"""Stage 1 (notebook 05): patches and augmentation (``data``), the AMC and GUL losses
(``losses``), the training task (``task``) and sliding-window inference (``predict``).
"""
