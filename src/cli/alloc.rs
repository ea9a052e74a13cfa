//! The process's one allocator policy (glibc malloc), set once, before a command runs.
//!
//! - mmap threshold 256 MiB, for every command: candle allocates a fresh multi-MB buffer
//!   per tensor operation, and glibc's default 128 kB threshold turns each into page
//!   faults and zeroing (measured ~15% of training time).
//! - trim threshold: 1 GiB (freed memory stays in the heap for the next tensor) except for
//!   `sedflow run`, which uses 1 MiB. By default glibc raises its thresholds dynamically
//!   after large frees, so the MiB-sized buffers of the Parquet reader and writer and the
//!   stars' batches end up on the heap and are not returned; peak RSS then creeps up with
//!   run length (measured: 100k -> 1M stars, +15-40 MiB and noisy). A fixed 1 MiB trim
//!   threshold keeps RSS flat and about 25% lower, for about 1 s more system time per
//!   million stars.
//!
//! No effect on other C libraries.

/// What the process is about to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workload {
    /// The streaming survey pipeline (`sedflow run`): flat memory over long runs.
    Pipeline,
    /// Everything else (training, evaluation, plots...): keep freed buffers for reuse.
    Tensors,
}

impl Workload {
    /// glibc's M_TRIM_THRESHOLD for this workload [bytes].
    pub(crate) fn trim_threshold(self) -> i32 {
        match self {
            Workload::Pipeline => 1 << 20,
            Workload::Tensors => 1 << 30,
        }
    }
}

/// glibc's M_MMAP_THRESHOLD for every workload [bytes].
pub(crate) const MMAP_THRESHOLD: i32 = 256 << 20;

/// Set the policy; call once, before worker threads start.
pub(crate) fn tune(workload: Workload) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before the worker threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, workload.trim_threshold());
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = workload;
}
