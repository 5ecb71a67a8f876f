"""``python -m attn_search``: the same as the ``attn-search`` command."""

import sys

from attn_search.cli import main

if __name__ == "__main__":
    sys.exit(main())
