//! Transports: each turns its wire format into JSON-RPC messages for `mcp::core` and back, and
//! nothing else. Invariant: no protocol logic lives here.

pub mod sse;
pub mod streamable;
