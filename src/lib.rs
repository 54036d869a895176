//! trainar-mcp: the TrainAR Tenant REST API as MCP tools.
//!
//! Layout (see ARCHITECTURE.md for the path of a tool call):
//! - `generated`: everything build.rs derives from spec/trainar.yaml (client, catalogue, dispatch).
//! - `catalogue`: the tool catalogue at run time: lookup and selection by scope, toolset, name.
//! - `scopes`: a key's scopes with the spec's hierarchy applied, and the check for one operation.
//! - `upstream`: the generated client with one shared pool, the caller's key per request, and its
//!   errors mapped for callers.
//! - `api_key`: the `tak_` secret, which never reaches a log.
//! - `diff`: `tools diff`, the breaking/compatible classification of two catalogues.

pub mod api_key;
pub mod catalogue;
pub mod diff;
pub mod generated;
pub mod scopes;
pub mod upstream;
