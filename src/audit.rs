//! The audit trail (`--audit-log PATH`): one JSON line per tool call, appended in the order the
//! calls ended, never interleaved and never silently dropped; reopened on SIGHUP for logrotate.
//!
//! Callers format their line and hand it to one writer thread over an unbounded channel, so a
//! call never waits for the disk and lines cannot interleave. When a write fails (a full disk),
//! the error is logged loudly and counted, the unwritten lines are kept and retried every second,
//! and only past `MAX_PENDING_BYTES` of them are the oldest given up (counted too). The gateway
//! never stops serving because the audit log cannot be written.
//!
//! Invariant: a line names the key by its id, never its secret, and arguments by name only.

use serde::Serialize;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Unwritten lines kept while the file cannot be written; beyond this the oldest are dropped.
const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// One tool call, as the audit trail records it.
#[derive(Serialize)]
pub struct AuditRecord<'a> {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub key_id: &'a str,
    pub tenant_id: &'a str,
    pub tool: &'a str,
    /// The names of the arguments given (values are never recorded: they may be personal data).
    pub arguments: Vec<&'a str>,
    pub outcome: &'a str,
    /// The API's HTTP status, when it answered.
    pub upstream_status: Option<u16>,
    pub duration_ms: f64,
    pub trace_id: &'a str,
    pub transport: &'a str,
}

enum Command {
    Line(String),
    Reopen,
    /// Answered once everything sent before it is written (or has failed): for shutdown and tests.
    Flush(mpsc::Sender<()>),
}

/// A handle on the audit log; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    commands: mpsc::Sender<Command>,
}

impl AuditLog {
    /// Opens (creating, appending) `path` and starts its writer thread. Fails if the file cannot
    /// be opened now: a misconfigured path is a startup error, not a silent loss.
    pub fn open(path: &Path) -> Result<AuditLog, String> {
        let file = open_append(path)
            .map_err(|e| format!("cannot open the audit log {}: {e}", path.display()))?;
        let (commands, receiver) = mpsc::channel();
        let writer = Writer {
            path: path.to_path_buf(),
            file: Some(file),
            pending: VecDeque::new(),
            pending_bytes: 0,
        };
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| format!("cannot start the audit log writer: {e}"))?;
        Ok(AuditLog { commands })
    }

    pub fn record(&self, record: &AuditRecord<'_>) {
        match serde_json::to_string(record) {
            Ok(mut line) => {
                line.push('\n');
                let _ = self.commands.send(Command::Line(line));
            }
            Err(e) => tracing::error!(error = %e, "an audit record could not be serialised"),
        }
    }

    /// Closes and reopens the file at the same path (after logrotate moved it).
    pub fn reopen(&self) {
        let _ = self.commands.send(Command::Reopen);
    }

    /// Waits until every line recorded so far has been written or has failed.
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if self.commands.send(Command::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(5));
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

struct Writer {
    path: PathBuf,
    file: Option<File>,
    /// Lines not yet written, oldest first.
    pending: VecDeque<String>,
    pending_bytes: usize,
}

impl Writer {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        loop {
            let command = if self.pending.is_empty() {
                match commands.recv() {
                    Ok(command) => Some(command),
                    Err(_) => return,
                }
            } else {
                match commands.recv_timeout(RETRY_EVERY) {
                    Ok(command) => Some(command),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        self.write_pending();
                        return;
                    }
                }
            };
            let mut flushed = Vec::new();
            if let Some(command) = command {
                self.take(command, &mut flushed);
            }
            // Everything already queued goes out in the same write.
            while let Ok(command) = commands.try_recv() {
                self.take(command, &mut flushed);
            }
            self.write_pending();
            for done in flushed {
                let _ = done.send(());
            }
        }
    }

    fn take(&mut self, command: Command, flushed: &mut Vec<mpsc::Sender<()>>) {
        match command {
            Command::Line(line) => {
                self.pending_bytes += line.len();
                self.pending.push_back(line);
                self.bound_pending();
            }
            Command::Reopen => {
                // What came before the signal belongs in the old file.
                self.write_pending();
                self.file = match open_append(&self.path) {
                    Ok(file) => Some(file),
                    Err(e) => {
                        tracing::error!(path = %self.path.display(), error = %e,
                            "cannot reopen the audit log; lines are kept and retried");
                        crate::telemetry::record_audit_write_failure();
                        None
                    }
                };
            }
            Command::Flush(done) => flushed.push(done),
        }
    }

    /// Writes every pending line in one write; on failure keeps them all for the next try.
    fn write_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if self.file.is_none() {
            self.file = open_append(&self.path).ok();
        }
        let Some(file) = &mut self.file else {
            crate::telemetry::record_audit_write_failure();
            return;
        };
        let mut batch = String::with_capacity(self.pending_bytes);
        for line in &self.pending {
            batch.push_str(line);
        }
        // With O_APPEND a failed write may leave part of the batch behind; that part is written
        // again on retry, so a reader may see a line twice after a full disk, but never lose one
        // or see two interleaved.
        match file.write_all(batch.as_bytes()).and_then(|()| file.flush()) {
            Ok(()) => {
                self.pending.clear();
                self.pending_bytes = 0;
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, pending = self.pending.len(),
                    "cannot write the audit log; lines are kept and retried every second");
                crate::telemetry::record_audit_write_failure();
            }
        }
    }

    fn bound_pending(&mut self) {
        let mut dropped = 0;
        while self.pending_bytes > MAX_PENDING_BYTES {
            let Some(oldest) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= oldest.len();
            dropped += 1;
        }
        if dropped > 0 {
            tracing::error!(
                dropped,
                "the audit log has been unwritable for too long; its oldest unwritten lines were dropped"
            );
            crate::telemetry::record_audit_lines_dropped(dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tool: &str) -> AuditRecord<'_> {
        AuditRecord {
            time: "2026-12-06T00:00:00.000Z".into(),
            key_id: "key_1",
            tenant_id: "ten_1",
            tool,
            arguments: vec!["task_id"],
            outcome: "ok",
            upstream_status: Some(200),
            duration_ms: 1.5,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            transport: "streamable",
        }
    }

    #[test]
    fn lines_are_appended_in_order_and_survive_a_reopen_after_a_move() {
        let dir = std::env::temp_dir().join(format!("trainar-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for n in 0..50 {
            log.record(&record(&format!("tool_{n}")));
        }
        log.flush();
        std::fs::rename(&path, dir.join("audit.log.1")).unwrap();
        log.reopen();
        for n in 50..80 {
            log.record(&record(&format!("tool_{n}")));
        }
        log.flush();
        let old = std::fs::read_to_string(dir.join("audit.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        let tools: Vec<String> = old
            .lines()
            .chain(new.lines())
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).unwrap()["tool"].to_string()
            })
            .collect();
        let expected: Vec<String> = (0..80).map(|n| format!("\"tool_{n}\"")).collect();
        assert_eq!(tools, expected);
        assert_eq!(
            old.lines().count(),
            50,
            "lines before the reopen stay in the moved file"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
