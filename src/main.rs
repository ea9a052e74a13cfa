//! The `sedflow` binary: parse arguments, run, turn errors into an exit code.

fn main() {
    // candle's element-wise thread pool spins while waiting; on few cores it competes with
    // rayon's workers (measured: 2-3x slower training on 2 cores). Use one thread there.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
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
