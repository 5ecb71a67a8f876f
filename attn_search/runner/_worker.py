"""One worker process of `attn-search run --workers N`: `python -m attn_search.runner._worker`.

It reads its configuration (a JSON object of `RunConfig` fields) on stdin, runs it as
`run_search` does but for the report (the run folder's one report is written by the parent),
and exits 0 (done), 1 (an error, printed as one line) or 130 (Ctrl-C). Its storage URL comes in
`$ATTN_SEARCH_STORAGE`, never on its command line.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    import time

    from attn_search.errors import AttnSearchError
    from attn_search.runner._interrupt import install

    install()  # before the imports below, which take seconds
    from attn_search.runner import RunConfig, _execute, _frozen_heap, _quiet_retracing
    from attn_search.runner._compute import compute_options, graph_optimizer_off_on_cpu
    from attn_search.runner.progress import ProgressPrinter
    from attn_search.runner.setup import open_run

    try:
        config = RunConfig(**json.loads(sys.stdin.read()))
        config.validate()
        accelerate = compute_options(config.mixed_precision, config.jit_compile)
        with _quiet_retracing(config.verbose), graph_optimizer_off_on_cpu(), accelerate:
            run = open_run(config, ProgressPrinter(config.trials, quiet=config.quiet))
            with _frozen_heap():
                _execute(run, time.monotonic(), report=False)  # the run folder's one report
    except KeyboardInterrupt:
        return 130
    except AttnSearchError as error:
        print(f"Error: {error}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
