//! Transports (`streamable`: /mcp, `sse`: /sse, `stdio`): each turns its wire format into JSON-RPC messages for `mcp::core` and back, and
//! nothing else. Invariant: no protocol logic lives here.

pub mod sse;
pub mod stdio;
pub mod streamable;
