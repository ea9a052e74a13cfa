//! Progress and log output of a run (beside the data path): an indicatif bar (rows, stars/s,
//! ETA) when stderr is a terminal, plain periodic lines otherwise. Every message passes
//! through the [`Redactor`] first, so no credential reaches the terminal or a log file.

use super::config::Redactor;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bar on a terminal, lines otherwise.
    Auto,
    /// Periodic lines.
    Lines,
    /// Nothing but warnings, errors and the summary.
    Off,
}

struct State {
    total_rows: u64,
    done_rows: u64,
    stars: u64,
    t0: Instant,
    last_line: Instant,
}

/// Shared by all stages: log lines and progress.
#[derive(Clone)]
pub struct Reporter {
    bar: Option<ProgressBar>,
    lines: bool,
    interval: Duration,
    redactor: Arc<Redactor>,
    state: Arc<Mutex<State>>,
}

fn fmt_secs(s: f64) -> String {
    if !s.is_finite() {
        return "?".into();
    }
    let s = s.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

impl Reporter {
    /// New reporter; the bar appears with [`Reporter::start`].
    pub fn new(mode: ProgressMode, interval_s: f64, redactor: Redactor) -> Self {
        let term = std::io::stderr().is_terminal();
        let bar = (mode == ProgressMode::Auto && term).then(|| {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
            b.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{wide_bar}] {pos}/{len} rows, {msg}, ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b
        });
        Reporter {
            lines: bar.is_none() && mode != ProgressMode::Off,
            bar,
            interval: Duration::from_secs_f64(interval_s),
            redactor: Arc::new(redactor),
            state: Arc::new(Mutex::new(State {
                total_rows: 0,
                done_rows: 0,
                stars: 0,
                t0: Instant::now(),
                last_line: Instant::now(),
            })),
        }
    }

    /// Processing starts: `total_rows` input rows to go.
    pub fn start(&self, total_rows: u64) {
        let mut st = self.state.lock().unwrap();
        st.total_rows = total_rows;
        st.t0 = Instant::now();
        st.last_line = Instant::now();
        if let Some(b) = &self.bar {
            b.set_length(total_rows);
            b.set_message("0 stars/s");
            b.set_draw_target(ProgressDrawTarget::stderr());
            b.enable_steady_tick(Duration::from_millis(250));
        }
    }

    /// Whether progress goes to plain lines (then per-part messages are printed too).
    pub fn lines(&self) -> bool {
        self.lines
    }

    /// Print a message (redacted) above the bar.
    pub fn log(&self, msg: &str) {
        let msg = self.redactor.redact(msg);
        match &self.bar {
            Some(b) => b.println(format!("sedflow run: {msg}")),
            None => eprintln!("sedflow run: {msg}"),
        }
    }

    /// Redact a message without printing it.
    pub fn redact(&self, msg: &str) -> String {
        self.redactor.redact(msg)
    }

    /// `rows` more input rows (`stars` output rows) are done.
    pub fn advance(&self, rows: u64, stars: u64) {
        let mut st = self.state.lock().unwrap();
        st.done_rows += rows;
        st.stars += stars;
        let el = st.t0.elapsed().as_secs_f64().max(1e-9);
        let rate = st.stars as f64 / el;
        if let Some(b) = &self.bar {
            b.set_position(st.done_rows);
            b.set_message(format!("{:.0} stars/s", rate));
        } else if self.lines && st.last_line.elapsed() >= self.interval {
            st.last_line = Instant::now();
            let frac = st.done_rows as f64 / st.total_rows.max(1) as f64;
            let row_rate = st.done_rows as f64 / el;
            let eta = (st.total_rows.saturating_sub(st.done_rows)) as f64 / row_rate;
            eprintln!(
                "sedflow run: progress {}/{} rows ({:.1}%), {} stars, {:.0} stars/s, elapsed {}, ETA {}",
                st.done_rows,
                st.total_rows,
                100.0 * frac,
                st.stars,
                rate,
                fmt_secs(el),
                fmt_secs(eta)
            );
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
