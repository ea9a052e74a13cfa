//! Example-catalogue maker (input side of the data path, for demos and benchmarks): writes
//! Parquet catalogues in the Gaia-archive column layout of `schemas/input.md` with stars
//! drawn from the prior, magnitudes from the embedded forward model plus the likelihood's
//! noise model, and mixed filter sets (Gaia always; BP/RP, 2MASS, AllWISE and Pan-STARRS
//! depending on brightness and sky coverage), like a real crossmatch.
//!
//! `cargo run --release --example make_catalogue -- --n 200 --out examples/catalogue.parquet`
//! `cargo run --release --example make_catalogue -- --n 1000000 --files 10 --out /tmp/cat1m`
//!
//! The `true_*` columns hold the drawn parameters (ignored by `sedflow run`). This is a
//! stand-in until `sedflow simulate` exists.

use anyhow::{Context, Result};
use arrow::array::{ArrayRef, Float32Array, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use clap::Parser;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use sedflow::likelihood::NoiseModel;
use sedflow::physics::{ForwardModel, PARAM_NAMES};
use sedflow::prior::Prior;
use sedflow::util::rng::Rng;
use std::sync::Arc;

#[derive(Parser, Debug)]
struct Args {
    /// Stars in total.
    #[arg(long, default_value_t = 200)]
    n: usize,
    /// Files to split them over (1: `--out` is a file; more: `--out` is a directory).
    #[arg(long, default_value_t = 1)]
    files: usize,
    /// Rows per row group.
    #[arg(long, default_value_t = 65536)]
    row_group: usize,
    /// Output file or directory.
    #[arg(long)]
    out: String,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Faintest Gaia G magnitude kept.
    #[arg(long, default_value_t = 20.5)]
    g_max: f64,
}

/// (column, error column or flux-over-error column, band, limiting magnitude, floor).
const SURVEYS: [(&str, &str, &str, f64, f64); 13] = [
    (
        "phot_g_mean_mag",
        "phot_g_mean_flux_over_error",
        "gaia_g",
        21.5,
        0.0003,
    ),
    (
        "phot_bp_mean_mag",
        "phot_bp_mean_flux_over_error",
        "gaia_bp",
        20.8,
        0.002,
    ),
    (
        "phot_rp_mean_mag",
        "phot_rp_mean_flux_over_error",
        "gaia_rp",
        20.3,
        0.002,
    ),
    ("j_m", "j_msigcom", "tmass_j", 16.8, 0.02),
    ("h_m", "h_msigcom", "tmass_h", 16.2, 0.02),
    ("ks_m", "ks_msigcom", "tmass_ks", 15.6, 0.02),
    ("w1mpro", "w1mpro_error", "wise_w1", 17.0, 0.02),
    ("w2mpro", "w2mpro_error", "wise_w2", 15.9, 0.02),
    (
        "g_mean_psf_mag",
        "g_mean_psf_mag_error",
        "ps1_g",
        23.0,
        0.01,
    ),
    (
        "r_mean_psf_mag",
        "r_mean_psf_mag_error",
        "ps1_r",
        22.8,
        0.01,
    ),
    (
        "i_mean_psf_mag",
        "i_mean_psf_mag_error",
        "ps1_i",
        22.6,
        0.01,
    ),
    (
        "z_mean_psf_mag",
        "z_mean_psf_mag_error",
        "ps1_z",
        22.0,
        0.01,
    ),
    (
        "y_mean_psf_mag",
        "y_mean_psf_mag_error",
        "ps1_y",
        21.0,
        0.01,
    ),
];

struct Star {
    id: i64,
    theta: [f64; 6],
    mags: [Option<(f64, f64)>; 13],
    parallax: (f64, f64),
}

fn draw(
    fm: &ForwardModel,
    prior: &Prior,
    noise: &NoiseModel,
    bands: &[usize],
    rng: &mut Rng,
    g_max: f64,
) -> Star {
    let mut m = vec![0f32; bands.len()];
    loop {
        let t = prior.sample(rng);
        if fm.magnitudes(&t, bands, &mut m).is_err() {
            continue;
        }
        let g = m[0] as f64;
        if !(5.0..=g_max).contains(&g) {
            continue;
        }
        let ps1_sky = rng.chance(0.75); // PS1 covers dec > -30
        let wise = rng.chance(0.97);
        let mut mags = [None; 13];
        for (k, &(_, _, _, lim, floor)) in SURVEYS.iter().enumerate() {
            let mt = m[k] as f64;
            let observed = match k {
                0 => true,
                1 | 2 => mt < lim && rng.chance(0.97),
                3..=5 => mt < lim,
                6 | 7 => wise && mt < lim,
                _ => ps1_sky && mt > 13.5 && mt < lim,
            };
            if !observed || !mt.is_finite() {
                continue;
            }
            let sigma = floor + 0.2 * 10f64.powf(0.4 * (mt - lim));
            let f = noise.floor[bands[k]] as f64;
            let obs = mt + rng.normal() * (sigma * sigma + f * f).sqrt();
            mags[k] = Some((obs, sigma));
        }
        let s_plx = (0.015 * 10f64.powf(0.2 * (g - 15.0))).max(0.01);
        let plx = 1000.0 / t.distance + rng.normal() * s_plx;
        return Star {
            id: 0,
            theta: t.to_array(),
            mags,
            parallax: (plx, s_plx),
        };
    }
}

fn batch(stars: &[Star]) -> Result<RecordBatch> {
    let mut fields = vec![Field::new("source_id", DataType::Int64, false)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(
        stars.iter().map(|s| s.id),
    ))];
    fields.push(Field::new("parallax", DataType::Float64, true));
    cols.push(Arc::new(Float64Array::from_iter_values(
        stars.iter().map(|s| s.parallax.0),
    )));
    fields.push(Field::new("parallax_error", DataType::Float32, true));
    cols.push(Arc::new(Float32Array::from_iter_values(
        stars.iter().map(|s| s.parallax.1 as f32),
    )));
    for (k, &(mag, err, _, _, _)) in SURVEYS.iter().enumerate() {
        fields.push(Field::new(mag, DataType::Float32, true));
        cols.push(Arc::new(Float32Array::from_iter(
            stars.iter().map(|s| s.mags[k].map(|m| m.0 as f32)),
        )));
        fields.push(Field::new(err, DataType::Float32, true));
        let gaia = err.ends_with("flux_over_error");
        cols.push(Arc::new(Float32Array::from_iter(stars.iter().map(|s| {
            s.mags[k].map(|m| {
                if gaia {
                    (sedflow::pipeline::ingest::MAG_PER_REL_FLUX / m.1) as f32
                } else {
                    m.1 as f32
                }
            })
        }))));
    }
    for (p, name) in PARAM_NAMES.iter().enumerate() {
        fields.push(Field::new(format!("true_{name}"), DataType::Float64, false));
        cols.push(Arc::new(Float64Array::from_iter_values(
            stars.iter().map(|s| s.theta[p]),
        )));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let fm = ForwardModel::embedded();
    let prior = Prior::default_embedded();
    let noise = NoiseModel::default_for(fm);
    let bands: Vec<usize> = SURVEYS
        .iter()
        .map(|s| fm.bands().id(s.2).unwrap())
        .collect();
    let files = a.files.max(1);
    let paths: Vec<std::path::PathBuf> = if files == 1 {
        vec![a.out.clone().into()]
    } else {
        std::fs::create_dir_all(&a.out)?;
        (0..files)
            .map(|f| std::path::Path::new(&a.out).join(format!("catalogue-{f:04}.parquet")))
            .collect()
    };
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(a.row_group))
        .build();
    let mut next = 0usize;
    for (f, path) in paths.iter().enumerate() {
        let n_f = a.n / files + usize::from(f < a.n % files);
        let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
        let mut w: Option<ArrowWriter<std::fs::File>> = None;
        let mut file = Some(file);
        let mut done = 0;
        while done < n_f {
            let k = (n_f - done).min(a.row_group.min(16384));
            // one stream per star: the catalogue does not depend on the file split
            let stars: Vec<Star> = (next..next + k)
                .map(|i| {
                    let mut rng = Rng::for_keys(a.seed, &[i as u64]);
                    let mut s = draw(fm, prior, &noise, &bands, &mut rng, a.g_max);
                    s.id = 1_000_000_000 + i as i64;
                    s
                })
                .collect();
            let b = batch(&stars)?;
            if w.is_none() {
                w = Some(ArrowWriter::try_new(
                    file.take().unwrap(),
                    b.schema(),
                    Some(props.clone()),
                )?);
            }
            w.as_mut().unwrap().write(&b)?;
            done += k;
            next += k;
        }
        match w {
            Some(w) => {
                w.close()?;
            }
            None => {
                let b = batch(&[])?;
                ArrowWriter::try_new(file.take().unwrap(), b.schema(), Some(props.clone()))?
                    .close()?;
            }
        }
        eprintln!("wrote {} ({n_f} stars)", path.display());
    }
    Ok(())
}
