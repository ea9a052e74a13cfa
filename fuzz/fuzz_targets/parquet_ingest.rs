//! Fuzz target `parquet_ingest`: see `fuzz_parquet_ingest` in tests/hostile_gen.rs (shared
//! with the property tests and the regression replay of tests/hostile_inputs.rs).
#![no_main]

#[path = "../../tests/hostile_gen.rs"]
#[allow(dead_code)]
mod hostile_gen;

libfuzzer_sys::fuzz_target!(
    // libfuzzer-sys's panic hook aborts even on panics that sedflow catches (the Parquet
    // decoder's, turned into file errors): the default hook instead; a panic that escapes
    // still aborts (libfuzzer-sys checks every input's unwind)
    init: drop(std::panic::take_hook()),
    |data: &[u8]| hostile_gen::fuzz_parquet_ingest(data)
);
