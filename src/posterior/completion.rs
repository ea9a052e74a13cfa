//! Completing intrinsic draws (part of step 3, infer): a proposal that models only
//! y = (log10 Teff, log g, [M/H], R_V) (an intrinsic flow, issue 24) gives y with log q(y);
//! each y gets its (A_V, log10 d) from the closed-form conditional c(z | y)
//! (`conditional`), and the pair's joint density q(y) c(z | y) becomes a density in the
//! physical theta by log |ds/dtheta| (y and z are the sampling coordinates s).

use super::conditional::{split_theta, y_of_s, SplitBatch, AV, LOG_D, NY};
use super::coords::{log_ds_dtheta, s_of, theta_of_s};
use super::mixture::ClosedForm;
use super::target::StarTarget;
use crate::physics::Theta;
use crate::util::rng::Rng;

/// Complete draws `ys` (log densities `log_q_y`, in y) with z ~ c(z | y): appends theta
/// and log q(theta) = log q(y) + log c(z | y) + log |ds/dtheta|. A y outside the model
/// (no conditional) gets a theta with log q = -inf, i.e. zero weight: such y carry no
/// target mass either.
pub fn complete(
    target: &StarTarget,
    cf: &ClosedForm,
    (ys, log_q_y): (&[[f64; NY]], &[f64]),
    rng: &mut Rng,
    work: &mut SplitBatch,
    (thetas, log_q): (&mut Vec<Theta>, &mut Vec<f64>),
) {
    split(target, cf, ys.iter().copied(), work);
    for (k, (y, &lq)) in ys.iter().zip(log_q_y).enumerate() {
        let mut s = [y[0], y[1], y[2], 0.0, y[3], cf.reg.log_d.0];
        let lc = match work.conditional(target, &cf.refs, &cf.reg, k) {
            Some(c) => {
                (s[AV], s[LOG_D]) = c.sample(rng);
                c.log_pdf(s[AV], s[LOG_D])
            }
            None => f64::NEG_INFINITY,
        };
        let t = theta_of_s(&s);
        log_q.push(lq + lc + log_ds_dtheta(&t));
        thetas.push(t);
    }
}

/// log c(z | y) + log |ds/dtheta| at every theta: with a proposal's log q(y) added, the
/// completed proposal's log density at arbitrary points (what `complete` gave its draws).
pub fn log_completion(
    target: &StarTarget,
    cf: &ClosedForm,
    thetas: &[Theta],
    work: &mut SplitBatch,
    out: &mut Vec<f64>,
) {
    split(target, cf, thetas.iter().map(y_of_theta), work);
    for (k, t) in thetas.iter().enumerate() {
        let lc = work
            .conditional(target, &cf.refs, &cf.reg, k)
            .map_or(f64::NEG_INFINITY, |c| c.log_pdf(t.av, t.distance.log10()));
        out.push(lc + log_ds_dtheta(t));
    }
}

/// Split the magnitudes of every y at the references of `cf` (one forward-model batch).
fn split(
    target: &StarTarget,
    cf: &ClosedForm,
    ys: impl Iterator<Item = [f64; NY]>,
    work: &mut SplitBatch,
) {
    work.at.clear();
    work.at.extend(ys.map(|y| split_theta(&y, cf.refs.a1)));
    work.split(target, &cf.refs);
}

/// The intrinsic coordinates y of theta.
pub fn y_of_theta(t: &Theta) -> [f64; NY] {
    y_of_s(&s_of(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::likelihood::{NoiseModel, PreparedStar};
    use crate::physics::ForwardModel;
    use crate::posterior::conditional::{ExtinctionRefs, ExtrinsicPrior};
    use crate::posterior::intrinsic::IntrinsicT;
    use crate::posterior::{noise_free_star, SUN_LIKE as TRUTH};
    use crate::prior::reddening::ReddeningModel;
    use crate::prior::{Prior, PriorConfig};

    /// Run `f` with a star's target and closed form (reference A_V 0.5).
    fn with_target(f: impl FnOnce(&StarTarget, &ClosedForm)) {
        let fm = ForwardModel::embedded();
        let prior = Prior::new(fm, PriorConfig::default());
        let noise = NoiseModel::default_for(fm);
        let bands = ["gaia_g", "gaia_bp", "gaia_rp", "tmass_ks"];
        let obs = noise_free_star(fm, &TRUTH, &bands, 0.05, Some(0.3));
        let prep = PreparedStar::new(&obs, &noise);
        let target = StarTarget {
            fm,
            prior: prior.for_star(&ReddeningModel::default(), None),
            prep: &prep,
        };
        let reg = ExtrinsicPrior::for_star(&target.prior);
        let cf = ClosedForm {
            reg,
            refs: ExtinctionRefs::new(0.5, reg.av_max),
        };
        f(&target, &cf);
    }

    fn y_proposal() -> IntrinsicT {
        let sd = [0.03, 0.3, 0.3, 0.4];
        let scale =
            std::array::from_fn(|i| std::array::from_fn(|j| (i == j) as u8 as f64 * sd[i] * sd[i]));
        IntrinsicT::new(y_of_theta(&TRUTH), &scale, 5.0).unwrap()
    }

    /// The density `complete` gives its draws is the one `log_completion` (plus log q(y))
    /// gives the same points: importance sampling of the proposal against itself has
    /// weights exactly 1.
    #[test]
    fn completed_draws_carry_the_density_of_their_points() {
        with_target(|target, cf| {
            let t = y_proposal();
            let mut rng = Rng::new(3);
            let ys: Vec<[f64; NY]> = (0..500).map(|_| t.sample(&mut rng)).collect();
            let lq: Vec<f64> = ys.iter().map(|y| t.log_pdf(y)).collect();
            let mut work = SplitBatch::default();
            let (mut th, mut lq_theta) = (Vec::new(), Vec::new());
            complete(
                target,
                cf,
                (&ys, &lq),
                &mut rng,
                &mut work,
                (&mut th, &mut lq_theta),
            );
            assert_eq!(th.len(), ys.len());
            let mut again = Vec::new();
            log_completion(target, cf, &th, &mut work, &mut again);
            let mut finite = 0;
            for k in 0..th.len() {
                let y = y_of_theta(&th[k]);
                for i in 0..NY {
                    assert!((y[i] - ys[k][i]).abs() < 1e-9, "{k}: y changed");
                }
                let q = t.log_pdf(&y) + again[k];
                if lq_theta[k].is_finite() {
                    finite += 1;
                    assert!(
                        (q - lq_theta[k]).abs() < 1e-9,
                        "{k}: {q} vs {}",
                        lq_theta[k]
                    );
                } else {
                    assert_eq!(q, f64::NEG_INFINITY);
                }
            }
            // most y are inside the model (those outside give -inf both ways)
            assert!(finite > 300, "{finite} finite densities");
        });
    }

    /// At a fixed y, the completed density integrates over the physical (A_V, distance)
    /// to 1 / (Teff ln 10): the conditional is normalised, and log |ds/dtheta| converts
    /// log10 d to parsecs and leaves dy/dTeff (the rest of y's Jacobian) in place.
    #[test]
    fn completed_density_integrates_over_extinction_and_distance() {
        with_target(|target, cf| {
            let y = y_of_theta(&TRUTH);
            let mut rng = Rng::new(4);
            let mut work = SplitBatch::default();
            let (mut th, mut lq) = (Vec::new(), Vec::new());
            let ys = vec![y; 4000];
            complete(
                target,
                cf,
                (&ys, &vec![0.0; 4000]),
                &mut rng,
                &mut work,
                (&mut th, &mut lq),
            );
            let range = |f: &dyn Fn(&Theta) -> f64| {
                let lo = th.iter().map(f).fold(f64::MAX, f64::min);
                let hi = th.iter().map(f).fold(f64::MIN, f64::max);
                (lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo))
            };
            let (a_lo, a_hi) = range(&|t: &Theta| t.av);
            let (a_lo, a_hi) = (a_lo.max(0.0), a_hi.min(cf.reg.av_max));
            let (d_lo, d_hi) = range(&|t: &Theta| t.distance);
            let n = 300;
            let (ha, hd) = ((a_hi - a_lo) / n as f64, (d_hi - d_lo) / n as f64);
            let grid: Vec<Theta> = (0..n * n)
                .map(|k| Theta {
                    av: a_lo + ((k / n) as f64 + 0.5) * ha,
                    distance: d_lo + ((k % n) as f64 + 0.5) * hd,
                    ..TRUTH
                })
                .collect();
            let mut dens = Vec::new();
            log_completion(target, cf, &grid, &mut work, &mut dens);
            let integral: f64 = dens.iter().map(|l| l.exp()).sum::<f64>() * ha * hd;
            let expected = 1.0 / (TRUTH.teff * std::f64::consts::LN_10);
            assert!(
                (integral / expected - 1.0).abs() < 1e-2,
                "integral {integral} vs {expected}"
            );
        });
    }
}
