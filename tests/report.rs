//! `sedflow report`: the page of a small run holds what it should, and passes a real
//! headless browser (chromium over the DevTools protocol): it loads without console errors,
//! every image decodes, and a screenshot is not blank. The browser check itself is shown
//! to catch broken pages.

use crate::browser::{check_page, chromium, pixel_variance};
use crate::pipeline_util::{sedflow, text, tmp};
use crate::plots::{example_run, png_size};
use std::path::Path;

fn report(run: &Path, html: &Path) -> String {
    let o = sedflow()
        .arg("report")
        .arg(run)
        .arg("--html")
        .arg(html)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

#[test]
fn report_page_content_and_star_plots() {
    let d = tmp();
    let summary = d.path().join("run").join("run-summary.json");
    let run = example_run(d.path(), &["--summary-json", summary.to_str().unwrap()]);
    let html = d.path().join("page").join("report.html");
    let out = report(&run, &html);
    assert!(out.contains("200 rows, 3 images embedded"), "{out}");
    let page = std::fs::read_to_string(&html).unwrap();
    // rows and timing from the run's summary
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let rate = s["stars"].as_f64().unwrap() / s["wall_s"].as_f64().unwrap();
    assert!(
        page.contains(&format!("<td class=\"l\">{rate:.1}</td>")),
        "stars/s {rate:.1} missing"
    );
    assert!(page.contains("<th class=\"l\">rows</th><td class=\"l\">200</td>"));
    // flag counts equal the table's
    let flags = sedflow::io::table::read_i64(&run.join("catalogue.parquet"), "flags").unwrap();
    for (bit, name) in sedflow::pipeline::FLAG_NAMES {
        let n = flags
            .iter()
            .filter(|f| f.unwrap_or(0) as u32 & bit != 0)
            .count();
        assert!(
            page.contains(&format!("<td class=\"l\">{name}</td><td>{n}</td>")),
            "{name}: {n}"
        );
    }
    // images embedded, none fetched from elsewhere
    assert_eq!(page.matches("<img ").count(), 3);
    assert_eq!(page.matches("src=\"data:image/png;base64,").count(), 3);
    // the worst stars link to their plots, which exist and decode
    let links: Vec<&str> = page
        .split("<a href=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert!(links.len() >= 10, "{} links", links.len());
    for l in &links {
        assert!(l.starts_with("report_stars/star-"), "{l}");
        let bytes = std::fs::read(html.parent().unwrap().join(l)).unwrap();
        assert_eq!(png_size(&bytes), (1500, 860));
    }
}

#[test]
fn report_page_passes_headless_chromium() {
    let Some(bin) = chromium() else { return };
    let d = tmp();
    let run = example_run(d.path(), &[]);
    let html = d.path().join("report.html");
    report(&run, &html);
    let c = check_page(&bin, &html, (1280, 2400));
    assert!(c.errors.is_empty(), "console errors: {:?}", c.errors);
    assert_eq!(c.images.len(), 3, "{:?}", c.images);
    for (alt, w, h) in &c.images {
        assert!(
            *w >= 1000 && *h >= 300,
            "image '{alt}' did not decode: {w}x{h}"
        );
    }
    assert_eq!(png_size(&c.screenshot), (1280, 2400));
    let var = pixel_variance(&c.screenshot);
    assert!(var > 100.0, "screenshot looks blank (luma variance {var})");
}

/// The checks above would fail on a broken page: a console error, an image that does not
/// decode, a missing file, and a blank page are all seen.
#[test]
fn browser_check_catches_broken_pages() {
    let Some(bin) = chromium() else { return };
    let d = tmp();
    let broken = d.path().join("broken.html");
    std::fs::write(
        &broken,
        "<!DOCTYPE html><html><body><h1>broken</h1>\
         <img alt=\"bad\" src=\"data:image/png;base64,iVBORw0KGgoAAAA\">\
         <img alt=\"missing\" src=\"missing.png\">\
         <script>console.error('deliberate error')</script></body></html>",
    )
    .unwrap();
    let c = check_page(&bin, &broken, (800, 600));
    assert!(
        c.errors.iter().any(|e| e.contains("deliberate error")),
        "{:?}",
        c.errors
    );
    assert!(
        c.errors.iter().any(|e| e.contains("missing.png")),
        "{:?}",
        c.errors
    );
    assert_eq!(
        c.images.iter().map(|i| i.1).collect::<Vec<_>>(),
        vec![0, 0],
        "{:?}",
        c.images
    );
    let blank = d.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let c = check_page(&bin, &blank, (800, 600));
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert_eq!(pixel_variance(&c.screenshot), 0.0);
}

/// A posterior table of `copies` x the example run's rows (ids made distinct), written in
/// row groups of 64k like the run's own.
fn replicate(src: &Path, copies: usize, dst: &Path) {
    use arrow::array::{ArrayRef, Int64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let f = std::fs::File::open(src).unwrap();
    let batch = ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(1 << 16))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(dst).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    let id_col = batch.schema().index_of("source_id").unwrap();
    let n = batch.num_rows() as i64;
    for c in 0..copies as i64 {
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        cols[id_col] = std::sync::Arc::new(Int64Array::from_iter_values((0..n).map(|i| c * n + i)));
        w.write(&arrow::record_batch::RecordBatch::try_new(batch.schema(), cols).unwrap())
            .unwrap();
    }
    w.close().unwrap();
}

/// Peak RSS [MiB] of `sedflow args`: the child's own VmHWM, polled until it exits (the
/// rusage of a child spawned by vfork + exec also counts the parent's memory).
fn peak_rss_mib(args: &[&std::ffi::OsStr]) -> f64 {
    let mut child = sedflow()
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut hwm_kb = 0u64;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status) {
            let kb = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
            hwm_kb = hwm_kb.max(kb.unwrap_or(0));
        }
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{args:?} failed");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(hwm_kb > 0, "no VmHWM read for {args:?}");
    hwm_kb as f64 / 1024.0
}

/// `plot kiel` and `report` stream the tables: 1M rows take no more memory than 100k.
#[test]
fn kiel_and_report_memory_is_flat() {
    let d = tmp();
    let run = example_run(d.path(), &[]);
    let mut rss = Vec::new();
    for copies in [500, 5000] {
        let dir = d.path().join(format!("big{copies}"));
        std::fs::create_dir_all(&dir).unwrap();
        replicate(
            &run.join("catalogue.parquet"),
            copies,
            &dir.join("catalogue.parquet"),
        );
        let kiel = peak_rss_mib(&[
            "plot".as_ref(),
            "kiel".as_ref(),
            dir.as_os_str(),
            "-o".as_ref(),
            d.path().join("k.png").as_os_str(),
        ]);
        let report = peak_rss_mib(&[
            "report".as_ref(),
            dir.as_os_str(),
            "--html".as_ref(),
            d.path().join("r.html").as_os_str(),
        ]);
        rss.push((copies * 200, kiel, report));
    }
    eprintln!("rows, peak RSS of plot kiel / report [MiB]: {rss:?}");
    let ((_, k0, r0), (_, k1, r1)) = (rss[0], rss[1]);
    assert!(k1 < k0 + 10.0 && r1 < r0 + 10.0, "{rss:?}");
}
