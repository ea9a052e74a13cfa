#!/usr/bin/env python3
"""Golden values of the sampler's diagnostics from ArviZ, on fixed inputs:
Pareto k-hat (az.psislw, reff = 1), rank-normalised split R-hat (az.rhat, method "rank")
and bulk ESS (az.ess, method "bulk"). Writes tests/fixtures/arviz_golden.json, which
holds the inputs too, so the Rust tests (src/posterior/psis.rs, src/posterior/chains.rs)
read both and need no Python.

Pinned: arviz==0.22.0, numpy==2.2.6 (and what pip resolves for them). To rerun:

    python3 -m venv /tmp/arviz-venv
    /tmp/arviz-venv/bin/pip install arviz==0.22.0 numpy==2.2.6
    /tmp/arviz-venv/bin/python scripts/arviz_golden.py

The inputs are rounded to 6 significant digits before ArviZ sees them, so that the JSON
stays small and both sides read exactly the same numbers.
"""
import json
import pathlib

import arviz as az
import numpy as np

SEED = 20240522
OUT = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/arviz_golden.json"


def rounded(a):
    return np.array([float(f"{x:.6g}") for x in np.ravel(a)]).reshape(np.shape(a))


def ar1(rng, chains, draws, phi):
    x = np.empty((chains, draws))
    x[:, 0] = rng.standard_normal(chains)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi**2) * rng.standard_normal(chains)
    return x


def chain_cases(rng):
    shift = rng.standard_normal((4, 100))
    shift[0] += 1.5
    trend = rng.standard_normal((4, 100)) + np.linspace(0, 2, 100)
    return {
        "iid_normal": rng.standard_normal((4, 100)),
        "ar1_phi_0.9": ar1(rng, 4, 100, 0.9),
        "one_chain_shifted": shift,
        "trend_within_chains": trend,
        "student_t_1dof": rng.standard_t(1, (4, 100)),
        "ties_rounded": np.round(rng.standard_normal((4, 100)), 1),
        "odd_length": ar1(rng, 3, 51, 0.5),
    }


def weight_cases(rng):
    return {
        # log importance ratios of a good proposal (light tail: k < 0.5)
        "normal_ratios_s200": 0.5 * rng.standard_normal(200),
        # Pareto weights of shape 1/alpha: k near 0.3, 0.7, 1.0
        "pareto_k0.3_s500": np.log(rng.pareto(1 / 0.3, 500) + 1),
        "pareto_k0.7_s500": np.log(rng.pareto(1 / 0.7, 500) + 1),
        "pareto_k1.0_s1000": np.log(rng.pareto(1.0, 1000) + 1),
        "lognormal_sd2_s300": 2.0 * rng.standard_normal(300),
    }


def main():
    rng = np.random.default_rng(SEED)
    chains = {}
    for name, x in chain_cases(rng).items():
        x = rounded(x)
        chains[name] = {
            "draws": x.tolist(),
            "rhat": float(az.rhat(x, method="rank")),
            "ess_bulk": float(az.ess(x, method="bulk")),
        }
    weights = {}
    for name, lw in weight_cases(rng).items():
        lw = rounded(lw)
        _, k = az.psislw(lw.copy(), reff=1.0)
        weights[name] = {"log_weights": lw.tolist(), "k_hat": float(k)}
    doc = {
        "made_by": "scripts/arviz_golden.py",
        "arviz": az.__version__,
        "numpy": np.__version__,
        "seed": SEED,
        "chains": chains,
        "weights": weights,
    }
    OUT.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
