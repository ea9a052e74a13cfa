//! Storage failures (steps 1 and 5 of the data path: reading inputs, writing outputs):
//! whether retrying can help. object_store has already retried what it could (see
//! [`super::location::s3_store`]); an error that reaches us is either transient (the
//! network, a timeout, the server's 5xx or throttling outlasted the retries: a later rerun
//! may well succeed) or permanent (missing object or bucket, no permission, a request the
//! server refuses: rerunning changes nothing until the cause is fixed). Every reported
//! error that came from storage says which.

use std::error::Error as StdError;

/// Whether retrying a failed storage operation can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Network, timeout, server error or throttling: a rerun may succeed.
    Transient,
    /// Not found, no permission, a refused request: a rerun fails the same way.
    Permanent,
}

/// The storage failure in an error's chain of causes, if there is one.
pub(crate) fn storage_failure(e: &anyhow::Error) -> Option<Retry> {
    e.chain().find_map(classify_cause)
}

fn classify_cause(cause: &(dyn StdError + 'static)) -> Option<Retry> {
    if let Some(os) = cause.downcast_ref::<object_store::Error>() {
        return Some(classify(os));
    }
    // writes reach us as io::Error (object_store's BufWriter); its source() skips the
    // wrapped error, so look inside
    let io = cause.downcast_ref::<std::io::Error>()?;
    let inner = io.get_ref()?;
    let os = inner.downcast_ref::<object_store::Error>()?;
    Some(classify(os))
}

fn classify(e: &object_store::Error) -> Retry {
    use object_store::Error as E;
    match e {
        E::NotFound { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => Retry::Permanent,
        _ => match http_status(&e.to_string()) {
            // a 4xx other than timeout and throttling: the server refuses the request
            Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => Retry::Permanent,
            _ => Retry::Transient,
        },
    }
}

/// The HTTP status in object_store's message ("... status code: 503 ..."); its error
/// types carrying the status are not public.
fn http_status(msg: &str) -> Option<u16> {
    let at = msg.find("status code: ")? + "status code: ".len();
    msg.get(at..at + 3)?.parse().ok()
}

/// An error as reported: `{e:#}` on one line (servers' XML error bodies span lines), with
/// what retrying would do when storage failed.
pub(crate) fn report(e: &anyhow::Error) -> String {
    let msg = format!("{e:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match storage_failure(e) {
        Some(Retry::Transient) => format!(
            "{msg} [transient storage failure, still failing after retries: rerun to retry]"
        ),
        Some(Retry::Permanent) => {
            format!("{msg} [permanent storage failure: retrying will not help]")
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(msg: &str) -> anyhow::Error {
        let src: Box<dyn StdError + Send + Sync> = msg.to_string().into();
        anyhow::Error::new(object_store::Error::Generic {
            store: "S3",
            source: src,
        })
    }

    #[test]
    fn statuses_and_kinds_are_classified() {
        let e = generic("Error performing GET in 2s - Server returned non-2xx status code: 503 Service Unavailable: ");
        assert_eq!(storage_failure(&e), Some(Retry::Transient));
        let e = generic("Error performing PUT - Server returned non-2xx status code: 400 Bad Request: EntityTooSmall");
        assert_eq!(storage_failure(&e), Some(Retry::Permanent));
        let e = generic(
            "Error performing GET - Server returned non-2xx status code: 429 Too Many Requests",
        );
        assert_eq!(storage_failure(&e), Some(Retry::Transient));
        let e = generic("error sending request: connection refused");
        assert_eq!(storage_failure(&e), Some(Retry::Transient));
        let nf = object_store::Error::NotFound {
            path: "x".into(),
            source: "gone".into(),
        };
        // wrapped as the BufWriter wraps it, under context
        let e = anyhow::Error::new(std::io::Error::other(nf)).context("writing s3://b/x.parquet");
        assert_eq!(storage_failure(&e), Some(Retry::Permanent));
        assert!(report(&e).contains("s3://b/x.parquet") && report(&e).contains("will not help"));
        let plain = anyhow::anyhow!("x.parquet: column j_m has type Utf8");
        assert_eq!(storage_failure(&plain), None);
        assert_eq!(report(&plain), "x.parquet: column j_m has type Utf8");
    }
}
