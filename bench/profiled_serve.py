"""``baton serve`` under yappi (CPU clock, every thread): ``python bench/profiled_serve.py
OUT.pstats [baton arguments...]``. The stats are written in pstats format when the server
stops (SIGINT); read them with ``python -m pstats OUT.pstats`` or ``bench/api_intake.py``'s
``--profile``. yappi is not a dependency: ``pip install yappi``.

Used by ``bench/api_intake.py --profile``: cProfile sees only the thread it was started
in, and the API's endpoints run in uvicorn's worker threads.
"""

from __future__ import annotations

import sys

import yappi


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    from baton.cli.main import main as baton

    yappi.set_clock_type("cpu")
    yappi.start(builtins=True, profile_threads=True)
    sys.argv = ["baton", *args]
    try:
        baton()
    except SystemExit:
        pass
    finally:
        yappi.stop()
        yappi.get_func_stats().save(out, type="pstat")


if __name__ == "__main__":
    main()
