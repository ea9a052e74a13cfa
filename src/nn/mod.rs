//! Neural posterior: observation tokens, set encoder, conditional MAF (affine or
//! rational-quadratic spline transforms), training, and the
//! fast CPU kernels used at inference. [`proposal`] implements the posterior layer's
//! [`crate::posterior::proposal::Proposal`] with it.

pub(crate) mod encoder;
pub(crate) mod fast;
pub(crate) mod fast_encoder;
pub(crate) mod flow;
pub(crate) mod model;
pub(crate) mod proposal;
pub(crate) mod spline;
pub(crate) mod tokens;
pub(crate) mod train;

#[cfg(test)]
mod tests;
