//! stdio: newline-delimited JSON-RPC on stdin/stdout, for clients that launch a command.
//!
//! One session for the life of the process, owned by the key in `TRAINAR_API_KEY`; the key is
//! re-checked through the authenticator's cache for every message, so a revoked key stops
//! working here as it does over HTTP. Tool calls run concurrently, everything else in order;
//! replies are written one per line, in completion order.
//! Invariant: stdout carries protocol messages only; logs go to stderr.

use crate::gateway::SharedGateway;
use crate::mcp::jsonrpc::{ErrorCode, Reply, RpcError};
use crate::mcp::session::{Notify, Session};
use crate::mcp::via::{Transport, Via};
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// Lines longer than this are refused rather than buffered without bound.
const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// Serves `input` → `output` until `input` ends; then waits for in-flight calls to answer.
pub async fn serve<R, W>(
    gateway: SharedGateway,
    api_key: &str,
    input: R,
    mut output: W,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let authorization = format!("Bearer {api_key}");
    let principal = gateway
        .auth
        .authenticate(Some(&authorization), None)
        .await
        .map_err(|failure| {
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                failure.message().to_string(),
            )
        })?;
    let (replies, mut outbox) = mpsc::channel::<Reply>(64);
    // The session's stream is stdout too: server-initiated messages (notifications/message)
    // share the writer with replies.
    let session = Arc::new(
        Session::new(
            &principal.fingerprint,
            gateway.core.options().selection.clone(),
            Some(replies.clone()),
        )
        .opened_by(Transport::Stdio),
    );
    crate::telemetry::record_session_opened(Transport::Stdio);
    let writer = tokio::spawn(async move {
        while let Some(reply) = outbox.recv().await {
            let mut line = reply.into_string();
            line.push('\n');
            output.write_all(line.as_bytes()).await?;
            output.flush().await?;
        }
        Ok::<(), std::io::Error>(())
    });

    let tasks = TaskTracker::new();
    let mut input = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        let complete = match read_bounded_line(&mut input, &mut line).await? {
            None => break,
            Some(complete) => complete,
        };
        if !complete {
            let error = RpcError::new(
                Value::Null,
                ErrorCode::InvalidRequest,
                format!("message over {MAX_LINE_BYTES} bytes; it was skipped"),
            );
            let _ = replies.send(Reply::error(&error)).await;
            continue;
        }
        // One undecodable line is that message's error, not the end of the session.
        let value = match std::str::from_utf8(&line)
            .map_err(|e| format!("the line is not UTF-8 ({e})"))
            .and_then(|text| {
                if text.trim().is_empty() {
                    return Ok(None);
                }
                serde_json::from_str::<Value>(text)
                    .map(Some)
                    .map_err(|e| e.to_string())
            }) {
            Ok(Some(value)) => value,
            Ok(None) => continue,
            Err(e) => {
                let error = RpcError::new(
                    Value::Null,
                    ErrorCode::ParseError,
                    format!("parse error: {e}"),
                );
                let _ = replies.send(Reply::error(&error)).await;
                continue;
            }
        };
        // Tool calls, alone or in a batch, run concurrently (a cancellation must be able to
        // overtake them); everything else is quick and order-sensitive (initialize before what
        // follows), so it runs inline.
        let is_call =
            |message: &Value| message.get("method").and_then(Value::as_str) == Some("tools/call");
        let concurrent = match &value {
            Value::Array(batch) => batch.iter().any(is_call),
            message => is_call(message),
        };
        let work = answer(
            gateway.clone(),
            session.clone(),
            replies.clone(),
            authorization.clone(),
            value,
        );
        if concurrent {
            tasks.spawn(work);
        } else {
            work.await;
        }
    }
    tasks.close();
    tasks.wait().await;
    // The session holds a sender too (its stream): close it, or the writer would wait forever.
    session.close();
    drop(replies);
    writer.await.map_err(std::io::Error::other)?
}

/// Reads one line (without its newline) into `line`, keeping at most `MAX_LINE_BYTES`: the rest
/// of a longer line is read and dropped, never buffered. None at the end of input; Some(false)
/// when the line was too long.
async fn read_bounded_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    line.clear();
    let mut too_long = false;
    let mut read_any = false;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return Ok(read_any.then_some(!too_long));
        }
        read_any = true;
        let (chunk, found_newline) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..at], true),
            None => (available, false),
        };
        if line.len() + chunk.len() > MAX_LINE_BYTES {
            too_long = true;
            line.clear();
        } else if !too_long {
            line.extend_from_slice(chunk);
        }
        let consumed = chunk.len() + usize::from(found_newline);
        input.consume(consumed);
        if found_newline {
            return Ok(Some(!too_long));
        }
    }
}

/// Handles one value as the key behind `authorization` and queues the reply, if any.
async fn answer(
    gateway: SharedGateway,
    session: Arc<Session>,
    replies: mpsc::Sender<Reply>,
    authorization: String,
    value: Value,
) {
    let reply = match gateway.auth.authenticate(Some(&authorization), None).await {
        Ok(principal) => {
            gateway
                .core
                .handle_json(
                    &principal,
                    &session,
                    value,
                    // Straight to the writer's queue, not through the session's stream: full
                    // for a moment (stdout not read), the stream would close for good and every
                    // later notification be dropped; here only the one that found it full is.
                    &Via::new(Transport::Stdio, Notify::Stream(replies.clone())),
                )
                .await
        }
        Err(failure) => {
            let id = value.get("id").cloned().unwrap_or(Value::Null);
            let message = format!("the API key is no longer accepted: {}", failure.message());
            Some(Reply::error(&RpcError::new(
                id,
                ErrorCode::InvalidRequest,
                message,
            )))
        }
    };
    if let Some(reply) = reply {
        let _ = replies.send(reply).await;
    }
}
