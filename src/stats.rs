//! `tools stats`: what each way of listing the catalogue costs a model (bytes, and tokens by
//! OpenAI's o200k_base, whose vocabulary ships inside tiktoken-rs), and how many inputSchemas
//! meet each vendor dialect's documented rules.
//!
//! The rules here are the documented keyword subsets, checked structurally; the vendors' own
//! code judges the dialects in tests/python/dialects.py.

use crate::catalogue::{Catalogue, Dialect, Tool, View};
use crate::mcp::discovery;
use serde_json::{Value, json};

/// One way of listing the catalogue, measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub mode: &'static str,
    pub tools: usize,
    pub bytes: usize,
    pub tokens: usize,
}

/// How many of the catalogue's inputSchemas, written in `dialect`, meet each vendor's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialectCount {
    pub dialect: Dialect,
    pub openai_strict: usize,
    pub gemini_subset: usize,
    pub total: usize,
}

fn measured(mode: &'static str, tools: usize, text: String) -> Listing {
    Listing {
        mode,
        tools,
        bytes: text.len(),
        tokens: tiktoken_rs::o200k_base_singleton()
            .encode_with_special_tokens(&text)
            .len(),
    }
}

/// A tools/list result of `tools`, each in `view`, as the gateway serves it.
fn tools_list(tools: &[&Tool], view: View) -> String {
    let joined: Vec<&str> = tools.iter().map(|t| t.json_in(view)).collect();
    format!(r#"{{"tools":[{}]}}"#, joined.join(","))
}

/// Every listing mode, measured.
pub fn listings() -> Vec<Listing> {
    let all: Vec<&Tool> = Catalogue::get().tools().iter().collect();
    let read_only: Vec<&Tool> = all.iter().copied().filter(|t| t.is_read_only()).collect();
    let lean = |dialect| View {
        dialect,
        lean: true,
    };
    let model_view: Vec<Value> = all
        .iter()
        .map(|t| {
            json!({"name": t.name(), "description": t.definition["description"],
                "inputSchema": t.definition["inputSchema"]})
        })
        .collect();
    let discovery = |view| format!(r#"{{"tools":[{}]}}"#, discovery::listing(view));
    vec![
        measured("full", all.len(), tools_list(&all, View::default())),
        measured(
            "model view (name, description, inputSchema)",
            all.len(),
            Value::Array(model_view).to_string(),
        ),
        measured(
            "read-only (?read_only=true)",
            read_only.len(),
            tools_list(&read_only, View::default()),
        ),
        measured(
            "lean (?lean=1)",
            all.len(),
            tools_list(&all, lean(Dialect::Full)),
        ),
        measured(
            "lean, openai (?lean=1&schema=openai)",
            all.len(),
            tools_list(&all, lean(Dialect::Openai)),
        ),
        measured(
            "lean, gemini (?lean=1&schema=gemini)",
            all.len(),
            tools_list(&all, lean(Dialect::Gemini)),
        ),
        measured(
            "discovery (?discovery=search)",
            2,
            discovery(View::default()),
        ),
        measured(
            "discovery, lean (?discovery=search&lean=1)",
            2,
            discovery(lean(Dialect::Full)),
        ),
    ]
}

/// For each dialect, how many inputSchemas meet OpenAI's strict rules and Gemini's subset.
pub fn dialect_counts() -> Vec<DialectCount> {
    let tools = Catalogue::get().tools();
    Dialect::ALL
        .into_iter()
        .map(|dialect| {
            let schemas: Vec<&Value> = tools.iter().map(|t| t.input_schema_in(dialect)).collect();
            DialectCount {
                dialect,
                openai_strict: schemas.iter().filter(|s| meets_openai_strict(s)).count(),
                gemini_subset: schemas.iter().filter(|s| meets_gemini_subset(s)).count(),
                total: schemas.len(),
            }
        })
        .collect()
}

/// The keywords OpenAI's strict mode supports.
const OPENAI_KEYWORDS: &[&str] = &[
    "type",
    "description",
    "title",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
];
const OPENAI_FORMATS: &[&str] = &[
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
];

/// Strict: supported keywords only; every object closed, with every property required.
fn meets_openai_strict(schema: &Value) -> bool {
    let Some(fields) = schema.as_object() else {
        return false;
    };
    if fields
        .keys()
        .any(|k| !OPENAI_KEYWORDS.contains(&k.as_str()))
    {
        return false;
    }
    if let Some(format) = fields.get("format")
        && !format.as_str().is_some_and(|f| OPENAI_FORMATS.contains(&f))
    {
        return false;
    }
    let is_object = match &fields.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(types)) => types.iter().any(|t| t == "object"),
        _ => false,
    };
    if is_object {
        let Some(properties) = fields.get("properties").and_then(Value::as_object) else {
            return false;
        };
        let mut required: Vec<&str> = fields
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        required.sort_unstable();
        let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
        names.sort_unstable();
        if fields.get("additionalProperties") != Some(&json!(false))
            || required != names
            || !properties.values().all(meets_openai_strict)
        {
            return false;
        }
    }
    fields.get("items").is_none_or(meets_openai_strict)
}

/// The keywords of Gemini's documented `parameters` (an OpenAPI 3.0 Schema object, narrowed).
const GEMINI_KEYWORDS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// One type, the documented keywords only, and string formats only `enum` and `date-time`.
fn meets_gemini_subset(schema: &Value) -> bool {
    let Some(fields) = schema.as_object() else {
        return false;
    };
    if fields
        .keys()
        .any(|k| !GEMINI_KEYWORDS.contains(&k.as_str()))
    {
        return false;
    }
    let Some(kind) = fields.get("type").and_then(Value::as_str) else {
        return false;
    };
    if let Some(format) = fields.get("format")
        && (kind != "string" || !matches!(format.as_str(), Some("enum" | "date-time")))
    {
        return false;
    }
    fields
        .get("properties")
        .and_then(Value::as_object)
        .is_none_or(|p| p.values().all(meets_gemini_subset))
        && fields.get("items").is_none_or(meets_gemini_subset)
}

/// The report for people.
pub fn to_text(listings: &[Listing], counts: &[DialectCount]) -> String {
    let mut text = format!(
        "{:<46} {:>5} {:>8} {:>8}\n",
        "LISTING (tools/list result)", "TOOLS", "BYTES", "TOKENS"
    );
    for listing in listings {
        text.push_str(&format!(
            "{:<46} {:>5} {:>8} {:>8}\n",
            listing.mode, listing.tools, listing.bytes, listing.tokens
        ));
    }
    text.push_str("tokens: o200k_base (tiktoken-rs)\n\n");
    text.push_str(&format!(
        "{:<46} {:>14} {:>14}\n",
        "INPUTSCHEMAS WRITTEN AS", "OPENAI STRICT", "GEMINI SUBSET"
    ));
    for count in counts {
        text.push_str(&format!(
            "{:<46} {:>14} {:>14}\n",
            format!("?schema={}", count.dialect.as_str()),
            format!("{}/{}", count.openai_strict, count.total),
            format!("{}/{}", count.gemini_subset, count.total),
        ));
    }
    text.push_str(
        "by each vendor's documented rules; tests/python/dialects.py asks the vendors' SDKs\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_refuse_what_each_vendor_refuses() {
        let open = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        assert!(!meets_openai_strict(&open), "not closed, `a` not required");
        let strict = json!({"type": "object", "properties": {"a": {"type": ["string", "null"]}},
            "required": ["a"], "additionalProperties": false});
        assert!(meets_openai_strict(&strict));
        assert!(
            !meets_gemini_subset(&strict),
            "a type array, additionalProperties"
        );
        let lengths = json!({"type": "object", "properties": {"a": {"type": "string",
            "maxLength": 3}}, "required": ["a"], "additionalProperties": false});
        assert!(!meets_openai_strict(&lengths));
        let gemini = json!({"type": "object", "properties": {"a": {"type": "string",
            "maxLength": 3, "format": "date-time"}}});
        assert!(meets_gemini_subset(&gemini));
        let email = json!({"type": "string", "format": "email"});
        assert!(!meets_gemini_subset(&email));
    }
}
