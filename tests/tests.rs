//! One integration-test binary (one link step); each module covers one component.

mod browser;
mod calibrate;
mod cli_forward;
mod derived;
mod double_submission;
mod fault_proxy;
mod forward_model;
mod hostile_gen;
mod hostile_inputs;
mod join;
mod outputs;
mod pipeline;
mod pipeline_s3;
mod pipeline_s3_faults;
mod pipeline_util;
mod plots;
mod posterior;
mod report;
mod resume;
mod slurm;
