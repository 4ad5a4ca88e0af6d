"""``python -m leelalab``: the same as the ``leelalab`` command."""

import sys

from leelalab.cli.main import main

sys.exit(main())
