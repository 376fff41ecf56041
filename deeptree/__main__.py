"""``python -m deeptree`` is the ``deeptree`` command."""

import sys

from deeptree.cli import main

sys.exit(main())
