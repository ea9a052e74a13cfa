//! The `sedflow` binary: parse arguments, run, turn errors into an exit code.

fn main() {
    // candle's element-wise thread pool spins while waiting; on few cores it competes with
    // rayon's workers (measured: 2-3x slower training on 2 cores). Use one thread there.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    tune_allocator();
    let code = match sedflow::cli::run() {
        Ok(code) => code,
        Err(e) => {
            // broken pipe (e.g. `| head`) is not an error
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                0
            } else {
                eprintln!("sedflow: error: {e:#}");
                2
            }
        }
    };
    std::process::exit(code);
}

/// Keep freed tensor buffers in the heap instead of returning them to the OS: candle
/// allocates a fresh multi-MB buffer per operation, and glibc's default 128 kB mmap
/// threshold turns each into page faults and zeroing (measured ~15% of training time).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only changes allocator tuning parameters.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 256 << 20);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
