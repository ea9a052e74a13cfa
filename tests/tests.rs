//! One integration-test binary (one link step); each module covers one component.

mod browser;
mod calibrate;
mod cli_forward;
mod derived;
mod double_submission;
mod forward_model;
mod pipeline;
mod pipeline_s3;
mod pipeline_util;
mod plots;
mod posterior;
mod report;
mod slurm;
