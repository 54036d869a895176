//! Integration tests: one binary, one module per feature. Everything here goes over real loopback
//! sockets or runs the real `trainar-mcp` binary.

mod catalogue;
mod common;
mod dispatch;
mod tools_diff;
