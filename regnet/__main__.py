"""``python -m regnet``: the ``regnet`` command line."""

import sys

from .cli import main

sys.exit(main())
