"""Shared pieces of sedflow's data preparation: CK04 grid loading, band integration, G23.

Everything here is deterministic numpy; scripts/build_forward_model.py assembles the tables.
"""
import json
import pathlib
import struct
import tarfile
import tomllib

import numpy as np
from astropy.io import fits

from g23 import g23_ab

ROOT = pathlib.Path(__file__).resolve().parent.parent
CK_METALS = {"m25": -2.5, "m20": -2.0, "m15": -1.5, "m10": -1.0, "m05": -0.5,
             "p00": 0.0, "p02": 0.2, "p05": 0.5}
LOGG_COLS = [f"g{int(round(g * 10)):02d}" for g in np.arange(0, 5.01, 0.5)]
C_ANGSTROM_PER_S = 2.99792458e18
AB_FNU = 3631e-23  # erg s^-1 cm^-2 Hz^-1


def load_ck04(tgz, workdir):
    """Return (wave [A], teff nodes, logg nodes, mh nodes, flux [T,G,M,W] with NaN = no model)."""
    workdir = pathlib.Path(workdir)
    root = workdir / "grid" / "ck04models"
    if not root.exists():
        with tarfile.open(tgz) as t:
            t.extractall(workdir, filter="data")
    mh_keys = sorted(CK_METALS, key=CK_METALS.get)
    teffs = sorted({int(p.stem.split("_")[1]) for p in (root / "ckp00").glob("ckp00_*.fits")})
    wave = None
    flux = np.full((len(teffs), len(LOGG_COLS), len(mh_keys), 1221), np.nan)
    for k, key in enumerate(mh_keys):
        for i, t in enumerate(teffs):
            path = root / f"ck{key}" / f"ck{key}_{t}.fits"
            if not path.exists():
                continue
            d = fits.open(path)[1].data
            if wave is None:
                wave = np.asarray(d["WAVELENGTH"], dtype=float)
            for j, col in enumerate(LOGG_COLS):
                f = np.asarray(d[col], dtype=float)
                if np.any(f > 0):
                    flux[i, j, k] = f
    return wave, np.array(teffs, float), np.arange(0, 5.01, 0.5), np.array([CK_METALS[k] for k in mh_keys]), flux


def load_bands(filters_dir):
    reg = tomllib.loads((pathlib.Path(filters_dir) / "bands.toml").read_text())["band"]
    bands = []
    for i, b in enumerate(reg):
        assert b["id"] == i, "band ids must be 0..n-1 in file order"
        data = np.loadtxt(pathlib.Path(filters_dir) / b["curve"], delimiter=",", skiprows=1)
        bands.append(dict(b, wave=data[:, 0], resp=data[:, 1]))
    return bands


class BandIntegrator:
    """Photon-counting band integral of spectra sampled on a coarse grid.

    The spectrum is linearly interpolated onto a fine uniform grid spanning the filter
    (N_FINE points) and integrated with trapezoid weights T(lambda) lambda dlambda.
    `fine_flux(F)` returns the per-fine-point contributions so that extinction, which varies
    within the band, can be applied point by point.
    """

    N_FINE = 3000

    def __init__(self, band, coarse_wave):
        w, r = band["wave"], band["resp"]
        nz = np.nonzero(r > 0)[0]
        lo, hi = w[max(nz[0] - 1, 0)], w[min(nz[-1] + 1, len(w) - 1)]
        self.fine = np.linspace(lo, hi, self.N_FINE)
        resp = np.clip(np.interp(self.fine, w, r), 0, None)
        dl = np.gradient(self.fine)
        dl[0] *= 0.5
        dl[-1] *= 0.5
        self.weight = resp * self.fine * dl  # photon counting: integrand F_lambda * T * lambda
        # linear interpolation matrix coarse -> fine (sparse as index/weight pairs)
        j = np.clip(np.searchsorted(coarse_wave, self.fine) - 1, 0, len(coarse_wave) - 2)
        t = (self.fine - coarse_wave[j]) / (coarse_wave[j + 1] - coarse_wave[j])
        self.j, self.t = j, t
        self.a, self.b = g23_ab(self.fine / 1e4)

    def fine_flux(self, flux):
        """flux [..., W] on the coarse grid -> [..., N_FINE] contributions F*T*lambda*dlambda."""
        f = flux[..., self.j] * (1 - self.t) + flux[..., self.j + 1] * self.t
        return f * self.weight

    def integral(self, wave, flux):
        """Band integral of a spectrum on its own wavelength grid (e.g. Vega)."""
        return float(np.sum(np.interp(self.fine, wave, flux) * self.weight))

    def ab_reference(self):
        flam = AB_FNU * C_ANGSTROM_PER_S / self.fine**2
        return float(np.sum(flam * self.weight))

    def transmission(self, av, y):
        """10^(-0.4 A(lambda)) on the fine grid for arrays av, y=(1/R_V - 1/3.1): [n, N_FINE]."""
        av = np.atleast_1d(av)[:, None]
        y = np.atleast_1d(y)[:, None]
        return 10.0 ** (-0.4 * av * (self.a[None] + self.b[None] * y))


def load_vega(path):
    d = fits.open(path)[1].data
    return np.asarray(d["WAVELENGTH"], float), np.asarray(d["FLUX"], float)


def write_safetensors(path, tensors, metadata=None):
    """Minimal safetensors writer (little-endian, row-major), float32/uint8/int32 arrays."""
    dt = {np.dtype("float32"): "F32", np.dtype("uint8"): "U8", np.dtype("int32"): "I32",
          np.dtype("float64"): "F64"}
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dt[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(h)))
        fh.write(h)
        for b in blobs:
            fh.write(b)
