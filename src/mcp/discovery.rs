//! Tool search: the discovery mode (`?discovery=search`, `--discovery search`) in which tools/list
//! offers two meta-tools instead of the whole catalogue. `search_tools` ranks the tools a key may
//! call within its connection's selection against a request in plain words and returns the best
//! with their full inputSchema; `call_tool` calls one of them by name, through the same path as a
//! direct call (the core's `run_tool`).
//!
//! It owns the meta-tools' definitions (schemas derived with schemars from the types that read
//! their arguments, then put into each dialect by the converter build.rs applies to the catalogue)
//! and the ranking (BM25 over each tool's name, title, category, description, argument names and
//! the spec's search keywords). It knows nothing of sessions or transports.

use crate::catalogue::{Catalogue, Dialect, Tool, View};
use crate::generated::SEARCH_JSON;
use schemars::JsonSchema;
use schemars::r#gen::SchemaSettings;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::LazyLock;

/// The converter build.rs applies to the catalogue's inputSchemas; included here so that the
/// meta-tools are written in exactly the same dialects.
#[path = "../../codegen/src/dialect.rs"]
mod dialect;

pub const SEARCH_TOOLS: &str = "search_tools";
pub const CALL_TOOL: &str = "call_tool";

/// How a connection finds its tools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discovery {
    /// tools/list lists every tool.
    #[default]
    Direct,
    /// tools/list lists `search_tools` and `call_tool`.
    Search,
}

impl Discovery {
    pub fn parse(name: &str) -> Option<Discovery> {
        match name {
            "direct" => Some(Discovery::Direct),
            "search" => Some(Discovery::Search),
            _ => None,
        }
    }
}

/// The arguments of `search_tools`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchTools {
    /// What you want to do, in your own words, e.g. "pair a new headset" or "how many training
    /// minutes are left".
    pub query: String,
    /// How many tools to return, 1 to 10; defaults to 5.
    #[schemars(range(min = 1, max = 10))]
    pub limit: Option<u8>,
}

/// The arguments of `call_tool`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallTool {
    /// The name of the tool to call, as `search_tools` returned it.
    pub name: String,
    /// The tool's arguments, as its inputSchema (from `search_tools`) describes them; leave out
    /// or pass `{}` for a tool without arguments.
    pub arguments: Option<Map<String, Value>>,
}

/// What `search_tools` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchResults {
    /// The best matches first; call one with `call_tool`.
    pub tools: Vec<FoundTool>,
}

/// One tool that `search_tools` found.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FoundTool {
    /// The tool's name, for `call_tool`.
    pub name: String,
    /// What the tool does, in a line.
    pub title: String,
    /// When and how to use it.
    pub description: String,
    /// The JSON Schema of its arguments.
    #[serde(rename = "inputSchema")]
    pub input_schema: Map<String, Value>,
}

/// The two meta-tools as tools/list shows them, in every view.
static LISTINGS: LazyLock<HashMap<View, String>> = LazyLock::new(|| {
    View::all()
        .map(|view| {
            let tools = [search_tools_definition(view), call_tool_definition(view)];
            let joined: Vec<String> = tools.iter().map(Value::to_string).collect();
            (view, joined.join(","))
        })
        .collect()
});

/// The meta-tools' JSON for tools/list, joined by commas, in `view`.
pub fn listing(view: View) -> &'static str {
    &LISTINGS[&view]
}

/// The schema of `T`, self-contained, with an optional field simply not required (as the
/// catalogue writes them), in `dialect`.
fn schema_of<T: JsonSchema>(dialect: Dialect) -> Value {
    let generator = SchemaSettings::draft2019_09()
        .with(|settings| {
            settings.inline_subschemas = true;
            settings.meta_schema = None;
            settings.option_add_null_type = false;
        })
        .into_generator();
    let mut schema = serde_json::to_value(generator.into_root_schema_for::<T>())
        .expect("a schemars schema serialises");
    tidy(&mut schema);
    match dialect {
        Dialect::Full => schema,
        Dialect::Openai => dialect::openai(&schema),
        Dialect::Gemini => dialect::gemini(&schema),
    }
}

/// Drops what schemars adds that clients do not need: titles (the type's Rust name) and its
/// integer formats (`uint8`), in this schema and every schema below it.
fn tidy(schema: &mut Value) {
    let Some(fields) = schema.as_object_mut() else {
        return;
    };
    fields.remove("title");
    if fields
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| f.starts_with("uint") || f.starts_with("int"))
    {
        fields.remove("format");
    }
    if let Some(Value::Object(properties)) = fields.get_mut("properties") {
        properties.values_mut().for_each(tidy);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(below) = fields.get_mut(key) {
            tidy(below);
        }
    }
}

fn search_tools_definition(view: View) -> Value {
    let mut tool = json!({
        "name": SEARCH_TOOLS,
        "title": "Find the TrainAR tools for a task",
        "description": format!(
            "Searches the TrainAR tools ({} in all: users and AR devices, training sessions, \
             tasks and skills, the knowledge base, billing, integrations, webhooks) for those \
             this API key may call that do what you describe in plain words. Returns the best \
             matches, each with its name, description and inputSchema; then call one with \
             `{CALL_TOOL}`. Search again with other words if none fits.",
            Catalogue::get().tools().len()
        ),
        "inputSchema": schema_of::<SearchTools>(view.dialect),
        "annotations": {"readOnlyHint": true, "destructiveHint": false, "idempotentHint": true,
            "openWorldHint": false},
    });
    if !view.lean {
        tool["outputSchema"] = schema_of::<SearchResults>(Dialect::Full);
    }
    tool
}

fn call_tool_definition(view: View) -> Value {
    json!({
        "name": CALL_TOOL,
        "title": "Call a TrainAR tool",
        "description": format!(
            "Calls a tool that `{SEARCH_TOOLS}` found, by its name, with arguments as its \
             inputSchema describes them, and returns what the tool returns. Whether the tool \
             reads or changes data is in its description."
        ),
        "inputSchema": schema_of::<CallTool>(view.dialect),
        // It may call any tool, so it promises nothing.
        "annotations": {"readOnlyHint": false, "destructiveHint": true, "idempotentHint": false,
            "openWorldHint": false},
    })
}

impl CallTool {
    /// Reads `call_tool`'s arguments as a connection in `dialect` sends them (the dialects carry
    /// `arguments`, a free-form object, as JSON text). An `Err` is the text for the model.
    pub fn read(mut arguments: Map<String, Value>, dialect: Dialect) -> Result<CallTool, String> {
        // The arguments the dialects carry as JSON text, by the rule build.rs applies to the
        // catalogue (`arguments`, a free-form object).
        static JSON_TEXT: LazyLock<Vec<String>> = LazyLock::new(|| {
            dialect::free_form_arguments(&schema_of::<CallTool>(Dialect::Full))
                .expect("call_tool's free-form objects are at its top level")
        });
        for name in JSON_TEXT.iter().filter(|_| dialect != Dialect::Full) {
            if let Some(Value::String(text)) = arguments.get(name) {
                let parsed = serde_json::from_str(text).map_err(|error| {
                    format!(
                        "Invalid arguments for {CALL_TOOL}:\n- `{name}`: is not JSON text of an \
                         object ({error})"
                    )
                })?;
                arguments.insert(name.clone(), parsed);
            }
        }
        read_arguments(CALL_TOOL, arguments)
    }
}

impl SearchTools {
    pub fn read(arguments: Map<String, Value>) -> Result<SearchTools, String> {
        let search: SearchTools = read_arguments(SEARCH_TOOLS, arguments)?;
        if search.limit.is_some_and(|limit| !(1..=10).contains(&limit)) {
            return Err(format!(
                "Invalid arguments for {SEARCH_TOOLS}:\n- `limit`: must be 1 to 10"
            ));
        }
        Ok(search)
    }
}

/// A meta-tool's arguments into its type; null means omitted, as for every tool.
fn read_arguments<T: for<'de> Deserialize<'de>>(
    tool: &str,
    mut arguments: Map<String, Value>,
) -> Result<T, String> {
    arguments.retain(|_, value| !value.is_null());
    serde_json::from_value(Value::Object(arguments))
        .map_err(|error| format!("Invalid arguments for {tool}:\n- {error}"))
}

/// The `limit` best of `candidates` for `query`, best first; a tool no query word matches is
/// never returned.
pub fn search<'t>(query: &str, candidates: &[&'t Tool], limit: usize) -> Vec<&'t Tool> {
    let index = &*INDEX;
    let mut words = terms(query);
    words.sort();
    words.dedup();
    let mut scored: Vec<(f64, &Tool)> = candidates
        .iter()
        .filter_map(|tool| {
            let document = index.documents.get(tool.name())?;
            let score: f64 = words.iter().map(|w| index.score(document, w)).sum();
            (score > 0.0).then_some((score, *tool))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(limit).map(|(_, t)| t).collect()
}

/// The `FoundTool` of `tool`, its inputSchema in `dialect`.
pub fn found(tool: &Tool, dialect: Dialect) -> FoundTool {
    let text = |key: &str| {
        tool.definition[key]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    FoundTool {
        name: tool.name().to_string(),
        title: text("title"),
        description: text("description"),
        input_schema: tool
            .input_schema_in(dialect)
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

/// BM25 over the whole catalogue (the statistics do not depend on who searches).
struct Index {
    /// Each tool's weighted term frequencies and its weighted length.
    documents: HashMap<&'static str, (HashMap<String, f64>, f64)>,
    /// In how many tools each term occurs.
    document_frequency: HashMap<String, usize>,
    average_length: f64,
}

const K1: f64 = 1.2;
const B: f64 = 0.75;

impl Index {
    fn score(&self, (frequencies, length): &(HashMap<String, f64>, f64), term: &str) -> f64 {
        let Some(frequency) = frequencies.get(term) else {
            return 0.0;
        };
        let count = self.documents.len() as f64;
        let containing = self.document_frequency[term] as f64;
        let idf = (1.0 + (count - containing + 0.5) / (containing + 0.5)).ln();
        idf * frequency * (K1 + 1.0)
            / (frequency + K1 * (1.0 - B + B * length / self.average_length))
    }
}

static INDEX: LazyLock<Index> = LazyLock::new(|| {
    let keywords: HashMap<String, String> =
        serde_json::from_str(SEARCH_JSON).expect("build.rs writes search.json as an object");
    let mut documents = HashMap::new();
    let mut document_frequency: HashMap<String, usize> = HashMap::new();
    for tool in Catalogue::get().tools() {
        let definition = &tool.definition;
        let text = |key: &str| definition[key].as_str().unwrap_or_default().to_string();
        let arguments: Vec<String> = definition["inputSchema"]["properties"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.keys().cloned())
            .collect();
        // Where a word stands says how much it tells: the name and the users' own words most.
        let fields = [
            (tool.name().to_string(), 3.0),
            (keywords.get(tool.name()).cloned().unwrap_or_default(), 3.0),
            (text("title"), 2.0),
            (tool.category().to_string(), 2.0),
            (arguments.join(" "), 1.0),
            (text("description"), 1.0),
        ];
        let mut frequencies: HashMap<String, f64> = HashMap::new();
        let mut length = 0.0;
        for (field, weight) in &fields {
            for term in terms(field) {
                *frequencies.entry(term).or_default() += weight;
                length += weight;
            }
        }
        for term in frequencies.keys() {
            *document_frequency.entry(term.clone()).or_default() += 1;
        }
        documents.insert(tool.name(), (frequencies, length));
    }
    let average_length =
        documents.values().map(|(_, l)| l).sum::<f64>() / documents.len().max(1) as f64;
    Index {
        documents,
        document_frequency,
        average_length,
    }
});

/// Words that say nothing about which tool is meant.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "get",
    "give", "have", "how", "i", "in", "is", "it", "its", "me", "my", "of", "on", "or", "our",
    "please", "show", "so", "that", "the", "their", "them", "this", "to", "us", "we", "what",
    "when", "where", "which", "who", "with", "you", "your",
];

/// Lower-case word stems: "Headsets" and "headset" are one term.
fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .filter(|word| !STOP_WORDS.contains(&word.as_str()))
        .map(|word| stem(&word))
        .collect()
}

/// A light suffix stripper (plural and verb endings, then a final e), enough for "devices",
/// "device", "paired" and "pairing", or "created" and "create", to meet.
fn stem(word: &str) -> String {
    let mut stem = word.to_string();
    for (suffix, replacement, min_len) in
        [("ies", "y", 5), ("ing", "", 6), ("ed", "", 5), ("s", "", 4)]
    {
        if stem.len() >= min_len
            && let Some(root) = stem.strip_suffix(suffix)
            && !root.ends_with('s')
        {
            stem = format!("{root}{replacement}");
            break;
        }
    }
    if stem.len() >= 4 && stem.ends_with('e') {
        stem.pop();
    }
    stem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_forms_meet() {
        assert_eq!(terms("Headsets paired"), terms("headset pair"));
        assert_eq!(stem("devices"), stem("device"));
        assert_eq!(stem("created"), stem("create"));
        assert_eq!(stem("pairing"), stem("paired"));
        assert_eq!(stem("address"), "address");
    }

    #[test]
    fn the_meta_tools_schemas_come_from_their_types() {
        let full = schema_of::<CallTool>(Dialect::Full);
        assert_eq!(full["required"], json!(["name"]));
        assert_eq!(full["properties"]["arguments"]["type"], "object");
        let openai = schema_of::<CallTool>(Dialect::Openai);
        assert_eq!(
            openai["properties"]["arguments"]["type"],
            json!(["string", "null"])
        );
        let results = schema_of::<SearchResults>(Dialect::Full);
        let found = &results["properties"]["tools"]["items"];
        assert_eq!(
            found["required"],
            json!(["description", "inputSchema", "name", "title"])
        );
        assert!(found["properties"]["title"].is_object());
        let search = schema_of::<SearchTools>(Dialect::Full);
        assert_eq!(search["properties"]["limit"]["maximum"], 10.0);
        assert!(search["properties"]["limit"].get("format").is_none());
    }
}
