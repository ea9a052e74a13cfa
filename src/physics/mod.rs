//! The physical forward model: band registry, grid interpolation, extinction, radii, support.
//!
//! Step 1 of the data path: theta -> apparent magnitudes. Used by the simulator (training),
//! the likelihood (importance sampling, MCMC) and `sedflow forward`. Never imports I/O.

pub mod bands;
pub mod calibration;
pub mod forward;
pub mod interp;
pub mod validate;

pub use bands::{BandRegistry, PhotSystem};
pub use forward::{ForwardModel, Theta, ThetaError, PARAM_NAMES};
