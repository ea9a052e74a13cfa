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
    /// Forward-model throughput in band-magnitudes per second.
    Forward {
        /// Thetas per batch.
        #[arg(long, default_value_t = 100_000)]
        batch: usize,
        /// Timed repetitions (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Comma-separated bands (default: all).
        #[arg(long)]
        bands: Option<String>,
    },
}

/// Run a benchmark.
pub fn run(a: BenchArgs) -> Result<i32> {
    match a.what {
        BenchWhat::Forward {
            batch,
            repeats,
            bands,
        } => bench_forward(batch, repeats, bands.as_deref()),
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

fn bench_forward(batch: usize, repeats: usize, bands: Option<&str>) -> Result<i32> {
    let model = ForwardModel::embedded();
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
    println!(
        "forward model: {batch} thetas x {} bands, {} threads: median {:.1} ms per batch -> {:.3e} band-magnitudes/s ({:.3e} thetas/s); {} non-finite",
        bands.len(),
        rayon::current_num_threads(),
        med * 1e3,
        rate,
        batch as f64 / med,
        n_nan
    );
    Ok(0)
}
