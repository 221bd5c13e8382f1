"""Verdicts of two runs' reports side by side: python verdicts.py A/summary.json B/summary.json"""
import json
import sys


def verdicts(path):
    h = json.load(open(path))["headlines"]
    out = {}
    for d in h["devices"]:
        t = d["ratios"]
        cols = t["columns"]
        for row in t["rows"]:
            r = dict(zip(cols, row))
            out[(d["device"], r["batch_size"], r["a"], r["b"])] = (r["verdict"], r["ratio"])
        t = d["loss_effects"]
        for row in t["rows"]:
            r = dict(zip(t["columns"], row))
            c = r["c"]
            out[(d["device"], "loss alone", c["a"], c["b"])] = (c["verdict"], c["difference"])
    aa = h.get("aa_control") or {}
    return out, h.get("aa_false_positive_rate", h.get("false_positive_rate")), aa


a, fa, aa = verdicts(sys.argv[1])
b, fb, ab = verdicts(sys.argv[2])
same = 0
for k in sorted(a, key=str):
    va, vb = a[k], b.get(k)
    agree = vb is not None and va[0] == vb[0]
    same += agree
    print(("  " if agree else "**"), k, va, vb)
print(f"agree {same} of {len(a)}; A/A false-positive rate A {fa}, B {fb}")
for name, t in (("A", aa), ("B", ab)):
    for row in t.get("rows", []):
        print(name, row)
