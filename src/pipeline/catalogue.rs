//! A whole catalogue read into memory through the pipeline's own ingest (the same column
//! mapping, error columns, floors, parallax zero point, validation and flags as
//! `sedflow run`), for tools that need every star at once: the reference MCMC's star
//! selection and its one-star mode. Meant for up to millions of stars; `sedflow run`
//! itself streams.

use super::config::PipelineConfig;
use super::ingest::{self, Ingested, LongGrouper, Mapper};
use super::{location, source};
use crate::prior::reddening::ReddeningModel;
use anyhow::{anyhow, Context, Result};
use futures::StreamExt;

/// Every star of every input file (local or S3), file by file in listing order, rows in
/// input order (long format: first appearance). `Ingested::part` is the file's index.
pub(crate) fn read_catalogue(
    input: &str,
    cfg: &PipelineConfig,
    band_names: &[String],
    reddening: &ReddeningModel,
) -> Result<Vec<Ingested>> {
    let mut out = Vec::new();
    scan_catalogue(input, cfg, band_names, reddening, |s| out.push(s))?;
    Ok(out)
}

/// Hand every star of the catalogue to `f`, in [`read_catalogue`]'s order, one record
/// batch at a time (wide format) or one row group at a time (long format): for tools that
/// look up a few stars in a large catalogue (`sedflow plot star`, `sedflow report`).
pub(crate) fn scan_catalogue(
    input: &str,
    cfg: &PipelineConfig,
    band_names: &[String],
    reddening: &ReddeningModel,
    mut f: impl FnMut(Ingested),
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    let mappings = ingest::band_mappings(&cfg.input, band_names)?;
    let inputs = rt.block_on(location::list_inputs(input, &cfg.s3))?;
    let mut emitted = 0u32;
    for (file, obj) in inputs.iter().enumerate() {
        let meta = rt.block_on(source::read_metadata(obj))?;
        let n_groups = source::row_group_rows(&meta).len();
        let mapper = Mapper::resolve(
            meta.schema(),
            &cfg.input,
            &mappings,
            (band_names, reddening),
            &obj.uri,
        )?;
        let groups: Vec<usize> = (0..n_groups).collect();
        let dups = super::read_duplicates(rt.handle(), obj, &meta, &mapper, &groups)?;
        let columns = mapper.columns();
        let decode = |e| anyhow!("{}: cannot decode (corrupt or truncated?): {e}", obj.uri);
        if mapper.is_long() {
            for g in 0..n_groups {
                let mut s =
                    source::open_stream(obj, &meta, &columns, vec![g], cfg.input.read_batch_rows)?;
                let mut grouper = LongGrouper::new(&mapper, file as u32);
                while let Some(b) = rt.block_on(s.next()) {
                    grouper.add(&b.map_err(decode)?, &dups)?;
                }
                let stars = grouper.finish(emitted);
                emitted += stars.len() as u32;
                stars.into_iter().for_each(&mut f);
            }
        } else {
            let mut s =
                source::open_stream(obj, &meta, &columns, groups, cfg.input.read_batch_rows)?;
            let mut next = 0u32;
            while let Some(b) = rt.block_on(s.next()) {
                let stars = mapper.ingest_wide(&b.map_err(decode)?, file as u32, next, &dups)?;
                next += stars.len() as u32;
                emitted += stars.len() as u32;
                stars.into_iter().for_each(&mut f);
            }
        }
    }
    Ok(())
}
