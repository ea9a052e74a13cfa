//! `sedflow bench`: throughput measurements that the issues ask for.

use crate::physics::{ForwardModel, Theta};
use crate::util::rng::Rng;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::time::Instant;

/// Arguments of `sedflow bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand, Debug)]
enum BenchWhat {
    /// Flow alone: posterior samples per second with their log densities, for batches of
    /// stars x samples (encoder included), single thread and all threads. An intrinsic
    /// flow's samples are y; their completion by the closed form is not included.
    Flow {
        /// Stars per batch.
        #[arg(long, default_value_t = 64)]
        stars: usize,
        /// Samples per star.
        #[arg(long, default_value_t = 256)]
        samples: usize,
        /// Timed repetitions (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Model directory (default: the embedded model).
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// Device: cpu, cuda or cuda:N (GPU builds: --features cuda).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// End to end: a `sedflow simulate` catalogue (cached under --work-dir) through
    /// `sedflow run` in a child process; prints wall time, stars/s, proposal samples/s, peak
    /// RSS and busy time per stage, and optionally the speed-up over the reference MCMC.
    Pipeline {
        /// Catalogue stars.
        #[arg(long, default_value_t = 250_000)]
        stars: usize,
        /// Proposal samples per star.
        #[arg(long, default_value_t = 256)]
        samples: usize,
        /// Catalogue seed.
        #[arg(long, default_value_t = 11)]
        seed: u64,
        /// Directory for the cached catalogue and the run's output.
        #[arg(long, default_value = "target/bench")]
        work_dir: std::path::PathBuf,
        /// Model directory (default: the embedded model).
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// Also time the reference MCMC against importance sampling on this many stars of
        /// the catalogue (time per effective sample, agreement).
        #[arg(long, default_value_t = 0)]
        mcmc: usize,
        /// Band patterns of the simulated catalogue: `full` (all 13 bands and a parallax,
        /// the benchmark's real-catalogue pattern) or `any` (the survey model's mix).
        #[arg(long, value_enum, default_value_t = super::simulate::Pattern::Full)]
        pattern: super::simulate::Pattern,
        /// Further arguments for `sedflow run` (after `--`).
        #[arg(last = true)]
        run_args: Vec<String>,
    },
    /// Forward-model throughput in band-magnitudes per second.
    Forward {
        /// Thetas per batch.
        #[arg(long, default_value_t = 100_000)]
        batch: usize,
        /// Timed repetitions (the median is reported, with the fastest and slowest).
        #[arg(long, default_value_t = 20)]
        repeats: usize,
        /// Comma-separated bands (default: all).
        #[arg(long)]
        bands: Option<String>,
        /// The raw physical model (without the empirical calibration's corrections).
        #[arg(long)]
        raw: bool,
    },
}

/// Run a benchmark.
pub fn run(a: BenchArgs) -> Result<i32> {
    match a.what {
        BenchWhat::Forward {
            batch,
            repeats,
            bands,
            raw,
        } => bench_forward(batch, repeats, bands.as_deref(), raw),
        BenchWhat::Flow {
            stars,
            samples,
            repeats,
            model,
            device,
        } => bench_flow(stars, samples, repeats, model.as_ref(), &device),
        BenchWhat::Pipeline {
            stars,
            samples,
            seed,
            work_dir,
            model,
            mcmc,
            pattern,
            run_args,
        } => super::bench_pipeline::run(&super::bench_pipeline::PipelineBench {
            stars,
            samples,
            seed,
            work_dir,
            model,
            mcmc,
            pattern,
            run_args,
        }),
    }
}

/// Random thetas inside the support: uniform over supported population cells.
pub fn random_supported_thetas(model: &ForwardModel, n: usize, seed: u64) -> Vec<Theta> {
    let pop = model.population();
    let [(x0, dx, nx), (y0, dy, ny), (z0, dz, nz)] = pop.axes();
    let cells: Vec<usize> = pop
        .support_cells()
        .iter()
        .enumerate()
        .filter(|(_, &s)| s != 0)
        .map(|(i, _)| i)
        .collect();
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let c = cells[rng.below(cells.len())];
            let (i, j, k) = (
                c / ((ny - 1) * (nz - 1)),
                (c / (nz - 1)) % (ny - 1),
                c % (nz - 1),
            );
            let _ = nx;
            Theta {
                teff: 10f64.powf(x0 + dx * (i as f64 + rng.uniform())),
                logg: y0 + dy * (j as f64 + rng.uniform()),
                mh: z0 + dz * (k as f64 + rng.uniform()),
                av: rng.uniform_range(0.0, 5.0),
                rv: rng.uniform_range(2.3, 5.6),
                distance: 10f64.powf(rng.uniform_range(1.0, 4.3)),
            }
        })
        .collect()
}

fn bench_forward(batch: usize, repeats: usize, bands: Option<&str>, raw: bool) -> Result<i32> {
    let model = if raw {
        ForwardModel::embedded_raw()
    } else {
        ForwardModel::embedded()
    };
    let bands = model.bands().parse_list(bands)?;
    let thetas = random_supported_thetas(model, batch, 1);
    let mut out = vec![0f32; batch * bands.len()];
    model.magnitudes_batch(&thetas, &bands, &mut out); // warm-up
    let mut times = Vec::new();
    for _ in 0..repeats.max(1) {
        let t0 = Instant::now();
        model.magnitudes_batch(&thetas, &bands, &mut out);
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = times[times.len() / 2];
    let n_nan = out.iter().filter(|v| !v.is_finite()).count();
    let rate = (batch * bands.len()) as f64 / med;
    // shared machines vary from run to run: the spread is printed with the median
    let (best, worst) = (times[0], times[times.len() - 1]);
    println!(
        "forward model ({}): {batch} thetas x {} bands, {} threads: median {:.1} ms per batch -> {:.3e} band-magnitudes/s ({:.3e} thetas/s); fastest/slowest of {} batches {:.3e}/{:.3e}; {} non-finite",
        if raw { "raw physical" } else { "calibrated" },
        bands.len(),
        rayon::current_num_threads(),
        med * 1e3,
        rate,
        batch as f64 / med,
        times.len(),
        (batch * bands.len()) as f64 / best,
        (batch * bands.len()) as f64 / worst,
        n_nan
    );
    Ok(0)
}

fn median_time<F: FnMut()>(repeats: usize, mut f: F) -> f64 {
    f(); // warm-up
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times[times.len() / 2]
}

/// One batch of flow draws with their log densities: thetas for a full flow, intrinsic y
/// for an intrinsic one (its completion by the closed form is the posterior layer's work,
/// timed in `sedflow run`'s "flow pilot" stage).
#[derive(Default)]
struct FlowDraws {
    thetas: Vec<crate::physics::Theta>,
    ys: Vec<[f64; crate::posterior::conditional::NY]>,
    log_q: Vec<f64>,
}

impl FlowDraws {
    fn draw(
        &mut self,
        p: &crate::nn::proposal::FlowProposal,
        obs: &[crate::likelihood::StarObs],
        samples: usize,
        seeds: &[u64],
    ) -> Vec<crate::nn::proposal::FlowStar> {
        use crate::posterior::proposal::Proposal;
        let cond = p.condition(obs);
        if p.intrinsic() {
            p.sample_y(&cond, obs, samples, seeds, &mut self.ys, &mut self.log_q);
        } else {
            p.sample(
                &cond,
                obs,
                samples,
                seeds,
                &mut self.thetas,
                &mut self.log_q,
            );
        }
        cond
    }

    /// The density pass at the draws of star `k`.
    fn density(
        &self,
        p: &crate::nn::proposal::FlowProposal,
        cond: &crate::nn::proposal::FlowStar,
        (k, samples): (usize, usize),
        out: &mut Vec<f64>,
    ) {
        use crate::posterior::proposal::Proposal;
        let r = k * samples..(k + 1) * samples;
        if p.intrinsic() {
            p.log_density_y(cond, &self.ys[r], out);
        } else {
            p.log_density(cond, &self.thetas[r], out);
        }
    }
}

fn bench_flow(
    stars: usize,
    samples: usize,
    repeats: usize,
    model: Option<&std::path::PathBuf>,
    device: &str,
) -> Result<i32> {
    use rayon::prelude::*;
    let engine = crate::cli::engine::flow_engine_on(model.map(|p| p.as_path()), device)?;
    let p = &engine.proposal;
    let cat = super::simulate::simulate_catalogue(
        &engine.fm,
        stars * rayon::current_num_threads(),
        3,
        super::simulate::GaiaRelease::Dr3,
    )?;
    let obs: Vec<_> = cat.iter().map(|s| s.obs.clone()).collect();
    let seeds: Vec<u64> = (0..obs.len() as u64).collect();
    let one = &obs[..stars];
    let mut draws = FlowDraws::default();
    let t1 = median_time(repeats, || {
        draws.draw(p, one, samples, &seeds[..stars]);
    });
    if p.on_device {
        // one batched call per chunk on the device (the results come back to the host)
        println!(
            "flow ({}) on {device}: batch of {stars} stars x {samples} samples with log q: {:.1} ms -> {:.3e} samples/s (median of {repeats})",
            p.card.id,
            t1 * 1e3,
            (stars * samples) as f64 / t1,
        );
        return Ok(0);
    }
    let nt = rayon::current_num_threads();
    let tn = median_time(repeats, || {
        obs.par_chunks(stars)
            .zip(seeds.par_chunks(stars))
            .for_each(|(o, s)| {
                FlowDraws::default().draw(p, o, samples, s);
            })
    });
    // the density pass at the samples of one batch (the mixture's cost per sample)
    let cond = draws.draw(p, one, samples, &seeds[..stars]);
    let mut dens = Vec::with_capacity(samples);
    let td = median_time(repeats, || {
        for (k, c) in cond.iter().enumerate() {
            dens.clear();
            draws.density(p, c, (k, samples), &mut dens);
        }
    });
    let ctx_t = median_time(repeats, || {
        for s in one {
            std::hint::black_box(p.encoder.context(s));
        }
    });
    println!(
        "flow ({}): batch of {stars} stars x {samples} samples with log q: 1 thread {:.1} ms -> {:.3e} samples/s (encoder {:.1} ms of it); {nt} threads x {stars} stars: {:.3e} samples/s",
        p.card.id,
        t1 * 1e3,
        (stars * samples) as f64 / t1,
        ctx_t * 1e3,
        (nt * stars * samples) as f64 / tn
    );
    println!(
        "flow density pass at given points: 1 thread {:.3e} points/s",
        (stars * samples) as f64 / td
    );
    Ok(0)
}
