//! The tool catalogue at run time: the generated `tools.json` and `dialects.json`, parsed once
//! and indexed by name, with each tool's JSON in every view a connection can ask for.
//!
//! Invariant: a tool's JSON is served as build.rs wrote it; a view only picks which generated
//! inputSchema to show and whether to leave out the outputSchema, it never edits a schema.

use crate::generated::api::Operation;
use crate::generated::{DIALECTS_JSON, TOOLS_JSON};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};

/// Which JSON Schema dialect a connection's inputSchemas are written in (`?schema=`, `--schema`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// The full JSON Schema (2020-12) that build.rs derives from the spec.
    #[default]
    Full,
    /// OpenAI strict function calling: every property required, optional ones nullable.
    Openai,
    /// Gemini's function `parameters`: the narrowed OpenAPI 3.0 Schema object.
    Gemini,
}

impl Dialect {
    pub const ALL: [Dialect; 3] = [Dialect::Full, Dialect::Openai, Dialect::Gemini];

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Full => "full",
            Dialect::Openai => "openai",
            Dialect::Gemini => "gemini",
        }
    }

    pub fn parse(name: &str) -> Option<Dialect> {
        Dialect::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

/// How a tool is written out in tools/list: its inputSchema's dialect, and whether the
/// outputSchema (about two thirds of the catalogue's bytes) is left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct View {
    pub dialect: Dialect,
    pub lean: bool,
}

impl View {
    const COUNT: usize = Dialect::ALL.len() * 2;

    fn index(self) -> usize {
        self.dialect as usize * 2 + usize::from(self.lean)
    }

    /// Every view, each once.
    pub fn all() -> impl Iterator<Item = View> {
        Dialect::ALL.into_iter().flat_map(|dialect| {
            [false, true]
                .into_iter()
                .map(move |lean| View { dialect, lean })
        })
    }
}

/// One MCP tool: the operation it calls and its definition as `tools/list` shows it.
#[derive(Debug)]
pub struct Tool {
    pub operation: Operation,
    pub definition: Value,
    /// `definition` serialised once at load: tools/list joins these instead of re-serialising.
    pub definition_json: Box<str>,
    /// The tool's JSON in each `View` other than the default, serialised the first time a
    /// `tools/list` asks for it, indexed by `View::index`. Not at load: all of them cost about
    /// a third of the gateway's start-up (36 M instructions), and most servers use one view.
    views: [OnceLock<Box<str>>; View::COUNT],
    /// The arguments the vendor dialects carry as JSON text (free-form objects, which neither
    /// can describe); a call in such a dialect has them parsed back before validation.
    pub json_text_arguments: Vec<String>,
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

    /// The scopes a call needs, as the spec names them.
    pub fn scope_names(&self) -> Vec<&'static str> {
        self.operation
            .required_scopes()
            .iter()
            .map(|scope| scope.as_str())
            .collect()
    }

    pub fn is_read_only(&self) -> bool {
        self.definition["annotations"]["readOnlyHint"] == true
    }

    /// The tool's JSON as tools/list shows it in `view`.
    pub fn json_in(&self, view: View) -> &str {
        if view == View::default() {
            return &self.definition_json;
        }
        self.views[view.index()].get_or_init(|| self.render(view))
    }

    /// The inputSchema in `dialect`.
    pub fn input_schema_in(&self, dialect: Dialect) -> &Value {
        match dialect {
            Dialect::Full => &self.definition["inputSchema"],
            dialect => &DIALECTS[dialect.as_str()][self.name()],
        }
    }

    /// The tool's JSON in `view` (other than the default), from the generated definitions.
    fn render(&self, view: View) -> Box<str> {
        let mut definition = self.definition.clone();
        definition["inputSchema"] = self.input_schema_in(view.dialect).clone();
        if view.lean
            && let Some(fields) = definition.as_object_mut()
        {
            fields.remove("outputSchema");
        }
        definition.to_string().into_boxed_str()
    }
}

/// `dialects.json`, parsed once.
static DIALECTS: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(DIALECTS_JSON).expect("build.rs writes dialects.json as a JSON object")
});

#[derive(Debug)]
pub struct Catalogue {
    tools: Vec<Tool>,
}

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
    let definitions: Vec<Value> =
        serde_json::from_str(TOOLS_JSON).expect("build.rs writes tools.json as a JSON array");
    let json_text_arguments: HashMap<String, Vec<String>> =
        serde_json::from_value(DIALECTS["jsonTextArguments"].clone())
            .expect("build.rs lists JSON-text arguments by tool");
    let tools = definitions
        .into_iter()
        .map(|definition| {
            let name = definition["name"].as_str().unwrap_or_default();
            let operation =
                Operation::from_name(name).expect("build.rs names every tool after an operation");
            let definition_json = definition.to_string().into_boxed_str();
            let reports_progress = definition["_meta"]["ai.trainar/progress"] == true;
            let json_text_arguments = json_text_arguments.get(name).cloned().unwrap_or_default();
            Tool {
                operation,
                definition,
                definition_json,
                views: std::array::from_fn(|_| OnceLock::new()),
                json_text_arguments,
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
