"""Gordon et al. (2023, ApJ 950, 86) "G23" Milky Way extinction curve, R_V dependent.

Our own implementation of the published functional form:
    A(lambda)/A(V) = [a(x) + b(x) (1/R_V - 1/3.1)] / 0.9854
with x = 1/lambda [1/micron]; a, b are an FM90 shape in the UV (0.09-0.33 um), a 4th order
polynomial plus three Drude profiles in the optical (0.3-1.1 um) and a broken power law plus two
modified-Drude silicate features in the NIR/MIR (1-32 um), blended with smoothsteps in the
overlaps 0.30-0.33 um and 0.9-1.1 um.  The 0.9854 renormalisation follows the paper's
correction to STIS spectroscopy (dust_extinction's default).  Checked against the
`dust-extinction` package in scripts/check_g23.py.
"""
import numpy as np

RV_RANGE = (2.3, 5.6)
WAVE_RANGE_UM = (0.0912, 32.0)
RENORM = 0.9854


def _smoothstep(x, lo, hi):
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _fm90(x, c1, c2, c3, c4, x0, gamma):
    y = c1 + c2 * x + c3 * x**2 / ((x**2 - x0**2) ** 2 + x**2 * gamma**2)
    far = x >= 5.9
    dy = np.where(far, x - 5.9, 0.0)
    return y + np.where(far, c4 * (0.5392 * dy**2 + 0.05644 * dy**3), 0.0)


def _drude(x, amp, x0, fwhm):
    return amp * (fwhm / x0) ** 2 / ((x / x0 - x0 / x) ** 2 + (fwhm / x0) ** 2)


def _optical(x, p):
    poly = p[0] + p[1] * x + p[2] * x**2 + p[3] * x**3 + p[4] * x**4
    return poly + _drude(x, *p[5:8]) + _drude(x, *p[8:11]) + _drude(x, *p[11:14])


def _modified_drude(w, amp, w0, fwhm, asym):
    g = 2.0 * fwhm / (1.0 + np.exp(asym * (w - w0)))
    return amp * (g / w0) ** 2 / ((w / w0 - w0 / w) ** 2 + (g / w0) ** 2)


def _ir_a(x):
    w = 1.0 / x
    scale, al1, al2, swave, swidth = 0.38526, 1.68467, 0.78791, 4.30578, 4.78338
    p1 = scale * w ** (-al1)
    p2 = scale * (swave ** (-al1) / swave ** (-al2)) * w ** (-al2)
    t = _smoothstep(w, swave - swidth / 2, swave + swidth / 2)
    y = p1 * (1 - t) + p2 * t
    y += _modified_drude(w, 0.06652, 9.8434, 2.21205, -0.24703)
    y += _modified_drude(w, 0.0267, 19.58294, 17.0, -0.27)
    return y


def _ir_b(x):
    return -1.01251 * x ** 1.06099  # power law amplitude*(x/1)^-alpha with alpha=-1.06099


OPT_A = [-0.35848, 0.7122, 0.08746, -0.05403, 0.00674,
         0.03893, 2.288, 0.243, 0.02965, 2.054, 0.179, 0.01747, 1.587, 0.243]
OPT_B = [0.12354, -2.68335, 2.01901, -0.39299, 0.03355,
         0.18453, 2.288, 0.243, 0.19728, 2.054, 0.179, 0.1713, 1.587, 0.243]
UV_A = [0.81297, 0.2775, 1.06295, 0.11303, 4.60, 0.99]
UV_B = [-2.97868, 1.89808, 3.10334, 0.65484, 4.60, 0.99]


def g23_ab(wave_um):
    """Return (a, b) such that A/A_V = (a + b (1/R_V - 1/3.1)) / RENORM."""
    w = np.asarray(wave_um, dtype=float)
    if np.any((w < WAVE_RANGE_UM[0] - 1e-9) | (w > WAVE_RANGE_UM[1] + 1e-9)):
        raise ValueError("G23 is defined for 0.0912-32 micron")
    x = 1.0 / w
    a = np.zeros_like(w)
    b = np.zeros_like(w)
    ir = w > 1.0
    opt = (w >= 0.3) & (w <= 1.1)
    uv = w < 0.3
    a[ir], b[ir] = _ir_a(x[ir]), _ir_b(x[ir])
    a[opt], b[opt] = _optical(x[opt], OPT_A), _optical(x[opt], OPT_B)
    a[uv], b[uv] = _fm90(x[uv], *UV_A), _fm90(x[uv], *UV_B)
    # optical <-> IR blend over 0.9-1.1 micron
    m = (w >= 0.9) & (w <= 1.1)
    t = _smoothstep(w[m], 0.9, 1.1)
    a[m] = (1 - t) * _optical(x[m], OPT_A) + t * _ir_a(x[m])
    b[m] = (1 - t) * _optical(x[m], OPT_B) + t * _ir_b(x[m])
    # UV <-> optical blend over 0.30-0.33 micron
    m = (w >= 0.3) & (w <= 0.33)
    t = _smoothstep(w[m], 0.3, 0.33)
    a[m] = (1 - t) * _fm90(x[m], *UV_A) + t * _optical(x[m], OPT_A)
    b[m] = (1 - t) * _fm90(x[m], *UV_B) + t * _optical(x[m], OPT_B)
    return a / RENORM, b / RENORM


def g23_alav(wave_um, rv):
    if not RV_RANGE[0] <= rv <= RV_RANGE[1]:
        raise ValueError(f"R_V={rv} outside G23's range {RV_RANGE}")
    a, b = g23_ab(wave_um)
    return a + b * (1.0 / rv - 1.0 / 3.1)
