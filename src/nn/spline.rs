//! Monotonic rational-quadratic splines (Durkan et al. 2019, "Neural Spline Flows"), the
//! elementwise transform of a spline MADE block: in candle for training and the reference
//! sampler, and on scalars for the fast CPU path.
//!
//! On [-B, B] the spline has K bins. Each variable's conditioner emits 3K - 1 raw values:
//! K width and K height logits (softmax, each bin at least `MIN_BIN` of the range) and K - 1
//! interior knot derivatives (softplus, shifted so that a zero raw value gives slope 1).
//! The boundary slopes are 1 and the map is the identity outside [-B, B], so the transform is
//! continuous with a continuous derivative everywhere. Zero raw values give the identity.

use candle_core::{Result, Tensor, D};
use serde::{Deserialize, Serialize};

/// Spline settings of a flow.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct SplineConfig {
    /// Bins K.
    pub(crate) bins: usize,
    /// Half-width B of the spline's interval (identity outside).
    pub(crate) bound: f64,
}

/// Most bins the fast path's stack buffers hold.
pub(crate) const MAX_BINS: usize = 32;
/// Smallest bin width and height, as a fraction of the interval.
const MIN_BIN: f64 = 1e-3;
/// Smallest interior knot slope.
const MIN_SLOPE: f64 = 1e-3;
/// softplus(SLOPE_SHIFT) = 1 - MIN_SLOPE: a zero raw value gives slope 1.
const SLOPE_SHIFT: f64 = 0.539_742_4;

impl SplineConfig {
    /// Raw conditioner outputs per variable: K widths, K heights, K - 1 slopes.
    pub(crate) fn params(&self) -> usize {
        3 * self.bins - 1
    }

    /// Checked settings.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (2..=MAX_BINS).contains(&self.bins),
            "spline bins must be in 2..={MAX_BINS}, not {}",
            self.bins
        );
        anyhow::ensure!(
            self.bound.is_finite() && self.bound > 0.0,
            "spline bound must be positive, not {}",
            self.bound
        );
        Ok(())
    }
}

/// Knots of one spline in one direction, as [M, K] tensors: left edges and sizes of the
/// bins in x and in y, slopes at the bins' left and right edges.
struct KnotTensors {
    x0: Tensor,
    w: Tensor,
    y0: Tensor,
    h: Tensor,
    d0: Tensor,
    d1: Tensor,
}

/// Softmax over the last axis of [M, K] with a floor per bin, scaled to the interval 2B.
fn bin_sizes(raw: &Tensor, k: usize, bound: f64) -> Result<Tensor> {
    let e = raw.clamp(-30.0, 30.0)?.exp()?;
    let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
    p.affine(
        (1.0 - MIN_BIN * k as f64) * 2.0 * bound,
        MIN_BIN * 2.0 * bound,
    )
}

/// softplus(x) = ln(1 + e^x), stable for large |x|.
fn softplus(x: &Tensor) -> Result<Tensor> {
    let pos = x.relu()?;
    let neg_abs = x.abs()?.neg()?;
    pos + (neg_abs.exp()? + 1.0)?.log()?
}

impl KnotTensors {
    /// Knots from raw conditioner outputs [M, 3K - 1].
    fn new(raw: &Tensor, cfg: &SplineConfig) -> Result<Self> {
        let (m, k) = (raw.dim(0)?, cfg.bins);
        let w = bin_sizes(&raw.narrow(1, 0, k)?, k, cfg.bound)?;
        let h = bin_sizes(&raw.narrow(1, k, k)?, k, cfg.bound)?;
        let slopes = (softplus(&(raw.narrow(1, 2 * k, k - 1)? + SLOPE_SHIFT)?)? + MIN_SLOPE)?;
        let ones = Tensor::ones((m, 1), raw.dtype(), raw.device())?;
        let d = Tensor::cat(&[&ones, &slopes, &ones], 1)?;
        // exclusive cumulative sums: a 2-D matmul with a strictly upper-triangular matrix
        let upper: Vec<f32> = (0..k * k)
            .map(|idx| ((idx / k) < (idx % k)) as u8 as f32)
            .collect();
        let upper = Tensor::from_vec(upper, (k, k), raw.device())?.to_dtype(raw.dtype())?;
        let x0 = (w.matmul(&upper)? - cfg.bound)?;
        let y0 = (h.matmul(&upper)? - cfg.bound)?;
        Ok(KnotTensors {
            x0,
            w,
            y0,
            h,
            d0: d.narrow(1, 0, k)?,
            d1: d.narrow(1, 1, k)?,
        })
    }

    /// One-hot [M, K] of the bin holding each value of `v` [M, 1] on the edges `left`;
    /// values outside the interval fall in the end bins (they are masked later).
    fn bin_of(v: &Tensor, left: &Tensor) -> Result<Tensor> {
        let k = left.dim(1)?;
        let at_or_above = v.broadcast_ge(left)?.to_dtype(left.dtype())?;
        // the first bin takes everything below its edge
        let first = Tensor::ones((v.dim(0)?, 1), left.dtype(), left.device())?;
        let ge = Tensor::cat(&[&first, &at_or_above.narrow(1, 1, k - 1)?], 1)?;
        let zeros = Tensor::zeros((v.dim(0)?, 1), left.dtype(), left.device())?;
        let next = Tensor::cat(&[&ge.narrow(1, 1, k - 1)?, &zeros], 1)?;
        ge - next
    }
}

/// The row-wise sum of `onehot * t`: the selected bin's value, [M].
fn pick(onehot: &Tensor, t: &Tensor) -> Result<Tensor> {
    (onehot * t)?.sum(D::Minus1)
}

/// The selected bin's (x0, w, y0, h, d0, d1), each [M].
type Bin = (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);

fn pick_bin(onehot: &Tensor, kn: &KnotTensors) -> Result<Bin> {
    Ok((
        pick(onehot, &kn.x0)?,
        pick(onehot, &kn.w)?,
        pick(onehot, &kn.y0)?,
        pick(onehot, &kn.h)?,
        pick(onehot, &kn.d0)?,
        pick(onehot, &kn.d1)?,
    ))
}

/// 1 where |v| < B, else 0 ([M]).
fn inside(v: &Tensor, bound: f64) -> Result<Tensor> {
    v.abs()?.lt(bound)?.to_dtype(v.dtype())
}

/// log of the slope g'(x) at fraction xi of bin (w, h, d0, d1): eq. (5) of Durkan et al.
fn log_slope(xi: &Tensor, b: &Bin) -> Result<Tensor> {
    let (_, w, _, h, d0, d1) = b;
    let s = (h / w)?;
    let one_m = xi.affine(-1.0, 1.0)?;
    let xx = (xi * &one_m)?;
    let num = ((d1 * xi.sqr()?)? + (((&s * 2.0)? * &xx)? + (d0 * one_m.sqr()?)?)?)?;
    let den = (&s + ((d1 + d0)? - (&s * 2.0)?)?.mul(&xx)?)?;
    (s.sqr()?.log()? + num.log()?)? - (den.log()? * 2.0)?
}

/// The spline's side of a map at values `v` [M]: v clamped into the interval, and its bin
/// on the x knots (`on_x`, the data side) or the y knots (the base side).
fn clamped_bin(v: &Tensor, raw: &Tensor, cfg: &SplineConfig, on_x: bool) -> Result<(Tensor, Bin)> {
    let kn = KnotTensors::new(raw, cfg)?;
    let b = cfg.bound * (1.0 - 1e-6);
    let vc = v.clamp(-b, b)?;
    let edges = if on_x { &kn.x0 } else { &kn.y0 };
    let bin = pick_bin(&KnotTensors::bin_of(&vc.unsqueeze(1)?, edges)?, &kn)?;
    Ok((vc, bin))
}

/// (inner, log slope) inside the interval, (v, 0) outside it (the identity tails).
fn with_identity_tails(
    v: &Tensor,
    inner: &Tensor,
    log_slope: &Tensor,
    bound: f64,
) -> Result<(Tensor, Tensor)> {
    let m = inside(v, bound)?;
    let keep = m.affine(-1.0, 1.0)?;
    Ok((((&m * inner)? + (&keep * v)?)?, (m * log_slope)?))
}

/// Data -> base: z = g(x) and log g'(x) for x [M] and raw outputs [M, 3K - 1].
pub(crate) fn forward(x: &Tensor, raw: &Tensor, cfg: &SplineConfig) -> Result<(Tensor, Tensor)> {
    let (xc, bin) = clamped_bin(x, raw, cfg, true)?;
    let (x0, w, y0, h, d0, d1) = &bin;
    let xi = ((&xc - x0)? / w)?.clamp(0.0, 1.0)?;
    let s = (h / w)?;
    let one_m = xi.affine(-1.0, 1.0)?;
    let xx = (&xi * &one_m)?;
    let num = (h * ((&s * xi.sqr()?)? + (d0 * &xx)?)?)?;
    let den = (&s + ((d1 + d0)? - (&s * 2.0)?)?.mul(&xx)?)?;
    let g = (y0 + (num / den)?)?;
    with_identity_tails(x, &g, &log_slope(&xi, &bin)?, cfg.bound)
}

/// Base -> data: x = g^-1(z) and log g'(x) (the quadratic's stable root, eq. (6)-(8)).
pub(crate) fn inverse(z: &Tensor, raw: &Tensor, cfg: &SplineConfig) -> Result<(Tensor, Tensor)> {
    let (zc, bin) = clamped_bin(z, raw, cfg, false)?;
    let (x0, w, y0, h, d0, d1) = &bin;
    let s = (h / w)?;
    let dz = (&zc - y0)?;
    let sum_d = ((d1 + d0)? - (&s * 2.0)?)?;
    let a = ((h * (&s - d0)?)? + (&dz * &sum_d)?)?;
    let bq = ((h * d0)? - (&dz * &sum_d)?)?;
    let c = (s.neg()? * &dz)?;
    let disc = (bq.sqr()? - ((a * &c)? * 4.0)?)?.relu()?.sqrt()?;
    let xi = ((c * 2.0)? / (bq.neg()? - disc)?)?.clamp(0.0, 1.0)?;
    let x = ((&xi * w)? + x0)?;
    with_identity_tails(z, &x, &log_slope(&xi, &bin)?, cfg.bound)
}

/// One spline's knots on the CPU, from its raw outputs.
#[derive(Clone, Copy)]
pub(crate) struct Knots {
    k: usize,
    bound: f32,
    x0: [f32; MAX_BINS],
    y0: [f32; MAX_BINS],
    w: [f32; MAX_BINS],
    h: [f32; MAX_BINS],
    /// Raw interior slopes (softplus taken only at the two knots of the bin in use).
    raw_d: [f32; MAX_BINS],
}

/// Fill `out[..k]` with the floored softmax of `raw[..k]` scaled to 2B and `left` with the
/// bins' left edges.
fn cpu_bins(raw: &[f32], bound: f32, out: &mut [f32], left: &mut [f32]) {
    let k = raw.len();
    // logits clamped to [-30, 30] as in training (`bin_sizes`), so that both paths compute
    // the same function for any network output
    let clamp = |r: f32| r.clamp(-30.0, 30.0);
    let top = raw.iter().fold(-30.0f32, |a, &b| a.max(clamp(b)));
    let mut sum = 0.0;
    for (o, &r) in out.iter_mut().zip(raw) {
        *o = super::fast::fast_exp(clamp(r) - top);
        sum += *o;
    }
    let scale = (1.0 - MIN_BIN as f32 * k as f32) * 2.0 * bound / sum;
    let floor = MIN_BIN as f32 * 2.0 * bound;
    let mut edge = -bound;
    for (o, l) in out.iter_mut().zip(left.iter_mut()) {
        *o = *o * scale + floor;
        *l = edge;
        edge += *o;
    }
}

impl Knots {
    /// Knots from one variable's raw outputs (`raw.len()` = 3K - 1).
    pub(crate) fn new(raw: &[f32], cfg: &SplineConfig) -> Knots {
        let k = cfg.bins;
        let bound = cfg.bound as f32;
        let mut kn = Knots {
            k,
            bound,
            x0: [0.0; MAX_BINS],
            y0: [0.0; MAX_BINS],
            w: [0.0; MAX_BINS],
            h: [0.0; MAX_BINS],
            raw_d: [0.0; MAX_BINS],
        };
        cpu_bins(&raw[..k], bound, &mut kn.w[..k], &mut kn.x0[..k]);
        cpu_bins(&raw[k..2 * k], bound, &mut kn.h[..k], &mut kn.y0[..k]);
        kn.raw_d[1..k].copy_from_slice(&raw[2 * k..3 * k - 1]);
        kn
    }

    /// The slopes at the left and right knots of bin b (1 at the interval's ends).
    fn slopes(&self, b: usize) -> (f32, f32) {
        let at = |j: usize| {
            if j == 0 || j == self.k {
                1.0
            } else {
                let v = self.raw_d[j] + SLOPE_SHIFT as f32;
                v.max(0.0) + (-v.abs()).exp().ln_1p() + MIN_SLOPE as f32
            }
        };
        (at(b), at(b + 1))
    }

    /// The bin of `v` on the edges `left[..k]` (the last bin whose left edge is <= v).
    fn bin(&self, v: f32, left: &[f32]) -> usize {
        left[1..self.k].iter().take_while(|&&e| e <= v).count()
    }

    /// log g'(x) at fraction xi of bin b with knot slopes (d0, d1).
    fn log_slope(&self, b: usize, xi: f32, (d0, d1): (f32, f32)) -> f32 {
        let s = self.h[b] / self.w[b];
        let xx = xi * (1.0 - xi);
        let num = d1 * xi * xi + 2.0 * s * xx + d0 * (1.0 - xi) * (1.0 - xi);
        let den = s + (d1 + d0 - 2.0 * s) * xx;
        (s * s * num / (den * den)).ln()
    }

    /// Data -> base: (g(x), log g'(x)).
    pub(crate) fn forward(&self, x: f32) -> (f32, f32) {
        if x.abs() >= self.bound || x.is_nan() {
            return (x, 0.0);
        }
        let b = self.bin(x, &self.x0);
        let xi = ((x - self.x0[b]) / self.w[b]).clamp(0.0, 1.0);
        let s = self.h[b] / self.w[b];
        let (d0, d1) = self.slopes(b);
        let xx = xi * (1.0 - xi);
        let num = self.h[b] * (s * xi * xi + d0 * xx);
        let den = s + (d1 + d0 - 2.0 * s) * xx;
        (self.y0[b] + num / den, self.log_slope(b, xi, (d0, d1)))
    }

    /// Base -> data: (g^-1(z), log g'(g^-1(z))).
    pub(crate) fn inverse(&self, z: f32) -> (f32, f32) {
        if z.abs() >= self.bound || z.is_nan() {
            return (z, 0.0);
        }
        let b = self.bin(z, &self.y0);
        let s = self.h[b] / self.w[b];
        let (d0, d1) = self.slopes(b);
        let dz = z - self.y0[b];
        let sum_d = d1 + d0 - 2.0 * s;
        let a = self.h[b] * (s - d0) + dz * sum_d;
        let bq = self.h[b] * d0 - dz * sum_d;
        let c = -s * dz;
        let disc = (bq * bq - 4.0 * a * c).max(0.0).sqrt();
        let xi = (2.0 * c / (-bq - disc)).clamp(0.0, 1.0);
        (self.x0[b] + xi * self.w[b], self.log_slope(b, xi, (d0, d1)))
    }
}

/// Raw outputs as f32 rows for the CPU path's tests.
#[cfg(test)]
pub(crate) fn rows_f32(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    t.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::Rng;
    use candle_core::{DType, Device};

    fn random_raw(m: usize, cfg: &SplineConfig, seed: u64, scale: f64) -> Tensor {
        let mut rng = Rng::new(seed);
        let p = cfg.params();
        let v: Vec<f32> = (0..m * p).map(|_| (scale * rng.normal()) as f32).collect();
        Tensor::from_vec(v, (m, p), &Device::Cpu).unwrap()
    }

    const CFG: SplineConfig = SplineConfig {
        bins: 8,
        bound: 5.0,
    };

    #[test]
    fn zero_raw_outputs_give_the_identity() {
        let raw = Tensor::zeros((5, CFG.params()), DType::F32, &Device::Cpu).unwrap();
        let x = Tensor::new(&[-6.0f32, -4.3, 0.0, 1.7, 4.99], &Device::Cpu).unwrap();
        let (z, lg) = forward(&x, &raw, &CFG).unwrap();
        for (a, b) in z
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .zip(x.to_vec1::<f32>().unwrap())
        {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        for v in lg.to_vec1::<f32>().unwrap() {
            assert!(v.abs() < 1e-3, "log slope {v}");
        }
    }

    /// Logits beyond the training clamp give the same knots on both paths.
    #[test]
    fn extreme_logits_agree_between_candle_and_the_cpu_path() {
        let p = CFG.params();
        let raw: Vec<f32> = (0..p).map(|q| [40.0, 31.0, -45.0][q % 3]).collect();
        let t = Tensor::from_vec(raw.clone(), (1, p), &Device::Cpu).unwrap();
        let kn = Knots::new(&raw, &CFG);
        for x in [-4.9f32, -1.0, 0.3, 2.2, 4.7] {
            let (z, lg) = forward(&Tensor::new(&[x], &Device::Cpu).unwrap(), &t, &CFG).unwrap();
            let (zc, lgc) = kn.forward(x);
            let (z, lg) = (
                z.to_vec1::<f32>().unwrap()[0],
                lg.to_vec1::<f32>().unwrap()[0],
            );
            assert!((z - zc).abs() < 1e-4, "{z} vs {zc}");
            assert!((lg - lgc).abs() < 1e-3, "{lg} vs {lgc}");
        }
    }

    /// Monotone, inverted by `inverse`, log slope equal to finite differences, and the CPU
    /// path equal to candle's, on random splines and points inside and outside the interval.
    #[test]
    fn the_spline_inverts_and_its_log_slope_is_the_derivative() {
        let m = 400;
        let raw = random_raw(m, &CFG, 3, 1.5);
        let mut rng = Rng::new(4);
        let xs: Vec<f32> = (0..m)
            .map(|_| rng.uniform_range(-6.0, 6.0) as f32)
            .collect();
        let x = Tensor::from_vec(xs.clone(), m, &Device::Cpu).unwrap();
        let (z, lg) = forward(&x, &raw, &CFG).unwrap();
        let (xb, lgb) = inverse(&z, &raw, &CFG).unwrap();
        let (z, lg, xb, lgb) = (
            z.to_vec1::<f32>().unwrap(),
            lg.to_vec1::<f32>().unwrap(),
            xb.to_vec1::<f32>().unwrap(),
            lgb.to_vec1::<f32>().unwrap(),
        );
        let rows = rows_f32(&raw).unwrap();
        for t in 0..m {
            assert!(
                (xb[t] - xs[t]).abs() < 2e-3,
                "inverse {} vs {}",
                xb[t],
                xs[t]
            );
            assert!((lgb[t] - lg[t]).abs() < 2e-3, "{} vs {}", lgb[t], lg[t]);
            let kn = Knots::new(&rows[t], &CFG);
            let (zc, lgc) = kn.forward(xs[t]);
            assert!((zc - z[t]).abs() < 1e-4, "cpu {zc} vs {}", z[t]);
            assert!((lgc - lg[t]).abs() < 1e-3, "cpu {lgc} vs {}", lg[t]);
            let (xc, lgi) = kn.inverse(zc);
            assert!((xc - xs[t]).abs() < 2e-3, "cpu inverse {xc} vs {}", xs[t]);
            assert!((lgi - lgc).abs() < 2e-3);
        }
        // the log slope is the derivative: central differences of the f64 spline
        let raw64 = raw.to_dtype(DType::F64).unwrap();
        let eps = 1e-6;
        let at = |dx: f64| {
            let v: Vec<f64> = xs.iter().map(|&x| x as f64 + dx).collect();
            let (z, lg) =
                forward(&Tensor::from_vec(v, m, &Device::Cpu).unwrap(), &raw64, &CFG).unwrap();
            (z.to_vec1::<f64>().unwrap(), lg.to_vec1::<f64>().unwrap())
        };
        let ((_, lg64), (up, _), (down, _)) = (at(0.0), at(eps), at(-eps));
        for t in 0..m {
            assert!(up[t] > down[t], "not increasing at {}", xs[t]);
            let fd = ((up[t] - down[t]) / (2.0 * eps)).ln();
            assert!(
                (fd - lg64[t]).abs() < 1e-4,
                "log slope {} vs finite differences {fd} at {}",
                lg64[t],
                xs[t]
            );
            assert!((lg64[t] - lg[t] as f64).abs() < 1e-3);
        }
    }
}
