//! The MCP protocol core, shared by every transport.
//!
//! - `jsonrpc`: messages and error codes.
//! - `core`: lifecycle, ping, tools/list, tools/call.
//! - `session`: handshake-era sessions and the `SessionStore` seam.
//! - `selection`: which tools a connection is offered.

pub mod core;
pub mod jsonrpc;
pub mod selection;
pub mod session;
