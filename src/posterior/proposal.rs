//! Proposals conditioned on a star: the neural posterior q(theta | observations)
//! (implemented in `nn::proposal`) or the prior. A proposal draws samples with their exact
//! log densities and evaluates its log density at arbitrary points, which the
//! deterministic-mixture weights need (`estimator`).

use super::conditional::NY;
use crate::likelihood::StarObs;
use crate::physics::Theta;
use crate::prior::Prior;
use crate::util::rng::Rng;

/// A proposal family q(theta | star). Densities are in the physical parameters.
pub trait Proposal: Send + Sync {
    /// The proposal conditioned on one star (e.g. the flow's encoded context).
    type Conditioned: Send;
    /// Identifier (model id) of the proposal.
    fn id(&self) -> String;
    /// Condition on every star (batched: the flow encodes them here).
    fn condition(&self, stars: &[StarObs]) -> Vec<Self::Conditioned>;
    /// For every star, draw `n` thetas and their log q. Output is star-major: star s owns
    /// entries [s*n, (s+1)*n). `seeds[s]` seeds star s; the draws do not depend on the
    /// other stars of the call.
    fn sample(
        &self,
        cond: &[Self::Conditioned],
        stars: &[StarObs],
        n: usize,
        seeds: &[u64],
        thetas: &mut Vec<Theta>,
        log_q: &mut Vec<f64>,
    );
    /// Append log q(theta | star) for every theta (-inf outside the proposal's domain).
    fn log_density(&self, cond: &Self::Conditioned, thetas: &[Theta], out: &mut Vec<f64>);

    /// Whether the proposal models only the intrinsic coordinates y = (log10 Teff, log g,
    /// [M/H], R_V) (`sample_y`, `log_density_y`); the posterior layer then completes its
    /// draws with distance and extinction from the closed-form conditional
    /// (`completion`), and `sample` / `log_density` are not called.
    fn intrinsic(&self) -> bool {
        false
    }

    /// For an intrinsic proposal: draw `n` y per star and their log q(y) (a density in y),
    /// star-major as in `sample`.
    fn sample_y(
        &self,
        _cond: &[Self::Conditioned],
        _stars: &[StarObs],
        _n: usize,
        _seeds: &[u64],
        _ys: &mut Vec<[f64; NY]>,
        _log_q: &mut Vec<f64>,
    ) {
        panic!("{} is not an intrinsic proposal", self.id());
    }

    /// For an intrinsic proposal: append log q(y | star) for every y.
    fn log_density_y(&self, _cond: &Self::Conditioned, _ys: &[[f64; NY]], _out: &mut Vec<f64>) {
        panic!("{} is not an intrinsic proposal", self.id());
    }
}

/// The prior as proposal: always valid, inefficient when the data are informative.
pub struct PriorProposal<'a> {
    /// The prior.
    pub prior: &'a Prior,
}

impl Proposal for PriorProposal<'_> {
    type Conditioned = ();

    fn id(&self) -> String {
        "prior".into()
    }

    fn condition(&self, stars: &[StarObs]) -> Vec<()> {
        vec![(); stars.len()]
    }

    fn sample(
        &self,
        _cond: &[()],
        stars: &[StarObs],
        n: usize,
        seeds: &[u64],
        thetas: &mut Vec<Theta>,
        log_q: &mut Vec<f64>,
    ) {
        thetas.clear();
        log_q.clear();
        for s in 0..stars.len() {
            let mut rng = Rng::new(seeds[s]);
            for _ in 0..n {
                let t = self.prior.sample(&mut rng);
                log_q.push(self.prior.log_prob(&t));
                thetas.push(t);
            }
        }
    }

    fn log_density(&self, _cond: &(), thetas: &[Theta], out: &mut Vec<f64>) {
        out.extend(thetas.iter().map(|t| self.prior.log_prob(t)));
    }
}
