//! The text form of a log line when stderr is not a terminal: tracing-subscriber's default layout
//! without colour, `2026-12-06T17:42:06.443019Z  INFO trainar_mcp::mcp::core: tools/call
//! key_id=key_1 tool=get_task status=ok duration_ms=1 trace_id=…`, written by a formatter of our
//! own.
//!
//! Why: every tool call logs a line, and tracing-subscriber's formatter cost about 10k of the
//! gateway's ~133k instructions per `get_task` (callgrind). It writes each field through three
//! nested `write!`s with styles that it builds even when colour is off, and computes the date from
//! the epoch for every line. Here each piece is written once, and the date and time up to the
//! second is reused for as long as that second lasts.
//!
//! Invariant: a value cannot forge a line or drive a terminal. Control characters in the message
//! and in every field (newlines included, which the default format lets through outside the
//! message) are written escaped, as `\n` or `\x1b`.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as described above (the gateway opens no spans, so there is no span context).
pub struct TextLine;

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_timestamp(&mut writer)?;
        let metadata = event.metadata();
        writer.write_str(level_column(metadata.level()))?;
        writer.write_str(metadata.target())?;
        writer.write_char(':')?;
        let mut fields = Fields {
            out: Escaping(&mut writer),
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// The level right-aligned in five columns, between the spaces around it.
fn level_column(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => " ERROR ",
        Level::WARN => "  WARN ",
        Level::INFO => "  INFO ",
        Level::DEBUG => " DEBUG ",
        Level::TRACE => " TRACE ",
    }
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber writes it.
fn write_timestamp(out: &mut impl Write) -> fmt::Result {
    thread_local! {
        /// The second last written by this thread, and its date and time.
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (seconds, micros) = (now.as_secs(), now.subsec_micros());
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != seconds {
            text.clear();
            let time = i64::try_from(seconds)
                .ok()
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                .unwrap_or_default();
            write!(text, "{}", time.format("%Y-%m-%dT%H:%M:%S"))?;
            *second = seconds;
        }
        // Six digits, zero-padded, without the formatting machinery.
        let mut digits = *b".000000Z";
        let mut rest = micros;
        for digit in digits[1..7].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.write_str(text)?;
        out.write_str(std::str::from_utf8(&digits).unwrap_or(".000000Z"))
    })
}

/// Writes each field as ` name=value` (the message as ` text`), escaped.
struct Fields<'w, 'a> {
    out: Escaping<'w, 'a>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        self.result = match field.name() {
            "message" => self
                .out
                .0
                .write_char(' ')
                .and_then(|()| self.out.write_fmt(value)),
            name => self
                .out
                .0
                .write_char(' ')
                .and_then(|()| self.out.0.write_str(name))
                .and_then(|()| self.out.0.write_char('='))
                .and_then(|()| self.out.write_fmt(value)),
        };
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            // Quoted, as `Debug` would write it (a `%` field is written bare, through
            // `record_debug`).
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.write(field, format_args!("{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.write(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.write(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

/// Passes text on, with control characters escaped (C0, DEL and C1; see the module's invariant).
struct Escaping<'w, 'a>(&'w mut Writer<'a>);

impl Write for Escaping<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let is_control = |c: char| c.is_control();
        if !text.contains(is_control) {
            return self.0.write_str(text);
        }
        for c in text.chars() {
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c if c.is_control() && (c as u32) < 0x100 => write!(self.0, "\\x{:02x}", c as u32)?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What `log` writes, formatted by `TextLine`.
    fn line(log: impl FnOnce()) -> String {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&written);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(TextLine)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(written.lock().unwrap().clone()).unwrap()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_has_the_default_layout() {
        let key_id = "key_1";
        let text = line(|| {
            tracing::info!(key_id = %key_id, tool = %"get_task", quoted = "a b", duration_ms = 7u64,
                ok = true, "tools/call")
        });
        let (time, rest) = text.split_once(' ').unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.len() == 27,
            "{time}"
        );
        assert_eq!(
            rest,
            format!(
                " INFO {}: tools/call key_id=key_1 tool=get_task quoted=\"a b\" duration_ms=7 ok=true\n",
                module_path!()
            )
        );
        let warning = line(|| tracing::warn!("careful"));
        assert!(
            warning.contains("  WARN ") && warning.ends_with(": careful\n"),
            "{warning}"
        );
    }

    #[test]
    fn control_characters_cannot_forge_a_line() {
        let text = line(|| {
            let forged = "x\n2026-01-01T00:00:00.000000Z  INFO fake: \u{1b}[31mred";
            tracing::info!(problem = %forged, "saw {forged}")
        });
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(
            text.contains("saw x\\n2026") && text.contains("problem=x\\n2026"),
            "{text}"
        );
        assert!(
            text.contains("\\x1b[31mred") && !text.contains('\u{1b}'),
            "{text}"
        );
    }
}
