//! `scripts/slurm_array.sh` under a real Slurm: a single-node cluster on localhost (munged,
//! slurmctld, slurmd from Debian's packages), installed and started by scripts/test.sh via
//! scripts/slurm_local.sh. A 4-task array over a multi-file catalogue writes every star
//! exactly once, byte-identical to one `sedflow run`; an array task cancelled mid-run
//! (scancel) and resubmitted, and one requeued mid-run, leave the same result, nothing lost
//! or duplicated.

use crate::pipeline_util::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm_array.sh");
const TASKS: usize = 4;
const FILES: usize = 8;
const ROWS: usize = 800;
/// Jobs of this test finish in well under a minute; this bounds a hung scheduler.
const JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// The test cluster's slurm.conf; None (loudly) outside CI when there is none.
fn cluster_conf() -> Option<String> {
    match std::env::var("SEDFLOW_SLURM_CONF") {
        Ok(c) if Path::new(&c).is_file() => Some(c),
        _ => {
            let msg = "SLURM TEST SKIPPED: no test cluster (SEDFLOW_SLURM_CONF is not a slurm.conf). Run ./scripts/test.sh, which installs and starts one (scripts/slurm_local.sh).";
            if std::env::var_os("SEDFLOW_REQUIRE_SLURM_TESTS").is_some() {
                panic!("{msg} (SEDFLOW_REQUIRE_SLURM_TESTS is set)");
            }
            eprintln!("\n!!!!! {msg}\n");
            None
        }
    }
}

/// Slurm commands against the test cluster, submitting from `dir` (where the job logs go).
struct Slurm {
    conf: String,
    dir: PathBuf,
}

impl Slurm {
    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("SLURM_CONF", &self.conf).current_dir(&self.dir);
        c
    }

    fn ok(&self, prog: &str, args: &[&str]) -> String {
        let o = self
            .cmd(prog)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{prog}: {e}"));
        assert!(o.status.success(), "{prog} {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// Submit slurm_array.sh as `--array=SPEC` with the binary under test; returns the job
    /// id. With `wait`, returns when every task has ended, and asserts they all succeeded.
    fn submit(&self, spec: &str, wait: bool, args: &[&str]) -> String {
        let mut c = self.cmd("sbatch");
        c.args(["--parsable", "--job-name=sedflow-test"])
            .arg(format!("--array={spec}"))
            // two tasks at a time on a 2-core machine (the script asks for 2 CPUs each)
            .arg("--cpus-per-task=1");
        c.arg(SCRIPT).args(args);
        c.env("SEDFLOW", env!("CARGO_BIN_EXE_sedflow"));
        // the job inherits this environment (sbatch exports it): no stray shard settings
        for k in [
            "AWS_BATCH_JOB_ARRAY_INDEX",
            "JOB_COMPLETION_INDEX",
            "RAYON_NUM_THREADS",
        ] {
            c.env_remove(k);
        }
        let o = c.output().expect("running sbatch");
        assert!(
            o.status.success(),
            "sbatch --array={spec} failed: {}\n{}",
            text(&o),
            self.logs()
        );
        let out = String::from_utf8_lossy(&o.stdout);
        let job = out
            .lines()
            .next()
            .and_then(|l| l.split(';').next())
            .unwrap_or_else(|| panic!("no job id from sbatch: {out}"))
            .trim()
            .to_string();
        if wait {
            // polling squeue ourselves: `sbatch --wait` noticed a 7.6 s array 2.4 s late here
            self.wait_for(&job);
            for (task, (state, exit)) in self.task_states(&job) {
                assert_eq!(
                    (state.as_str(), exit.as_str()),
                    ("COMPLETED", "0:0"),
                    "task {task}\n{}",
                    self.logs()
                );
            }
        }
        job
    }

    /// Array tasks of `job` still pending or running.
    fn active(&self, job: &str) -> Vec<(String, String)> {
        self.ok("squeue", &["-h", "-r", "-j", job, "-o", "%K %T"])
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, s)| (k.to_string(), s.trim().to_string()))
            .collect()
    }

    fn wait_for(&self, job: &str) {
        let t0 = Instant::now();
        while !self.active(job).is_empty() {
            assert!(
                t0.elapsed() < JOB_TIMEOUT,
                "job {job} still running\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Final state and exit code of every task of `job`: task id -> (state, exit code).
    fn task_states(&self, job: &str) -> BTreeMap<usize, (String, String)> {
        let mut m = BTreeMap::new();
        for l in self.ok("scontrol", &["-o", "show", "job", job]).lines() {
            let kv: BTreeMap<&str, &str> = l
                .split_whitespace()
                .filter_map(|t| t.split_once('='))
                .collect();
            if let Some(k) = kv.get("ArrayTaskId").and_then(|k| k.parse().ok()) {
                let state = kv.get("JobState").unwrap_or(&"?").to_string();
                let exit = kv.get("ExitCode").unwrap_or(&"?").to_string();
                m.insert(k, (state, exit));
            }
        }
        m
    }

    /// Parts task `task` of `job` has written so far, and whether it has finished.
    fn progress(&self, job: &str, task: usize) -> (usize, bool) {
        let log = self.log(job, task);
        (log.matches("wrote ").count(), log.contains(" parts: "))
    }

    /// Suspends two running tasks of `job` that have written some of their `per_task` parts,
    /// not all, and returns them. A task that finished its last part in the moment between
    /// the check and the suspension is resumed and passed over.
    fn catch_two_mid_run(&self, job: &str, per_task: usize) -> [usize; 2] {
        let mut caught = Vec::new();
        let t0 = Instant::now();
        while caught.len() < 2 {
            let active = self.active(job);
            assert!(
                t0.elapsed() < JOB_TIMEOUT && !active.is_empty(),
                "no two tasks were caught mid-run (caught {caught:?})\n{}",
                self.logs()
            );
            let running = active
                .iter()
                .filter(|(_, s)| s == "RUNNING")
                .filter_map(|(k, _)| k.parse::<usize>().ok());
            for task in running {
                let (parts, done) = self.progress(job, task);
                if caught.len() == 2 || caught.contains(&task) || done || parts == 0 {
                    continue;
                }
                let id = format!("{job}_{task}");
                if !self
                    .cmd("scontrol")
                    .args(["suspend", &id])
                    .status()
                    .unwrap()
                    .success()
                {
                    continue; // it ended between squeue and scontrol
                }
                match self.progress(job, task) {
                    (parts, false) if parts < per_task => caught.push(task),
                    _ => {
                        self.ok("scontrol", &["resume", &id]);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        [caught[0], caught[1]]
    }

    fn log(&self, job: &str, task: usize) -> String {
        // the script's own `#SBATCH --output=sedflow-%A_%a.log`, in the submit directory
        std::fs::read_to_string(self.dir.join(format!("sedflow-{job}_{task}.log")))
            .unwrap_or_default()
    }

    /// Every job log, for failure messages.
    fn logs(&self) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(&self.dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "log") {
                s += &format!(
                    "--- {}\n{}",
                    p.display(),
                    std::fs::read_to_string(&p).unwrap()
                );
            }
        }
        s
    }
}

/// `W` of a run's summary line `N parts: W written, D already done, F failed`.
fn summary_count(log: &str, what: &str) -> usize {
    let line = log
        .lines()
        .find(|l| l.contains(" parts: "))
        .unwrap_or_else(|| panic!("no summary line in\n{log}"));
    line.split([':', ','])
        .find_map(|f| f.trim().strip_suffix(what))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no '{what}' in {line}"))
}

/// The output equals the reference file by file (rows, and bytes), and holds every star once.
fn assert_same_output(out: &Path, reference: &Path) {
    let want = read_dir(reference);
    let got = read_dir(out);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "output files differ"
    );
    for (name, rows) in &want {
        assert_eq!(
            &got[name], rows,
            "{name}: rows differ from the single-process run"
        );
        assert!(
            std::fs::read(out.join(name)).unwrap() == std::fs::read(reference.join(name)).unwrap(),
            "{name}: bytes differ from the single-process run"
        );
    }
    let mut ids: Vec<i64> = got
        .values()
        .flatten()
        .map(|r| r.source_id.unwrap())
        .collect();
    assert_eq!(ids.len(), FILES * ROWS, "stars lost or added");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), FILES * ROWS, "a star was written twice");
}

#[test]
fn slurm_array_covers_every_star_once_and_survives_cancel_and_requeue() {
    let Some(conf) = cluster_conf() else { return };
    let d = tmp();
    let input = d.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for k in 0..FILES {
        let b = wide_catalogue(1_000_000 * (k as i64 + 1), ROWS);
        write_parquet(&input.join(format!("cat{k}.parquet")), &b, 200);
    }
    // 4 parts per file, 8 per task: a task is cancelled between parts, not after its last
    let cfg = config(
        d.path(),
        "[inference]\nsamples = 8\n[input]\nrows_per_part = 200\n",
    );
    let (input, cfg) = (input.to_str().unwrap(), cfg.to_str().unwrap());
    let reference = d.path().join("single");
    let t0 = Instant::now();
    let o = run(
        &[
            "--input",
            input,
            "--output",
            reference.to_str().unwrap(),
            "--config",
            cfg,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    eprintln!(
        "slurm test: single process in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let n_parts = read_dir(&reference).len();
    assert_eq!(n_parts, FILES * ROWS / 200);

    let jobs = d.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    let slurm = Slurm { conf, dir: jobs };

    // 1. the whole array, as the README submits it
    let out = d.path().join("array");
    let t0 = Instant::now();
    let job = slurm.submit("0-3", true, &[input, out.to_str().unwrap(), cfg]);
    eprintln!(
        "slurm test: 4-task array in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let mut written = 0;
    for task in 0..TASKS {
        let log = slurm.log(&job, task);
        if let Some(l) = log.lines().find(|l| l.contains(" stars/s")) {
            eprintln!("slurm test: task {task}: {l}");
        }
        assert!(
            log.contains(&format!("shard {task}/{TASKS} (SLURM_ARRAY_TASK_ID)")),
            "task {task} did not find its shard:\n{log}"
        );
        let w = summary_count(&log, "written");
        assert!(w > 0, "task {task} got no work:\n{log}");
        written += w;
    }
    assert_eq!(written, n_parts, "every part written by exactly one task");
    assert_same_output(&out, &reference);

    // 2. two tasks caught mid-run (each has written a part, not all): one is cancelled, the
    // other requeued (as on node failure or preemption; restarted at once instead of after
    // Slurm's 2-minute requeue delay). The others finish; the cancelled one is resubmitted.
    // A task caught mid-run is suspended at once (SIGSTOP), so that it cannot finish while
    // the test waits for the second one: on a loaded 2-core CI machine a whole task can take
    // less time than a few squeue calls.
    let out = d.path().join("cancelled");
    let job = slurm.submit("0-3", false, &[input, out.to_str().unwrap(), cfg]);
    let per_task = n_parts / TASKS;
    let [victim, requeued] = slurm.catch_two_mid_run(&job, per_task);
    slurm.ok("scancel", &[&format!("{job}_{victim}")]);
    let requeued_id = format!("{job}_{requeued}");
    slurm.ok("scontrol", &["requeue", &requeued_id]);
    let t0 = Instant::now();
    while slurm
        .active(&requeued_id)
        .iter()
        .all(|(_, s)| s != "PENDING")
    {
        assert!(
            t0.elapsed() < JOB_TIMEOUT,
            "task {requeued} was not requeued"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // a suspended task comes back held (JobHeldAdmin): release it, and start it now
    slurm.ok("scontrol", &["release", &requeued_id]);
    slurm.ok(
        "scontrol",
        &["update", &format!("jobid={requeued_id}"), "StartTime=now"],
    );
    slurm.wait_for(&job);
    eprintln!(
        "slurm test: array with a cancel and a requeue in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let states = slurm.task_states(&job);
    for task in 0..TASKS {
        let (state, exit) = &states[&task];
        if task == victim {
            assert_eq!(state, "CANCELLED", "task {task} was not cancelled mid-run");
        } else {
            assert_eq!(
                (state.as_str(), exit.as_str()),
                ("COMPLETED", "0:0"),
                "task {task}"
            );
        }
    }
    // the requeued task's log keeps both attempts (--open-mode=append); the second resumed
    let log = slurm.log(&job, requeued);
    let second = log
        .find("attempt 2")
        .unwrap_or_else(|| panic!("task {requeued} was not restarted:\n{log}"));
    assert!(log.contains("attempt 1"), "{log}");
    assert!(
        !log[..second].contains(" parts: "),
        "attempt 1 was not interrupted:\n{log}"
    );
    assert!(summary_count(&log[second..], "already done") >= 1, "{log}");
    let partial = read_dir(&out);
    assert!(
        partial.len() < n_parts,
        "the cancelled task had finished; the test needs a slower run"
    );
    let want = read_dir(&reference);
    for (name, rows) in &partial {
        assert_eq!(rows, &want[name], "{name} differs after the cancel");
    }
    // the resubmitted task is a one-task array: it does every part still missing
    let job2 = slurm.submit(
        &victim.to_string(),
        true,
        &[input, out.to_str().unwrap(), cfg],
    );
    let log = slurm.log(&job2, victim);
    assert!(log.contains("shard 0/1 (SLURM_ARRAY_TASK_ID)"), "{log}");
    assert_eq!(summary_count(&log, "already done"), partial.len(), "{log}");
    assert_eq!(
        summary_count(&log, "written"),
        n_parts - partial.len(),
        "{log}"
    );
    assert_same_output(&out, &reference);
    // what the cancel left behind (staging files) is never read as output
    let o = run(
        &[
            "--input",
            input,
            "--output",
            out.to_str().unwrap(),
            "--config",
            cfg,
        ],
        &[],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(summary_count(&t, "written"), 0, "{t}");
    assert_eq!(summary_count(&t, "already done"), n_parts, "{t}");
}
