//! The build-time generator: spec/trainar.yaml → everything the runtime needs, in OUT_DIR.
//! The crate's build.rs calls `generate`; nothing here is compiled into the gateway.
//!
//! Layout:
//! - `spec`: loads the document twice (typed for progenitor, raw JSON for schemas) and lints it.
//! - `schema`: turns an OpenAPI 3.0 schema into a self-contained JSON Schema (no `$ref`).
//! - `catalogue`: the MCP tool catalogue (`tools.json`, `dialects.json`, the search keywords in
//!   `search.json`), the operation/scope tables (`api.rs`) and the request shapes the sandbox
//!   validates against (`requests.json`).
//! - `dialect`: a tool's inputSchema in the dialects of OpenAI and Gemini (`dialects.json`); the
//!   gateway compiles this very file too (`src/mcp/discovery.rs`, by `#[path]`).
//! - `client`: the REST client, by progenitor (`client.rs`).
//! - `dispatch`: tool name + JSON arguments → the client call (`dispatch.rs`), checked against the
//!   signatures progenitor actually generated.
//!
//! Invariant: the output depends only on the spec; each file is rewritten only when its content
//! changes, so an unchanged spec never recompiles the crate.

mod catalogue;
mod client;
mod dialect;
mod dispatch;
mod schema;
mod spec;
#[cfg(test)]
mod testing;

use std::path::Path;

/// Generates every file from the spec at `spec_path` into `out_dir`; the error names what is wrong
/// (for a spec problem, the operation at fault).
pub fn generate(spec_path: &Path, out_dir: &Path) -> Result<(), String> {
    let spec = spec::Spec::load(spec_path)?;
    spec.lint()?;

    let operations = catalogue::Operation::all_from(&spec)?;
    let tools = catalogue::tools(&operations)?;
    write_if_changed(&out_dir.join("tools.json"), &catalogue::tools_json(&tools)?)?;
    write_if_changed(
        &out_dir.join("dialects.json"),
        &catalogue::dialects_json(&tools)?,
    )?;
    write_if_changed(
        &out_dir.join("search.json"),
        &catalogue::search_json(&operations)?,
    )?;
    write_if_changed(
        &out_dir.join("requests.json"),
        &catalogue::requests_json(&operations)?,
    )?;
    write_if_changed(
        &out_dir.join("api.rs"),
        &catalogue::api_rs(&spec, &operations)?,
    )?;

    let client_source = client::generate(&spec)?;
    write_if_changed(&out_dir.join("client.rs"), &client_source)?;

    let dispatch_source = dispatch::generate(&operations, &client_source)?;
    write_if_changed(&out_dir.join("dispatch.rs"), &dispatch_source)?;
    Ok(())
}

/// Rewrites `path` only when `content` differs, so that cargo's fingerprints stay put.
fn write_if_changed(path: &Path, content: &str) -> Result<(), String> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    std::fs::write(path, content).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The header of every generated Rust file.
const GENERATED_HEADER: &str = "// Generated from spec/trainar.yaml by build.rs; do not edit.\n\n";
