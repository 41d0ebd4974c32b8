"""``python -m agfs_fuse``: the same as the ``agfs-fuse`` command."""

import sys

from .cli import main

sys.exit(main())
