import pstats
import re
import sys


def load(p):
    st = pstats.Stats(p).stats; out = {}
    for (f, l, n), v in st.items():
        f = re.sub(r".*/(src|site-packages|lib/python3.11)/", "", f)
        out[f"{f}:{n}"] = out.get(f"{f}:{n}", 0) + v[1]
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
d = sorted(set(a) | set(b), key=lambda k: abs(b.get(k, 0) - a.get(k, 0)), reverse=True)
print("total", sum(a.values()), sum(b.values()))
for k in d[:int(sys.argv[3]) if len(sys.argv) > 3 else 30]:
    print(f"{a.get(k,0):9d} {b.get(k,0):9d} {b.get(k,0)-a.get(k,0):+9d}  {k}")
