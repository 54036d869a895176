//! The tool catalogue at run time: the generated `tools.json`, parsed once and indexed by name.
//!
//! Invariant: a tool's JSON is served exactly as build.rs wrote it; nothing here edits a schema.

use crate::generated::TOOLS_JSON;
use crate::generated::api::Operation;
use serde_json::Value;
use std::sync::LazyLock;

/// One MCP tool: the operation it calls and its definition as `tools/list` shows it.
#[derive(Debug)]
pub struct Tool {
    pub operation: Operation,
    pub definition: Value,
    /// `definition` serialised once at load: tools/list joins these instead of re-serialising.
    pub definition_json: Box<str>,
    /// A long operation (`x-mcp: {progress: true}` in the spec): calls with a progressToken
    /// get `notifications/progress`.
    pub reports_progress: bool,
}

impl Tool {
    pub fn name(&self) -> &'static str {
        self.operation.name()
    }

    pub fn category(&self) -> &'static str {
        self.operation.category()
    }

    pub fn is_read_only(&self) -> bool {
        self.definition["annotations"]["readOnlyHint"] == true
    }
}

#[derive(Debug)]
pub struct Catalogue {
    tools: Vec<Tool>,
}

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
    let definitions: Vec<Value> =
        serde_json::from_str(TOOLS_JSON).expect("build.rs writes tools.json as a JSON array");
    let tools = definitions
        .into_iter()
        .map(|definition| {
            let name = definition["name"].as_str().unwrap_or_default();
            let operation =
                Operation::from_name(name).expect("build.rs names every tool after an operation");
            let definition_json = definition.to_string().into_boxed_str();
            let reports_progress = definition["_meta"]["ai.trainar/progress"] == true;
            Tool {
                operation,
                definition,
                definition_json,
                reports_progress,
            }
        })
        .collect();
    Catalogue { tools }
});

impl Catalogue {
    pub fn get() -> &'static Catalogue {
        &CATALOGUE
    }

    /// Every tool, in the spec's order.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    pub fn find(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|tool| tool.name() == name)
    }

    /// The categories (toolsets), in the spec's order, without repeats.
    pub fn categories(&self) -> Vec<&'static str> {
        let mut categories: Vec<&'static str> = Vec::new();
        for tool in &self.tools {
            if !categories.contains(&tool.category()) {
                categories.push(tool.category());
            }
        }
        categories
    }
}
