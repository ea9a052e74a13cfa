//! One integration-test binary (one link step); each module covers one component.

mod calibrate;
mod cli_forward;
mod derived;
mod double_submission;
mod forward_model;
mod pipeline;
mod pipeline_s3;
mod pipeline_util;
mod posterior;
mod slurm;
