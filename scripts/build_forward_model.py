"""Build the tables of sedflow's physical forward model (models/forward/).

Inputs (none are committed):
  * Castelli & Kurucz (2004) ATLAS9 spectra: ../shared/data/ck04models.tgz
  * transmission curves: models/filters/bands.toml + CSVs (scripts/import_filters.py)
  * CALSPEC alpha_lyr_stis_011 (Vega) from the `pyphot` package
  * MIST v2.5 isochrones (vvcrit 0.4) from the `lachesis-grids` package
  * G23 extinction: scripts/g23.py (checked by scripts/check_g23.py)

What the runtime (src/physics/) evaluates, and what each table is:
  m_b = S_b(Teff, logg, [M/H]) + A_b(Teff, logg, [M/H], A_V, R_V) - 5 log10(R / d)
  * S_b: "surface magnitude", -2.5 log10 of the band-integrated surface flux over the band's
    zero point (Vega or AB).  Table surface_mag[T, G, M, B] on the CK04 nodes; the runtime
    interpolates it with 4-point Lagrange (cubic) weights along every axis.
  * A_b: band extinction of the extinguished spectrum,
        10^(-0.4 A_b) = sum_l f_l(theta) 10^(-0.4 A_V (a_l + b_l (1/R_V - 1/3.1)))
    with f_l the star's normalised in-band photon weights on a fine wavelength grid.  The set
    of transmission vectors {E(A_V, R_V)} spans a low-dimensional space; its SVD basis psi_q
    (q < Q_b) gives 10^(-0.4 A_b) = G_ref(A_V, R_V) * sum_q c_q(theta) h_q(A_V, R_V), where
    c_q = f . psi_q are per-model coefficients (ext_coef[T, G, M, sum_b Q_b], ragged per band; interpolated cubic in
    Teff and linear in logg and [M/H]) and G_ref, h_q are per-band tables over (A_V, 1/R_V)
    interpolated bilinearly (ext_ref_mag = -2.5 log10 G_ref, ext_basis[sum_b Q_b, A_V, 1/R_V] = h_q).
  * R from MIST: R = sqrt(G M / g) with M the mean present-day mass of MIST stars at that
    (Teff, log g, [M/H]) (log_mass on the "population grid", trilinear), and support[cell] = 1
    where MIST stars reach and all CK04 models needed for interpolation exist.
  * pop_weight: relative number density of MIST stars per cell (Kroupa IMF, constant star
    formation over 0-12.6 Gyr, flat in [M/H]); the prior builds on it.

Run:  python scripts/build_forward_model.py   (about 3 minutes; requirements.txt pins versions)
"""
import argparse
import datetime
import hashlib
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from sedprep import (ROOT, BandIntegrator, load_bands, load_ck04, load_vega,  # noqa: E402
                     write_safetensors)

G_CGS = 6.674e-8
MSUN_G = 1.98841e33
PC_CM = 3.0856775814913673e18
AV_NODES = np.round(np.arange(0.0, 12.0001, 0.1), 6)           # runtime A_V range [0, 12]
INV_RV_NODES = np.linspace(1.0 / 5.6, 1.0 / 2.3, 23)            # R_V in [2.3, 5.6]
Q_MAX = 12
EXT_TOL_MAG = 0.0005   # per band, smallest Q whose SVD truncation error is below this
FORWARD_VERSION = "ck04-g23-mist25-v1"

# population grid (support, mass, occupancy): log10 Teff, log g, [M/H] nodes
POP_LOGT = np.log10(3500.0) + 0.01 * np.arange(116)
POP_LOGG = np.round(np.arange(0.0, 5.0001, 0.1), 6)
POP_MH = np.round(np.arange(-2.5, 0.5001, 0.1), 6)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------
# photometry tables
# ----------------------------------------------------------------------------------------

def surface_and_extinction(wave, flux, bands, vega):
    nt, ng, nm, _ = flux.shape
    exists = np.isfinite(flux[..., 0])
    F = flux[exists]
    nb = len(bands)
    surface = np.full((nt, ng, nm, nb), np.nan)
    coef = np.zeros((nt, ng, nm, nb, Q_MAX))
    ref_mag = np.zeros((nb, len(AV_NODES), len(INV_RV_NODES)))
    basis = np.zeros((nb, Q_MAX, len(AV_NODES), len(INV_RV_NODES)))
    nq = np.zeros(nb, dtype=np.int32)
    zero_points, lam_eff, trunc_err = [], [], []
    AVg, IRg = np.meshgrid(AV_NODES, INV_RV_NODES, indexing="ij")
    # dense design set for the SVD: every runtime node plus midpoints
    av_fit = np.linspace(0.0, 12.0, 97)
    ir_fit = np.linspace(INV_RV_NODES[0], INV_RV_NODES[-1], 29)
    AVf, IRf = np.meshgrid(av_fit, ir_fit, indexing="ij")
    rng = np.random.default_rng(20231)
    for ib, band in enumerate(bands):
        bi = BandIntegrator(band, wave)
        ref = bi.integral(*vega) if band["system"] == "vega" else bi.ab_reference()
        zero_points.append(ref)
        fine = bi.fine_flux(F)                       # [n_models, N_FINE]
        tot = fine.sum(1)
        surface[exists, ib] = -2.5 * np.log10(tot / ref)
        f = fine / tot[:, None]
        lam_eff.append(float(np.sum(f.mean(0) * bi.fine)))
        # weighting envelope: accuracy matters wherever any model puts photons
        w = f.mean(0) + 0.2 * f.max(0)
        w = w + 1e-4 * w.max()
        sw = np.sqrt(w)
        E = bi.transmission(AVf.ravel(), IRf.ravel() - 1.0 / 3.1)
        E = E / (E @ f.mean(0))[:, None]             # relative accuracy at every (A_V, R_V)
        _, _, vt = np.linalg.svd(E * sw[None], full_matrices=False)
        c_all = (f / sw[None]) @ vt[:Q_MAX].T          # [n_models, Q_MAX]
        # truncation test on random models and extinctions
        idx = rng.choice(len(f), min(600, len(f)), replace=False)
        av_t = rng.uniform(0, 12, len(idx))
        ir_t = rng.uniform(INV_RV_NODES[0], INV_RV_NODES[-1], len(idx))
        Et = bi.transmission(av_t, ir_t - 1.0 / 3.1)
        exact = -2.5 * np.log10(np.sum(f[idx] * Et, 1))
        gt = (Et * sw[None]) @ vt[:Q_MAX].T
        for q in range(2, Q_MAX + 1):
            approx = -2.5 * np.log10(np.clip(np.sum(gt[:, :q] * c_all[idx, :q], 1), 1e-300, None))
            err = float(np.max(np.abs(approx - exact)))
            if err < EXT_TOL_MAG or q == Q_MAX:
                break
        nq[ib] = q
        trunc_err.append(err)
        coef[exists, ib, :q] = c_all[:, :q]
        # runtime tables on the (A_V, 1/R_V) nodes, normalised by a reference spectrum
        En = bi.transmission(AVg.ravel(), IRg.ravel() - 1.0 / 3.1)
        g_ref = En @ f.mean(0)
        ref_mag[ib] = (-2.5 * np.log10(g_ref)).reshape(AVg.shape)
        g = ((En * sw[None]) @ vt[:q].T) / g_ref[:, None]
        basis[ib, :q] = g.T.reshape(q, *AVg.shape)
        print(f"  {band['name']:12s} lam_eff={lam_eff[-1]:8.0f} A  Q={q:2d} "
              f"truncation max err={err * 1000:.3f} mmag", flush=True)
    return surface, coef, ref_mag, basis, nq, exists, zero_points, lam_eff, trunc_err


def fill_missing(table, exists):
    """Fill non-existent CK04 nodes (hot, low-gravity corner) by extrapolating along log g
    from the two nearest existing higher-gravity nodes, so that cubic stencils near the
    boundary stay finite.  Filled values are only ever used as outer stencil points: the
    support mask guarantees that the cell containing theta has all 8 corners real."""
    out = table.copy()
    nt, ng, nm = exists.shape
    for i in range(nt):
        for k in range(nm):
            have = np.nonzero(exists[i, :, k])[0]
            if len(have) == 0:
                continue
            for j in range(ng):
                if exists[i, j, k]:
                    continue
                if j < have[0] and len(have) >= 2:
                    j0, j1 = have[0], have[1]
                    t = (j - j0) / (j1 - j0)
                    out[i, j, k] = out[i, j0, k] + t * (out[i, j1, k] - out[i, j0, k])
                else:
                    out[i, j, k] = out[i, have[np.argmin(np.abs(have - j))], k]
    # Teff/[M/H] slices with no model at all: copy from neighbour in Teff
    for k in range(nm):
        for i in range(nt):
            if not exists[i, :, k].any():
                src = [ii for ii in range(nt) if exists[ii, :, k].any()]
                out[i, :, k] = out[min(src, key=lambda ii: abs(ii - i)), :, k]
    return out


# ----------------------------------------------------------------------------------------
# MIST: mass, support and occupancy on the population grid
# ----------------------------------------------------------------------------------------

def kroupa_cdf(m):
    """Unnormalised cumulative Kroupa (2001) IMF, for m in solar masses."""
    m = np.asarray(m, float)
    a1, a2, mb = 1.3, 2.3, 0.5
    lo = np.minimum(m, mb)
    c1 = (lo ** (1 - a1) - 0.08 ** (1 - a1)) / (1 - a1)
    k2 = mb ** (a2 - a1)
    hi = np.maximum(m, mb)
    c2 = k2 * (hi ** (1 - a2) - mb ** (1 - a2)) / (1 - a2)
    return np.where(m <= mb, c1, c1 + c2)


def load_mist():
    import h5py
    from lachesis_grids import grid_path
    path = grid_path("mist_v2.5_vvcrit0.4.h5")
    with h5py.File(path) as f:
        cols = [c if isinstance(c, str) else c.decode() for c in f.attrs["columns"]]
        feh = f["feh_values"][:]
        ages = f["age_values"][:]
        ln = f["lengths"][:]
        off = f["offsets"][:]
        vals = f["values"][:]
    start = np.concatenate([[0], np.cumsum(ln)])
    iso = {}
    for a in range(len(feh)):
        for b in range(len(ages)):
            k = a * len(ages) + b
            rows = vals[start[k]:start[k] + ln[k]]
            iso[(a, b)] = (off[k], rows)
    return path, cols, feh, ages, iso


def rasterise_population(mist):
    path, cols, feh, ages, iso = mist
    ci = {c: cols.index(c) for c in ("initial_mass", "star_mass", "log_Teff", "log_g", "phase")}
    shape = (len(POP_LOGT) - 1, len(POP_LOGG) - 1, len(POP_MH) - 1)
    weight = np.zeros(shape)
    mass_sum = np.zeros(shape)
    age_ok = [b for b, a in enumerate(ages) if 6.5 - 1e-6 <= a <= 10.1 + 1e-6]
    good_phase = np.array([-1, 0, 2, 3, 4, 5], float)
    # 4 [M/H] samples per population cell, isochrones interpolated in [Fe/H] at fixed EEP
    dmh = POP_MH[1] - POP_MH[0]
    mh_samples = POP_MH[0] + dmh * (np.arange(4 * shape[2]) + 0.5) / 4
    dt, dg = POP_LOGT[1] - POP_LOGT[0], POP_LOGG[1] - POP_LOGG[0]
    for mh in mh_samples:
        a1 = int(np.searchsorted(feh, mh))
        a0 = a1 - 1
        t = (mh - feh[a0]) / (feh[a1] - feh[a0])
        km = int((mh - POP_MH[0]) / dmh)
        for b in age_ok:
            o0, r0 = iso[(a0, b)]
            o1, r1 = iso[(a1, b)]
            lo, hi = max(o0, o1), min(o0 + len(r0), o1 + len(r1))
            if hi - lo < 2:
                continue
            x0 = r0[lo - o0:hi - o0]
            x1 = r1[lo - o1:hi - o1]
            x = (1 - t) * x0 + t * x1
            ph = np.where(np.abs(x0[:, ci["phase"]] - x1[:, ci["phase"]]) < 0.5, x0[:, ci["phase"]], np.nan)
            lt, lg = x[:, ci["log_Teff"]], x[:, ci["log_g"]]
            mi, ms = x[:, ci["initial_mass"]], x[:, ci["star_mass"]]
            ok = np.isfinite(lt) & np.isfinite(lg) & np.isfinite(mi) & np.isin(ph, good_phase)
            seg = ok[:-1] & ok[1:]
            if not seg.any():
                continue
            i = np.nonzero(seg)[0]
            dn = np.abs(kroupa_cdf(mi[i + 1]) - kroupa_cdf(mi[i])) * 10.0 ** ages[b]
            nsub = np.maximum(1, np.ceil(np.maximum(np.abs(lt[i + 1] - lt[i]) / (dt / 4),
                                                    np.abs(lg[i + 1] - lg[i]) / (dg / 4)))).astype(int)
            rep = np.repeat(np.arange(len(i)), nsub)
            frac = (np.concatenate([np.arange(n) for n in nsub]) + 0.5) / np.repeat(nsub, nsub)
            ii = i[rep]
            slt = lt[ii] + frac * (lt[ii + 1] - lt[ii])
            slg = lg[ii] + frac * (lg[ii + 1] - lg[ii])
            sms = ms[ii] + frac * (ms[ii + 1] - ms[ii])
            sw = dn[rep] / nsub[rep]
            it = np.floor((slt - POP_LOGT[0]) / dt).astype(int)
            ig = np.floor((slg - POP_LOGG[0]) / dg).astype(int)
            inside = (it >= 0) & (it < shape[0]) & (ig >= 0) & (ig < shape[1]) & (sw > 0)
            np.add.at(weight, (it[inside], ig[inside], km), sw[inside])
            np.add.at(mass_sum, (it[inside], ig[inside], km), sw[inside] * np.log10(sms[inside]))
    return weight, mass_sum


def ck04_coverage(teff_nodes, logg_nodes, mh_nodes, exists):
    """Population cells whose every point lies in CK04 cells with 8 real corners."""
    shape = (len(POP_LOGT) - 1, len(POP_LOGG) - 1, len(POP_MH) - 1)
    lt_nodes = np.log10(teff_nodes)
    full = exists[:-1, :-1, :-1] & exists[1:, :-1, :-1] & exists[:-1, 1:, :-1] & exists[1:, 1:, :-1] \
        & exists[:-1, :-1, 1:] & exists[1:, :-1, 1:] & exists[:-1, 1:, 1:] & exists[1:, 1:, 1:]

    def span(nodes, lo, hi):
        a = int(np.clip(np.searchsorted(nodes, lo + 1e-9) - 1, 0, len(nodes) - 2))
        b = int(np.clip(np.searchsorted(nodes, hi - 1e-9) - 1, 0, len(nodes) - 2))
        return a, b

    cov = np.zeros(shape, bool)
    for i in range(shape[0]):
        ta, tb = span(lt_nodes, POP_LOGT[i], POP_LOGT[i + 1])
        if POP_LOGT[i + 1] > lt_nodes[-1] + 1e-9:
            continue
        for j in range(shape[1]):
            ga, gb = span(logg_nodes, POP_LOGG[j], POP_LOGG[j + 1])
            for k in range(shape[2]):
                ma, mb = span(mh_nodes, POP_MH[k], POP_MH[k + 1])
                cov[i, j, k] = full[ta:tb + 1, ga:gb + 1, ma:mb + 1].all()
    return cov


def close2d(mask):
    """Binary closing (3x3) in the (Teff, log g) plane of every [M/H] slice: fills the
    one-cell gaps that the finite age/mass sampling of the isochrones leaves."""
    def dilate(m):
        out = m.copy()
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                out |= np.roll(np.roll(m, di, 0), dj, 1) & _valid_shift(m.shape, di, dj)
        return out

    def erode(m):
        out = m.copy()
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                out &= np.roll(np.roll(m, di, 0), dj, 1) | ~_valid_shift(m.shape, di, dj)
        return out
    return erode(dilate(mask)) | mask


def dilate2d(mask):
    """Binary dilation (3x3) in the (Teff, log g) plane of every [M/H] slice."""
    out = mask.copy()
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            out |= np.roll(np.roll(mask, di, 0), dj, 1) & _valid_shift(mask.shape, di, dj)
    return out


def _valid_shift(shape, di, dj):
    v = np.ones(shape, bool)
    if di == 1:
        v[0] = False
    if di == -1:
        v[-1] = False
    if dj == 1:
        v[:, 0] = False
    if dj == -1:
        v[:, -1] = False
    return v


def box_mean(values, mask):
    """Mean of `values` over the masked cells of each 3x3x3 neighbourhood (0 where none)."""
    v = np.where(mask, values, 0.0)
    m = mask.astype(float)
    acc, nrm = np.zeros_like(v), np.zeros_like(v)
    pad_v, pad_m = np.pad(v, 1), np.pad(m, 1)
    for di in range(3):
        for dj in range(3):
            for dk in range(3):
                sl = (slice(di, di + v.shape[0]), slice(dj, dj + v.shape[1]), slice(dk, dk + v.shape[2]))
                acc += pad_v[sl]
                nrm += pad_m[sl]
    return np.where(nrm > 0, acc / np.maximum(nrm, 1e-300), 0.0)


def smooth_cells(values, mask, passes=2):
    """Masked 3x3x3 box smoothing restricted to `mask`, `passes` times."""
    v = np.where(mask, values, 0.0)
    for _ in range(passes):
        v = np.where(mask, box_mean(v, mask), 0.0)
    return v


def cells_to_nodes(cell_values, cell_weight):
    """Node value = weighted mean of the (up to 8) adjacent cells; nodes with no weighted
    neighbour take the nearest weighted node along the grid (never used inside support)."""
    pv = np.pad(cell_values * cell_weight, 1)
    pw = np.pad(cell_weight, 1)
    acc = np.zeros(tuple(s + 1 for s in cell_values.shape))
    nrm = np.zeros_like(acc)
    for di in (0, 1):
        for dj in (0, 1):
            for dk in (0, 1):
                sl = (slice(di, di + acc.shape[0]), slice(dj, dj + acc.shape[1]), slice(dk, dk + acc.shape[2]))
                acc += pv[sl]
                nrm += pw[sl]
    have = nrm > 0
    out = np.where(have, acc / np.where(have, nrm, 1.0), np.nan)
    if not have.all():
        from scipy.ndimage import distance_transform_edt
        _, idx = distance_transform_edt(~have, return_indices=True)
        out = out[tuple(idx)]
    return out


# ----------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ck04", default=str(ROOT.parent / "shared" / "data" / "ck04models.tgz"))
    ap.add_argument("--workdir", default="/tmp/sedflow-ck04")
    ap.add_argument("--out", default=str(ROOT / "models" / "forward"))
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import pyphot
    vega_path = pathlib.Path(pyphot.__file__).parent / "libs" / "alpha_lyr_stis_011.fits"
    print("loading CK04 ...", flush=True)
    wave, teff, logg, mh, flux = load_ck04(args.ck04, args.workdir)
    bands = load_bands(ROOT / "models" / "filters")
    vega = load_vega(vega_path)
    print(f"  {int(np.isfinite(flux[..., 0]).sum())} models, {len(bands)} bands", flush=True)

    print("band integrals and extinction bases ...", flush=True)
    surface, coef, ref_mag, basis, nq, exists, zps, lam_eff, trunc = surface_and_extinction(
        wave, flux, bands, vega)
    surface_f = fill_missing(surface, exists)
    coef_f = fill_missing(coef.reshape(*coef.shape[:3], -1), exists).reshape(coef.shape)

    print("extinction check set (direct integration) ...", flush=True)
    write_extinction_check(out / "extinction_check.csv", wave, flux, teff, logg, mh, bands)

    print("MIST population grid ...", flush=True)
    mist = load_mist()
    weight, mass_sum = rasterise_population(mist)
    # MIST-reached cells, gaps closed, then widened by one cell in (Teff, log g) (0.01 dex,
    # 0.1 dex) to allow for the isochrones' own uncertainty (mixing length, opacities)
    reached = dilate2d(close2d(weight > 0))
    support = reached & ck04_coverage(teff, logg, mh, exists)
    has = weight > 0
    log_mass_cell = np.where(has, mass_sum / np.where(has, weight, 1.0), 0.0)
    # cells added by the closing (no MIST sample) borrow the mean mass of their neighbours
    log_mass_cell = np.where(has, log_mass_cell, box_mean(log_mass_cell, has))
    w_for_mass = np.where(has, 1.0, np.where(support, 1e-3, 0.0))
    log_mass_nodes = cells_to_nodes(log_mass_cell, w_for_mass)
    cell_vol = (POP_LOGT[1] - POP_LOGT[0]) * (POP_LOGG[1] - POP_LOGG[0]) * (POP_MH[1] - POP_MH[0])
    density = smooth_cells(weight / cell_vol, support, passes=2)
    density = np.where(support, np.maximum(density, 1e-6 * density[support].max()), 0.0)
    density /= density.sum() * cell_vol
    pop_weight_nodes = cells_to_nodes(density, support.astype(float))
    print(f"  support: {support.sum()} of {support.size} population cells "
          f"(MIST reaches {reached.sum()})", flush=True)

    tensors = {
        "teff_nodes": teff.astype(np.float32),
        "logg_nodes": logg.astype(np.float32),
        "mh_nodes": mh.astype(np.float32),
        "model_exists": exists.astype(np.uint8),
        "surface_mag": surface_f.astype(np.float32),
        "ext_coef": np.concatenate([coef_f[..., b, :nq[b]] for b in range(len(bands))], -1)
                    .astype(np.float32),
        "ext_nq": nq,
        "ext_ref_mag": ref_mag.astype(np.float32),
        "ext_basis": np.concatenate([basis[b, :nq[b]] for b in range(len(bands))], 0)
                     .astype(np.float32),
        "av_nodes": AV_NODES.astype(np.float32),
        "inv_rv_nodes": INV_RV_NODES.astype(np.float32),
        "pop_logteff_nodes": POP_LOGT.astype(np.float32),
        "pop_logg_nodes": POP_LOGG.astype(np.float32),
        "pop_mh_nodes": POP_MH.astype(np.float32),
        "log_mass": log_mass_nodes.astype(np.float32),
        "support": support.astype(np.uint8),
        "pop_density": pop_weight_nodes.astype(np.float32),
    }
    band_meta = [dict(id=b["id"], name=b["name"], system=b["system"], survey=b["survey"],
                      source=b["source"], lambda_eff_angstrom=round(le, 1),
                      zero_point_photon_integral=zp, extinction_components=int(q),
                      extinction_truncation_max_mag=round(te, 6))
                 for b, le, zp, q, te in zip(bands, lam_eff, zps, nq, trunc)]
    meta = {"format": "sedflow-forward-v1", "version": FORWARD_VERSION,
            "bands": json.dumps([b["name"] for b in bands]),
            "systems": json.dumps([b["system"] for b in bands]),
            "log10_g_msun_cgs": repr(float(np.log10(G_CGS * MSUN_G))),
            "log10_pc_cm": repr(float(np.log10(PC_CM)))}
    write_safetensors(out / "forward_model.safetensors", tensors, meta)
    card = {
        "name": "sedflow physical forward model",
        "version": FORWARD_VERSION,
        "built": datetime.date.today().isoformat(),
        "built_by": "scripts/build_forward_model.py",
        "inputs": {
            "ck04models.tgz_sha256": sha256(args.ck04),
            "vega": f"{vega_path.name} (pyphot {getattr(pyphot, '__VERSION__', '?')})",
            "vega_sha256": sha256(vega_path),
            "mist": f"{pathlib.Path(mist[0]).name} (lachesis-grids)",
            "mist_sha256": sha256(mist[0]),
            "filters": "models/filters/bands.toml",
        },
        "grid": {"teff_nodes": teff.tolist(), "logg_nodes": logg.tolist(), "mh_nodes": mh.tolist(),
                 "models": int(exists.sum()), "av_range": [0.0, 12.0], "rv_range": [2.3, 5.6]},
        "population_grid": {"log10_teff": [float(POP_LOGT[0]), float(POP_LOGT[-1]), 0.01],
                            "logg": [0.0, 5.0, 0.1], "mh": [-2.5, 0.5, 0.1],
                            "support_cells": int(support.sum()),
                            "imf": "Kroupa 2001", "ages_log10yr": [6.5, 10.1],
                            "sfr": "constant", "phases": "PMS, MS, RGB, CHeB, EAGB, TPAGB"},
        "bands": band_meta,
    }
    (out / "forward_card.json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {out / 'forward_model.safetensors'} "
          f"({(out / 'forward_model.safetensors').stat().st_size / 1e6:.1f} MB)")


def write_extinction_check(path, wave, flux, teff, logg, mh, bands, n_models=120, n_ext=5):
    """Direct integration of extinguished CK04 spectra at random (A_V, R_V), for the Rust
    test that the runtime extinction matches to 10 mmag (tests/forward_model.rs)."""
    rng = np.random.default_rng(7)
    idx = np.argwhere(np.isfinite(flux[..., 0]))
    pick = idx[rng.choice(len(idx), n_models, replace=False)]
    integ = [BandIntegrator(b, wave) for b in bands]
    with open(path, "w") as fh:
        fh.write("teff,logg,mh,av,rv," + ",".join(f"A_{b['name']}" for b in bands) + "\n")
        for (i, j, k) in pick:
            for _ in range(n_ext):
                av = float(rng.uniform(0, 10))
                rv = float(rng.uniform(2.3, 5.6))
                row = []
                for bi in integ:
                    fine = bi.fine_flux(flux[i, j, k])
                    tr = bi.transmission(np.array([av]), np.array([1.0 / rv - 1.0 / 3.1]))[0]
                    row.append(-2.5 * np.log10(np.sum(fine * tr) / np.sum(fine)))
                fh.write(f"{teff[i]:.0f},{logg[j]:.1f},{mh[k]:.1f},{av:.6f},{rv:.6f},"
                         + ",".join(f"{a:.6f}" for a in row) + "\n")


if __name__ == "__main__":
    main()
