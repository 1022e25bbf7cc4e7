import gc, time, atexit, sys, os
stats = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
t0 = [0.0]
def cb(phase, info):
    if phase == "start": t0[0] = time.process_time()
    else:
        s = stats[info["generation"]]; s[0] += 1; s[1] += time.process_time() - t0[0]
gc.callbacks.append(cb)
pid = os.getpid()
def report():
    if os.getpid() == pid:
        print("GC driver:", {g: (n, round(t, 3)) for g, (n, t) in stats.items()}, "cpu", round(time.process_time(), 2), file=sys.stderr)
atexit.register(report)
if __name__ == "__main__":
    sys.argv = ["baton"] + sys.argv[1:]
    from baton.cli.main import main
    from baton.runtime import heap; import os as _o
    if _o.environ.get("SETTLE"): heap.settle()
    main()
