//! sedflow: Bayesian stellar parameters from broadband photometry at survey scale.
//!
//! Data path: read (`io`) -> batch -> infer -> summarise -> write. The physics
//! (`physics`) turns theta = (Teff, log g, [M/H], A_V, R_V, distance) into magnitudes.
#![deny(missing_docs)]
#![allow(
    clippy::neg_cmp_op_on_partial_ord,
    reason = "`!(x > 0.0)` is how the numeric code rejects NaN along with out-of-range values"
)]
#![allow(
    clippy::needless_range_loop,
    reason = "numeric kernels index several arrays in lockstep; index loops read like the formulas"
)]

pub mod calib;
pub mod cli;
pub(crate) mod eval;
pub mod io;
pub mod likelihood;
pub(crate) mod nn;
pub mod physics;
pub mod pipeline;
pub mod plot;
pub mod posterior;
pub mod prior;
pub mod simulate;
pub mod util;
