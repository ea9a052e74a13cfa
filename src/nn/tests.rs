//! Tests of the neural posterior's building blocks: gradients reach every parameter, the
//! flow's density integrates to one (on a grid in 2-D, by importance sampling for the
//! full 6-D model in physical units), sampling agrees with log_prob, order invariance.

use super::encoder::EncoderConfig;
use super::flow::{FlowConfig, Maf};
use super::model::{init_deterministic, ModelConfig, NeuralPosterior};
use super::spline::SplineConfig;
use super::tokens::TokenBatch;
use crate::likelihood::{Measurement, StarObs};
use crate::physics::Theta;
use crate::posterior::coords::ParamTransform;
use crate::util::rng::Rng;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

fn small_config() -> ModelConfig {
    ModelConfig {
        encoder: EncoderConfig {
            n_bands: 27,
            d_model: 16,
            heads: 2,
            layers: 1,
            ffn: 32,
            ctx: 8,
            reddening_token: false,
        },
        flow: FlowConfig {
            dim: 6,
            ctx: 8,
            hidden: 24,
            orders: FlowConfig::default_orders(6, 3, 5),
            alpha_clip: 3.0,
            spline: None,
        },
        transform: ParamTransform {
            mean: [3.7, 4.0, -0.2, 0.0, 0.0, 3.0],
            scale: [0.1, 0.8, 0.4, 1.5, 1.0, 0.5],
        },
        bands: vec![],
        target: super::model::FlowTarget::Full,
    }
}

fn stars() -> Vec<StarObs> {
    let m = |band: u16, mag: f32| Measurement {
        band,
        mag,
        err: 0.02,
    };
    vec![
        StarObs {
            source_id: 1,
            phot: vec![m(0, 12.0), m(1, 12.4), m(2, 11.5)],
            parallax: Some((1.2, 0.05)),
            reddening: None,
        },
        StarObs {
            source_id: 2,
            phot: vec![m(6, 10.0), m(7, 9.6), m(8, 9.5), m(9, 9.4), m(0, 12.5)],
            parallax: None,
            reddening: None,
        },
    ]
}

/// Perturb every variable so that no layer sits at its (near-)zero initialisation.
fn randomise(varmap: &VarMap, seed: u64, scale: f64) {
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = Rng::new(seed);
    for n in names {
        let v = &data[n];
        let noise: Vec<f32> = (0..v.elem_count())
            .map(|_| (scale * rng.normal()) as f32)
            .collect();
        let noise = Tensor::from_vec(noise, v.dims(), v.device())
            .unwrap()
            .to_dtype(v.dtype())
            .unwrap();
        let t = (v.as_tensor() + noise).unwrap();
        v.set(&t).unwrap();
    }
}

#[test]
fn every_parameter_receives_a_gradient() {
    for spline in [None, Some(TEST_SPLINE)] {
        every_parameter_is_trained(spline);
    }
}

fn every_parameter_is_trained(spline: Option<SplineConfig>) {
    let mut cfg = small_config();
    cfg.flow.spline = spline;
    let varmap = VarMap::new();
    let model = NeuralPosterior::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_deterministic(&varmap, 3).unwrap();
    randomise(&varmap, 4, 0.1);
    let tb = TokenBatch::build(&stars(), 27);
    let u: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
    let loss = model
        .log_prob_u(&tb, &u)
        .unwrap()
        .mean_all()
        .unwrap()
        .neg()
        .unwrap();
    let grads = loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    for (name, var) in data.iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{spline:?} {name}: no gradient"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // the padding row of the embedding never receives gradient
        if name.ends_with("emb") {
            continue;
        }
        assert!(norm > 0.0, "{spline:?} {name}: zero gradient");
    }
}

/// A spline configuration whose interval the tests' points cross.
const TEST_SPLINE: SplineConfig = SplineConfig {
    bins: 6,
    bound: 2.5,
};

#[test]
fn two_dimensional_conditional_flow_integrates_to_one_on_a_grid() {
    for spline in [None, Some(TEST_SPLINE)] {
        two_dimensional_flow_integrates_to_one(spline);
    }
}

fn two_dimensional_flow_integrates_to_one(spline: Option<SplineConfig>) {
    let cfg = FlowConfig {
        dim: 2,
        ctx: 3,
        hidden: 16,
        orders: vec![vec![0, 1], vec![1, 0], vec![0, 1]],
        alpha_clip: 3.0,
        spline,
    };
    let varmap = VarMap::new();
    let flow = Maf::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_deterministic(&varmap, 9).unwrap();
    randomise(&varmap, 10, 0.1);
    for c in [[0.3f32, -1.0, 0.5], [-2.0, 0.1, 1.5]] {
        // integration box from the flow's own samples (min/max over 20000 draws, widened)
        let ns = 20_000;
        let mut rng = Rng::new(2);
        let z: Vec<f32> = (0..ns * 2).map(|_| rng.normal() as f32).collect();
        let ctx_s = Tensor::from_vec(c.to_vec(), (1, 3), &Device::Cpu)
            .unwrap()
            .broadcast_as((ns, 3))
            .unwrap()
            .contiguous()
            .unwrap();
        let (xs, _) = flow
            .sample(&Tensor::from_vec(z, (ns, 2), &Device::Cpu).unwrap(), &ctx_s)
            .unwrap();
        let xs = xs.to_vec2::<f32>().unwrap();
        let mut lo = [f64::MAX; 2];
        let mut hi = [f64::MIN; 2];
        for r in &xs {
            for d in 0..2 {
                lo[d] = lo[d].min(r[d] as f64);
                hi[d] = hi[d].max(r[d] as f64);
            }
        }
        for d in 0..2 {
            let w = hi[d] - lo[d];
            lo[d] -= 0.5 * w;
            hi[d] += 0.5 * w;
        }
        let n = 800usize;
        let h = [(hi[0] - lo[0]) / n as f64, (hi[1] - lo[1]) / n as f64];
        let mut pts = Vec::with_capacity(n * n * 2);
        for i in 0..n {
            for j in 0..n {
                pts.push((lo[0] + (i as f64 + 0.5) * h[0]) as f32);
                pts.push((lo[1] + (j as f64 + 0.5) * h[1]) as f32);
            }
        }
        let u = Tensor::from_vec(pts, (n * n, 2), &Device::Cpu).unwrap();
        let ctx = Tensor::from_vec(c.to_vec(), (1, 3), &Device::Cpu)
            .unwrap()
            .broadcast_as((n * n, 3))
            .unwrap()
            .contiguous()
            .unwrap();
        let lp = flow.log_prob(&u, &ctx).unwrap().to_vec1::<f32>().unwrap();
        let integral: f64 = lp.iter().map(|&l| (l as f64).exp() * h[0] * h[1]).sum();
        assert!(
            (integral - 1.0).abs() < 0.01,
            "{spline:?}, context {c:?}: integral {integral}"
        );
    }
}

#[test]
fn sampling_returns_its_own_log_density_and_full_model_integrates_to_one() {
    let cfg = small_config();
    let varmap = VarMap::new();
    let model = NeuralPosterior::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_deterministic(&varmap, 21).unwrap();
    randomise(&varmap, 22, 0.05);
    let tb = TokenBatch::build(&stars()[..1], 27);
    let ctx1 = model.context(&tb).unwrap();
    let n = 4000;
    let ctx = ctx1.broadcast_as((n, 8)).unwrap().contiguous().unwrap();
    let mut rng = Rng::new(1);
    let z: Vec<f32> = (0..n * 6).map(|_| rng.normal() as f32).collect();
    let z = Tensor::from_vec(z, (n, 6), &Device::Cpu).unwrap();
    let (u, lq) = model.flow.sample(&z, &ctx).unwrap();
    let lp = model.flow.log_prob(&u, &ctx).unwrap();
    let diff = (lq - &lp)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 2e-3, "sample log q vs log_prob: {diff}");
    // q(theta) in physical units integrates to one: E_{theta ~ g}[q(theta) / g(theta)] = 1
    // with g a Gaussian in u wider than q (fitted to q's samples, scale x2), mapped to
    // theta with the same transform
    let tr = cfg.transform;
    let samples = u.to_vec2::<f32>().unwrap();
    let mut mu = [0f64; 6];
    let mut sd = [0f64; 6];
    for r in &samples {
        for i in 0..6 {
            mu[i] += r[i] as f64 / n as f64;
        }
    }
    for r in &samples {
        for i in 0..6 {
            sd[i] += (r[i] as f64 - mu[i]).powi(2) / n as f64;
        }
    }
    let sd = sd.map(|v| 2.0 * v.sqrt());
    let m = 400_000;
    let mut us = Vec::with_capacity(m * 6);
    let mut log_g = Vec::with_capacity(m);
    for _ in 0..m {
        let mut lg = 0.0;
        let mut uu = [0f64; 6];
        for (i, x) in uu.iter_mut().enumerate() {
            let e = rng.normal();
            *x = mu[i] + sd[i] * e;
            lg += -0.5 * e * e - (sd[i] * (2.0 * std::f64::consts::PI).sqrt()).ln();
        }
        let theta: Theta = tr.from_u(&uu);
        // density of theta under g: g_u(u) * |du/dtheta|
        log_g.push(lg + tr.log_jacobian(&theta));
        us.extend(uu.iter().map(|&x| x as f32));
        let back = tr.to_u(&theta);
        assert!((back[0] - uu[0]).abs() < 1e-6);
    }
    let ctxm = ctx1.broadcast_as((m, 8)).unwrap().contiguous().unwrap();
    let lq = model
        .flow
        .log_prob(
            &Tensor::from_vec(us.clone(), (m, 6), &Device::Cpu).unwrap(),
            &ctxm,
        )
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut acc = 0.0;
    for k in 0..m {
        let uu: [f64; 6] = std::array::from_fn(|i| us[k * 6 + i] as f64);
        let theta = tr.from_u(&uu);
        let log_q_theta = lq[k] as f64 + tr.log_jacobian(&theta);
        acc += (log_q_theta - log_g[k]).exp();
    }
    let integral = acc / m as f64;
    assert!(
        (integral - 1.0).abs() < 0.01,
        "full-model integral {integral}"
    );
}

#[test]
fn encoder_is_invariant_to_token_order() {
    let cfg = small_config();
    let varmap = VarMap::new();
    let model = NeuralPosterior::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_deterministic(&varmap, 5).unwrap();
    let s = stars();
    let mut shuffled = s.clone();
    shuffled[1].phot.reverse();
    shuffled[0].phot.swap(0, 2);
    let a = model
        .context(&TokenBatch::build(&s, 27))
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let b = model
        .context(&TokenBatch::build(&shuffled, 27))
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
    // padding does not leak: a star's context is the same alone or next to a longer set
    let alone = model
        .context(&TokenBatch::build(&s[..1], 27))
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (x, y) in alone[0].iter().zip(&a[0]) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
}

#[test]
fn fast_sampler_matches_the_candle_reference() {
    for spline in [None, Some(TEST_SPLINE)] {
        fast_sampler_and_density_match_candle(spline);
    }
}

/// The fast sampler's draws and log densities, and its density pass, equal the candle
/// flow's sequential inversion.
fn fast_sampler_and_density_match_candle(spline: Option<SplineConfig>) {
    use super::fast::{FastMaf, Workspace};
    let mut cfg = small_config();
    cfg.flow.spline = spline;
    let varmap = VarMap::new();
    let model = NeuralPosterior::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_deterministic(&varmap, 31).unwrap();
    randomise(&varmap, 32, 0.08);
    let fast = FastMaf::from_maf(&model.flow).unwrap();
    let tb = TokenBatch::build(&stars()[1..], 27);
    let ctx = model.context(&tb).unwrap();
    let n = 64;
    let mut rng = Rng::new(4);
    let zr: Vec<f32> = (0..n * 6).map(|_| rng.normal() as f32).collect(); // row-major [n][6]
    let ctxn = ctx.broadcast_as((n, 8)).unwrap().contiguous().unwrap();
    let (u_ref, lq_ref) = model
        .flow
        .sample(
            &Tensor::from_vec(zr.clone(), (n, 6), &Device::Cpu).unwrap(),
            &ctxn,
        )
        .unwrap();
    let (u_ref, lq_ref) = (
        u_ref.to_vec2::<f32>().unwrap(),
        lq_ref.to_vec1::<f32>().unwrap(),
    );
    let (mut c1, mut c2) = (Vec::new(), Vec::new());
    for (k, blk) in model.flow.blocks.iter().enumerate() {
        let (a, b) = blk.context_terms(&ctx).unwrap();
        let (a, b) = (a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
        let mut sa = vec![0f32; 24];
        let mut sb = vec![0f32; 24];
        fast.sorted_context(k, &a[0], &b[0], &mut sa, &mut sb);
        c1.push(sa);
        c2.push(sb);
    }
    let mut z = vec![0f32; 6 * n];
    for t in 0..n {
        for i in 0..6 {
            z[i * n + t] = zr[t * 6 + i];
        }
    }
    let mut u = vec![0f32; 6 * n];
    let mut lq = vec![0f64; n];
    let mut ws = Workspace::default();
    fast.sample_star(&z, n, &c1, &c2, &mut ws, &mut u, &mut lq);
    for t in 0..n {
        for i in 0..6 {
            assert!(
                (u[i * n + t] - u_ref[t][i]).abs() < 1e-3 * (1.0 + u_ref[t][i].abs()),
                "{spline:?}: u[{t}][{i}]: {} vs {}",
                u[i * n + t],
                u_ref[t][i]
            );
        }
        assert!(
            (lq[t] - lq_ref[t] as f64).abs() < 2e-3,
            "{spline:?}: log q[{t}]: {} vs {}",
            lq[t],
            lq_ref[t]
        );
    }
    let mut lp = vec![0f64; n];
    fast.log_prob_star(&u, n, &c1, &c2, &mut ws, &mut lp);
    for t in 0..n {
        assert!(
            (lp[t] - lq_ref[t] as f64).abs() < 2e-3,
            "{spline:?}: density pass [{t}]: {} vs {}",
            lp[t],
            lq_ref[t]
        );
    }
}

#[test]
fn plain_rust_encoder_matches_candle_and_ignores_batch_mates() {
    for reddening_token in [false, true] {
        encoders_agree(reddening_token);
    }
}

/// The plain-Rust encoder equals candle's, with or without a reddening-prior token; with
/// one, the token changes the context.
fn encoders_agree(reddening_token: bool) {
    use super::fast_encoder::FastEncoder;
    let mut cfg = small_config();
    cfg.encoder.reddening_token = reddening_token;
    let varmap = VarMap::new();
    let model = NeuralPosterior::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_deterministic(&varmap, 41).unwrap();
    randomise(&varmap, 42, 0.1);
    let fast = FastEncoder::from_encoder(&model.encoder).unwrap();
    let mut s = stars();
    s[0].reddening = Some(crate::prior::reddening::MapReddening {
        ebv: 0.12,
        error: 0.03,
        map: 0,
    });
    let reference = model
        .context(&TokenBatch::build_with(&s, 27, reddening_token))
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (k, star) in s.iter().enumerate() {
        let c = fast.context(star);
        for (a, b) in c.iter().zip(&reference[k]) {
            assert!(
                (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                "star {k}: {a} vs {b}"
            );
        }
    }
    let without = fast.context(&StarObs {
        reddening: None,
        ..s[0].clone()
    });
    let changed = without
        .iter()
        .zip(&reference[0])
        .any(|(a, b)| (a - b).abs() > 1e-3);
    assert_eq!(
        changed, reddening_token,
        "the token is seen only by models that take it"
    );
}

/// log |det a| of a small square matrix (row-major), by Gaussian elimination with partial
/// pivoting.
fn log_abs_det(mut a: Vec<Vec<f64>>) -> f64 {
    let n = a.len();
    let mut acc = 0.0;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        acc += a[c][c].abs().ln();
        for r in c + 1..n {
            let f = a[r][c] / a[c][c];
            for k in c..n {
                a[r][k] -= f * a[c][k];
            }
        }
    }
    acc
}

/// The 4-D flow of an intrinsic model, affine and spline: the log density its sampler
/// reports, and its density pass, equal log N(z) - log |det du/dz| with the sampling map's
/// Jacobian taken by central finite differences (in f64, so that steep maps are resolved).
#[test]
fn four_dimensional_flow_density_matches_finite_differences_of_its_inverse() {
    for spline in [None, Some(TEST_SPLINE)] {
        four_dimensional_density_matches_finite_differences(spline);
    }
}

fn four_dimensional_density_matches_finite_differences(spline: Option<SplineConfig>) {
    let d = 4;
    let cfg = FlowConfig {
        dim: d,
        ctx: 3,
        hidden: 16,
        orders: FlowConfig::default_orders(d, 3, 7),
        alpha_clip: 3.0,
        spline,
    };
    let varmap = VarMap::new();
    let flow = Maf::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu),
    )
    .unwrap();
    init_deterministic(&varmap, 11).unwrap();
    randomise(&varmap, 12, 0.15);
    let h = 1e-5;
    let mut rng = Rng::new(3);
    for _ in 0..6 {
        let z0: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        // rows: z0, then z0 + h e_j and z0 - h e_j for every j
        let mut pts = Vec::new();
        for k in 0..1 + 2 * d {
            for (i, &z) in z0.iter().enumerate() {
                let step = if k > 0 && (k - 1) / 2 == i {
                    if k % 2 == 1 {
                        h
                    } else {
                        -h
                    }
                } else {
                    0.0
                };
                pts.push(z + step);
            }
        }
        let m = 1 + 2 * d;
        let c: Vec<f64> = (0..3).map(|_| rng.normal()).collect();
        let ctx = Tensor::from_vec(c, (1, 3), &Device::Cpu)
            .unwrap()
            .broadcast_as((m, 3))
            .unwrap()
            .contiguous()
            .unwrap();
        let zt = Tensor::from_vec(pts, (m, d), &Device::Cpu).unwrap();
        let (u, lq) = flow.sample(&zt, &ctx).unwrap();
        let lp = flow.log_prob(&u, &ctx).unwrap().to_vec1::<f64>().unwrap();
        let (u, lq) = (u.to_vec2::<f64>().unwrap(), lq.to_vec1::<f64>().unwrap());
        let jac: Vec<Vec<f64>> = (0..d)
            .map(|i| {
                (0..d)
                    .map(|j| (u[1 + 2 * j][i] - u[2 + 2 * j][i]) / (2.0 * h))
                    .collect()
            })
            .collect();
        let log_n = -0.5 * z0.iter().map(|z| z * z).sum::<f64>()
            - 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln();
        let expected = log_n - log_abs_det(jac);
        assert!(
            (lq[0] - expected).abs() < 1e-6,
            "{spline:?}: sampler {} vs finite differences {expected}",
            lq[0]
        );
        assert!(
            (lp[0] - expected).abs() < 1e-6,
            "{spline:?}: density pass {}",
            lp[0]
        );
    }
}

/// Cards written before the target switch (no `target` field), such as the embedded
/// default model's, load as full 6-D models.
#[test]
fn old_cards_load_as_full_models() {
    let text = super::proposal::DEFAULT_CARD;
    assert!(!text.contains("\"target\""));
    let card: super::model::ModelCard = serde_json::from_str(text).unwrap();
    assert_eq!(card.config.target, super::model::FlowTarget::Full);
    assert_eq!(card.config.flow.dim, 6);
    let p = super::proposal::FlowProposal::embedded().unwrap();
    assert!(!crate::posterior::proposal::Proposal::intrinsic(&p));
}
