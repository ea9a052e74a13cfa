//! Conditional masked autoregressive flow (MAF, Papamakarios et al. 2017) in candle.
//!
//! Each block is a MADE whose outputs parametrise an elementwise transform of each variable,
//! with the autoregressive order permuted between blocks. Hidden units carry MADE degrees
//! 0..D-1; degree-0 units see only the context, so every dimension is conditioned on it.
//! - Affine (the default): in the data -> base direction
//!   z_i = (u_i - mu_i(u_<i, c)) exp(-alpha_i(u_<i, c)), ladj = -sum alpha_i; log-scales are
//!   soft-clipped (alpha = c tanh(raw / c)) so the inverse stays finite.
//! - Rational-quadratic spline (neural spline flow, Durkan et al. 2019): z_i = g_i(u_i) with
//!   g_i's knots from u_<i and c ([`super::spline`]), ladj = sum log g_i'(u_i).

use super::encoder::add_bias;
use super::spline::{self, SplineConfig};
use candle_core::{Result, Tensor, D};
use candle_nn::{Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

/// Flow hyper-parameters.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct FlowConfig {
    /// Dimension of theta (6).
    pub(crate) dim: usize,
    /// Context width.
    pub(crate) ctx: usize,
    /// Hidden units per MADE layer.
    pub(crate) hidden: usize,
    /// Autoregressive order of each block (permutation of 0..dim, first = conditioned only
    /// on the context).
    pub(crate) orders: Vec<Vec<usize>>,
    /// Soft clip of the log-scales (affine blocks).
    pub(crate) alpha_clip: f64,
    /// Spline transforms instead of affine ones (absent in the cards of affine flows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) spline: Option<SplineConfig>,
}

impl FlowConfig {
    /// Default orders: alternate identity / reversed, then fixed shuffles.
    pub(crate) fn default_orders(dim: usize, blocks: usize, seed: u64) -> Vec<Vec<usize>> {
        let mut rng = crate::util::rng::Rng::new(seed);
        (0..blocks)
            .map(|k| match k % 3 {
                0 => (0..dim).collect(),
                1 => (0..dim).rev().collect(),
                _ => {
                    let mut p: Vec<usize> = (0..dim).collect();
                    for i in (1..dim).rev() {
                        let j = rng.below(i + 1);
                        p.swap(i, j);
                    }
                    p
                }
            })
            .collect()
    }
}

/// MADE degrees of one block.
#[derive(Clone, Debug)]
pub(crate) struct Degrees {
    /// rank\[i\] + 1 for input variable i (1..=D).
    pub(crate) input: Vec<usize>,
    /// Degree of hidden unit j (0..D-1), same for both hidden layers.
    pub(crate) hidden: Vec<usize>,
}

impl Degrees {
    /// Degrees for an order and hidden width.
    pub(crate) fn new(order: &[usize], hidden: usize) -> Degrees {
        let d = order.len();
        let mut input = vec![0; d];
        for (r, &i) in order.iter().enumerate() {
            input[i] = r + 1;
        }
        Degrees {
            input,
            hidden: (0..hidden).map(|j| j % d).collect(),
        }
    }

    /// Masks (row-major, \[out\]\[in\]): input->hidden, hidden->hidden, hidden->output (2D outputs:
    /// mu for every variable, then alpha).
    pub(crate) fn masks(&self) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (d, h) = (self.input.len(), self.hidden.len());
        let mut m1 = vec![0f32; h * d];
        let mut m2 = vec![0f32; h * h];
        let mut m3 = vec![0f32; 2 * d * h];
        for j in 0..h {
            for i in 0..d {
                m1[j * d + i] = (self.hidden[j] >= self.input[i]) as u8 as f32;
            }
            for k in 0..h {
                m2[j * h + k] = (self.hidden[j] >= self.hidden[k]) as u8 as f32;
            }
        }
        for o in 0..2 * d {
            let i = o % d;
            for j in 0..h {
                m3[o * h + j] = (self.input[i] > self.hidden[j]) as u8 as f32;
            }
        }
        (m1, m2, m3)
    }
}

/// The outputs of a MADE block: what its transform of each variable is made of.
pub(crate) enum Head {
    /// Shift and log-scale per variable.
    Affine {
        /// Hidden -> shift outputs [D, H].
        w3: Tensor,
        /// Shift bias [D].
        b3: Tensor,
        /// Hidden -> log-scale outputs [D, H].
        w4: Tensor,
        /// Log-scale bias [D].
        b4: Tensor,
        /// Mask [D, H].
        m3: Tensor,
        /// Soft clip of the log-scales.
        clip: f64,
    },
    /// 3K - 1 spline parameters per variable, rows variable-major (row i * P + p).
    Spline {
        /// Hidden -> spline outputs [D * P, H].
        w5: Tensor,
        /// Bias [D * P].
        b5: Tensor,
        /// Mask [D * P, H] (row i * P + p: variable i's mask).
        m5: Tensor,
        /// Knots and interval.
        cfg: SplineConfig,
    },
}

/// One conditional MADE block.
pub(crate) struct Made {
    /// Input -> hidden weight [H, D] (unmasked values).
    pub(crate) w1: Tensor,
    /// Bias \[H\].
    pub(crate) b1: Tensor,
    /// Context -> hidden 1 (no bias).
    pub(crate) c1: Linear,
    /// Hidden -> hidden [H, H].
    pub(crate) w2: Tensor,
    /// Bias \[H\].
    pub(crate) b2: Tensor,
    /// Context -> hidden 2 (no bias).
    pub(crate) c2: Linear,
    /// Output layer and transform.
    pub(crate) head: Head,
    m1: Tensor,
    m2: Tensor,
    /// Degrees.
    pub(crate) degrees: Degrees,
}

/// Output weights initialised near zero, so that a new block is nearly the identity.
const SMALL_INIT: candle_nn::Init = candle_nn::Init::Uniform {
    lo: -1e-3,
    up: 1e-3,
};

impl Head {
    fn new(cfg: &FlowConfig, m3: &[f32], vb: &VarBuilder) -> Result<Self> {
        let (d, h) = (cfg.dim, cfg.hidden);
        let dev = vb.device();
        let zero = candle_nn::Init::Const(0.0);
        // the shift and log-scale rows share a mask: the first D rows of the 2D-row mask
        let m3 = Tensor::from_vec(m3[..d * h].to_vec(), (d, h), dev)?.to_dtype(vb.dtype())?;
        Ok(match cfg.spline {
            None => Head::Affine {
                w3: vb.get_with_hints((d, h), "w3", SMALL_INIT)?,
                b3: vb.get_with_hints(d, "b3", zero)?,
                w4: vb.get_with_hints((d, h), "w4", SMALL_INIT)?,
                b4: vb.get_with_hints(d, "b4", zero)?,
                m3,
                clip: cfg.alpha_clip,
            },
            Some(sp) => {
                let p = sp.params();
                let m5 = m3.unsqueeze(1)?.repeat((1, p, 1))?.reshape((d * p, h))?;
                Head::Spline {
                    w5: vb.get_with_hints((d * p, h), "w5", SMALL_INIT)?,
                    b5: vb.get_with_hints(d * p, "b5", zero)?,
                    m5,
                    cfg: sp,
                }
            }
        })
    }

    /// Data -> base for the variables `x` [N, D] given the hidden layer h2 [N, H]:
    /// (z [N, D], log |dz/dx| per row [N]).
    fn forward(&self, x: &Tensor, h2: &Tensor) -> Result<(Tensor, Tensor)> {
        match self {
            Head::Affine { .. } => {
                let (mu, alpha) = self.affine(h2)?;
                let z = ((x - mu)? * alpha.neg()?.exp()?)?;
                Ok((z, alpha.sum(D::Minus1)?.neg()?))
            }
            Head::Spline { cfg, .. } => {
                let (n, d) = x.dims2()?;
                let (z, lg) = spline::forward(&x.flatten_all()?, &self.spline_raw(h2, d)?, cfg)?;
                Ok((z.reshape((n, d))?, lg.reshape((n, d))?.sum(D::Minus1)?))
            }
        }
    }

    /// Base -> data for every variable (the caller keeps the one whose inputs are final):
    /// (x [N, D], log |dz/dx| [N, D]).
    fn inverse(&self, z: &Tensor, h2: &Tensor) -> Result<(Tensor, Tensor)> {
        match self {
            Head::Affine { .. } => {
                let (mu, alpha) = self.affine(h2)?;
                Ok((((z * alpha.exp()?)? + mu)?, alpha.neg()?))
            }
            Head::Spline { cfg, .. } => {
                let (n, d) = z.dims2()?;
                let (x, lg) = spline::inverse(&z.flatten_all()?, &self.spline_raw(h2, d)?, cfg)?;
                Ok((x.reshape((n, d))?, lg.reshape((n, d))?))
            }
        }
    }

    /// (mu, alpha) [N, D] of an affine head.
    fn affine(&self, h2: &Tensor) -> Result<(Tensor, Tensor)> {
        let Head::Affine {
            w3,
            b3,
            w4,
            b4,
            m3,
            clip,
        } = self
        else {
            unreachable!("affine parameters of a spline head")
        };
        let mu = add_bias(&h2.matmul(&(w3 * m3)?.t()?)?, b3)?;
        let raw = add_bias(&h2.matmul(&(w4 * m3)?.t()?)?, b4)?;
        let alpha = ((raw / *clip)?.tanh()? * *clip)?;
        Ok((mu, alpha))
    }

    /// Raw spline outputs [N * D, P] of a spline head.
    fn spline_raw(&self, h2: &Tensor, d: usize) -> Result<Tensor> {
        let Head::Spline { w5, b5, m5, cfg } = self else {
            unreachable!("spline parameters of an affine head")
        };
        let raw = add_bias(&h2.matmul(&(w5 * m5)?.t()?)?, b5)?;
        raw.reshape((h2.dim(0)? * d, cfg.params()))
    }
}

impl Made {
    fn new(cfg: &FlowConfig, order: &[usize], vb: VarBuilder) -> Result<Self> {
        let (d, h) = (cfg.dim, cfg.hidden);
        let degrees = Degrees::new(order, h);
        let (m1, m2, m3) = degrees.masks();
        let dev = vb.device().clone();
        let kaiming = |fan_in: usize| candle_nn::Init::Uniform {
            lo: -(6.0 / fan_in as f64).sqrt(),
            up: (6.0 / fan_in as f64).sqrt(),
        };
        Ok(Made {
            w1: vb.get_with_hints((h, d), "w1", kaiming(d))?,
            b1: vb.get_with_hints(h, "b1", candle_nn::Init::Const(0.0))?,
            c1: candle_nn::linear_no_bias(cfg.ctx, h, vb.pp("c1"))?,
            w2: vb.get_with_hints((h, h), "w2", kaiming(h / 2))?,
            b2: vb.get_with_hints(h, "b2", candle_nn::Init::Const(0.0))?,
            c2: candle_nn::linear_no_bias(cfg.ctx, h, vb.pp("c2"))?,
            head: Head::new(cfg, &m3, &vb)?,
            // masks in the weights' type (the tests' f64 flows)
            m1: Tensor::from_vec(m1, (h, d), &dev)?.to_dtype(vb.dtype())?,
            m2: Tensor::from_vec(m2, (h, h), &dev)?.to_dtype(vb.dtype())?,
            degrees,
        })
    }

    /// Context contributions to the two hidden layers ([N, H] each).
    pub(crate) fn context_terms(&self, ctx: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.c1.forward(ctx)?, self.c2.forward(ctx)?))
    }

    /// The second hidden layer [N, H] for inputs u [N, D] and context terms.
    fn hidden(&self, u: &Tensor, cc1: &Tensor, cc2: &Tensor) -> Result<Tensor> {
        let w1 = (&self.w1 * &self.m1)?;
        let w2 = (&self.w2 * &self.m2)?;
        let h1 = (add_bias(&u.matmul(&w1.t()?)?, &self.b1)? + cc1)?.relu()?;
        (add_bias(&h1.matmul(&w2.t()?)?, &self.b2)? + cc2)?.relu()
    }

    /// Data -> base: (z [N, D], log |dz/du| [N]).
    pub(crate) fn forward(
        &self,
        u: &Tensor,
        cc1: &Tensor,
        cc2: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        self.head.forward(u, &self.hidden(u, cc1, cc2)?)
    }

    /// Base -> data for every variable given the data-side inputs `y` so far:
    /// (u [N, D], log |dz/du| [N, D]). Entry i is final once y holds every variable of lower
    /// rank than i.
    fn inverse_step(
        &self,
        z: &Tensor,
        y: &Tensor,
        cc1: &Tensor,
        cc2: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        self.head.inverse(z, &self.hidden(y, cc1, cc2)?)
    }
}

/// The conditional MAF.
pub(crate) struct Maf {
    /// Configuration.
    pub(crate) cfg: FlowConfig,
    /// Blocks, applied in order in the data -> base direction.
    pub(crate) blocks: Vec<Made>,
}

const LOG_2PI: f64 = 1.837_877_066_409_345_5;

impl Maf {
    /// Create (or load) under the VarBuilder's prefix.
    pub(crate) fn new(cfg: &FlowConfig, vb: VarBuilder) -> Result<Self> {
        let blocks = cfg
            .orders
            .iter()
            .enumerate()
            .map(|(k, o)| Made::new(cfg, o, vb.pp(format!("b{k}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Maf {
            cfg: cfg.clone(),
            blocks,
        })
    }

    /// log q(u | ctx) \[N\] for u [N, D], ctx [N, C].
    pub(crate) fn log_prob(&self, u: &Tensor, ctx: &Tensor) -> Result<Tensor> {
        let mut z = u.clone();
        let mut ladj: Option<Tensor> = None;
        for blk in &self.blocks {
            let (cc1, cc2) = blk.context_terms(ctx)?;
            let (next, l) = blk.forward(&z, &cc1, &cc2)?;
            z = next;
            ladj = Some(match ladj {
                None => l,
                Some(acc) => (acc + l)?,
            });
        }
        let d = self.cfg.dim as f64;
        let base = (z.sqr()?.sum(D::Minus1)? * -0.5)?.affine(1.0, -0.5 * d * LOG_2PI)?;
        base + ladj.unwrap()
    }

    /// Sample u [N, D] from base noise z [N, D] and context [N, C]; returns (u, log q(u)).
    /// Sequential inversion (D MADE passes per block): the reference path used on GPUs.
    pub(crate) fn sample(&self, z: &Tensor, ctx: &Tensor) -> Result<(Tensor, Tensor)> {
        let d = self.cfg.dim;
        let dev = z.device();
        let n = z.dim(0)?;
        let d_f = d as f64;
        let mut log_q = (z.sqr()?.sum(D::Minus1)? * -0.5)?.affine(1.0, -0.5 * d_f * LOG_2PI)?;
        let mut x = z.clone();
        for blk in self.blocks.iter().rev() {
            let (cc1, cc2) = blk.context_terms(ctx)?;
            let order: Vec<usize> = {
                let mut o = vec![0; d];
                for (i, &deg) in blk.degrees.input.iter().enumerate() {
                    o[deg - 1] = i;
                }
                o
            };
            let mut y = Tensor::zeros((n, d), x.dtype(), dev)?;
            let mut ladj_last = None;
            for &i in &order {
                let (val, ladj) = blk.inverse_step(&x, &y, &cc1, &cc2)?;
                let onehot: Vec<f32> = (0..d).map(|k| (k == i) as u8 as f32).collect();
                let e = Tensor::from_vec(onehot, (1, d), dev)?.to_dtype(x.dtype())?;
                y = (y.broadcast_mul(&e.affine(-1.0, 1.0)?)? + val.broadcast_mul(&e)?)?;
                ladj_last = Some(ladj);
            }
            // entry i of the log-Jacobian is final once the variables of lower rank are, so
            // the last pass holds every entry at the block's data-side input y
            let ladj = ladj_last.expect("dim > 0");
            log_q = (log_q + ladj.sum(D::Minus1)?)?;
            x = y;
        }
        Ok((x, log_q))
    }
}
