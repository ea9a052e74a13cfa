//! Observation tokens: what the set encoder sees of a star.
//!
//! One token per photometric measurement (band id, magnitude, error), one for the
//! parallax (its own token type) and, for models trained with it, one for a dust-map
//! reddening prior (its own token type). Magnitudes keep their absolute level (it carries the
//! distance information): feature (m - 15) / 4. Errors enter as log10. No positional
//! information: the encoder is invariant to token order; padding is masked.

use crate::likelihood::StarObs;

/// Scalar features per token.
pub(crate) const N_FEAT: usize = 3;

/// A padded batch of token sets, row-major \[stars\]\[tokens\].
#[derive(Clone, Debug, Default)]
pub(crate) struct TokenBatch {
    /// Stars.
    pub(crate) b: usize,
    /// Tokens per star (padded).
    pub(crate) t: usize,
    /// Token ids: band id, `n_bands` for parallax, `n_bands + 1` for padding,
    /// `n_bands + 2` for the reddening prior.
    pub(crate) ids: Vec<u32>,
    /// Features \[b\]\[t\][N_FEAT].
    pub(crate) feats: Vec<f32>,
    /// 1 for the parallax token.
    pub(crate) is_plx: Vec<f32>,
    /// 1 for the reddening-prior token.
    pub(crate) is_red: Vec<f32>,
    /// 1 for real tokens, 0 for padding.
    pub(crate) mask: Vec<f32>,
}

/// Features of a photometric token.
#[inline]
pub(crate) fn phot_features(mag: f32, err: f32) -> [f32; N_FEAT] {
    [(mag - 15.0) / 4.0, err.max(1e-4).log10() + 1.5, 0.0]
}

/// Features of a parallax token (parallax and error in mas; negative parallaxes allowed).
#[inline]
pub(crate) fn parallax_features(plx: f32, err: f32) -> [f32; N_FEAT] {
    let e = err.max(1e-4);
    [(plx / e).asinh() / 2.0, plx.asinh(), e.log10() + 0.5]
}

/// Features of a reddening-prior token (E(B-V) and its error in mag; small negative
/// values allowed).
#[inline]
pub(crate) fn reddening_features(ebv: f32, err: f32) -> [f32; N_FEAT] {
    let e = err.max(1e-3);
    [(ebv / e).asinh() / 2.0, ebv / 0.3, e.log10() + 1.5]
}

/// Token id of the reddening prior.
pub(crate) fn reddening_id(n_bands: usize) -> u32 {
    (n_bands + 2) as u32
}

/// Number of tokens of a star (`reddening`: the model takes a reddening-prior token).
pub(crate) fn n_tokens(s: &StarObs, reddening: bool) -> usize {
    s.phot.len() + s.parallax.is_some() as usize + (reddening && s.reddening.is_some()) as usize
}

impl TokenBatch {
    /// Sub-batch of the stars `idx` (keeps the padded width).
    pub(crate) fn select(&self, idx: &[usize]) -> TokenBatch {
        self.select_to(idx, self.t)
    }

    /// Sub-batch of the stars `idx` truncated to `t` tokens per star (tokens are packed at
    /// the front, so `t` >= every selected star's count loses nothing).
    pub(crate) fn select_to(&self, idx: &[usize], t: usize) -> TokenBatch {
        let src_t = self.t;
        let f = N_FEAT;
        let mut out = TokenBatch {
            b: idx.len(),
            t,
            ..Default::default()
        };
        for &i in idx {
            let r = i * src_t;
            out.ids.extend_from_slice(&self.ids[r..r + t]);
            out.feats.extend_from_slice(&self.feats[r * f..(r + t) * f]);
            out.is_plx.extend_from_slice(&self.is_plx[r..r + t]);
            out.is_red.extend_from_slice(&self.is_red[r..r + t]);
            out.mask.extend_from_slice(&self.mask[r..r + t]);
        }
        out
    }

    /// Build the batch for `stars` (token order = measurement order, then parallax), for a
    /// model without a reddening-prior token (tests).
    #[cfg(test)]
    pub(crate) fn build(stars: &[StarObs], n_bands: usize) -> TokenBatch {
        TokenBatch::build_with(stars, n_bands, false)
    }

    /// Build the batch; `reddening`: append each star's reddening-prior token (if any).
    pub(crate) fn build_with(stars: &[StarObs], n_bands: usize, reddening: bool) -> TokenBatch {
        let t = stars
            .iter()
            .map(|s| n_tokens(s, reddening))
            .max()
            .unwrap_or(1)
            .max(1);
        let b = stars.len();
        let mut tb = TokenBatch {
            b,
            t,
            ids: vec![(n_bands + 1) as u32; b * t],
            feats: vec![0.0; b * t * N_FEAT],
            is_plx: vec![0.0; b * t],
            is_red: vec![0.0; b * t],
            mask: vec![0.0; b * t],
        };
        for (s, star) in stars.iter().enumerate() {
            let mut k = 0;
            for m in &star.phot {
                let i = s * t + k;
                tb.ids[i] = m.band as u32;
                tb.feats[i * N_FEAT..(i + 1) * N_FEAT]
                    .copy_from_slice(&phot_features(m.mag, m.err));
                tb.mask[i] = 1.0;
                k += 1;
            }
            if let Some((p, e)) = star.parallax {
                let i = s * t + k;
                tb.ids[i] = n_bands as u32;
                tb.feats[i * N_FEAT..(i + 1) * N_FEAT].copy_from_slice(&parallax_features(p, e));
                tb.is_plx[i] = 1.0;
                tb.mask[i] = 1.0;
                k += 1;
            }
            if let (true, Some(r)) = (reddening, star.reddening) {
                let i = s * t + k;
                tb.ids[i] = reddening_id(n_bands);
                tb.feats[i * N_FEAT..(i + 1) * N_FEAT]
                    .copy_from_slice(&reddening_features(r.ebv, r.error));
                tb.is_red[i] = 1.0;
                tb.mask[i] = 1.0;
            }
        }
        tb
    }
}
