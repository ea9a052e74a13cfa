//! A fault-injecting HTTP proxy for the S3 tests, put between `sedflow run` and moto: it
//! passes requests through (one per connection) unless a rule picks the request, and then
//! drops the connection, stalls, resets it in the middle of an upload or an answer, answers
//! with a canned S3 error (500, 503...) itself, or forwards the request and loses the
//! answer. Rules match S3 operations (recognised from method and query) and count what they
//! injected, so a test can check that its faults really happened.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The S3 operation of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// GET of an object (whole or a range).
    Get,
    /// HEAD of an object.
    Head,
    /// GET of a bucket (listing).
    List,
    /// PUT of a whole object.
    Put,
    /// POST `?uploads`: start a multipart upload.
    CreateUpload,
    /// PUT `?partNumber=..&uploadId=..`.
    UploadPart,
    /// POST `?uploadId=..`: complete a multipart upload.
    CompleteUpload,
    /// DELETE `?uploadId=..`: abort a multipart upload.
    AbortUpload,
    /// Anything else (DELETE of an object, bucket operations).
    Other,
}

/// What to do to a request a rule picked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Close the connection once the request head has arrived, without an answer.
    Drop,
    /// Say nothing for this long, then close the connection.
    Stall(Duration),
    /// Uploads: read half of the body, then close with the rest unread (the kernel resets
    /// the connection). Other requests: forward, send the answer's head and half its body,
    /// then close (the answer is cut short).
    Reset,
    /// Answer with this HTTP status and an S3 XML error, without forwarding.
    Status(u16),
    /// Forward the request (the server acts on it), then close without the answer.
    LoseAnswer,
}

/// Which requests get a fault: the `skip` first requests matching `ops` (and `key`) pass,
/// the next `times` get `fault` (`usize::MAX`: every later one).
#[derive(Clone, Debug)]
pub struct Rule {
    /// Operations the rule applies to.
    pub ops: Vec<Op>,
    /// Substring of the request path (object key); "" for any.
    pub key: String,
    /// The fault.
    pub fault: Fault,
    /// Matching requests let through first.
    pub skip: usize,
    /// Matching requests faulted after those.
    pub times: usize,
}

impl Rule {
    /// `times` faults on the first matching requests.
    pub fn new(ops: &[Op], fault: Fault, times: usize) -> Rule {
        Rule {
            ops: ops.to_vec(),
            key: String::new(),
            fault,
            skip: 0,
            times,
        }
    }

    /// Only requests whose path contains `key`.
    pub fn on_key(mut self, key: &str) -> Rule {
        self.key = key.to_string();
        self
    }

    /// Let `n` matching requests through first.
    pub fn after(mut self, n: usize) -> Rule {
        self.skip = n;
        self
    }
}

#[derive(Default)]
struct State {
    rules: Vec<(Rule, usize, usize)>, // rule, matched, injected
    seen: Vec<(Op, String)>,
}

/// A running proxy (stopped on drop).
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl FaultProxy {
    /// Listen on a free port and forward to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.trim_start_matches("http://").to_string();
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, up) = (st.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &up, &st);
                });
            }
        });
        FaultProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            state,
            stop,
            port,
        }
    }

    /// Replace the rules (and their counts).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        let mut s = self.state.lock().unwrap();
        s.rules = rules.into_iter().map(|r| (r, 0, 0)).collect();
    }

    /// Faults injected by each rule, in rule order.
    pub fn injected(&self) -> Vec<usize> {
        let s = self.state.lock().unwrap();
        s.rules.iter().map(|r| r.2).collect()
    }

    /// Requests seen so far (operation, path).
    pub fn seen(&self) -> Vec<(Op, String)> {
        self.state.lock().unwrap().seen.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn classify(method: &str, target: &str) -> (Op, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let has = |k: &str| {
        query
            .split('&')
            .any(|q| q == k || q.starts_with(&format!("{k}=")))
    };
    // path-style: /bucket or /bucket/key
    let is_object = path.trim_start_matches('/').contains('/');
    let op = match method {
        "GET" if !is_object => Op::List,
        "GET" => Op::Get,
        "HEAD" => Op::Head,
        "PUT" if has("partNumber") => Op::UploadPart,
        "PUT" if is_object => Op::Put,
        "POST" if has("uploads") => Op::CreateUpload,
        "POST" if has("uploadId") => Op::CompleteUpload,
        "DELETE" if has("uploadId") => Op::AbortUpload,
        _ => Op::Other,
    };
    (op, path.to_string())
}

/// Read a request head (up to the blank line) and its body (Content-Length).
fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<(String, usize)>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let end = line == "\r\n";
        head += &line;
        if end {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "the fault proxy does not handle chunked requests"
    );
    Ok(Some((head, len)))
}

/// `head` with any Connection header replaced by `Connection: close` (one request per
/// connection, so that faults hit exactly the request they are meant for).
fn close_after(head: &str) -> String {
    let mut out = String::new();
    for l in head.split("\r\n").filter(|l| !l.is_empty()) {
        if !l.to_ascii_lowercase().starts_with("connection:") {
            out += l;
            out += "\r\n";
        }
    }
    out + "Connection: close\r\n\r\n"
}

fn pick(state: &Mutex<State>, op: Op, path: &str) -> Option<Fault> {
    let mut s = state.lock().unwrap();
    s.seen.push((op, path.to_string()));
    for (rule, matched, injected) in &mut s.rules {
        if rule.ops.contains(&op) && path.contains(&rule.key) {
            *matched += 1;
            if *matched > rule.skip && *injected < rule.times {
                *injected += 1;
                return Some(rule.fault);
            }
        }
    }
    None
}

fn canned(status: u16) -> Vec<u8> {
    let (reason, code) = match status {
        500 => ("Internal Server Error", "InternalError"),
        503 => ("Service Unavailable", "SlowDown"),
        403 => ("Forbidden", "AccessDenied"),
        _ => ("Error", "InternalError"),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the fault proxy</Message></Error>"
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Forward a request upstream; the whole answer (head rewritten to close, body).
fn forward(head: &str, body: &[u8], upstream: &str) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(close_after(head).as_bytes())?;
    up.write_all(body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    Ok((close_after(&head).into_bytes(), answer[split..].to_vec()))
}

fn serve(conn: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut client = conn;
    let Some((head, len)) = read_request(&mut reader)? else {
        return Ok(());
    };
    let target = head.split(' ').nth(1).unwrap_or("/").to_string();
    let method = head.split(' ').next().unwrap_or("").to_string();
    let (op, path) = classify(&method, &target);
    let fault = pick(state, op, &path);
    let is_upload = matches!(op, Op::Put | Op::UploadPart | Op::CompleteUpload);
    match fault {
        Some(Fault::Drop) => return Ok(()),
        Some(Fault::Stall(d)) => {
            std::thread::sleep(d);
            return Ok(());
        }
        Some(Fault::Reset) if is_upload => {
            // read half the body; closing with the rest unread makes the kernel send RST
            let mut half = vec![0u8; len / 2];
            reader.read_exact(&mut half)?;
            return Ok(());
        }
        _ => {}
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    if let Some(Fault::Status(s)) = fault {
        client.write_all(&canned(s))?;
        return Ok(());
    }
    let (ahead, abody) = forward(&head, &body, upstream)?;
    match fault {
        Some(Fault::LoseAnswer) => {
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(Fault::Reset) => {
            // the head promises the whole body; half of it arrives
            client.write_all(&ahead)?;
            client.write_all(&abody[..abody.len() / 2])?;
            client.flush()?;
            let _ = client.shutdown(Shutdown::Both);
        }
        _ => {
            client.write_all(&ahead)?;
            client.write_all(&abody)?;
        }
    }
    Ok(())
}
