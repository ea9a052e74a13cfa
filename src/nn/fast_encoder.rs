//! The set encoder for inference on the CPU, in plain Rust: one star at a time, so that a
//! star's context (and hence its samples) never depends on which other stars share its
//! batch, and without candle's per-operation overhead on tiny matrices. Numerically the
//! same function as `encoder::SetEncoder::forward` (checked by a test).

use super::encoder::{Linear, SetEncoder};
use super::tokens::{n_tokens, parallax_features, phot_features, reddening_features, reddening_id};
use crate::likelihood::StarObs;
use crate::util::dot;
use anyhow::Result;

/// A dense layer y = W x + b with W row-major [out][in].
#[derive(Clone, Debug)]
struct Dense {
    w: Vec<f32>,
    b: Vec<f32>,
    n_in: usize,
    n_out: usize,
}

impl Dense {
    fn from(l: &Linear) -> Result<Dense> {
        let w2 = l.weight.to_vec2::<f32>()?;
        let (n_out, n_in) = (w2.len(), w2[0].len());
        Ok(Dense {
            w: w2.into_iter().flatten().collect(),
            b: l.bias.to_vec1::<f32>()?,
            n_in,
            n_out,
        })
    }

    /// out = W x + b.
    #[inline]
    fn apply(&self, x: &[f32], out: &mut [f32]) {
        for (o, (row, &b)) in out
            .iter_mut()
            .zip(self.w.chunks_exact(self.n_in).zip(&self.b))
        {
            *o = b + dot(row, x);
        }
    }
}

#[derive(Clone, Debug)]
struct Norm {
    g: Vec<f32>,
    b: Vec<f32>,
}

impl Norm {
    fn apply(&self, x: &[f32], out: &mut [f32]) {
        let d = x.len() as f32;
        let mean = x.iter().sum::<f32>() / d;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d;
        let inv = 1.0 / (var + 1e-5).sqrt();
        for (((o, &v), &g), &b) in out.iter_mut().zip(x).zip(&self.g).zip(&self.b) {
            *o = (v - mean) * inv * g + b;
        }
    }
}

#[derive(Clone, Debug)]
struct Mlp2 {
    l0: Dense,
    l1: Dense,
}

impl Mlp2 {
    fn apply(&self, x: &[f32], hidden: &mut Vec<f32>, out: &mut [f32]) {
        hidden.resize(self.l0.n_out, 0.0);
        self.l0.apply(x, hidden);
        hidden.iter_mut().for_each(|h| *h = h.max(0.0));
        self.l1.apply(hidden, out);
    }
}

#[derive(Clone, Debug)]
struct FastBlock {
    ln1: Norm,
    q: Dense,
    k: Dense,
    v: Dense,
    proj: Dense,
    ln2: Norm,
    ff1: Dense,
    ff2: Dense,
}

/// Plain-Rust copy of a trained set encoder.
#[derive(Clone, Debug)]
pub(crate) struct FastEncoder {
    d: usize,
    heads: usize,
    n_bands: usize,
    emb: Vec<f32>,
    mag: Mlp2,
    err: Mlp2,
    plx: Mlp2,
    red: Option<Mlp2>,
    blocks: Vec<FastBlock>,
    pool_seed: Vec<f32>,
    pool_ln: Norm,
    pool_k: Dense,
    pool_v: Dense,
    out: Mlp2,
}

fn norm(l: &super::encoder::LayerNorm) -> Result<Norm> {
    Ok(Norm {
        g: l.g.to_vec1::<f32>()?,
        b: l.b.to_vec1::<f32>()?,
    })
}

fn mlp(m: &super::encoder::Mlp) -> Result<Mlp2> {
    Ok(Mlp2 {
        l0: Dense::from(&m.l0)?,
        l1: Dense::from(&m.l1)?,
    })
}

/// Softmax of clamped scores (as the candle encoder: exp(clamp(s, -30, 30)) normalised).
fn softmax_clamped(s: &mut [f32]) {
    let mut sum = 0.0;
    for v in s.iter_mut() {
        *v = v.clamp(-30.0, 30.0).exp();
        sum += *v;
    }
    s.iter_mut().for_each(|v| *v /= sum);
}

impl FastEncoder {
    /// Copy the weights of a candle encoder.
    pub(crate) fn from_encoder(e: &SetEncoder) -> Result<FastEncoder> {
        let blocks = e
            .blocks
            .iter()
            .map(|b| {
                Ok(FastBlock {
                    ln1: norm(&b.ln1)?,
                    q: Dense::from(&b.q)?,
                    k: Dense::from(&b.k)?,
                    v: Dense::from(&b.v)?,
                    proj: Dense::from(&b.proj)?,
                    ln2: norm(&b.ln2)?,
                    ff1: Dense::from(&b.ff1)?,
                    ff2: Dense::from(&b.ff2)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FastEncoder {
            d: e.cfg.d_model,
            heads: e.cfg.heads,
            n_bands: e.cfg.n_bands,
            emb: e.emb.flatten_all()?.to_vec1::<f32>()?,
            mag: mlp(&e.mag)?,
            err: mlp(&e.err)?,
            plx: mlp(&e.plx)?,
            red: e.red.as_ref().map(mlp).transpose()?,
            blocks,
            pool_seed: e.pool_seed.flatten_all()?.to_vec1::<f32>()?,
            pool_ln: norm(&e.pool_ln)?,
            pool_k: Dense::from(&e.pool_k)?,
            pool_v: Dense::from(&e.pool_v)?,
            out: mlp(&e.out)?,
        })
    }

    /// Context vector of one star (tokens: measurements in order, then parallax).
    pub(crate) fn context(&self, star: &StarObs) -> Vec<f32> {
        let d = self.d;
        let reddening = star.reddening.filter(|_| self.red.is_some());
        let t = n_tokens(star, self.red.is_some());
        let mut x = vec![0f32; t * d];
        let mut hid = Vec::new();
        let mut a = vec![0f32; d];
        let mut b = vec![0f32; d];
        for (k, m) in star.phot.iter().enumerate() {
            let f = phot_features(m.mag, m.err);
            let row = &mut x[k * d..(k + 1) * d];
            row.copy_from_slice(&self.emb[m.band as usize * d..(m.band as usize + 1) * d]);
            self.mag.apply(&f[0..1], &mut hid, &mut a);
            self.err.apply(&f[1..2], &mut hid, &mut b);
            for ((r, &p), &q) in row.iter_mut().zip(&a).zip(&b) {
                *r += p + q;
            }
        }
        if let Some((p, e)) = star.parallax {
            let f = parallax_features(p, e);
            let k = star.phot.len();
            let row = &mut x[k * d..(k + 1) * d];
            row.copy_from_slice(&self.emb[self.n_bands * d..(self.n_bands + 1) * d]);
            self.plx.apply(&f, &mut hid, &mut a);
            for (r, &p) in row.iter_mut().zip(&a) {
                *r += p;
            }
        }
        if let (Some(r), Some(red)) = (reddening, &self.red) {
            let f = reddening_features(r.ebv, r.error);
            let row = &mut x[(t - 1) * d..t * d];
            let id = reddening_id(self.n_bands) as usize;
            row.copy_from_slice(&self.emb[id * d..(id + 1) * d]);
            red.apply(&f, &mut hid, &mut a);
            for (r, &p) in row.iter_mut().zip(&a) {
                *r += p;
            }
        }
        let h = self.heads;
        let dh = d / h;
        let scale = 1.0 / (dh as f32).sqrt();
        let mut hn = vec![0f32; t * d];
        let (mut q, mut kk, mut v) = (vec![0f32; t * d], vec![0f32; t * d], vec![0f32; t * d]);
        let mut o = vec![0f32; t * d];
        let mut s = vec![0f32; t];
        for blk in &self.blocks {
            for i in 0..t {
                blk.ln1
                    .apply(&x[i * d..(i + 1) * d], &mut hn[i * d..(i + 1) * d]);
            }
            for i in 0..t {
                let src = &hn[i * d..(i + 1) * d];
                blk.q.apply(src, &mut q[i * d..(i + 1) * d]);
                blk.k.apply(src, &mut kk[i * d..(i + 1) * d]);
                blk.v.apply(src, &mut v[i * d..(i + 1) * d]);
            }
            for hh in 0..h {
                let c = hh * dh..(hh + 1) * dh;
                for i in 0..t {
                    for j in 0..t {
                        s[j] = q[i * d + c.start..i * d + c.end]
                            .iter()
                            .zip(&kk[j * d + c.start..j * d + c.end])
                            .map(|(a, b)| a * b)
                            .sum::<f32>()
                            * scale;
                    }
                    softmax_clamped(&mut s);
                    for e in c.clone() {
                        o[i * d + e] = (0..t).map(|j| s[j] * v[j * d + e]).sum();
                    }
                }
            }
            for i in 0..t {
                blk.proj.apply(&o[i * d..(i + 1) * d], &mut a);
                for (r, &p) in x[i * d..(i + 1) * d].iter_mut().zip(&a) {
                    *r += p;
                }
                blk.ln2.apply(&x[i * d..(i + 1) * d], &mut b);
                hid.resize(blk.ff1.n_out, 0.0);
                blk.ff1.apply(&b, &mut hid);
                hid.iter_mut().for_each(|z| *z = z.max(0.0));
                blk.ff2.apply(&hid, &mut a);
                for (r, &p) in x[i * d..(i + 1) * d].iter_mut().zip(&a) {
                    *r += p;
                }
            }
        }
        // attention pooling (one seed query per head) and mean pooling
        for i in 0..t {
            self.pool_ln
                .apply(&x[i * d..(i + 1) * d], &mut hn[i * d..(i + 1) * d]);
        }
        for i in 0..t {
            self.pool_k
                .apply(&hn[i * d..(i + 1) * d], &mut kk[i * d..(i + 1) * d]);
            self.pool_v
                .apply(&hn[i * d..(i + 1) * d], &mut v[i * d..(i + 1) * d]);
        }
        let mut cat = vec![0f32; 2 * d];
        for hh in 0..h {
            let c = hh * dh..(hh + 1) * dh;
            for j in 0..t {
                s[j] = self.pool_seed[c.clone()]
                    .iter()
                    .zip(&kk[j * d + c.start..j * d + c.end])
                    .map(|(a, b)| a * b)
                    .sum::<f32>()
                    * scale;
            }
            softmax_clamped(&mut s);
            for e in c.clone() {
                cat[e] = (0..t).map(|j| s[j] * v[j * d + e]).sum();
            }
        }
        for e in 0..d {
            cat[d + e] = (0..t).map(|j| x[j * d + e]).sum::<f32>() / t.max(1) as f32;
        }
        let mut ctx = vec![0f32; self.out.l1.n_out];
        self.out.apply(&cat, &mut hid, &mut ctx);
        ctx
    }
}
