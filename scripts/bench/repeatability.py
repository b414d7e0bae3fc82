#!/usr/bin/env python3
"""Repeatability of two independent tables of the same plan on the same device.

Prints a table: keys in common, median and p90 of per-key |Δ|/median, the share of keys
within 2% and 5%, and the largest differences.
  python3 scripts/bench/repeatability.py A.json B.json
"""
import json
import sys

import numpy as np


def main():
    a, b = (json.load(open(p)) for p in sys.argv[1:3])
    ea = {e["key"]: e for e in a["entries"]}
    eb = {e["key"]: e for e in b["entries"]}
    common = sorted(set(ea) & set(eb))
    rel = np.array([abs(eb[k]["median"] - ea[k]["median"]) / ea[k]["median"] for k in common])
    print("| metric | value |")
    print("|---|---|")
    print(f"| keys in common | {len(common)} |")
    print(f"| median per-key abs(Δ)/median | {100 * np.median(rel):.2f}% |")
    print(f"| p90 per-key abs(Δ)/median | {100 * np.quantile(rel, 0.9):.2f}% |")
    print(f"| keys within 2% | {100 * np.mean(rel <= 0.02):.0f}% |")
    print(f"| keys within 5% | {100 * np.mean(rel <= 0.05):.0f}% |")
    sa = sum(ea[k]["median"] for k in common)
    sb = sum(eb[k]["median"] for k in common)
    print(f"| Σ medians A / B (ms) | {sa / 1e3:.2f} / {sb / 1e3:.2f} ({100 * (sb - sa) / sa:+.2f}%) |")
    worst = sorted(common, key=lambda k: -abs(eb[k]["median"] - ea[k]["median"]) / ea[k]["median"])[:5]
    print("\nlargest differences:")
    for k in worst:
        print(f"  {k}: {ea[k]['median']:.1f} vs {eb[k]['median']:.1f} µs ({100 * (eb[k]['median'] - ea[k]['median']) / ea[k]['median']:+.1f}%)")


if __name__ == "__main__":
    main()
