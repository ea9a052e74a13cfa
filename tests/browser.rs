//! Headless chromium driven over the DevTools protocol (a websocket), for the report page's
//! test: load a page, collect console errors, uncaught exceptions and failed loads, decode
//! every image, take a screenshot. Missing chromium skips loudly, unless
//! SEDFLOW_REQUIRE_BROWSER_TESTS is set (CI), where it fails.

use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// What loading a page showed.
#[derive(Debug)]
pub struct PageCheck {
    /// Console errors, uncaught exceptions and error log entries (failed loads), as text.
    pub errors: Vec<String>,
    /// Per image: (alt, naturalWidth, naturalHeight) after `decode()` settled (0 = failed).
    pub images: Vec<(String, u64, u64)>,
    /// The screenshot (PNG bytes) of the viewport.
    pub screenshot: Vec<u8>,
}

/// The chromium binary: SEDFLOW_CHROMIUM, else `chromium` on PATH; None (after a loud
/// message) when there is none and browser tests are not required.
pub fn chromium() -> Option<PathBuf> {
    let candidate = std::env::var_os("SEDFLOW_CHROMIUM")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("chromium"))
                    .find(|p| p.is_file())
            })
        });
    if candidate.is_none() {
        let msg = "BROWSER TEST SKIPPED: no chromium (install Debian's `chromium`; ./scripts/test.sh does)";
        if std::env::var_os("SEDFLOW_REQUIRE_BROWSER_TESTS").is_some() {
            panic!("{msg} (SEDFLOW_REQUIRE_BROWSER_TESTS is set)");
        }
        eprintln!("\n!!!!! {msg}\n");
    }
    candidate
}

struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start headless chromium with a fresh profile; its browser websocket URL.
fn launch(bin: &Path) -> (Browser, String) {
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            "--allow-file-access-from-files",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    // chromium writes the port and the browser target's path once it listens
    let port_file = profile.path().join("DevToolsActivePort");
    let t0 = Instant::now();
    let url = loop {
        if let Ok(s) = std::fs::read_to_string(&port_file) {
            let mut l = s.lines();
            if let (Some(port), Some(path)) = (l.next(), l.next()) {
                break format!("ws://127.0.0.1:{port}{path}");
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "chromium did not start its DevTools server"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        Browser {
            child,
            _profile: profile,
        },
        url,
    )
}

struct Cdp {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: Option<String>,
    events: Vec<Value>,
}

impl Cdp {
    fn connect(url: &str) -> Cdp {
        let (ws, _) = tungstenite::connect(url).expect("connecting to chromium's DevTools");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
        }
        Cdp {
            ws,
            next_id: 1,
            session: None,
            events: Vec::new(),
        }
    }

    /// Next message, or None after the read timeout.
    fn read(&mut self) -> Option<Value> {
        match self.ws.read() {
            Ok(Message::Text(t)) => Some(serde_json::from_str(&t).unwrap()),
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("DevTools connection: {e}"),
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::Text(msg.to_string().into())).unwrap();
        let t0 = Instant::now();
        loop {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{method}: no answer"
            );
            let Some(m) = self.read() else { continue };
            if m.get("id").and_then(|v| v.as_u64()) == Some(id) {
                if let Some(e) = m.get("error") {
                    panic!("{method}: {e}");
                }
                return m["result"].clone();
            }
            self.events.push(m);
        }
    }

    fn wait_event(&mut self, method: &str) {
        let t0 = Instant::now();
        loop {
            if self.events.iter().any(|e| e["method"] == method) {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "no {method} event");
            if let Some(m) = self.read() {
                self.events.push(m);
            }
        }
    }

    /// Read events for `d`.
    fn drain(&mut self, d: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < d {
            if let Some(m) = self.read() {
                self.events.push(m);
            }
        }
    }

    fn errors(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in &self.events {
            let p = &e["params"];
            match e["method"].as_str() {
                Some("Runtime.exceptionThrown") => {
                    out.push(format!("exception: {}", p["exceptionDetails"]))
                }
                Some("Runtime.consoleAPICalled")
                    if p["type"] == "error" || p["type"] == "assert" =>
                {
                    out.push(format!("console.{}: {}", p["type"], p["args"]))
                }
                Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                    out.push(format!("log: {} {}", p["entry"]["text"], p["entry"]["url"]))
                }
                _ => {}
            }
        }
        out
    }
}

const IMAGES_JS: &str = "Promise.all(Array.from(document.images).map(i => i.decode().then(() => [i.alt, i.naturalWidth, i.naturalHeight]).catch(() => [i.alt, 0, 0])))";

/// Load `page` in headless chromium and check it (viewport `width` x `height`).
pub fn check_page(bin: &Path, page: &Path, (width, height): (u32, u32)) -> PageCheck {
    let (_browser, url) = launch(bin);
    let mut cdp = Cdp::connect(&url);
    let target = cdp.call("Target.createTarget", json!({"url": "about:blank"}));
    let session = cdp.call(
        "Target.attachToTarget",
        json!({"targetId": target["targetId"], "flatten": true}),
    );
    cdp.session = Some(session["sessionId"].as_str().unwrap().to_string());
    for m in ["Page.enable", "Runtime.enable", "Log.enable"] {
        cdp.call(m, json!({}));
    }
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
    );
    let file_url = format!("file://{}", page.canonicalize().unwrap().display());
    cdp.call("Page.navigate", json!({"url": file_url}));
    cdp.wait_event("Page.loadEventFired");
    let r = cdp.call(
        "Runtime.evaluate",
        json!({"expression": IMAGES_JS, "awaitPromise": true, "returnByValue": true}),
    );
    let images = r["result"]["value"]
        .as_array()
        .expect("image list")
        .iter()
        .map(|v| {
            (
                v[0].as_str().unwrap_or("").to_string(),
                v[1].as_u64().unwrap_or(0),
                v[2].as_u64().unwrap_or(0),
            )
        })
        .collect();
    // late console messages and failed loads
    cdp.drain(Duration::from_millis(500));
    let shot = cdp.call("Page.captureScreenshot", json!({"format": "png"}));
    use base64::Engine as _;
    let screenshot = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    PageCheck {
        errors: cdp.errors(),
        images,
        screenshot,
    }
}

/// Variance of the luma of a PNG's pixels (0 for a blank screenshot).
pub fn pixel_variance(png_bytes: &[u8]) -> f64 {
    let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    let px: Vec<f64> = buf[..info.buffer_size()]
        .chunks(ch)
        .map(|p| {
            if ch >= 3 {
                0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64
            } else {
                p[0] as f64
            }
        })
        .collect();
    let mean = px.iter().sum::<f64>() / px.len() as f64;
    px.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / px.len() as f64
}
