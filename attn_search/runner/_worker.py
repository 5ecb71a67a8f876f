"""One worker process of `attn-search run --workers N`: `python -m attn_search.runner._worker`.

It reads its configuration (a JSON object of `RunConfig` fields) on stdin, runs it, and exits
0 (done), 1 (an error, printed as one line) or 130 (Ctrl-C). Its storage URL comes in
`$ATTN_SEARCH_STORAGE`, never on its command line.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    from attn_search.errors import AttnSearchError
    from attn_search.runner import RunConfig, run_search

    try:
        config = RunConfig(**json.loads(sys.stdin.read()))
        run_search(config)
    except KeyboardInterrupt:
        return 130
    except AttnSearchError as error:
        print(f"Error: {error}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
