//! Set transformer over observation tokens (candle): band embedding + MLP(magnitude) +
//! MLP(error) summed per token (the parallax token has its own MLP), pre-norm
//! self-attention blocks with a key-padding mask, no positional encoding, then attention
//! pooling (one learned seed) and masked mean pooling into a context vector.
//!
//! Written from differentiable ops only (layer norm and softmax included): candle's fused
//! inference kernels have no backward pass.

use super::tokens::{TokenBatch, N_FEAT};
use candle_core::{Device, Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// Encoder hyper-parameters.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct EncoderConfig {
    /// Bands in the registry (token ids: bands, parallax, padding).
    pub(crate) n_bands: usize,
    /// Token width.
    pub(crate) d_model: usize,
    /// Attention heads.
    pub(crate) heads: usize,
    /// Self-attention blocks.
    pub(crate) layers: usize,
    /// Feed-forward width.
    pub(crate) ffn: usize,
    /// Context vector width.
    pub(crate) ctx: usize,
    /// Whether the model takes a reddening-prior token (token id `n_bands + 2`).
    #[serde(default)]
    pub(crate) reddening_token: bool,
}

impl EncoderConfig {
    /// Rows of the token embedding: bands, parallax, padding (and the reddening prior).
    pub(crate) fn n_embeddings(&self) -> usize {
        self.n_bands + 2 + self.reddening_token as usize
    }
}

/// Layer norm from differentiable ops.
pub(crate) struct LayerNorm {
    /// Gain.
    pub(crate) g: Tensor,
    /// Bias.
    pub(crate) b: Tensor,
}

impl LayerNorm {
    fn new(d: usize, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            g: vb.get_with_hints(d, "g", candle_nn::Init::Const(1.0))?,
            b: vb.get_with_hints(d, "b", candle_nn::Init::Const(0.0))?,
        })
    }

    /// Normalise over the last dimension of a 2-D [N, d] tensor.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let y = xc.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        let ones = Tensor::ones((x.dim(0)?, 1), x.dtype(), x.device())?;
        let d = self.g.dim(0)?;
        // gain and bias spread with outer products, not broadcasts: candle reduces a
        // broadcast's gradient over leading dimensions very slowly on the CPU
        (y * ones.matmul(&self.g.reshape((1, d))?)?)? + ones.matmul(&self.b.reshape((1, d))?)?
    }
}

/// Affine layer y = x W^T + b for 2-D inputs, with the bias added through an outer
/// product (fast gradient on CPU, see `LayerNorm::forward`).
pub(crate) struct Linear {
    /// Weight [out, in].
    pub(crate) weight: Tensor,
    /// Bias \[out\].
    pub(crate) bias: Tensor,
}

impl Linear {
    /// Create or load `weight` and `bias` under `vb`.
    pub(crate) fn new(i: usize, o: usize, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / (i as f64).sqrt();
        Ok(Linear {
            weight: vb.get_with_hints((o, i), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?,
            bias: vb.get_with_hints(
                o,
                "bias",
                candle_nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?,
        })
    }

    /// Apply to [N, in].
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let ones = Tensor::ones((x.dim(0)?, 1), x.dtype(), x.device())?;
        let o = self.bias.dim(0)?;
        x.matmul(&self.weight.t()?)? + ones.matmul(&self.bias.reshape((1, o))?)?
    }
}

/// Masked softmax over the last dimension: exp of the scores clamped to [-30, 30] (keeps
/// exp finite without candle's max-based softmax, whose CPU backward is slow), times the
/// key mask, so padded keys get exactly zero weight whatever the padding length.
pub(crate) fn softmax_last(s: &Tensor, key_mask: &Tensor) -> Result<Tensor> {
    let e = s.clamp(-30.0, 30.0)?.exp()?.broadcast_mul(key_mask)?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Bias \[out\] added to [N, out] through an outer product.
pub(crate) fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let ones = Tensor::ones((x.dim(0)?, 1), x.dtype(), x.device())?;
    let o = bias.dim(0)?;
    x + ones.matmul(&bias.reshape((1, o))?)?
}

/// Two-layer MLP with ReLU.
pub(crate) struct Mlp {
    /// First layer.
    pub(crate) l0: Linear,
    /// Second layer.
    pub(crate) l1: Linear,
}

impl Mlp {
    fn new(i: usize, h: usize, o: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Mlp {
            l0: Linear::new(i, h, vb.pp("0"))?,
            l1: Linear::new(h, o, vb.pp("1"))?,
        })
    }

    /// Apply.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.l1.forward(&self.l0.forward(x)?.relu()?)
    }
}

/// One pre-norm self-attention block.
pub(crate) struct Block {
    pub(crate) ln1: LayerNorm,
    pub(crate) q: Linear,
    pub(crate) k: Linear,
    pub(crate) v: Linear,
    pub(crate) proj: Linear,
    pub(crate) ln2: LayerNorm,
    pub(crate) ff1: Linear,
    pub(crate) ff2: Linear,
}

/// The set encoder.
pub(crate) struct SetEncoder {
    /// Configuration.
    pub(crate) cfg: EncoderConfig,
    pub(crate) emb: Tensor,
    pub(crate) mag: Mlp,
    pub(crate) err: Mlp,
    pub(crate) plx: Mlp,
    pub(crate) red: Option<Mlp>,
    pub(crate) blocks: Vec<Block>,
    pub(crate) pool_seed: Tensor,
    pub(crate) pool_ln: LayerNorm,
    pub(crate) pool_k: Linear,
    pub(crate) pool_v: Linear,
    pub(crate) out: Mlp,
}

/// Token tensors on a device.
pub(crate) struct TokenTensors {
    ids: Tensor,
    feats: Tensor,
    f_mag: Tensor,
    f_err: Tensor,
    is_plx: Tensor,
    is_red: Tensor,
    mask: Tensor,
    b: usize,
    t: usize,
}

impl TokenTensors {
    /// Upload a token batch.
    pub(crate) fn new(tb: &TokenBatch, dev: &Device) -> Result<Self> {
        // separate feature columns: `narrow` has a costly backward in candle
        let col = |c: usize| {
            tb.feats
                .iter()
                .skip(c)
                .step_by(N_FEAT)
                .copied()
                .collect::<Vec<f32>>()
        };
        Ok(TokenTensors {
            f_mag: Tensor::from_vec(col(0), (tb.b * tb.t, 1), dev)?,
            f_err: Tensor::from_vec(col(1), (tb.b * tb.t, 1), dev)?,
            ids: Tensor::from_vec(tb.ids.clone(), tb.b * tb.t, dev)?,
            feats: Tensor::from_vec(tb.feats.clone(), (tb.b * tb.t, N_FEAT), dev)?,
            is_plx: Tensor::from_vec(tb.is_plx.clone(), (tb.b * tb.t, 1), dev)?,
            is_red: Tensor::from_vec(tb.is_red.clone(), (tb.b * tb.t, 1), dev)?,
            mask: Tensor::from_vec(tb.mask.clone(), (tb.b, tb.t), dev)?,
            b: tb.b,
            t: tb.t,
        })
    }
}

impl SetEncoder {
    /// Create (or load, depending on the VarBuilder) under prefix `enc`.
    pub(crate) fn new(cfg: &EncoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        let emb = vb.get_with_hints(
            (cfg.n_embeddings(), d),
            "emb",
            candle_nn::Init::Randn {
                mean: 0.0,
                stdev: 0.5,
            },
        )?;
        let mut blocks = Vec::new();
        for i in 0..cfg.layers {
            let v = vb.pp(format!("blk{i}"));
            blocks.push(Block {
                ln1: LayerNorm::new(d, v.pp("ln1"))?,
                q: Linear::new(d, d, v.pp("q"))?,
                k: Linear::new(d, d, v.pp("k"))?,
                v: Linear::new(d, d, v.pp("v"))?,
                proj: Linear::new(d, d, v.pp("proj"))?,
                ln2: LayerNorm::new(d, v.pp("ln2"))?,
                ff1: Linear::new(d, cfg.ffn, v.pp("ff1"))?,
                ff2: Linear::new(cfg.ffn, d, v.pp("ff2"))?,
            });
        }
        Ok(SetEncoder {
            cfg: cfg.clone(),
            emb,
            mag: Mlp::new(1, d, d, vb.pp("mag"))?,
            err: Mlp::new(1, d, d, vb.pp("err"))?,
            plx: Mlp::new(N_FEAT, d, d, vb.pp("plx"))?,
            red: cfg
                .reddening_token
                .then(|| Mlp::new(N_FEAT, d, d, vb.pp("red")))
                .transpose()?,
            blocks,
            pool_seed: vb.get_with_hints(
                (1, d),
                "pool_seed",
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.5,
                },
            )?,
            pool_ln: LayerNorm::new(d, vb.pp("pool_ln"))?,
            pool_k: Linear::new(d, d, vb.pp("pool_k"))?,
            pool_v: Linear::new(d, d, vb.pp("pool_v"))?,
            out: Mlp::new(2 * d, 2 * d, cfg.ctx, vb.pp("out"))?,
        })
    }

    /// Context vectors [b, ctx].
    pub(crate) fn forward(&self, tt: &TokenTensors) -> Result<Tensor> {
        let (b, t, d) = (tt.b, tt.t, self.cfg.d_model);
        let h = self.cfg.heads;
        let dh = d / h;
        let n = b * t;
        // all per-token work on 2-D [b*t, d] tensors
        let e = self.emb.index_select(&tt.ids, 0)?;
        let phot = (self.mag.forward(&tt.f_mag)? + self.err.forward(&tt.f_err)?)?;
        let plx = self.plx.forward(&tt.feats)?;
        let mut x = match &self.red {
            None => {
                let one_minus = tt.is_plx.affine(-1.0, 1.0)?;
                ((e + phot.broadcast_mul(&one_minus)?)? + plx.broadcast_mul(&tt.is_plx)?)?
            }
            Some(red) => {
                let red = red.forward(&tt.feats)?;
                let phot_w = (tt.is_plx.affine(-1.0, 1.0)? - &tt.is_red)?;
                (((e + phot.broadcast_mul(&phot_w)?)? + plx.broadcast_mul(&tt.is_plx)?)?
                    + red.broadcast_mul(&tt.is_red)?)?
            }
        };
        let key_mask = tt.mask.reshape((b, 1, 1, t))?;
        let scale = 1.0 / (dh as f64).sqrt();
        let split = |y: Tensor| -> Result<Tensor> {
            y.reshape((b, t, h, dh))?.transpose(1, 2)?.contiguous()
        };
        for blk in &self.blocks {
            let hn = blk.ln1.forward(&x)?;
            let (q, k, v) = (
                split(blk.q.forward(&hn)?)?,
                split(blk.k.forward(&hn)?)?,
                split(blk.v.forward(&hn)?)?,
            );
            let scores = (q.matmul(&k.t()?)? * scale)?;
            let att = softmax_last(&scores, &key_mask)?;
            let o = att
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((n, d))?;
            x = (x + blk.proj.forward(&o)?)?;
            let f = blk
                .ff2
                .forward(&blk.ff1.forward(&blk.ln2.forward(&x)?)?.relu()?)?;
            x = (x + f)?;
        }
        // attention pooling with one learned seed query per head
        let xn = self.pool_ln.forward(&x)?;
        let (k, v) = (
            split(self.pool_k.forward(&xn)?)?,
            split(self.pool_v.forward(&xn)?)?,
        ); // [b,h,t,dh]
        let ones = Tensor::ones((b, 1), x.dtype(), x.device())?;
        let q = ones.matmul(&self.pool_seed)?.reshape((b, h, 1, dh))?;
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let att = softmax_last(&scores, &key_mask)?;
        let pooled = att.matmul(&v)?.reshape((b, d))?;
        // masked mean
        let m = tt.mask.reshape((b, 1, t))?;
        let cnt = tt.mask.sum_keepdim(1)?.clamp(1.0, f64::MAX)?; // [b,1]
        let mean = m
            .matmul(&x.reshape((b, t, d))?)?
            .reshape((b, d))?
            .broadcast_div(&cnt)?;
        self.out.forward(&Tensor::cat(&[pooled, mean], 1)?)
    }
}
