//! `sedflow bench pipeline`: the end-to-end throughput benchmark. A catalogue made by
//! `sedflow simulate` (cached) goes through `sedflow run` in a child process, Parquet in ->
//! Parquet out, exactly as a user runs it; the child's own summary gives the stage times and
//! the kernel's accounting (wait4) gives its peak RSS. Optionally, the flow + importance
//! sampler is compared with the reference MCMC on the first stars of the same catalogue.

use super::simulate::{simulate_catalogue_with, GaiaRelease, Pattern};
use crate::posterior::mcmc::McmcConfig;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Settings of one pipeline benchmark.
pub struct PipelineBench {
    /// Catalogue stars.
    pub stars: usize,
    /// Proposal samples per star.
    pub samples: usize,
    /// Catalogue seed.
    pub seed: u64,
    /// Where catalogues (cached) and outputs go.
    pub work_dir: PathBuf,
    /// Model directory for the run (default: the embedded model).
    pub model: Option<PathBuf>,
    /// Compare with the reference MCMC on this many stars (0: skip).
    pub mcmc: usize,
    /// Band patterns of the catalogue.
    pub pattern: Pattern,
    /// Extra arguments passed to `sedflow run`.
    pub run_args: Vec<String>,
}

/// Run the benchmark; prints the figures and returns the exit code.
pub fn run(b: &PipelineBench) -> Result<i32> {
    let exe = std::env::current_exe().context("locating the sedflow binary")?;
    std::fs::create_dir_all(&b.work_dir)
        .with_context(|| format!("creating {}", b.work_dir.display()))?;
    let pattern = format!("{:?}", b.pattern).to_lowercase();
    let catalogue = b.work_dir.join(format!(
        "simulate-{}-seed{}-{pattern}.parquet",
        b.stars, b.seed
    ));
    if !catalogue.exists() {
        eprintln!(
            "bench: making the catalogue with `sedflow simulate` -> {}",
            catalogue.display()
        );
        let partial = catalogue.with_extension("partial.parquet");
        let status = Command::new(&exe)
            .args(["simulate", "--stars", &b.stars.to_string()])
            .args([
                "--seed",
                &b.seed.to_string(),
                "--pattern",
                &pattern,
                "--output",
            ])
            .arg(&partial)
            .status()
            .context("starting sedflow simulate")?;
        if !status.success() {
            bail!("sedflow simulate failed ({status})");
        }
        std::fs::rename(&partial, &catalogue)?;
    }
    let output = b
        .work_dir
        .join(format!("run-{}-seed{}-{}", b.stars, b.seed, b.samples));
    if output.exists() {
        // a previous benchmark's output: remove it so that nothing is skipped as done
        std::fs::remove_dir_all(&output)
            .with_context(|| format!("removing {}", output.display()))?;
    }
    let summary_path = b.work_dir.join("run-summary.json");
    let _ = std::fs::remove_file(&summary_path);
    let threads = rayon::current_num_threads();
    println!(
        "bench pipeline: {} stars x {} samples, {} CPU threads, catalogue {}",
        b.stars,
        b.samples,
        threads,
        catalogue.display()
    );
    let mut cmd = Command::new(&exe);
    cmd.arg("run")
        .arg("--input")
        .arg(&catalogue)
        .arg("--output")
        .arg(&output)
        .args(["--samples", &b.samples.to_string(), "--progress", "off"])
        .arg("--summary-json")
        .arg(&summary_path);
    if let Some(m) = &b.model {
        cmd.arg("--model").arg(m);
    }
    cmd.args(&b.run_args).stdout(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd.spawn().context("starting sedflow run")?;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        println!("  | {}", line?);
    }
    let (code, peak_rss) = wait_with_peak_rss(&mut child)?;
    let wall = t0.elapsed().as_secs_f64();
    if code != 0 {
        bail!("sedflow run exited with {code}");
    }
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&summary_path).context("reading the run's summary")?,
    )?;
    let stars = s["stars"].as_f64().unwrap_or(0.0);
    let inferred = s["stars_inferred"].as_f64().unwrap_or(0.0);
    let samples = s["samples_drawn"].as_f64().unwrap_or(0.0);
    println!(
        "bench pipeline: wall {:.1} s end to end (process start to exit; {:.1} s processing)",
        wall,
        s["wall_s"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "bench pipeline: {:.0} stars/s, {:.3e} samples/s drawn (likelihood and weights included; {:.1} samples per star on average), {:.3e} effective samples/s ({:.1} per star on average)",
        stars / wall,
        samples / wall,
        samples / inferred.max(1.0),
        s["effective_samples"].as_f64().unwrap_or(f64::NAN) / wall,
        s["effective_samples"].as_f64().unwrap_or(f64::NAN) / inferred.max(1.0)
    );
    match peak_rss {
        Some(kib) => println!(
            "bench pipeline: peak RSS {:.1} MiB (kernel accounting of the run process)",
            kib as f64 / 1024.0
        ),
        None => println!("bench pipeline: peak RSS unavailable on this platform"),
    }
    print_stage_shares(&s);
    if b.mcmc > 0 {
        compare_with_mcmc(b)?;
    }
    Ok(0)
}

/// Busy CPU time per stage and its share: reader (read + decode + ingest), the engine's
/// sub-stages (summed over inference threads) and the writer. Stages overlap in time.
fn print_stage_shares(s: &serde_json::Value) {
    let mut stages: Vec<(String, f64)> = vec![("read".into(), s["read_s"].as_f64().unwrap_or(0.0))];
    if let Some(list) = s["engine_stages"].as_array() {
        for e in list {
            if let (Some(name), Some(t)) = (e[0].as_str(), e[1].as_f64()) {
                stages.push((name.to_string(), t));
            }
        }
    }
    stages.push(("write".into(), s["write_s"].as_f64().unwrap_or(0.0)));
    let total: f64 = stages.iter().map(|x| x.1).sum::<f64>().max(1e-12);
    let parts: Vec<String> = stages
        .iter()
        .map(|(n, t)| format!("{n} {t:.1} s ({:.0}%)", 100.0 * t / total))
        .collect();
    println!("bench pipeline: busy time by stage: {}", parts.join(", "));
    for c in s["engine_counters"].as_array().into_iter().flatten() {
        if let (Some(name), Some(v)) = (c[0].as_str(), c[1].as_f64()) {
            println!("bench pipeline: {name}: {v:.1}");
        }
    }
}

/// Wait for the child and return (exit code, peak RSS in KiB) from the kernel's rusage.
fn wait_with_peak_rss(child: &mut std::process::Child) -> Result<(i32, Option<u64>)> {
    #[cfg(unix)]
    {
        let pid = child.id() as libc::pid_t;
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain data; wait4 fills it for our own child, which std has not
        // reaped (we never call child.wait()).
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r != pid {
            bail!("wait4 failed: {}", std::io::Error::last_os_error());
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        // Linux reports ru_maxrss in KiB (macOS in bytes)
        let kib = if cfg!(target_os = "macos") {
            usage.ru_maxrss as u64 / 1024
        } else {
            usage.ru_maxrss as u64
        };
        Ok((code, Some(kib)))
    }
    #[cfg(not(unix))]
    {
        let st = child.wait()?;
        Ok((st.code().unwrap_or(-1), None))
    }
}

/// The importance sampler at the run's settings (one star at a time, one thread) against
/// the reference MCMC on the same stars (the first `b.mcmc` stars of the benchmark
/// catalogue, regenerated in memory): time per effective sample of each (the MCMC's
/// effective samples are its smallest bulk ESS over parameters, after burn-in; its burn-in
/// is counted in its time), and their agreement (`posterior::compare`).
fn compare_with_mcmc(b: &PipelineBench) -> Result<()> {
    use crate::posterior::compare::{agreement, star_deviations, DEFAULT_PARAMS};
    let engine = crate::cli::engine::flow_engine(b.model.as_deref())?;
    let sims = simulate_catalogue_with(
        &engine.fm,
        b.mcmc,
        b.seed,
        GaiaRelease::Dr3,
        b.pattern,
        false,
        Default::default(),
    )?;
    let settings = crate::pipeline::config::PipelineConfig::embedded_default()
        .inference
        .settings();
    let cfg = McmcConfig {
        seed: b.seed,
        ..Default::default()
    };
    let (mut t_is, mut neff_is, mut t_mc, mut neff_mc) = (0.0, 0.0, 0.0, 0.0);
    let mut worst = Vec::new();
    for s in &sims {
        let t0 = Instant::now();
        let r = &engine.infer_chunk(std::slice::from_ref(&s.obs), &settings)[0];
        t_is += t0.elapsed().as_secs_f64();
        neff_is += (r.n_eff as f64).max(0.0);
        let m = engine.reference_mcmc(&s.obs, &cfg);
        t_mc += m.seconds;
        neff_mc += m.n_eff;
        worst.push(star_deviations(&m.summaries(), &r.params, &DEFAULT_PARAMS).1);
    }
    let k = sims.len() as f64;
    let (per_is, per_mc) = (t_is / neff_is.max(1e-12), t_mc / neff_mc.max(1e-12));
    let agree = agreement(&worst);
    println!(
        "bench pipeline: MCMC comparison on {} stars, one thread: importance sampling {:.1} effective samples/star in {:.2e} s/star; MCMC ({} walkers x ({} + {}) steps) {:.0} in {:.2} s/star",
        sims.len(), neff_is / k, t_is / k, cfg.walkers, cfg.burn, cfg.steps, neff_mc / k, t_mc / k
    );
    println!(
        "bench pipeline: time per effective sample: MCMC {per_mc:.2e} s, importance sampling {per_is:.2e} s -> {:.0}x; agreement: median worst |dq|/width {:.3}, {:.0}% within 0.5",
        per_mc / per_is,
        agree.median,
        100.0 * agree.within_0_5
    );
    Ok(())
}
