import os

if os.environ.get("YOUNG"):
    import baton.runtime.heap as _heap
    _heap.YOUNG_THRESHOLD = int(os.environ["YOUNG"])
