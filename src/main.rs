//! The `sedflow` binary: parse arguments, run, turn errors into an exit code.

fn main() {
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
