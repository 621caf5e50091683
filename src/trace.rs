//! The flow trace: how every message shows in the log, and how secrets never do.
//!
//! - [`Secret`] wraps codes, tokens, verifiers, passwords and cookies; its `Debug` and `Display`
//!   print a short fingerprint (`#1a2b3c4d`), so a message that carries one can be logged whole.
//! - [`FlowId`] is minted when `/authorize` accepts a request and travels with the pending request,
//!   the code and the token (as its `flow` claim), tying one authorization together across both
//!   servers' output.
//! - [`init`] installs the subscriber: human-readable by default, JSON with `--log-format json`,
//!   filtered by `RUST_LOG`, written by a non-blocking writer.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::fmt;

/// A short, stable fingerprint of a secret value: enough to match two log lines, useless to
/// recover the value.
pub fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    format!(
        "#{:02x}{:02x}{:02x}{:02x}",
        digest[0], digest[1], digest[2], digest[3]
    )
}

/// A secret string. Prints as its fingerprint; read the value with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// A fresh random secret of `bytes` random bytes, base64url encoded.
    pub fn random(bytes: usize) -> Self {
        Secret(random_token(bytes))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fingerprint(&self.0))
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fingerprint(&self.0))
    }
}

/// `bytes` bytes from the operating system's CSPRNG, base64url encoded without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    URL_SAFE_NO_PAD.encode(&buf)
}

/// The id of one authorization flow, short enough to read in a log line.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FlowId(String);

impl FlowId {
    pub fn mint() -> Self {
        let mut buf = [0u8; 6];
        rand::fill(&mut buf[..]);
        FlowId(buf.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn from_claim(value: &str) -> Self {
        FlowId(value.chars().take(32).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, one per event.
    Pretty,
    /// One JSON object per event.
    Json,
}

/// The default filter when `RUST_LOG` is unset: our flow trace at info, libraries quieter.
pub const DEFAULT_FILTER: &str = "info,rmcp=warn,hyper=warn,reqwest=warn,kameo=warn";

/// Timestamps as RFC 3339 UTC with microseconds (`2026-11-27T03:50:37.498750Z`), written in one
/// piece: the default timer formats each field through `fmt`, a visible share of a trace line's
/// cost on the hottest paths.
struct Rfc3339Micros;

impl tracing_subscriber::fmt::time::FormatTime for Rfc3339Micros {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> fmt::Result {
        write!(
            w,
            "{}",
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
        )
    }
}

/// Installs the global subscriber. Keep the returned guard alive: it flushes the non-blocking
/// writer when dropped.
pub fn init(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{EnvFilter, Targets};
    use tracing_subscriber::prelude::*;
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_FILTER.to_string());
    // Levels per target (the usual `RUST_LOG`) are decided once per call site. `EnvFilter` also
    // understands span and field directives, but takes a lock on every span entry and exit to do
    // so; it is used only when `RUST_LOG` asks for them.
    let (targets, env_filter) = match spec.parse::<Targets>() {
        Ok(targets) => (Some(targets), None),
        Err(_) => (None, Some(EnvFilter::new(&spec))),
    };
    // Colours only for a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_timer(Rfc3339Micros)
        .with_target(false);
    let lines = match format {
        LogFormat::Pretty => lines.compact().boxed(),
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
    };
    // A second init (tests, embedding) keeps the subscriber already installed.
    let _ = tracing_subscriber::registry()
        .with(targets)
        .with(env_filter)
        .with(lines)
        .try_init();
    guard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_as_fingerprints() {
        let s = Secret::new("super-secret-code");
        assert_eq!(format!("{s:?}"), fingerprint("super-secret-code"));
        assert!(!format!("{s:?} {s}").contains("super"));
        assert_eq!(fingerprint("x").len(), 9);
        assert_ne!(Secret::random(32), Secret::random(32));
        assert_eq!(random_token(32).len(), 43);
    }
}
