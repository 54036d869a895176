//! W3C Trace Context (`traceparent`, `tracestate`): read from a request, started when none came,
//! and passed on to the API with a new parent id, so that one agent request can be followed from
//! the MCP client through the gateway into the API by its trace id.
//!
//! Shared by the gateway and the sandbox (which logs the trace id it is sent); a leaf module.
//! Malformed input is ignored as the W3C recommendation says (a new trace is started), never an
//! error: tracing must not make a call fail.

use axum::http::HeaderName;

/// The two headers, named once for every reader and writer (a lookup by `&str` parses the name
/// every time).
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Longest `tracestate` passed on (the W3C limit is 32 members of up to 256 bytes each).
const MAX_TRACESTATE_BYTES: usize = 512;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    /// The caller's span (the incoming parent id), or ours when we started the trace.
    parent_id: [u8; 8],
    flags: u8,
    tracestate: Option<String>,
}

impl TraceContext {
    /// The context a `traceparent` (and `tracestate`) value carries, if well formed.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<TraceContext> {
        let traceparent = traceparent.trim();
        let mut parts = traceparent.split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let parent_id = parts.next()?;
        let flags = parts.next()?;
        // Version 00 has exactly four fields; a later version may add more after them.
        if version.len() != 2 || version.eq_ignore_ascii_case("ff") {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let lowercase_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ![version, trace_id, parent_id, flags]
            .iter()
            .all(|field| lowercase_hex(field))
        {
            return None;
        }
        let trace_id: [u8; 16] = decode_hex(trace_id)?;
        let parent_id: [u8; 8] = decode_hex(parent_id)?;
        let [flags] = decode_hex::<1>(flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        let tracestate = tracestate
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE_BYTES && s.is_ascii())
            .map(String::from);
        Some(TraceContext {
            trace_id,
            parent_id,
            flags,
            tracestate,
        })
    }

    /// A new trace, sampled: the gateway is its root.
    pub fn start() -> TraceContext {
        let mut bytes = [0u8; 24];
        random(&mut bytes);
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        trace_id.copy_from_slice(&bytes[..16]);
        parent_id.copy_from_slice(&bytes[16..]);
        // All-zero ids are invalid; 2^-128 odds, but cheap to rule out.
        trace_id[15] |= 1;
        parent_id[7] |= 1;
        TraceContext {
            trace_id,
            parent_id,
            flags: 1,
            tracestate: None,
        }
    }

    /// The first well-formed of `candidates` (`traceparent`, `tracestate` pairs, most specific
    /// first), else a new trace.
    pub fn from_first<'a>(
        candidates: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>,
    ) -> TraceContext {
        candidates
            .into_iter()
            .find_map(|(parent, state)| TraceContext::parse(parent?, state))
            .unwrap_or_else(TraceContext::start)
    }

    /// The trace id, 32 lowercase hex digits: what logs and the audit trail carry.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// The `traceparent` for a request we make on this trace: same trace id and flags, a new
    /// span id (ours) as its parent id.
    pub fn child_traceparent(&self) -> String {
        let mut span_id = [0u8; 8];
        random(&mut span_id);
        span_id[7] |= 1;
        let mut text = String::with_capacity(55);
        text.push_str("00-");
        push_hex(&mut text, &self.trace_id);
        text.push('-');
        push_hex(&mut text, &span_id);
        text.push('-');
        push_hex(&mut text, &[self.flags]);
        text
    }

    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The incoming parent id, for tests and logs.
    pub fn parent_id(&self) -> String {
        hex(&self.parent_id)
    }
}

fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    push_hex(&mut text, bytes);
    text
}

/// By table: `format!("{:02x}")` per byte cost ~300 instructions, on every call.
fn push_hex(text: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

/// Ids need not be secret, only unlikely to collide: a per-thread SplitMix64 stream seeded once
/// from the OS, so that a call costs no system call for its ids.
fn random(bytes: &mut [u8]) {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut seed = [0u8; 8];
            // Should the OS source fail, the clock and the thread's address still differ.
            if getrandom::fill(&mut seed).is_err() {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or_default();
                seed = (nanos ^ (&seed as *const _ as u64)).to_le_bytes();
            }
            u64::from_le_bytes(seed)
        });
    }
    STATE.with(|state| {
        for chunk in bytes.chunks_mut(8) {
            let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_kept_and_passed_on_with_a_new_parent() {
        let context = TraceContext::parse(VALID, Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.parent_id(), "00f067aa0ba902b7");
        assert_eq!(context.tracestate(), Some("congo=t61rcWkgMzE"));
        let child = context.child_traceparent();
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(child.ends_with("-01"));
        assert_ne!(&child[36..52], "00f067aa0ba902b7", "a new span id");
        assert!(TraceContext::parse(&child, None).is_some());
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47é6-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad, None).is_none(), "{bad:?}");
        }
        // A later version may carry more fields.
        assert!(TraceContext::parse(&format!("01{}-more", &VALID[2..]), None).is_some());
    }

    #[test]
    fn the_first_well_formed_candidate_wins_else_a_new_trace() {
        let chosen = TraceContext::from_first([(Some("junk"), None), (Some(VALID), None)]);
        assert_eq!(chosen.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let started = TraceContext::from_first([(None, None)]);
        assert_eq!(started.trace_id().len(), 32);
        assert_ne!(started.trace_id(), TraceContext::start().trace_id());
    }
}
