//! Neural posterior: observation tokens, set encoder, conditional MAF, parameter
//! transform, training, and the fast CPU sampler used at inference.

pub mod encoder;
pub mod fast;
pub mod fast_encoder;
pub mod flow;
pub mod model;
pub mod param;
pub mod proposal;
pub mod tokens;
pub mod train;

#[cfg(test)]
mod tests;
