//! One star's unnormalised posterior p(theta) L(theta): what every importance weight, the
//! mode search and the MCMC reference evaluate. Densities are in the physical parameters
//! (theta-space); [`StarTarget::log_post_s`] gives the density of s = s(theta).

use super::coords::{log_ds_dtheta, theta_of_s};
use crate::likelihood::PreparedStar;
use crate::physics::{ForwardModel, Theta};
use crate::prior::StarPrior;

/// One star's target density.
#[derive(Clone, Copy)]
pub struct StarTarget<'a> {
    /// Forward model of the likelihood.
    pub fm: &'a ForwardModel,
    /// The star's prior.
    pub prior: StarPrior<'a>,
    /// The star's observations.
    pub prep: &'a PreparedStar,
}

impl StarTarget<'_> {
    /// Photometric bands plus the parallax.
    pub fn n_measurements(&self) -> usize {
        self.prep.bands.len() + usize::from(self.prep.parallax.is_some())
    }

    /// chi^2 of the measurements given a log-likelihood value.
    pub fn chi2(&self, log_lik: f64) -> f64 {
        -2.0 * (log_lik - self.prep.log_norm)
    }

    /// Append log p(theta) and log L(theta) for every theta (-inf outside the prior's
    /// support or the model; the likelihood is not evaluated where the prior is zero).
    /// `mags` is scratch.
    pub fn eval_many(
        &self,
        th: &[Theta],
        mags: &mut Vec<f32>,
        log_prior: &mut Vec<f64>,
        log_lik: &mut Vec<f64>,
    ) {
        let nb = self.prep.bands.len();
        mags.resize(th.len() * nb, 0f32);
        self.fm.magnitudes_many(th, &self.prep.bands, mags);
        for (k, t) in th.iter().enumerate() {
            let lp = self.prior.log_prob(t);
            let ll = if lp.is_finite() {
                self.prep
                    .log_likelihood_from_mags(&mags[k * nb..(k + 1) * nb], t.distance)
            } else {
                f64::NEG_INFINITY
            };
            log_prior.push(lp);
            log_lik.push(ll);
        }
    }

    /// log p(theta) L(theta) at one theta.
    pub fn log_post(&self, t: &Theta, mags: &mut Vec<f32>) -> f64 {
        let lp = self.prior.log_prob(t);
        if !lp.is_finite() {
            return f64::NEG_INFINITY;
        }
        mags.resize(self.prep.bands.len(), 0f32);
        self.fm
            .magnitudes_many(std::slice::from_ref(t), &self.prep.bands, mags);
        let ll = self.prep.log_likelihood_from_mags(mags, t.distance);
        if ll.is_finite() {
            lp + ll
        } else {
            f64::NEG_INFINITY
        }
    }

    /// log density of s under the posterior (unnormalised): log p L + log |dtheta/ds|.
    pub fn log_post_s(&self, v: &[f64; 6], mags: &mut Vec<f32>) -> f64 {
        if v.iter().any(|x| !x.is_finite()) {
            return f64::NEG_INFINITY;
        }
        let t = theta_of_s(v);
        let lp = self.log_post(&t, mags);
        if lp.is_finite() {
            lp - log_ds_dtheta(&t)
        } else {
            lp
        }
    }
}
