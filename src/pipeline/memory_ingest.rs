//! Steps 1-3 of the data path for one catalogue file held in memory: the footer, the part
//! plan, the duplicate pre-pass, ingest and batching, exactly as `sedflow run` does them
//! (the same functions), without inference or output. It is the entry point of the fuzz
//! targets (`fuzz/`) and of the hostile-input property tests, which check that no input
//! panics and that every input row reaches the batcher's output exactly once.

use super::config::PipelineConfig;
use super::location::InputObject;
use super::source::{self, PartPlan};
use super::stages::{batch_step, read_part, Control, Msg, StarsMsg};
use super::{batcher::Batcher, ingest};
use crate::pipeline::ingest::Ingested;
use crate::prior::reddening::ReddeningModel;
use anyhow::{Context, Result};
use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::ObjectStoreExt;
use std::cell::RefCell;
use std::sync::Arc;

/// URI the in-memory file is known by in messages.
pub const MEMORY_URI: &str = "memory://input.parquet";

/// What the reader and batcher made of one output part.
#[derive(Debug)]
pub struct IngestedPart {
    /// The part (row groups, input rows, output name).
    pub plan: PartPlan,
    /// Output rows the reader announced when it finished the part (`None`: it failed).
    pub n_out: Option<u32>,
    /// The part's stars, in the order the batcher passed them on (none if it failed).
    pub stars: Vec<Ingested>,
    /// Why the part failed, as `sedflow run` would report it.
    pub error: Option<String>,
}

/// Read `bytes` as one input file of `sedflow run` with `cfg` (validated first), the
/// model's band names and reddening settings. `Err`: the whole file is refused (bad
/// configuration, unreadable footer), as `run` refuses it; per-part errors are in the parts.
pub fn ingest_parquet(
    bytes: Bytes,
    cfg: &PipelineConfig,
    band_names: &[String],
    reddening: &ReddeningModel,
) -> Result<Vec<IngestedPart>> {
    cfg.validate()?;
    let mappings = ingest::band_mappings(&cfg.input, band_names)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting the I/O runtime")?;
    let store = Arc::new(InMemory::new());
    let path = ObjPath::from("input.parquet");
    let size = bytes.len() as u64;
    rt.block_on(store.put(&path, bytes.into()))?;
    let obj = InputObject {
        store,
        path,
        uri: MEMORY_URI.into(),
        size,
        stem: "input".into(),
    };
    let meta = rt.block_on(source::read_metadata(&obj))?;
    let rg_rows = source::row_group_rows(&meta);
    let plans = source::plan_parts(0, &obj.stem, &rg_rows, cfg.input.rows_per_part);
    let batcher = RefCell::new(Batcher::new(cfg.batching.batch_size, cfg.batching.window));
    let out = RefCell::new(Vec::new());
    let mut reported_unused = false;
    for (k, plan) in plans.iter().enumerate() {
        let part = k as u32;
        let send = |m: StarsMsg| {
            batch_step(&mut batcher.borrow_mut(), Some(m), &mut out.borrow_mut());
            true
        };
        let res = source::guard_decoder(&obj.uri, || {
            read_part(
                rt.handle(),
                (&obj, plan, part),
                cfg,
                (&mappings, None),
                (band_names, reddening),
                &|_| {},
                &send,
                &mut reported_unused,
            )
        });
        let end = match res {
            Ok(n) => Msg::Control(Control::End {
                part,
                n_out: n.expect("this sender never stops"),
            }),
            Err(e) => Msg::Control(Control::Failed {
                part,
                error: super::storage_error::report(&e),
            }),
        };
        send(end);
    }
    batch_step(&mut batcher.borrow_mut(), None, &mut out.borrow_mut());
    Ok(collect_parts(plans, out.into_inner()))
}

/// The batcher's messages sorted into their parts.
fn collect_parts(plans: Vec<PartPlan>, msgs: Vec<StarsMsg>) -> Vec<IngestedPart> {
    let mut parts: Vec<IngestedPart> = plans
        .into_iter()
        .map(|plan| IngestedPart {
            plan,
            n_out: None,
            stars: Vec::new(),
            error: None,
        })
        .collect();
    for m in msgs {
        match m {
            Msg::Data(stars) => {
                for s in stars {
                    parts[s.part as usize].stars.push(s);
                }
            }
            Msg::Control(Control::End { part, n_out }) => parts[part as usize].n_out = Some(n_out),
            Msg::Control(Control::Failed { part, error }) => {
                parts[part as usize].error = Some(error)
            }
            Msg::Control(Control::Start { .. }) => {}
        }
    }
    // the writer drops what a failed part sent before it failed: nothing partial is written
    for p in &mut parts {
        if p.error.is_some() {
            p.stars.clear();
        }
    }
    parts
}
