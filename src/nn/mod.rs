//! Neural posterior: observation tokens, set encoder, conditional MAF, training, and the
//! fast CPU kernels used at inference. [`proposal`] implements the posterior layer's
//! [`crate::posterior::proposal::Proposal`] with it.

pub mod encoder;
pub mod fast;
pub mod fast_encoder;
pub mod flow;
pub mod model;
pub mod proposal;
pub mod tokens;
pub mod train;

#[cfg(test)]
mod tests;
