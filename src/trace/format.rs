//! How a trace line is written: [`TraceLine`] lays out the line (time, level, span, message,
//! fields, the span's fields), [`TraceFields`] writes fields with control characters escaped, and
//! [`Rfc3339Micros`] the timestamp. They replace the library's compact format, with the same
//! output, for cost: the trace is written on every request of the hottest paths.

use std::fmt;

/// One line per event, laid out as the library's compact format lays it out (and with the same
/// colours on a terminal): `2026-11-27T03:50:37.498750Z  INFO mcp: message field=value
/// span_field=value`. The library's version formats each part through `fmt` machinery and finds
/// the event's span several times; this finds it once and writes the parts as text.
pub struct TraceLine;

/// The colour codes a terminal gets (`NO_COLOR` and a file or pipe get none).
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for TraceLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        use tracing::Level;
        use tracing_subscriber::fmt::FormatFields;
        use tracing_subscriber::fmt::time::FormatTime;
        let ansi = writer.has_ansi_escapes();
        if ansi {
            writer.write_str(DIM)?;
        }
        if Rfc3339Micros.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        let (level, colour) = match *event.metadata().level() {
            Level::TRACE => (" TRACE ", "\x1b[0m \x1b[35mTRACE\x1b[0m "),
            Level::DEBUG => (" DEBUG ", "\x1b[0m \x1b[34mDEBUG\x1b[0m "),
            Level::INFO => ("  INFO ", "\x1b[0m \x1b[32m INFO\x1b[0m "),
            Level::WARN => ("  WARN ", "\x1b[0m \x1b[33m WARN\x1b[0m "),
            Level::ERROR => (" ERROR ", "\x1b[0m \x1b[31mERROR\x1b[0m "),
        };
        writer.write_str(if ansi { colour } else { level })?;
        // The event's span (its explicit parent, or the one it happened in) and the spans around
        // it, outermost first: their names before the message, their fields after the event's.
        // Nearly always there is one, the request's, and it is looked up once.
        let explicit = event.parent().and_then(|id| ctx.span(id));
        // As the library does: the names are the current span's when the event names none it
        // can find, but the fields only those of the event's own span (none for a root event).
        let own_span = event.is_contextual() || explicit.is_some();
        let span = explicit.or_else(|| ctx.lookup_current());
        let Some(span) = span else {
            ctx.format_fields(writer.by_ref(), event)?;
            return writer.write_char('\n');
        };
        let outer = span.parent().is_some();
        if outer {
            for span in span.scope().from_root() {
                write_span_name(&mut writer, span.name(), ansi, ":")?;
            }
            writer.write_char(' ')?;
        } else {
            write_span_name(&mut writer, span.name(), ansi, ": ")?;
        }
        ctx.format_fields(writer.by_ref(), event)?;
        if !own_span {
            return writer.write_char('\n');
        }
        if outer {
            for span in span.scope().from_root() {
                write_span_fields::<N>(&mut writer, &span.extensions(), ansi)?;
            }
        } else {
            write_span_fields::<N>(&mut writer, &span.extensions(), ansi)?;
        }
        writer.write_char('\n')
    }
}

/// A span's name, in bold on a terminal, then `after`.
fn write_span_name(
    writer: &mut tracing_subscriber::fmt::format::Writer<'_>,
    name: &str,
    ansi: bool,
    after: &str,
) -> fmt::Result {
    if ansi {
        writer.write_str(BOLD)?;
        writer.write_str(name)?;
        writer.write_str(RESET)?;
    } else {
        writer.write_str(name)?;
    }
    writer.write_str(after)
}

/// A span's fields as [`TraceFields`] wrote them when they were recorded, after a space, dimmed
/// on a terminal; nothing when it has none.
fn write_span_fields<N: 'static>(
    writer: &mut tracing_subscriber::fmt::format::Writer<'_>,
    extensions: &tracing_subscriber::registry::Extensions<'_>,
    ansi: bool,
) -> fmt::Result {
    let Some(fields) = extensions.get::<tracing_subscriber::fmt::FormattedFields<N>>() else {
        return Ok(());
    };
    if fields.is_empty() {
        return Ok(());
    }
    writer.write_char(' ')?;
    if ansi {
        writer.write_str(DIM)?;
        writer.write_str(fields)?;
        writer.write_str(RESET)
    } else {
        writer.write_str(fields)
    }
}

/// Timestamps as RFC 3339 UTC with microseconds (`2026-11-27T03:50:37.498750Z`), written in one
/// piece: the default timer formats each field through `fmt`, a visible share of a trace line's
/// cost on the hottest paths.
pub struct Rfc3339Micros;

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
    /// Writes ` name=` (no name for the message), then the value by `value`.
    fn field(
        &mut self,
        name: &str,
        value: impl FnOnce(&mut tracing_subscriber::fmt::format::Writer<'_>) -> fmt::Result,
    ) {
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
            value(&mut self.writer)
        })();
    }
}

/// Strings and other values go through `Debug` and are sanitized; numbers and booleans, which
/// cannot hold a control character, are written as they are, without the formatting machinery.
impl tracing::field::Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.field(field.name(), |w| write_sanitized(w, value));
        } else {
            self.field(field.name(), |w| write_str_value(w, value));
        }
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.field(field.name(), |w| {
            w.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.field(field.name(), |w| {
            w.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.field(field.name(), |w| {
            w.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.field(field.name(), |w| write_value(w, value));
    }
}

/// Writes `value` with `Debug`, sanitized as it is formatted: each piece the formatter writes is
/// checked and, nearly always clean, written in one piece (a piece is whole characters, so a
/// control character is never split between two).
fn write_value(out: &mut impl fmt::Write, value: &dyn fmt::Debug) -> fmt::Result {
    use fmt::Write;
    write!(Sanitized(out), "{value:?}")
}

/// Writes a string field as `Debug` writes it (quoted, with quotes, backslashes and unprintable
/// characters escaped); plain ASCII, nearly every value, without going through `Debug`.
fn write_str_value(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    let plain = value.bytes().fold(true, |plain, b| {
        plain & (b' '..=b'~').contains(&b) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.write_char('"')?;
        out.write_str(value)?;
        out.write_char('"')
    } else {
        write_value(out, &value)
    }
}

/// A writer that passes what is written through [`write_sanitized`].
struct Sanitized<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Sanitized<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_sanitized(self.0, text)
    }
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

    /// A string field written without `Debug` reads as `Debug` writes it.
    #[test]
    fn plain_strings_read_as_debug_writes_them() {
        for value in [
            "",
            "ok",
            "tools/call greet",
            "say \"hi\"",
            "back\\slash",
            "é",
            "tab\t",
            "\x7f",
        ] {
            let mut ours = String::new();
            write_str_value(&mut ours, value).unwrap();
            assert_eq!(ours, format!("{value:?}"), "{value:?}");
        }
    }
}
