//! Small shared utilities: deterministic random numbers, safetensors reading, statistics.

pub mod rng;
pub mod safetensors;
pub mod special;
pub mod stats;
