//! Batching (step 3 of the data path): groups ingested stars into inference batches of
//! stars with the same number of usable bands (set size), up to `batch_size` stars.
//!
//! A star waits in its bucket until the bucket is full, or until `window` later stars have
//! arrived, whichever comes first. That bounds how far the batching reorders stars, and with
//! it the writer's reorder buffer: memory stays flat however large the catalogue. Batches are
//! a pure function of the input order, so runs are reproducible.

use super::ingest::Ingested;
use std::collections::VecDeque;

/// Set size used for bucketing; 0 for stars that will not be processed.
pub(crate) fn set_size(s: &Ingested) -> usize {
    if s.null_id {
        0
    } else {
        s.obs.phot.len()
    }
}

/// Groups stars by set size.
pub(crate) struct Batcher {
    batch_size: usize,
    window: u64,
    seq: u64,
    /// Per set size: (arrival number, star).
    buckets: Vec<VecDeque<(u64, Ingested)>>,
    held: usize,
}

impl Batcher {
    /// New batcher (`window >= batch_size >= 1`).
    pub(crate) fn new(batch_size: usize, window: usize) -> Batcher {
        Batcher {
            batch_size: batch_size.max(1),
            window: window.max(batch_size).max(1) as u64,
            seq: 0,
            buckets: Vec::new(),
            held: 0,
        }
    }

    /// Stars currently held (tests).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    fn take(&mut self, k: usize) -> Vec<Ingested> {
        let b = &mut self.buckets[k];
        let n = b.len().min(self.batch_size);
        self.held -= n;
        b.drain(..n).map(|(_, s)| s).collect()
    }

    /// Add a star; full or overdue buckets are appended to `out`.
    pub(crate) fn push(&mut self, s: Ingested, out: &mut Vec<Vec<Ingested>>) {
        let k = set_size(&s);
        if self.buckets.len() <= k {
            self.buckets.resize_with(k + 1, VecDeque::new);
        }
        self.buckets[k].push_back((self.seq, s));
        self.seq += 1;
        self.held += 1;
        if self.buckets[k].len() >= self.batch_size {
            let b = self.take(k);
            out.push(b);
        }
        // overdue: the oldest star of a bucket has seen `window` later stars
        for k in 0..self.buckets.len() {
            while let Some(&(first, _)) = self.buckets[k].front() {
                if self.seq - first >= self.window {
                    let b = self.take(k);
                    out.push(b);
                } else {
                    break;
                }
            }
        }
    }

    /// Emit everything held (end of input), smallest set size first.
    pub(crate) fn flush(&mut self, out: &mut Vec<Vec<Ingested>>) {
        for k in 0..self.buckets.len() {
            while !self.buckets[k].is_empty() {
                let b = self.take(k);
                out.push(b);
            }
        }
    }

    /// Drop the held stars of a part (its input failed).
    pub(crate) fn purge_part(&mut self, part: u32) {
        for b in &mut self.buckets {
            let before = b.len();
            b.retain(|(_, s)| s.part != part);
            self.held -= before - b.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::likelihood::{Measurement, StarObs};

    fn star(i: u32, nb: usize) -> Ingested {
        Ingested {
            part: i % 3,
            idx: i,
            obs: StarObs {
                source_id: i as i64,
                phot: (0..nb)
                    .map(|b| Measurement {
                        band: b as u16,
                        mag: 10.0,
                        err: 0.1,
                    })
                    .collect(),
                parallax: None,
                reddening: None,
            },
            flags: 0,
            reason: String::new(),
            null_id: false,
            n_rows: 1,
            kept: None,
        }
    }

    #[test]
    fn every_star_once_same_set_size_bounded_delay() {
        let (bs, win) = (8, 32);
        let mut b = Batcher::new(bs, win);
        let mut out = Vec::new();
        let mut emitted_at = vec![usize::MAX; 1000];
        let mut rng = crate::util::rng::Rng::new(3);
        let sizes: Vec<usize> = (0..1000)
            .map(|i| if i == 5 { 7 } else { 1 + rng.below(4) })
            .collect();
        for i in 0..1000u32 {
            b.push(star(i, sizes[i as usize]), &mut out);
            for batch in out.drain(..) {
                assert!(batch.len() <= bs);
                let k = batch[0].obs.phot.len();
                for s in batch {
                    assert_eq!(s.obs.phot.len(), k);
                    assert_eq!(emitted_at[s.idx as usize], usize::MAX, "emitted twice");
                    emitted_at[s.idx as usize] = i as usize;
                }
            }
            assert!(b.held() <= win + bs);
        }
        b.flush(&mut out);
        for s in out.drain(..).flatten() {
            emitted_at[s.idx as usize] = 1000;
        }
        for (i, &e) in emitted_at.iter().enumerate() {
            assert!(e != usize::MAX, "star {i} lost");
            if e < 1000 {
                assert!(e - i <= win, "star {i} waited {} stars", e - i);
            }
        }
        // the lonely 7-band star was flushed by age, not held to the end
        assert!(emitted_at[5] <= 5 + win);
    }

    #[test]
    fn purge_drops_a_part() {
        let mut b = Batcher::new(100, 1000);
        let mut out = Vec::new();
        for i in 0..30 {
            b.push(star(i, 2), &mut out);
        }
        b.purge_part(1);
        b.flush(&mut out);
        let n: usize = out.iter().map(|x| x.len()).sum();
        assert_eq!(n, 20);
        assert!(out.iter().flatten().all(|s| s.part != 1));
    }
}
