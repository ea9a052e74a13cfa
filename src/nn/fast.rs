//! Fast CPU sampler for the conditional MAF: draws samples and their exact log densities in
//! one pass, for many samples of one star at once.
//!
//! Inverting a MADE block is sequential over the D dimensions, but every hidden unit
//! depends only on inputs of lower rank than its degree, so with the units sorted by degree
//! each unit is computed exactly once (no D-fold recomputation). Activations are stored
//! dimension-major ([unit]\[sample\]) so the inner loops run over samples with SIMD, and the
//! context's contribution to every hidden unit is computed once per star.

use super::flow::{Head, Maf};
use super::spline::{Knots, SplineConfig, MAX_BINS};
use anyhow::Result;

/// One MADE block in degree-sorted layout.
#[derive(Clone, Debug)]
pub(crate) struct FastMade {
    /// Variable index by rank.
    order: Vec<usize>,
    /// Hidden units of degree r are [group_end[r-1], group_end[r]).
    group_end: Vec<usize>,
    /// Unit permutation: sorted position -> original unit index (read by the tests'
    /// reference path).
    #[cfg_attr(not(test), allow(dead_code))]
    perm: Vec<usize>,
    /// Layer-1 weights by sorted unit, inputs in rank order [h][d].
    w1: Vec<f32>,
    b1: Vec<f32>,
    /// Layer-2 weights [h][h], both axes sorted.
    w2: Vec<f32>,
    b2: Vec<f32>,
    b3: Vec<f32>,
    b4: Vec<f32>,
    /// Context -> hidden weights of both layers, sorted rows [h][ctx].
    c1: Vec<f32>,
    c2: Vec<f32>,
    /// Affine blocks: shift (w3) and log-scale (w4) output rows by variable index, sorted
    /// hidden axis, interleaved: [d][2][h] (empty for spline blocks).
    w34: Vec<f32>,
    clip: f32,
    /// Spline blocks: their output layer.
    spline: Option<FastSplineHead>,
}

/// The output layer of a spline block in sorted layout.
#[derive(Clone, Debug)]
struct FastSplineHead {
    /// Rows by variable index, then parameter, sorted hidden axis: [d][P][h].
    w5: Vec<f32>,
    /// [d][P].
    b5: Vec<f32>,
    cfg: SplineConfig,
}

impl FastSplineHead {
    /// Variable i's P raw outputs for n samples into `out` ([P][n]), from the first `k_len`
    /// sorted units of layer 2 (the units it may see).
    #[inline(always)]
    fn outputs<const FMA: bool>(
        &self,
        i: usize,
        h: usize,
        k_len: usize,
        h2: &[f32],
        n: usize,
        out: &mut Vec<f32>,
    ) {
        let p = self.cfg.params();
        out.resize(p * n, 0.0);
        let mut q = 0;
        while q < p {
            let m = (p - q).min(4);
            let row = i * p + q;
            let mut bias = [0f32; 4];
            bias[..m].copy_from_slice(&self.b5[row..row + m]);
            let o = &mut out[q * n..(q + m) * n];
            dense_rows::<FMA>(m, &bias, &self.w5[row * h..], h, k_len, h2, n, o);
            q += m;
        }
    }

    /// Sample t's knots from the outputs ([P][n]).
    #[inline(always)]
    fn knots(&self, raw: &[f32], n: usize, t: usize) -> Knots {
        let mut r = [0f32; 3 * MAX_BINS];
        let p = self.cfg.params();
        for (q, v) in r[..p].iter_mut().enumerate() {
            *v = raw[q * n + t];
        }
        Knots::new(&r[..p], &self.cfg)
    }
}

/// The whole flow in fast layout.
#[derive(Clone, Debug)]
pub(crate) struct FastMaf {
    /// Blocks in data -> base order.
    pub(crate) blocks: Vec<FastMade>,
    /// Dimension.
    pub(crate) dim: usize,
    /// Hidden width.
    pub(crate) hidden: usize,
}

fn to_vec2(t: &candle_core::Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(t.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
}

fn to_vec1(t: &candle_core::Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?)
}

impl FastMaf {
    /// Copy weights out of a candle flow.
    pub(crate) fn from_maf(maf: &Maf) -> Result<FastMaf> {
        let d = maf.cfg.dim;
        let h = maf.cfg.hidden;
        let mut blocks = Vec::new();
        for blk in &maf.blocks {
            let deg = &blk.degrees;
            let mut order = vec![0; d];
            for (i, &r) in deg.input.iter().enumerate() {
                order[r - 1] = i;
            }
            let mut perm: Vec<usize> = (0..h).collect();
            perm.sort_by_key(|&j| (deg.hidden[j], j));
            let mut group_end = vec![0; d];
            for r in 0..d {
                group_end[r] = perm.iter().filter(|&&j| deg.hidden[j] <= r).count();
            }
            let (w1o, w2o) = (to_vec2(&blk.w1)?, to_vec2(&blk.w2)?);
            let (b1o, b2o) = (to_vec1(&blk.b1)?, to_vec1(&blk.b2)?);
            let mut w1 = vec![0f32; h * d];
            let mut w2 = vec![0f32; h * h];
            for (js, &j) in perm.iter().enumerate() {
                for r in 0..d {
                    let i = order[r];
                    // masked: unit of degree g sees inputs of rank < g
                    if deg.hidden[j] >= deg.input[i] {
                        w1[js * d + r] = w1o[j][i];
                    }
                }
                for (ks, &k) in perm.iter().enumerate() {
                    if deg.hidden[j] >= deg.hidden[k] {
                        w2[js * h + ks] = w2o[j][k];
                    }
                }
            }
            // output row of variable i, sorted hidden axis, masked: units of degree < rank
            let sorted_row = |row: &[f32], i: usize| -> Vec<f32> {
                perm.iter()
                    .map(|&k| {
                        if deg.input[i] > deg.hidden[k] {
                            row[k]
                        } else {
                            0.0
                        }
                    })
                    .collect()
            };
            let (mut w34, mut b3, mut b4, mut clip, mut spline) =
                (Vec::new(), Vec::new(), Vec::new(), 0.0, None);
            match &blk.head {
                Head::Affine {
                    w3,
                    b3: b3t,
                    w4,
                    b4: b4t,
                    clip: c,
                    ..
                } => {
                    let (w3o, w4o) = (to_vec2(w3)?, to_vec2(w4)?);
                    for i in 0..d {
                        w34.extend(sorted_row(&w3o[i], i));
                        w34.extend(sorted_row(&w4o[i], i));
                    }
                    (b3, b4, clip) = (to_vec1(b3t)?, to_vec1(b4t)?, *c as f32);
                }
                Head::Spline { w5, b5, cfg, .. } => {
                    let (w5o, p) = (to_vec2(w5)?, cfg.params());
                    let w5 = (0..d * p)
                        .flat_map(|o| sorted_row(&w5o[o], o / p))
                        .collect();
                    spline = Some(FastSplineHead {
                        w5,
                        b5: to_vec1(b5)?,
                        cfg: *cfg,
                    });
                }
            }
            let (c1o, c2o) = (to_vec2(blk.c1.weight())?, to_vec2(blk.c2.weight())?);
            let c1: Vec<f32> = perm.iter().flat_map(|&j| c1o[j].clone()).collect();
            let c2: Vec<f32> = perm.iter().flat_map(|&j| c2o[j].clone()).collect();
            let b1 = perm.iter().map(|&j| b1o[j]).collect();
            let b2 = perm.iter().map(|&j| b2o[j]).collect();
            blocks.push(FastMade {
                order,
                group_end,
                perm,
                w1,
                b1,
                w2,
                b2,
                b3,
                b4,
                c1,
                c2,
                w34,
                clip,
                spline,
            });
        }
        Ok(FastMaf {
            blocks,
            dim: d,
            hidden: h,
        })
    }

    /// Block k's context terms (sorted layout) from a context vector.
    pub(crate) fn context_terms(
        &self,
        k: usize,
        ctx: &[f32],
        out1: &mut Vec<f32>,
        out2: &mut Vec<f32>,
    ) {
        let blk = &self.blocks[k];
        let c = ctx.len();
        out1.clear();
        out2.clear();
        for (r1, r2) in blk.c1.chunks_exact(c).zip(blk.c2.chunks_exact(c)) {
            out1.push(crate::util::dot(r1, ctx));
            out2.push(crate::util::dot(r2, ctx));
        }
    }

    /// Per-block context terms in sorted layout from the candle flow's context terms
    /// (cc\[k\] = (c1(ctx), c2(ctx)) rows of one star). Tests only: the reference path.
    #[cfg(test)]
    pub(crate) fn sorted_context(
        &self,
        k: usize,
        c1: &[f32],
        c2: &[f32],
        out1: &mut [f32],
        out2: &mut [f32],
    ) {
        let blk = &self.blocks[k];
        for (js, &j) in blk.perm.iter().enumerate() {
            out1[js] = c1[j];
            out2[js] = c2[j];
        }
    }
}

/// Reusable buffers for [`FastMaf::sample_star`] and [`FastMaf::log_prob_star`] (no
/// allocation per sample or per star).
#[derive(Default)]
pub(crate) struct Workspace {
    x: Vec<f32>,
    /// Inputs of a block in rank order (density pass).
    xr: Vec<f32>,
    y: Vec<f32>,
    h1: Vec<f32>,
    h2: Vec<f32>,
    alpha_sum: Vec<f32>,
    acc: Vec<f32>,
    mu: Vec<f32>,
    /// Spline blocks' raw outputs for one variable, [P][n].
    raw: Vec<f32>,
}

/// Samples per register tile.
const TILE: usize = 16;

impl FastMaf {
    /// Transform base noise `z` (dimension-major \[dim\]\[n\]) into samples `u` (dimension-major,
    /// written into `u`) and return in `log_q` the log density of each u under the flow.
    /// `ctx1/ctx2[k]` are block k's sorted context terms. `n` must be a multiple of 16.
    #[allow(
        clippy::too_many_arguments,
        reason = "the hot kernel takes its buffers separately so that callers reuse them"
    )]
    pub(crate) fn sample_star(
        &self,
        z: &[f32],
        n: usize,
        ctx1: &[Vec<f32>],
        ctx2: &[Vec<f32>],
        ws: &mut Workspace,
        u: &mut [f32],
        log_q: &mut [f64],
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::util::has_avx2_fma() {
                // SAFETY: the CPU supports avx2 and fma (checked at run time).
                unsafe { self.sample_avx2(z, n, ctx1, ctx2, ws, u, log_q) };
                return;
            }
        }
        self.sample_generic::<false>(z, n, ctx1, ctx2, ws, u, log_q)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn sample_avx2(
        &self,
        z: &[f32],
        n: usize,
        ctx1: &[Vec<f32>],
        ctx2: &[Vec<f32>],
        ws: &mut Workspace,
        u: &mut [f32],
        log_q: &mut [f64],
    ) {
        self.sample_generic::<true>(z, n, ctx1, ctx2, ws, u, log_q)
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn sample_generic<const FMA: bool>(
        &self,
        z: &[f32],
        n: usize,
        ctx1: &[Vec<f32>],
        ctx2: &[Vec<f32>],
        ws: &mut Workspace,
        u: &mut [f32],
        log_q: &mut [f64],
    ) {
        assert!(
            n.is_multiple_of(TILE),
            "sample count must be a multiple of {TILE}"
        );
        let (d, h) = (self.dim, self.hidden);
        ws.x.clear();
        ws.x.extend_from_slice(&z[..d * n]);
        ws.y.resize(d * n, 0.0);
        ws.h1.resize(h * n, 0.0);
        ws.h2.resize(h * n, 0.0);
        ws.acc.resize(n, 0.0);
        ws.mu.resize(2 * n, 0.0);
        ws.alpha_sum.clear();
        ws.alpha_sum.resize(n, 0.0);
        for (k, blk) in self.blocks.iter().enumerate().rev() {
            let c1 = &ctx1[k];
            let c2 = &ctx2[k];
            let mut prev_end = 0;
            for r in 0..d {
                let end = blk.group_end[r];
                // layer 1, units of degree r: inputs of rank < r
                for j in prev_end..end {
                    let bias = blk.b1[j] + c1[j];
                    let row = &blk.w1[j * d..j * d + d];
                    let out = &mut ws.h1[j * n..(j + 1) * n];
                    out.iter_mut().for_each(|o| *o = bias);
                    for (s, &w) in row.iter().enumerate().take(r) {
                        let yi = &ws.y[blk.order[s] * n..(blk.order[s] + 1) * n];
                        axpy::<FMA>(w, yi, out);
                    }
                    out.iter_mut().for_each(|o| *o = o.max(0.0));
                }
                // layer 2, units of degree r: layer-1 units of degree <= r
                rows::<FMA>(
                    &blk.b2, c2, &blk.w2, h, prev_end, end, end, &ws.h1, n, &mut ws.h2,
                );
                prev_end = end;
                let i = blk.order[r];
                if let Some(sp) = &blk.spline {
                    sp.outputs::<FMA>(i, h, end, &ws.h2, n, &mut ws.raw);
                    let xi = &ws.x[i * n..(i + 1) * n];
                    let yi = &mut ws.y[i * n..(i + 1) * n];
                    for (t, (y, &x)) in yi.iter_mut().zip(xi).enumerate() {
                        let (v, log_slope) = sp.knots(&ws.raw, n, t).inverse(x);
                        *y = v;
                        ws.alpha_sum[t] -= log_slope;
                    }
                    continue;
                }
                // shift and log-scale of the variable of rank r, side by side [mu | raw]:
                // layer-2 units of degree <= r
                let bias = [blk.b3[i], blk.b4[i], 0.0, 0.0];
                dense::<2, FMA>(&bias, &blk.w34[2 * i * h..], h, end, &ws.h2, n, &mut ws.mu);
                let (mu, raw) = ws.mu.split_at(n);
                let clip = blk.clip;
                let xi = &ws.x[i * n..(i + 1) * n];
                let yi = &mut ws.y[i * n..(i + 1) * n];
                for (((y, &x), (&m, &r)), s) in yi
                    .iter_mut()
                    .zip(xi)
                    .zip(mu.iter().zip(raw))
                    .zip(ws.alpha_sum.iter_mut())
                {
                    let a = clip * fast_tanh(r / clip);
                    *y = x * fast_exp(a) + m;
                    *s += a;
                }
            }
            std::mem::swap(&mut ws.x, &mut ws.y);
        }
        u[..d * n].copy_from_slice(&ws.x[..d * n]);
        base_log_density(&ws.alpha_sum, z, d, n, log_q);
    }
}

impl FastMaf {
    /// log q(u) of given points u (dimension-major \[dim\]\[n\], `n` a multiple of 16) under the
    /// flow with context terms `ctx1/ctx2[k]` of block k: one pass per block in the
    /// data -> base direction (no sequential inversion), every hidden unit computed once.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn log_prob_star(
        &self,
        u: &[f32],
        n: usize,
        ctx1: &[Vec<f32>],
        ctx2: &[Vec<f32>],
        ws: &mut Workspace,
        log_q: &mut [f64],
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::util::has_avx2_fma() {
                // SAFETY: the CPU supports avx2 and fma (checked at run time).
                unsafe { self.log_prob_avx2(u, n, ctx1, ctx2, ws, log_q) };
                return;
            }
        }
        self.log_prob_generic::<false>(u, n, ctx1, ctx2, ws, log_q)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn log_prob_avx2(
        &self,
        u: &[f32],
        n: usize,
        ctx1: &[Vec<f32>],
        ctx2: &[Vec<f32>],
        ws: &mut Workspace,
        log_q: &mut [f64],
    ) {
        self.log_prob_generic::<true>(u, n, ctx1, ctx2, ws, log_q)
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn log_prob_generic<const FMA: bool>(
        &self,
        u: &[f32],
        n: usize,
        ctx1: &[Vec<f32>],
        ctx2: &[Vec<f32>],
        ws: &mut Workspace,
        log_q: &mut [f64],
    ) {
        assert!(
            n.is_multiple_of(TILE),
            "point count must be a multiple of {TILE}"
        );
        let (d, h) = (self.dim, self.hidden);
        ws.x.clear();
        ws.x.extend_from_slice(&u[..d * n]);
        ws.xr.resize(d * n, 0.0);
        ws.h1.resize(h * n, 0.0);
        ws.h2.resize(h * n, 0.0);
        ws.mu.resize(2 * n, 0.0);
        ws.alpha_sum.clear();
        ws.alpha_sum.resize(n, 0.0);
        for (k, blk) in self.blocks.iter().enumerate() {
            for (r, &i) in blk.order.iter().enumerate() {
                ws.xr[r * n..(r + 1) * n].copy_from_slice(&ws.x[i * n..(i + 1) * n]);
            }
            let mut start = 0;
            for g in 0..d {
                let end = blk.group_end[g];
                // layer 1: units of degree g see inputs of rank < g
                rows::<FMA>(
                    &blk.b1, &ctx1[k], &blk.w1, d, start, end, g, &ws.xr, n, &mut ws.h1,
                );
                start = end;
            }
            let mut start = 0;
            for g in 0..d {
                let end = blk.group_end[g];
                // layer 2: units of degree g see layer-1 units of degree <= g
                rows::<FMA>(
                    &blk.b2, &ctx2[k], &blk.w2, h, start, end, end, &ws.h1, n, &mut ws.h2,
                );
                start = end;
            }
            for (r, &i) in blk.order.iter().enumerate() {
                let k_len = blk.group_end[r];
                if let Some(sp) = &blk.spline {
                    sp.outputs::<FMA>(i, h, k_len, &ws.h2, n, &mut ws.raw);
                    let xi = &mut ws.x[i * n..(i + 1) * n];
                    for (t, x) in xi.iter_mut().enumerate() {
                        let (z, log_slope) = sp.knots(&ws.raw, n, t).forward(*x);
                        *x = z;
                        ws.alpha_sum[t] -= log_slope;
                    }
                    continue;
                }
                // shift and log-scale of the variable of rank r: layer-2 units of degree <= r
                let bias = [blk.b3[i], blk.b4[i], 0.0, 0.0];
                dense::<2, FMA>(
                    &bias,
                    &blk.w34[2 * i * h..],
                    h,
                    k_len,
                    &ws.h2,
                    n,
                    &mut ws.mu,
                );
                let (mu, raw) = ws.mu.split_at(n);
                let clip = blk.clip;
                let xi = &mut ws.x[i * n..(i + 1) * n];
                for (((x, &m), &r), s) in
                    xi.iter_mut().zip(mu).zip(raw).zip(ws.alpha_sum.iter_mut())
                {
                    let a = clip * fast_tanh(r / clip);
                    *x = (*x - m) * fast_exp(-a);
                    *s += a;
                }
            }
        }
        base_log_density(&ws.alpha_sum, &ws.x, d, n, log_q);
    }
}

/// log q = log N(z; 0, I) - sum of the log-scales, per point (z dimension-major [dim][n]).
fn base_log_density(alpha_sum: &[f32], z: &[f32], d: usize, n: usize, log_q: &mut [f64]) {
    const HALF_LOG_2PI: f64 = 0.918_938_533_204_672_8;
    for t in 0..n {
        let mut lq = -(alpha_sum[t] as f64) - d as f64 * HALF_LOG_2PI;
        for i in 0..d {
            let zz = z[i * n + t] as f64;
            lq -= 0.5 * zz * zz;
        }
        log_q[t] = lq;
    }
}

/// Hidden units [start, end) of one layer, ReLU(bias + context + W act), four at a time:
/// each unit's row of `w` (row stride `stride`) is read over its first `k_len` inputs.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows<const FMA: bool>(
    b: &[f32],
    c: &[f32],
    w: &[f32],
    stride: usize,
    start: usize,
    end: usize,
    k_len: usize,
    act: &[f32],
    n: usize,
    out: &mut [f32],
) {
    let mut j = start;
    while j < end {
        let m = (end - j).min(4);
        let mut bias = [0f32; 4];
        for q in 0..m {
            bias[q] = b[j + q] + c[j + q];
        }
        let o = &mut out[j * n..(j + m) * n];
        dense_rows::<FMA>(m, &bias, &w[j * stride..], stride, k_len, act, n, o);
        o.iter_mut().for_each(|x| *x = x.max(0.0));
        j += m;
    }
}

/// [`dense`] for `m` (1 to 4) output rows, the row count known only at run time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dense_rows<const FMA: bool>(
    m: usize,
    bias: &[f32; 4],
    w: &[f32],
    stride: usize,
    k_len: usize,
    act: &[f32],
    n: usize,
    out: &mut [f32],
) {
    match m {
        4 => dense::<4, FMA>(bias, w, stride, k_len, act, n, out),
        3 => dense::<3, FMA>(bias, w, stride, k_len, act, n, out),
        2 => dense::<2, FMA>(bias, w, stride, k_len, act, n, out),
        _ => dense::<1, FMA>(bias, w, stride, k_len, act, n, out),
    }
}

/// out += w * x.
#[inline(always)]
fn axpy<const FMA: bool>(w: f32, x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = if FMA { w.mul_add(v, *o) } else { *o + w * v };
    }
}

/// J output rows at once: out[q][t] = bias[q] + sum_{k < k_len} w[q * stride + k] act[k][t]
/// (activations dimension-major, n samples per row). Tiles of J units x 16 samples keep
/// 2J independent accumulators in registers and reuse every activation load J times.
#[inline(always)]
fn dense<const J: usize, const FMA: bool>(
    bias: &[f32; 4],
    w: &[f32],
    stride: usize,
    k_len: usize,
    act: &[f32],
    n: usize,
    out: &mut [f32],
) {
    let mut t0 = 0;
    while t0 < n {
        let mut acc = [[0f32; TILE]; J];
        for q in 0..J {
            acc[q] = [bias[q]; TILE];
        }
        for k in 0..k_len {
            let a: &[f32; TILE] = act[k * n + t0..k * n + t0 + TILE].try_into().unwrap();
            for q in 0..J {
                let wq = w[q * stride + k];
                for l in 0..TILE {
                    acc[q][l] = if FMA {
                        wq.mul_add(a[l], acc[q][l])
                    } else {
                        acc[q][l] + wq * a[l]
                    };
                }
            }
        }
        for q in 0..J {
            out[q * n + t0..q * n + t0 + TILE].copy_from_slice(&acc[q]);
        }
        t0 += TILE;
    }
}

/// e^x for |x| < 87 with ~2e-7 relative error (vectorisable, no libm).
#[inline(always)]
#[allow(
    clippy::manual_clamp,
    reason = "max/min send NaN to a bound, so no NaN leaves the kernel; clamp would pass it"
)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    let x = x.max(-87.0).min(87.0);
    // round to nearest with the 1.5 * 2^23 trick (vectorises, unlike f32::round)
    const MAGIC: f32 = 12_582_912.0;
    let k = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    let r = x - k * 0.693_145_75 - k * 1.428_606_8e-6;
    // e^r on |r| <= 0.347: degree-6 Taylor/minimax
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

/// tanh(x) via e^(2x) (vectorisable).
#[inline(always)]
#[allow(
    clippy::manual_clamp,
    reason = "max/min send NaN to a bound, so no NaN leaves the kernel; clamp would pass it"
)]
pub(crate) fn fast_tanh(x: f32) -> f32 {
    let x = x.max(-15.0).min(15.0);
    let e = fast_exp(2.0 * x);
    (e - 1.0) / (e + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_and_tanh() {
        let mut x = -20.0f32;
        while x < 20.0 {
            let e = (fast_exp(x) as f64 - (x as f64).exp()).abs() / (x as f64).exp();
            assert!(e < 1e-6, "exp({x}) rel err {e}");
            let t = (fast_tanh(x) as f64 - (x as f64).tanh()).abs();
            assert!(t < 2e-6, "tanh({x}) err {t}");
            x += 0.013;
        }
    }
}
