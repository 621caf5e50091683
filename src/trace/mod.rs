//! The flow trace: how every message shows in the log, and how secrets never do.
//!
//! - [`Secret`] wraps codes, tokens, verifiers, passwords and cookies; its `Debug` and `Display`
//!   print a short fingerprint (`#1a2b3c4d`), so a message that carries one can be logged whole.
//! - [`FlowId`] is minted when `/authorize` accepts a request and travels with the pending request,
//!   the code and the token (as its `flow` claim), tying one authorization together across both
//!   servers' output.
//! - [`init`] installs the subscriber: human-readable by default (laid out by `format`), JSON with
//!   `--log-format json`, filtered by `RUST_LOG`, written by a thread of its own (`writer`); and,
//!   when an OTLP endpoint is set, the OpenTelemetry export of the same spans and lines beside it
//!   (`crate::otel`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::fmt;

mod format;
mod writer;

use format::Rfc3339Micros;
pub use format::{TraceFields, TraceLine, write_sanitized};

/// Records the flow a request belongs to on its span (the request span of either server), so
/// every line written inside it from now on carries `flow=`.
pub fn record_flow(flow: &dyn fmt::Display) {
    tracing::Span::current().record("flow", tracing::field::display(flow));
}

/// A short, stable fingerprint of a secret value: enough to match two log lines, useless to
/// recover the value.
pub fn fingerprint(value: &str) -> String {
    Fingerprint::of(&sha256(value)).as_str().to_string()
}

/// The text of a fingerprint (`#1a2b3c4d`: `#` and a digest's first four bytes in hex), made
/// without the formatting machinery or an allocation: lines on the hottest paths carry them.
pub struct Fingerprint([u8; 9]);

impl Fingerprint {
    pub fn of(digest: &[u8]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = *b"#00000000";
        for (i, byte) in digest.iter().take(4).enumerate() {
            text[1 + 2 * i] = HEX[usize::from(byte >> 4)];
            text[2 + 2 * i] = HEX[usize::from(byte & 0x0f)];
        }
        Fingerprint(text)
    }

    pub fn as_str(&self) -> &str {
        // ASCII by construction.
        std::str::from_utf8(&self.0).unwrap_or("#")
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SHA-256 digest of a secret: the only form in which codes, tokens, session ids and
/// registered clients' secrets are kept or looked up. They are at least 128 random bits, so a
/// fast hash is the right one.
pub type SecretDigest = [u8; 32];

/// The SHA-256 digest of a secret value (a presented one, not yet wrapped in a [`Secret`]).
pub fn sha256(value: &str) -> SecretDigest {
    Sha256::digest(value.as_bytes()).into()
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

    /// Its SHA-256 digest, the form in which it is kept.
    pub fn sha256(&self) -> SecretDigest {
        sha256(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Fingerprint::of(&self.sha256()).as_str())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Fingerprint::of(&self.sha256()).as_str())
    }
}

/// A user name as typed at the login form. People sometimes type their password into it, and
/// user names are few enough to guess, so it prints as a fingerprint keyed with a secret made
/// for this process ([`keyed_fingerprint`]): a leaked log cannot be searched with a list of
/// names or passwords, and two lines of one process still match.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TypedUserName(String);

impl TypedUserName {
    pub fn new(value: impl Into<String>) -> Self {
        TypedUserName(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TypedUserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&keyed_fingerprint(&self.0))
    }
}

impl fmt::Display for TypedUserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&keyed_fingerprint(&self.0))
    }
}

/// Like [`fingerprint`], but an HMAC-SHA256 under a random key made once per process and never
/// written anywhere, for values that are not random enough to hide behind a plain hash.
pub fn keyed_fingerprint(value: &str) -> String {
    use hmac::{Hmac, Mac};
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        rand::fill(&mut key[..]);
        key
    });
    let digest = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(value.as_bytes());
            mac.finalize().into_bytes()
        }
        // HMAC takes a key of any length; this arm is never taken.
        Err(_) => Sha256::digest(key),
    };
    Fingerprint::of(&digest).as_str().to_string()
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

/// Why the trace could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A bad `OTEL_*` setting.
    #[error(transparent)]
    Otel(#[from] crate::otel::OtelError),
    /// The writer thread could not be started.
    #[error("the flow trace's writer thread: {0}")]
    Writer(#[source] std::io::Error),
}

/// Keeps the trace's writer thread running; dropping it sends the spans the OpenTelemetry export
/// still holds, writes what is buffered and reports on stderr how many lines were dropped because
/// the writer fell behind, if any were.
pub struct TraceGuard {
    // Fields drop in this order: the export first, so that what it logs is still written.
    _export: Option<crate::otel::ExportGuard>,
    writer: writer::WriterGuard,
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        let dropped = self.writer.dropped();
        if dropped > 0 {
            eprintln!("flow trace: {dropped} lines were dropped because the writer fell behind");
        }
    }
}

/// Installs the global subscriber. Keep the returned guard alive: when dropped, it writes out
/// what the trace's writer holds, and sends what the OpenTelemetry export holds. `service` names the program to the export
/// (unless `OTEL_SERVICE_NAME` does); a bad `OTEL_*` setting is an error.
pub fn init(format: LogFormat, service: &'static str) -> Result<TraceGuard, TraceError> {
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
    let (writer, writer_guard) =
        writer::spawn(std::io::stdout(), "flow-trace").map_err(TraceError::Writer)?;
    let lines = match format {
        LogFormat::Pretty => layer(writer, ansi).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .with_timer(Rfc3339Micros)
            .with_target(false)
            .json()
            .flatten_event(true)
            .boxed(),
    };
    // Without an OTLP endpoint this is `None`, a layer that does nothing.
    let (export, export_guard) = match crate::otel::layer(service)? {
        Some((layer, guard)) => (Some(layer), Some(guard)),
        None => (None, None),
    };
    // A second init (tests, embedding) keeps the subscriber already installed.
    let _ = tracing_subscriber::registry()
        .with(targets)
        .with(env_filter)
        .with(lines)
        .with(export)
        .try_init();
    Ok(TraceGuard {
        _export: export_guard,
        writer: writer_guard,
    })
}

/// The human-readable trace layer, writing to `writer`: one line per event, laid out by
/// [`TraceLine`], fields written by [`TraceFields`]. Tests install it over a captured writer to
/// read the real format.
pub fn layer<S, W>(writer: W, ansi: bool) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .fmt_fields(TraceFields)
        .event_format(TraceLine)
}

/// What a trace layer under test wrote: its writer, and the text.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
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
        assert_eq!(
            Fingerprint::of(&[0x1a, 0x2b, 0x3c, 0x4d, 0xff]).as_str(),
            "#1a2b3c4d"
        );
        assert_eq!(
            Fingerprint::of(&[0, 9, 0xa0, 0xff]).to_string(),
            "#0009a0ff"
        );
    }

    #[test]
    fn typed_user_names_print_as_keyed_fingerprints() {
        let name = TypedUserName::new("alice");
        let shown = format!("{name:?}");
        assert_eq!(shown, format!("{name}"));
        assert_eq!(
            shown,
            keyed_fingerprint("alice"),
            "stable within the process"
        );
        assert_ne!(
            shown,
            fingerprint("alice"),
            "not the plain SHA-256 fingerprint"
        );
        assert_ne!(shown, keyed_fingerprint("bob"));
        assert_eq!(shown.len(), 9);
        assert!(!shown.contains("alice"));
    }

    /// The real layer, over a captured writer: the line format and the escaping of a hostile
    /// value, in a message and in a field.
    #[test]
    fn trace_lines_escape_hostile_values() {
        use tracing_subscriber::prelude::*;
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(layer(move || writer.clone(), false));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("auth", flow = "f1");
            let _entered = span.enter();
            let name = "evil\x1b]0;owned\x07\nFAKE LINE";
            tracing::info!(client_name = name, count = 3, "registered {name}");
        });
        let log = captured.text();
        assert_eq!(log.lines().count(), 1, "one line: {log:?}");
        assert!(!log.contains('\x1b') && !log.contains('\x07'), "{log:?}");
        assert!(log.contains(" INFO auth: registered evil\\u{1b}]0;owned\\u{7}\\u{a}FAKE LINE "));
        // `Debug` of a string already escapes it; the value is quoted, as by default.
        assert!(log.contains(r#"client_name="evil\u{1b}]0;owned\u{7}\nFAKE LINE" count=3"#));
        assert!(log.trim_end().ends_with("flow=\"f1\""), "{log:?}");
    }

    /// The same events, as the library's compact format and [`TraceFields`] write them and as
    /// [`TraceLine`] does: the same text but for the time, with and without colours. Spans
    /// nested and not, fields recorded late, every level, numbers, booleans, strings to quote and
    /// to escape, a display value, an explicit parent, no span at all.
    #[test]
    fn lines_read_as_the_library_compact_format() {
        use tracing_subscriber::prelude::*;
        for ansi in [false, true] {
            let (ours, theirs) = (Captured::default(), Captured::default());
            let (a, b) = (ours.clone(), theirs.clone());
            let our_layer = tracing_subscriber::registry().with(layer(move || a.clone(), ansi));
            let library = tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || b.clone())
                    .with_ansi(ansi)
                    .with_timer(format::Rfc3339Micros)
                    .with_target(false)
                    .fmt_fields(TraceFields)
                    .compact(),
            );
            let events = || {
                tracing::warn!(attempts = 3u64, "outside any span");
                let request = tracing::info_span!(
                    "mcp",
                    method = %"POST",
                    path = "/mcp",
                    flow = tracing::field::Empty
                );
                let entered = request.enter();
                tracing::info!(
                    outcome = "ok",
                    us = 12u64,
                    "Sessions <- Park {{ id: #1a2b3c4d }}"
                );
                request.record("flow", tracing::field::display("f1"));
                tracing::error!(
                    ok = false,
                    delta = -4i64,
                    quoted = "say \"hi\" \\ é",
                    "after the flow"
                );
                let inner = tracing::debug_span!("inner", depth = 2u64);
                inner.in_scope(|| tracing::trace!(status = 200u16, "nested"));
                tracing::info!(parent: &inner, "explicit parent");
                tracing::info!(parent: None, "a root event inside a span");
                drop(entered);
                let empty = tracing::info_span!("empty");
                empty.in_scope(|| tracing::info!("a span without fields"));
            };
            tracing::subscriber::with_default(our_layer, events);
            tracing::subscriber::with_default(library, events);
            let untimed = |log: String| -> Vec<String> {
                log.lines()
                    .map(|line| {
                        // The time is the first word (after the dim code, with colours).
                        let (_, rest) = line.split_once('Z').expect("a timestamp");
                        rest.to_string()
                    })
                    .collect()
            };
            let (ours, theirs) = (untimed(ours.text()), untimed(theirs.text()));
            assert_eq!(ours.len(), 7, "{ours:#?}");
            assert_eq!(ours, theirs, "ansi {ansi}");
        }
    }
}
