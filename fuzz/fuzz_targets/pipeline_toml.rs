//! Fuzz target `pipeline_toml`: see `fuzz_pipeline_toml` in tests/hostile_gen.rs (shared with the property
//! tests and the regression replay of tests/hostile_inputs.rs).
#![no_main]

#[path = "../../tests/hostile_gen.rs"]
#[allow(dead_code)]
mod hostile_gen;

libfuzzer_sys::fuzz_target!(|data: &[u8]| hostile_gen::fuzz_pipeline_toml(data));
