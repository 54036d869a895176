//! What every MCP POST passes before its body is read, in this order: a declared length within
//! the limit (413 at once), a JSON `Content-Type` (415), an `Accept` the era requires (406), no
//! credentials in the URL and one `Authorization` header, the key resolved (401/503); then the
//! body, bounded in size and in time (413, 408). A client that is not authenticated never makes
//! the gateway hold its body.

use crate::auth::Principal;
use crate::gateway::SharedGateway;
use crate::http::{Peer, Refused, http_error};
use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use std::sync::Arc;

/// What a handler knows of its request before reading the body.
pub struct RequestHead {
    pub uri: Uri,
    pub headers: HeaderMap,
    /// What its `Accept` admits of the two forms MCP answers in.
    pub accepts: Accepts,
    /// The connection's peer (set by `server::serve`; absent when the router runs elsewhere).
    pub peer: Option<Peer>,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestHead {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<RequestHead, Self::Rejection> {
        Ok(RequestHead {
            uri: parts.uri.clone(),
            accepts: Accepts::of(&parts.headers),
            headers: std::mem::take(&mut parts.headers),
            peer: parts.extensions.get::<Peer>().copied(),
        })
    }
}

/// What the endpoint requires of `Accept`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AcceptRule {
    /// Streamable HTTP: the spec has clients accept both `application/json` and
    /// `text/event-stream`; either alone is tolerated (and answered in that form), but a missing
    /// `Accept`, or one naming neither, is 406. `*/*` and `type/*` ranges count.
    JsonOrEventStream,
    /// Legacy SSE's `POST /messages` answers 202 with no body: any `Accept`.
    Any,
}

/// A POST's caller and body, once everything above has passed.
pub async fn checked_post(
    gateway: &SharedGateway,
    request: &RequestHead,
    body: Body,
    accept: AcceptRule,
) -> Result<(Arc<Principal>, Bytes), Response> {
    let headers = &request.headers;
    let limit = gateway.options.max_body_bytes;
    if let Some(length) = declared_length(headers)
        && length > limit as u64
    {
        return Err(too_large(limit));
    }
    check_content_type(headers).map_err(|refused| *refused)?;
    if accept == AcceptRule::JsonOrEventStream {
        check_accept(request.accepts).map_err(|refused| *refused)?;
    }
    let principal = gateway
        .principal(headers, &request.uri, request.peer.as_ref())
        .await
        .map_err(|response| *response)?;
    let body = read_body(body, limit, gateway.options.body_read_timeout).await?;
    Ok((principal, body))
}

/// The request's `Content-Length`, when it has a readable one.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large(limit: usize) -> Response {
    crate::telemetry::record_refused(crate::telemetry::Refusal::BodySize);
    http_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!("the request body is over this server's limit of {limit} bytes"),
    )
}

/// JSON only: a form or text body is a client bug (or a browser's simple request, which CORS
/// would not preflight), never something to guess at.
fn check_content_type(headers: &HeaderMap) -> Result<(), Refused> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    let got = if content_type.is_empty() {
        "none".to_string()
    } else {
        format!("`{content_type}`")
    };
    Err(Box::new(http_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        &format!("send JSON-RPC as `Content-Type: application/json` (got {got})"),
    )))
}

fn check_accept(accepts: Accepts) -> Result<(), Refused> {
    if accepts.json || accepts.event_stream {
        return Ok(());
    }
    Err(Box::new(http_error(
        StatusCode::NOT_ACCEPTABLE,
        "not_acceptable",
        "send `Accept: application/json, text/event-stream`: this endpoint answers with either",
    )))
}

/// Which of the two media types MCP answers in the request's `Accept` admits (exactly, or through
/// `*/*` or `type/*`, ignoring case and parameters). One pass over the header's bytes, allocating
/// nothing: it runs on every POST.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Accepts {
    pub json: bool,
    pub event_stream: bool,
}

impl Accepts {
    pub fn of(headers: &HeaderMap) -> Accepts {
        let mut accepts = Accepts::default();
        let ranges = headers
            .get_all(header::ACCEPT)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','));
        for range in ranges {
            let media_range = range.split(|&b| b == b';').next().unwrap_or_default();
            let media_range = media_range.trim_ascii();
            let is = |name: &str| media_range.eq_ignore_ascii_case(name.as_bytes());
            if is("*/*") {
                return Accepts {
                    json: true,
                    event_stream: true,
                };
            }
            accepts.json |= is("application/json") || is("application/*");
            accepts.event_stream |= is("text/event-stream") || is("text/*");
        }
        accepts
    }
}

/// The body, at most `limit` bytes, within `timeout` (a client that trickles its body is cut off).
async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, Response> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if e.to_string().contains("length limit") => Err(too_large(limit)),
        Ok(Err(e)) => Err(http_error(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            &format!("the request body could not be read: {e}"),
        )),
        Err(_) => Err(http_error(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            &format!(
                "the request body did not arrive within {} s",
                timeout.as_secs()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(values: &[&str]) -> Accepts {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::ACCEPT, value.parse().unwrap());
        }
        Accepts::of(&headers)
    }

    #[test]
    fn accept_ranges_are_read_in_one_pass() {
        let both = Accepts {
            json: true,
            event_stream: true,
        };
        let json = Accepts {
            json: true,
            event_stream: false,
        };
        let event_stream = Accepts {
            json: false,
            event_stream: true,
        };
        assert_eq!(accepts(&["application/json, text/event-stream"]), both);
        assert_eq!(accepts(&["application/json", "text/event-stream"]), both);
        assert_eq!(accepts(&["*/*"]), both);
        assert_eq!(accepts(&["text/html;q=0.9, */*;q=0.1"]), both);
        assert_eq!(accepts(&[" Application/JSON ;q=0.5"]), json);
        assert_eq!(accepts(&["application/*"]), json);
        assert_eq!(accepts(&["text/*"]), event_stream);
        assert_eq!(accepts(&["TEXT/EVENT-STREAM"]), event_stream);
        assert_eq!(accepts(&[]), Accepts::default());
        assert_eq!(
            accepts(&["text/html, application/jsonx"]),
            Accepts::default()
        );
    }
}
