//! Issue 22: a resumed `sedflow run` never mixes settings. A run is stopped after some parts
//! (one finished output removed), then resumed with each value-changing key changed in
//! turn: every time the run refuses before writing anything and names the key. Keys that
//! change neither values nor columns (batching) resume normally.

use crate::pipeline_util::*;

/// Three one-part input files; `[prior.maps]` needs a map name, so the base config names one.
fn input(dir: &std::path::Path) -> std::path::PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for k in 0..3 {
        let b = wide_catalogue(1000 * (k + 1), 40);
        write_parquet(&input.join(format!("cat{k}.parquet")), &b, 100);
    }
    input
}

const BASE: &str = "[inference]\nsamples = 16\nrefine = false\n";

#[test]
fn issue22_resume_with_a_changed_setting_refuses_and_names_it() {
    let d = tmp();
    let input = input(d.path());
    let out = d.path().join("out");
    let cfg_dir = d.path().join("cfg");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let go = |cfg_text: &str, extra: &[&str]| {
        let cfg = config(&cfg_dir, cfg_text);
        let mut args = vec![
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args, &[])
    };
    let o = go(BASE, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let full = read_dir(&out);
    assert_eq!(full.len(), 3);
    // a run stopped after two of its three parts
    std::fs::remove_file(out.join("cat1.parquet")).unwrap();
    let stopped = read_dir(&out);

    let changes: &[(&str, &[&str], &str)] = &[
        (
            "[prior]\nav_per_ebv = 3.1\n",
            &[],
            "config.prior.av_per_ebv",
        ),
        (
            "[prior]\nreddening_kind = \"total_column\"\n",
            &[],
            "config.prior.reddening_kind",
        ),
        (
            "[prior]\nav_sigma_floor = 0.1\n",
            &[],
            "config.prior.av_sigma_floor",
        ),
        (
            "[prior.maps.sfd]\nerror_scale = 0.8\n",
            &[],
            "config.prior.maps",
        ),
        (
            "[input.parallax]\nerror_scale = 1.3\n",
            &[],
            "config.input.parallax.error_scale",
        ),
        (
            "[input]\ngaia_release = \"dr2\"\n",
            &[],
            "config.input.gaia_release",
        ),
        ("", &["--seed", "5"], "config.inference.seed"),
        ("", &["--samples", "17"], "config.inference.samples"),
        (
            "",
            &["--write-samples", "2"],
            "config.inference.write_samples",
        ),
        (
            "",
            &["--predict-bands", "tmass_ks"],
            "config.output.predict_bands",
        ),
        (
            "",
            &["--keep-columns", "parallax"],
            "config.output.keep_columns",
        ),
    ];
    for (toml, flags, key) in changes {
        let o = go(&format!("{BASE}{toml}"), flags);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{key}: {t}");
        assert!(
            t.contains("made with other settings") && t.contains(key),
            "{key} not named:\n{t}"
        );
        // nothing was written under the changed settings
        assert_eq!(read_dir(&out), stopped, "{key}");
        assert!(!out.join("samples").exists(), "{key}");
        assert!(!out.with_extension("samples").exists(), "{key}");
    }
    // batching changes neither values nor columns: the resume writes the missing part only
    let o = go(BASE, &["--batch-size", "7"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("1 written, 2 already done"), "{t}");
    assert_eq!(read_dir(&out), full);
}
