//! Conditional masked autoregressive flow (MAF, Papamakarios et al. 2017) in candle.
//!
//! Each block is a MADE with affine transforms: in the data -> base direction
//! z_i = (u_i - mu_i(u_<i, c)) exp(-alpha_i(u_<i, c)), ladj = -sum alpha_i, with the
//! autoregressive order permuted between blocks. Hidden units carry MADE degrees 0..D-1;
//! degree-0 units see only the context, so every dimension is conditioned on it.
//! log-scales are soft-clipped (alpha = c tanh(raw / c)) so the inverse stays finite.

use super::encoder::add_bias;
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
    /// Soft clip of the log-scales.
    pub(crate) alpha_clip: f64,
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
    /// Hidden -> shift outputs [D, H].
    pub(crate) w3: Tensor,
    /// Shift bias [D].
    pub(crate) b3: Tensor,
    /// Hidden -> log-scale outputs [D, H].
    pub(crate) w4: Tensor,
    /// Log-scale bias [D].
    pub(crate) b4: Tensor,
    m1: Tensor,
    m2: Tensor,
    m3: Tensor,
    /// Degrees.
    pub(crate) degrees: Degrees,
    clip: f64,
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
            w3: vb.get_with_hints(
                (d, h),
                "w3",
                candle_nn::Init::Uniform {
                    lo: -1e-3,
                    up: 1e-3,
                },
            )?,
            b3: vb.get_with_hints(d, "b3", candle_nn::Init::Const(0.0))?,
            w4: vb.get_with_hints(
                (d, h),
                "w4",
                candle_nn::Init::Uniform {
                    lo: -1e-3,
                    up: 1e-3,
                },
            )?,
            b4: vb.get_with_hints(d, "b4", candle_nn::Init::Const(0.0))?,
            m1: Tensor::from_vec(m1, (h, d), &dev)?,
            m2: Tensor::from_vec(m2, (h, h), &dev)?,
            // shift and log-scale outputs share the mask (first D rows of the 2D-row mask)
            m3: Tensor::from_vec(m3[..d * h].to_vec(), (d, h), &dev)?,
            degrees,
            clip: cfg.alpha_clip,
        })
    }

    /// Context contributions to the two hidden layers ([N, H] each).
    pub(crate) fn context_terms(&self, ctx: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.c1.forward(ctx)?, self.c2.forward(ctx)?))
    }

    /// (mu, alpha) [N, D] for inputs u [N, D] and context terms.
    pub(crate) fn forward(
        &self,
        u: &Tensor,
        cc1: &Tensor,
        cc2: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let w1 = (&self.w1 * &self.m1)?;
        let w2 = (&self.w2 * &self.m2)?;
        let w3 = (&self.w3 * &self.m3)?;
        let w4 = (&self.w4 * &self.m3)?;
        let h1 = (add_bias(&u.matmul(&w1.t()?)?, &self.b1)? + cc1)?.relu()?;
        let h2 = (add_bias(&h1.matmul(&w2.t()?)?, &self.b2)? + cc2)?.relu()?;
        let mu = add_bias(&h2.matmul(&w3.t()?)?, &self.b3)?;
        let raw = add_bias(&h2.matmul(&w4.t()?)?, &self.b4)?;
        let alpha = ((raw / self.clip)?.tanh()? * self.clip)?;
        Ok((mu, alpha))
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
            let (mu, alpha) = blk.forward(&z, &cc1, &cc2)?;
            z = ((z - mu)? * alpha.neg()?.exp()?)?;
            let s = alpha.sum(D::Minus1)?;
            ladj = Some(match ladj {
                None => s.neg()?,
                Some(l) => (l - s)?,
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
            let mut alpha_last = None;
            for &i in &order {
                let (mu, alpha) = blk.forward(&y, &cc1, &cc2)?;
                let onehot: Vec<f32> = (0..d).map(|k| (k == i) as u8 as f32).collect();
                let e = Tensor::from_vec(onehot, (1, d), dev)?.to_dtype(x.dtype())?;
                let val = ((&x * alpha.exp()?)? + &mu)?;
                y = (y.broadcast_mul(&e.affine(-1.0, 1.0)?)? + val.broadcast_mul(&e)?)?;
                alpha_last = Some(alpha);
            }
            // alpha_i depends only on y at lower ranks, all final before the last step, so the
            // last pass's alpha is the block's alpha at its data-side input y
            let alpha = alpha_last.expect("dim > 0");
            log_q = (log_q - alpha.sum(D::Minus1)?)?;
            x = y;
        }
        Ok((x, log_q))
    }
}
