//! The flow trace: how every message shows in the log, and how secrets never do.
//!
//! - [`Secret`] wraps codes, tokens, verifiers, passwords and cookies; its `Debug` and `Display`
//!   print a short fingerprint (`#1a2b3c4d`), so a message that carries one can be logged whole.
//! - [`FlowId`] is minted when `/authorize` accepts a request and travels with the pending request,
//!   the code and the token (as its `flow` claim), tying one authorization together across both
//!   servers' output.
//! - [`init`] installs the subscriber: human-readable by default, JSON with `--log-format json`,
//!   filtered by `RUST_LOG`, written by a non-blocking writer; and, when an OTLP endpoint is set,
//!   the OpenTelemetry export of the same spans and lines beside it (`crate::otel`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::fmt;

/// Records the flow a request belongs to on its span (the request span of either server), so
/// every line written inside it from now on carries `flow=`.
pub fn record_flow(flow: &dyn fmt::Display) {
    tracing::Span::current().record("flow", tracing::field::display(flow));
}

/// A short, stable fingerprint of a secret value: enough to match two log lines, useless to
/// recover the value.
pub fn fingerprint(value: &str) -> String {
    let digest = sha256(value);
    format!(
        "#{:02x}{:02x}{:02x}{:02x}",
        digest[0], digest[1], digest[2], digest[3]
    )
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
        f.write_str(&fingerprint(&self.0))
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fingerprint(&self.0))
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
    format!(
        "#{:02x}{:02x}{:02x}{:02x}",
        digest[0], digest[1], digest[2], digest[3]
    )
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
        use std::cell::RefCell;
        thread_local! {
            /// This thread's last second and its text up to the seconds (`2026-11-27T03:50:37`).
            static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
        }
        let now = std::time::SystemTime::now();
        SECOND.with(|second| write_rfc3339_micros(w, now, &mut second.borrow_mut()))
    }
}

/// Writes `now` as RFC 3339 UTC with microseconds; `second` caches the text up to the seconds
/// for the second it names, so most lines format only their microseconds.
fn write_rfc3339_micros(
    w: &mut impl fmt::Write,
    now: std::time::SystemTime,
    second: &mut (u64, String),
) -> fmt::Result {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, micros) = (since.as_secs(), since.subsec_micros());
    if second.0 != secs {
        let full = humantime::format_rfc3339_seconds(now).to_string();
        second.1 = full.trim_end_matches('Z').to_string();
        second.0 = secs;
    }
    w.write_str(&second.1)?;
    // The microseconds, six digits, without the formatting machinery.
    let mut digits = *b".000000Z";
    let mut rest = micros;
    for digit in digits[1..7].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    w.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
}

/// Lines the trace may hold for its writer thread. The channel allocates and touches every slot
/// up front, so this is memory an idle server holds: 16,384 lines take 0.5 MiB, where the
/// library's default (128,000) took 4 MiB. The writer drains the channel in batches (below), so
/// it falls behind only when the disk does; lines beyond this are dropped, and counted.
const TRACE_BUFFERED_LINES: usize = 16_384;

/// Bytes the writer thread gathers before a `write` to stdout (stdout alone is line-buffered:
/// one system call per line). At most `PIPE_BUF`, so that a write to a pipe is atomic: a reader
/// never sees a torn line, even from a process stopped while its reader stalls.
const TRACE_WRITE_BUFFER: usize = 4096;

/// How long the writer thread rests after each flush (see [`PacedOutput`]).
const TRACE_PACE: std::time::Duration = std::time::Duration::from_millis(10);

/// The trace's output: stdout through a [`TRACE_WRITE_BUFFER`]-byte buffer. The writer thread
/// flushes its output each time it has drained the channel, then would wait on the channel again,
/// so that under load every line a request thread sends wakes it: a futex call and a context
/// switch per line, the largest cost of the trace that an instruction profile does not show.
/// Resting [`TRACE_PACE`] after each flush lets the lines of that moment gather in the channel
/// (which holds [`TRACE_BUFFERED_LINES`], far more than arrive in 10 ms) and be written together.
/// A line reaches the terminal at most that much later; an idle server's writer waits on the
/// channel as before, so a single line shows at once.
struct PacedOutput(std::io::BufWriter<std::io::Stdout>);

impl std::io::Write for PacedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        std::thread::sleep(TRACE_PACE);
        Ok(())
    }
}

/// Keeps the trace's writer thread running; dropping it sends the spans the OpenTelemetry export
/// still holds, flushes what is buffered and reports on stderr how many lines were dropped because
/// the writer fell behind, if any were.
pub struct TraceGuard {
    // Fields drop in this order: the export first, so that what it logs is still written.
    _export: Option<crate::otel::ExportGuard>,
    _worker: tracing_appender::non_blocking::WorkerGuard,
    dropped: tracing_appender::non_blocking::ErrorCounter,
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        let dropped = self.dropped.dropped_lines();
        if dropped > 0 {
            eprintln!("flow trace: {dropped} lines were dropped because the writer fell behind");
        }
    }
}

/// Installs the global subscriber. Keep the returned guard alive: it flushes the non-blocking
/// writer, and the OpenTelemetry export, when dropped. `service` names the program to the export
/// (unless `OTEL_SERVICE_NAME` does); a bad `OTEL_*` setting is an error.
pub fn init(
    format: LogFormat,
    service: &'static str,
) -> Result<TraceGuard, crate::otel::OtelError> {
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
    let (writer, worker) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(TRACE_BUFFERED_LINES)
        .thread_name("flow-trace")
        .finish(PacedOutput(std::io::BufWriter::with_capacity(
            TRACE_WRITE_BUFFER,
            std::io::stdout(),
        )));
    let dropped = writer.error_counter();
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
        _worker: worker,
        dropped,
    })
}

/// The human-readable trace layer, writing to `writer`: one compact line per event, with
/// [`TraceFields`]. Tests install it over a captured writer to read the real format.
pub fn layer<S, W>(writer: W, ansi: bool) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_timer(Rfc3339Micros)
        .with_target(false)
        .fmt_fields(TraceFields)
        .compact()
}

/// Writes an event's or a span's fields as `name=value` (the message bare), like the library's
/// default, with the same protection: control characters in a value (terminal escapes, and line
/// breaks that could forge a line) are escaped, since client names, ids and URLs come from
/// clients. The default escapes by passing each character through the formatter one at a time,
/// the largest cost of a trace line on the hottest paths; this formats a value once into a
/// reused buffer, scans its bytes, and writes clean text (nearly every value) in one piece.
pub struct TraceFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for TraceFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = FieldWriter {
            writer,
            result: Ok(()),
            padded: false,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct FieldWriter<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    result: fmt::Result,
    padded: bool,
}

impl FieldWriter<'_> {
    fn field(&mut self, name: &str, value: &dyn fmt::Debug) {
        // Metadata of `log` records, already shown in the line's prefix.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        self.result = (|| {
            if self.padded {
                self.writer.write_char(' ')?;
            }
            self.padded = true;
            if name != "message" {
                let name = name.strip_prefix("r#").unwrap_or(name);
                if self.writer.has_ansi_escapes() {
                    write!(self.writer, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")?;
                } else {
                    self.writer.write_str(name)?;
                    self.writer.write_char('=')?;
                }
            }
            write_value(&mut self.writer, value)
        })();
    }
}

impl tracing::field::Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.field(field.name(), &format_args!("{value}"));
        } else {
            self.field(field.name(), &value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.field(field.name(), value);
    }
}

/// Formats `value` with `Debug` into a per-thread buffer and writes it sanitized.
fn write_value(out: &mut impl fmt::Write, value: &dyn fmt::Debug) -> fmt::Result {
    use fmt::Write;
    use std::cell::RefCell;
    thread_local! {
        static BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
    }
    BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            write!(buffer, "{value:?}")?;
            let written = write_sanitized(out, &buffer);
            // An occasional huge value should not stay resident in every thread.
            if buffer.capacity() > 16 * 1024 {
                *buffer = String::new();
            }
            written
        }
        // A value whose `Debug` itself logs: format it on its own.
        Err(_) => write_sanitized(out, &format!("{value:?}")),
    })
}

/// Writes `text`, escaping C0 control characters other than tab, DEL, and the C1 controls
/// (U+0080 to U+009F, which some terminals read as escape sequences) as `\u{..}`.
pub fn write_sanitized(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    let bytes = text.as_bytes();
    // Nearly every value is clean: one branch-free pass over the bytes (which the compiler turns
    // into vector code) finds out, and such a value is written in one piece. A byte that may
    // start a control (tab included, which is kept) sends the value to the careful loop below.
    let suspect = bytes.iter().fold(false, |seen, &b| {
        seen | (b < 0x20) | (b == 0x7f) | (b == 0xc2)
    });
    if !suspect {
        return out.write_str(text);
    }
    let mut clean_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        // In UTF-8 a C1 control is 0xC2 followed by 0x80..=0x9F; every other byte of a multi-byte
        // character is 0x80 or above and never a control on its own.
        let control = if (b < 0x20 && b != b'\t') || b == 0x7f {
            Some((u32::from(b), 1))
        } else if b == 0xc2 && bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)) {
            Some((u32::from(bytes[i + 1]), 2))
        } else {
            None
        };
        match control {
            Some((code, len)) => {
                out.write_str(&text[clean_from..i])?;
                write!(out, "\\u{{{code:x}}}")?;
                i += len;
                clean_from = i;
            }
            None => i += 1,
        }
    }
    out.write_str(&text[clean_from..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_rfc3339_with_microseconds() {
        let mut second = (u64::MAX, String::new());
        let base = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_418_388);
        for offset_micros in [0, 7, 498_750, 999_999, 1_000_000, 1_000_001, 86_400_000_123] {
            let at = base + std::time::Duration::from_micros(offset_micros);
            let mut ours = String::new();
            write_rfc3339_micros(&mut ours, at, &mut second).unwrap();
            assert_eq!(ours, humantime::format_rfc3339_micros(at).to_string());
        }
    }

    #[test]
    fn secrets_print_as_fingerprints() {
        let s = Secret::new("super-secret-code");
        assert_eq!(format!("{s:?}"), fingerprint("super-secret-code"));
        assert!(!format!("{s:?} {s}").contains("super"));
        assert_eq!(fingerprint("x").len(), 9);
        assert_ne!(Secret::random(32), Secret::random(32));
        assert_eq!(random_token(32).len(), 43);
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

    fn sanitized(text: &str) -> String {
        let mut out = String::new();
        write_sanitized(&mut out, text).unwrap();
        out
    }

    #[test]
    fn control_characters_in_values_are_escaped() {
        assert_eq!(
            sanitized("plain text, üñí and tabs\t"),
            "plain text, üñí and tabs\t"
        );
        assert_eq!(sanitized("\x1b[31mred"), "\\u{1b}[31mred");
        assert_eq!(sanitized("a\nforged line"), "a\\u{a}forged line");
        assert_eq!(sanitized("bel\x07del\x7f"), "bel\\u{7}del\\u{7f}");
        assert_eq!(sanitized("csi\u{9b}31m é"), "csi\\u{9b}31m é");
        assert_eq!(sanitized("\u{85}"), "\\u{85}");
        assert_eq!(sanitized(""), "");
    }

    /// The real layer, over a captured writer: the line format and the escaping of a hostile
    /// value, in a message and in a field.
    #[test]
    fn trace_lines_escape_hostile_values() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::prelude::*;
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(layer(move || writer.clone(), false));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("auth", flow = "f1");
            let _entered = span.enter();
            let name = "evil\x1b]0;owned\x07\nFAKE LINE";
            tracing::info!(client_name = name, count = 3, "registered {name}");
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(log.lines().count(), 1, "one line: {log:?}");
        assert!(!log.contains('\x1b') && !log.contains('\x07'), "{log:?}");
        assert!(log.contains(" INFO auth: registered evil\\u{1b}]0;owned\\u{7}\\u{a}FAKE LINE "));
        // `Debug` of a string already escapes it; the value is quoted, as by default.
        assert!(log.contains(r#"client_name="evil\u{1b}]0;owned\u{7}\nFAKE LINE" count=3"#));
        assert!(log.trim_end().ends_with("flow=\"f1\""), "{log:?}");
    }
}
