#!/usr/bin/env python3
"""Pivot wavelengths of the band registry's curves -> models/filters/pivot_wavelengths.csv.

lambda_p = sqrt(int R lambda dlambda / int R / lambda dlambda) for a photon-counting response R
(trapezoidal rule on the curve's own nodes). Used by `sedflow plot star` to place bands on
the SED's wavelength axis; src/plot/bands.rs tests that the file matches the curves.
Standard library only: python3 scripts/pivot_wavelengths.py
"""
import csv
import math
import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "models" / "filters"


def pivot(path):
    with open(path) as f:
        rows = [(float(r["wavelength_angstrom"]), float(r["response"])) for r in csv.DictReader(f)]
    num = den = 0.0
    for (l0, r0), (l1, r1) in zip(rows, rows[1:]):
        dl = l1 - l0
        num += 0.5 * dl * (r0 * l0 + r1 * l1)
        den += 0.5 * dl * (r0 / l0 + r1 / l1)
    return math.sqrt(num / den)


def main():
    bands = tomllib.loads((ROOT / "bands.toml").read_text())["band"]
    out = ["# pivot wavelengths of the band curves; made by scripts/pivot_wavelengths.py",
           "band,pivot_angstrom"]
    for b in bands:
        out.append(f"{b['name']},{pivot(ROOT / b['curve']):.2f}")
    (ROOT / "pivot_wavelengths.csv").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
