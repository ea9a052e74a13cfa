//! One integration-test binary (one link step); each module covers one component.

mod calibrate;
mod cli_forward;
mod forward_model;
