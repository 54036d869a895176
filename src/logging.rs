//! The process's log: one line per event on stderr (`RUST_LOG` filters, `TRAINAR_LOG_FORMAT=json`
//! makes it JSON), written by a thread of its own in batches, off the request path.
//!
//! Invariant: nothing is dropped (a stalled stderr eventually blocks loggers, as a plain write
//! would), and what was logged before the guard is dropped reaches stderr.

use std::time::Duration;

/// Logs as one line per event to stderr; `RUST_LOG` filters (default `info`).
///
/// Every tool call logs a line. Lines are gathered in memory and written to stderr by a thread of
/// their own, many lines per write (see `LogBuffer`). The guard writes what is still gathered when
/// dropped: hold it until the command returns.
#[must_use = "dropping the guard stops the log writer"]
pub fn init() -> LogGuard {
    let (writer, guard) = LogBuffer::start();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("TRAINAR_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = if json {
        builder.json().try_init()
    } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        builder.with_ansi(true).try_init()
    } else {
        // The same layout without colour, cheaper per line (see `log_line`).
        builder
            .with_ansi(false)
            .event_format(crate::log_line::TextLine)
            .try_init()
    };
    guard
}

/// The log's lines on their way to stderr.
///
/// Why not a write per line: a synchronous write put a syscall on the request path of every tool
/// call, and a writer thread woken for every line (tracing-appender's `non_blocking`, tried) cost
/// more CPU than it saved: a wake-up, a context switch and a write per line, about 6 µs of CPU
/// per call under load on two cores. Here a line is only appended to a buffer under a lock; the
/// writer thread is woken once when the buffer stops being empty, lets lines gather for up to
/// `LOG_GATHER`, and writes them all at once. Lines therefore reach stderr up to `LOG_GATHER` late.
/// Nothing is dropped: past `LOG_BLOCK_BYTES` waiting (stderr stalled), loggers wait for the
/// writer, as a blocking write always made them.
struct LogBuffer {
    state: std::sync::Mutex<LogState>,
    /// The writer thread waits here for lines (or for the end).
    gathered: std::sync::Condvar,
    /// Loggers held back by a full buffer wait here for the next write.
    written: std::sync::Condvar,
}

#[derive(Default)]
struct LogState {
    lines: Vec<u8>,
    closed: bool,
}

const LOG_GATHER: Duration = Duration::from_millis(20);
/// Written at once, without waiting for `LOG_GATHER` to pass.
const LOG_WRITE_BYTES: usize = 64 * 1024;
/// Loggers wait while this much is waiting to be written.
const LOG_BLOCK_BYTES: usize = 8 * 1024 * 1024;

impl LogBuffer {
    fn start() -> (LogWriter, LogGuard) {
        let buffer = std::sync::Arc::new(LogBuffer {
            state: std::sync::Mutex::new(LogState::default()),
            gathered: std::sync::Condvar::new(),
            written: std::sync::Condvar::new(),
        });
        let writer = std::sync::Arc::clone(&buffer);
        let thread = std::thread::Builder::new()
            .name("trainar-mcp-log".into())
            .spawn(move || writer.write_until_closed(&mut std::io::stderr()))
            .ok();
        if thread.is_none() {
            // No thread to write them: every line goes straight to stderr.
            buffer.lock().closed = true;
        }
        (
            LogWriter(std::sync::Arc::clone(&buffer)),
            LogGuard { buffer, thread },
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer thread: waits for a first line, lets more gather, writes them in one go.
    fn write_until_closed(&self, out: &mut impl std::io::Write) {
        let mut spare = Vec::new();
        loop {
            let state = self.lock();
            let state = self
                .gathered
                .wait_while(state, |s| s.lines.is_empty() && !s.closed)
                .unwrap_or_else(|p| p.into_inner());
            let (mut state, _) = self
                .gathered
                .wait_timeout_while(state, LOG_GATHER, |s| {
                    s.lines.len() < LOG_WRITE_BYTES && !s.closed
                })
                .unwrap_or_else(|p| p.into_inner());
            std::mem::swap(&mut state.lines, &mut spare);
            // Once closed, loggers write to stderr themselves: nothing more arrives here.
            let closed = state.closed;
            drop(state);
            self.written.notify_all();
            // Nowhere to report a failed write to stderr: the lines are lost, as before.
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
            if closed {
                return;
            }
        }
    }

    /// Appends one formatted line (the subscriber writes each event whole, once).
    fn append(&self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.lock();
        while state.lines.len() >= LOG_BLOCK_BYTES && !state.closed {
            state = self.written.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.closed {
            // Before the writer thread started or after the guard was dropped.
            drop(state);
            return std::io::Write::write(&mut std::io::stderr(), line);
        }
        let was_empty = state.lines.is_empty();
        state.lines.extend_from_slice(line);
        let full = state.lines.len() >= LOG_WRITE_BYTES;
        drop(state);
        // One wake-up per batch, not per line: the writer thread waits for a first line, then
        // only for the buffer to fill up (or for `LOG_GATHER` to pass).
        if was_empty || full {
            self.gathered.notify_one();
        }
        Ok(line.len())
    }
}

/// What the subscriber writes log lines to.
struct LogWriter(std::sync::Arc<LogBuffer>);

/// One event's writer: a borrow of the buffer (no reference count touched per line).
struct LogLine<'a>(&'a LogBuffer);

impl std::io::Write for LogLine<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.0.append(line)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine<'a>;

    fn make_writer(&'a self) -> LogLine<'a> {
        LogLine(&self.0)
    }
}

/// Writes what is still gathered and stops the writer thread when dropped.
pub struct LogGuard {
    buffer: std::sync::Arc<LogBuffer>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.buffer.lock().closed = true;
        self.buffer.gathered.notify_one();
        self.buffer.written.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
