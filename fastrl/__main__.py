"""``python -m fastrl`` runs the ``fastrl`` command."""

import sys

from fastrl.cli import main

sys.exit(main())
