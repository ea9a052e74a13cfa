//! Special functions: error function, normal CDF and its inverse, ln Gamma and the
//! regularised incomplete gamma function (chi^2 tail probabilities).

/// Complementary error function, relative error < 1.2e-7 everywhere
/// (Chebyshev fit of Press et al., Numerical Recipes 6.2).
pub(crate) fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Standard normal CDF.
pub(crate) fn norm_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Inverse of the standard normal CDF for p in (0, 1) (Acklam's rational approximation,
/// relative error < 1.2e-9); -inf / +inf at 0 / 1, NaN outside.
pub(crate) fn norm_ppf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    if !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    const P_LOW: f64 = 0.024_25;
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - P_LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Natural logarithm of a positive finite x (exponent split and an atanh series; absolute
/// error below 1e-14), for the importance sampler's weight and mixture sums, where it and
/// [`fast_exp`] were measured a little faster than libm's (a 3000-star run: 9.7 / 8.3 s
/// against 10.0 / 8.9 s, interleaved) but slower in the coordinate and prior code (so not
/// used there). Non-positive, infinite or NaN x give libm's answer.
#[inline]
pub(crate) fn fast_ln(x: f64) -> f64 {
    if !(x > 0.0 && x < f64::INFINITY) || x < f64::MIN_POSITIVE {
        return x.ln();
    }
    let bits = x.to_bits();
    let m1 = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let big = m1 > std::f64::consts::SQRT_2;
    let m = if big { m1 * 0.5 } else { m1 };
    let e = ((bits >> 52) & 0x7ff) as i64 - 1023 + big as i64;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    // |s| < 0.1716: the series to s^17 leaves < 1e-15
    let p = 1.0
        + s2 * (1.0 / 3.0
            + s2 * (1.0 / 5.0
                + s2 * (1.0 / 7.0
                    + s2 * (1.0 / 9.0
                        + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0 + s2 * (1.0 / 15.0 + s2 / 17.0)))))));
    2.0 * s * p + e as f64 * std::f64::consts::LN_2
}

/// e^x (range reduction by ln 2 and a degree-12 Taylor polynomial; relative error below
/// 1e-14 for |x| < 700; 0 below -745, +inf above 709); see [`fast_ln`] for where it pays.
#[inline]
pub(crate) fn fast_exp(x: f64) -> f64 {
    if !(x > -745.0) {
        return if x.is_nan() { x } else { 0.0 };
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    // round to nearest with the 1.5 * 2^52 trick (f64::round is a library call)
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    let k = (x * std::f64::consts::LOG2_E + MAGIC) - MAGIC;
    let r = x - k * 0.693_147_180_369_123_8 - k * 1.908_214_929_270_587_7e-10;
    // |r| <= 0.347: Taylor to r^12 leaves < 2e-16
    let mut p = 1.0 / 479_001_600.0;
    for c in [
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // 2^k in two steps so that subnormal results stay exact enough
    let k = k as i64;
    let (k1, k2) = (k / 2, k - k / 2);
    p * f64::from_bits(((k1 + 1023) as u64) << 52) * f64::from_bits(((k2 + 1023) as u64) << 52)
}

/// ln Gamma(x) for x > 0 (Lanczos, g = 7; ~1e-15 relative).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // reflection: the Lanczos sum loses accuracy below 1/2
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, &c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularised upper incomplete gamma function Q(a, x) = Gamma(a, x) / Gamma(a), for a > 0
/// and x >= 0: the series of P = 1 - Q below x = a + 1, Lentz's continued fraction of Q
/// above (Press et al., Numerical Recipes 6.2), both to ~1e-15 relative. NaN for
/// arguments outside the domain.
pub(crate) fn gamma_q(a: f64, x: f64) -> f64 {
    if !(a > 0.0) || !(x >= 0.0) {
        return f64::NAN;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    // ln of x^a e^-x / Gamma(a), the prefactor of both expansions
    let ln_pre = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        1.0 - gamma_p_series(a, x, ln_pre)
    } else {
        gamma_q_fraction(a, x, ln_pre)
    }
}

fn gamma_p_series(a: f64, x: f64, ln_pre: f64) -> f64 {
    let (mut ap, mut term) = (a, 1.0 / a);
    let mut sum = term;
    for _ in 0..10_000 {
        ap += 1.0;
        term *= x / ap;
        sum += term;
        if term.abs() < sum.abs() * 1e-16 {
            break;
        }
    }
    sum * ln_pre.exp()
}

fn gamma_q_fraction(a: f64, x: f64, ln_pre: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..10_000 {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    ln_pre.exp() * h
}

#[cfg(test)]
mod tests {
    #[test]
    fn fast_ln_and_exp_match_libm() {
        let mut x = 1e-300f64;
        while x < 1e300 {
            let (a, b) = (super::fast_ln(x), x.ln());
            assert!(
                (a - b).abs() < 1e-13 * b.abs().max(1.0),
                "ln {x}: {a} vs {b}"
            );
            x *= 1.0137;
        }
        let mut y = -740.0f64;
        while y < 705.0 {
            let (a, b) = (super::fast_exp(y), y.exp());
            assert!((a - b).abs() <= 1e-13 * b, "exp {y}: {a} vs {b}");
            y += 0.0731;
        }
        assert_eq!(super::fast_exp(-800.0), 0.0);
        assert_eq!(super::fast_exp(800.0), f64::INFINITY);
        assert!(super::fast_ln(-1.0).is_nan());
    }

    #[test]
    fn norm_ppf_inverts_the_cdf() {
        for &p in &[1e-6, 0.001, 0.02, 0.16, 0.5, 0.84, 0.975, 0.999_99] {
            let x = super::norm_ppf(p);
            // norm_cdf is accurate to ~1e-7 relative
            assert!(
                (super::norm_cdf(x) - p).abs() < 2e-7 * p.max(1e-3),
                "p {p}: x {x}"
            );
        }
        assert!((super::norm_ppf(0.975) - 1.959_963_985).abs() < 1e-8);
        assert!(super::norm_ppf(1.5).is_nan());
    }

    use super::*;

    #[test]
    fn gamma_q_matches_tabulated_values() {
        // Q(a, x) = Gamma(a, x) / Gamma(a) in closed form: a = 1: e^-x; a = 1/2: erfc(sqrt x)
        // (exact erfc values: scipy.special.erfc)
        for x in [0.01, 0.5, 1.0, 2.0, 7.5, 30.0] {
            assert!((gamma_q(1.0, x) - (-x).exp()).abs() < 1e-14 * (-x).exp().max(1e-300));
        }
        // a = 2: (1 + x) e^-x
        for x in [0.3f64, 3.0, 12.0] {
            let q = (1.0 + x) * (-x).exp();
            assert!((gamma_q(2.0, x) - q).abs() < 1e-13 * q, "{x}");
        }
        assert!((gamma_q(0.5, 1.0) - 0.157_299_207_050_285_13).abs() < 1e-14);
        assert!((gamma_q(0.5, 9.0) - 2.209_049_699_858_544e-5).abs() < 1e-17);
        assert_eq!(gamma_q(3.0, 0.0), 1.0);
        assert!(gamma_q(0.0, 1.0).is_nan() && gamma_q(1.0, -1.0).is_nan());
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
        assert!((ln_gamma(0.1) - 2.252_712_651_734_206).abs() < 1e-13);
    }

    #[test]
    fn erf_values() {
        assert!((1.0 - erfc(0.5) - 0.520_499_877_813_046_5).abs() < 2e-7);
        assert!((erfc(2.0) - 0.004_677_734_981_047_266).abs() < 1e-9);
        assert!((norm_cdf(1.96) - 0.975_002_104_851_78).abs() < 1e-7);
        assert!((norm_cdf(-3.0) - 0.001_349_898_031_630_094_6).abs() < 1e-9);
    }
}
