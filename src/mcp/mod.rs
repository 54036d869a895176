//! The MCP protocol core, shared by every transport.
//!
//! - `jsonrpc`: messages and error codes.
//! - `core`: lifecycle, discovery, ping, tools/list, tools/call, progress.
//! - `envelope`: the 2026-07-28 era's per-request envelope and its checks.
//! - `session`: sessions, where a request's notifications go, and the `SessionStore` seam.
//! - `selection`: which tools a connection is offered.
//! - `presentation`: how they are written out (schema dialect, lean listing, tool search).
//! - `discovery`: tool search, the meta-tools `search_tools` and `call_tool`.
//! - `versions`: the protocol versions served, of both eras (a leaf every other module may read).
//! - `via`: where a message came from (transport, trace context) and where its notifications go.

pub mod core;
pub mod discovery;
pub mod envelope;
pub mod jsonrpc;
pub mod outline;
pub mod presentation;
pub mod selection;
pub mod session;
pub mod versions;
pub mod via;
