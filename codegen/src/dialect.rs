//! A tool's inputSchema in the dialects of model vendors: the subset of JSON Schema that OpenAI's
//! strict function calling and Gemini's function `parameters` accept. build.rs writes the
//! catalogue's into `dialects.json`; the gateway's discovery meta-tools (`src/mcp/discovery.rs`)
//! include this very file, so that they are written in exactly the same dialects.
//!
//! A constraint a dialect cannot carry is said in words in the property's description; the gateway
//! still enforces it, since calls are always validated against the full schema. A free-form object
//! (an argument with no fixed properties) has no form in either dialect, so both carry it as JSON
//! text, which the gateway parses back (`free_form_arguments` names those arguments).
//!
//! Invariant: pure functions of serde_json values, nothing else: both build.rs and the library
//! compile it.

use serde_json::{Map, Value, json};

/// The vendors, as `?schema=` names them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// OpenAI strict: every property required (optional ones typed `[T, "null"]`), every object
    /// closed, and only these keywords.
    OpenAi,
    /// Gemini's `parameters` (OpenAPI 3.0's Schema object, narrowed): one type, no
    /// `additionalProperties`, string formats only `enum` and `date-time`.
    Gemini,
}

impl Dialect {
    fn keeps(self, keyword: &str) -> bool {
        let common = [
            "type",
            "description",
            "enum",
            "properties",
            "required",
            "items",
            "minimum",
            "maximum",
            "minItems",
            "maxItems",
            "pattern",
        ];
        common.contains(&keyword)
            || match self {
                Dialect::OpenAi => {
                    matches!(keyword, "additionalProperties" | "format")
                }
                Dialect::Gemini => matches!(
                    keyword,
                    "format" | "nullable" | "minLength" | "maxLength" | "default"
                ),
            }
    }

    fn keeps_format(self, format: &str) -> bool {
        match self {
            // The formats OpenAI's structured outputs document (no `uri`).
            Dialect::OpenAi => matches!(format, "date-time" | "date" | "email"),
            Dialect::Gemini => matches!(format, "date-time" | "enum"),
        }
    }
}

/// `input` (a tool's inputSchema) as OpenAI's strict function calling takes it.
pub fn openai(input: &Value) -> Value {
    convert(input, Dialect::OpenAi, true)
}

/// `input` (a tool's inputSchema) as Gemini's function `parameters` take it.
pub fn gemini(input: &Value) -> Value {
    convert(input, Dialect::Gemini, true)
}

/// An object that takes any properties: no dialect can describe it.
fn is_free_form(schema: &Value) -> bool {
    schema["type"] == "object"
        && (schema.get("properties").is_none() || schema["additionalProperties"] != false)
}

/// The top-level arguments that are free-form objects, which both dialects carry as JSON text.
/// Deeper ones would need a path to parse back; none exist, and this fails if one appears rather
/// than have it served unparsed.
pub fn free_form_arguments(input: &Value) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    for (name, property) in input["properties"].as_object().into_iter().flatten() {
        if is_free_form(property) {
            found.push(name.clone());
        } else if contains_free_form(property) {
            return Err(format!(
                "{name} holds a free-form object below the top level, which no dialect can carry"
            ));
        }
    }
    Ok(found)
}

fn contains_free_form(schema: &Value) -> bool {
    is_free_form(schema)
        || schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .any(|(_, p)| contains_free_form(p))
        || schema.get("items").is_some_and(contains_free_form)
}

/// `schema` in `dialect`; `required` says whether its parent requires it (OpenAI types an optional
/// property as nullable, since it must list every property as required).
fn convert(schema: &Value, dialect: Dialect, required: bool) -> Value {
    if is_free_form(schema) {
        let description = schema["description"].as_str().unwrap_or_default();
        let mut text = json!({
            "type": "string",
            "description": format!("{description} Pass it as JSON text of an object, e.g. \"{{}}\"."),
        });
        if dialect == Dialect::OpenAi && !required {
            text["type"] = json!(["string", "null"]);
        }
        return text;
    }
    let source = schema.as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    let mut dropped = Map::new();
    for (keyword, value) in &source {
        let kept = match keyword.as_str() {
            "format" => value.as_str().is_some_and(|f| dialect.keeps_format(f)),
            "additionalProperties" => value == &json!(false) && dialect.keeps(keyword),
            keyword => dialect.keeps(keyword),
        };
        if kept {
            out.insert(keyword.clone(), value.clone());
        } else {
            dropped.insert(keyword.clone(), value.clone());
        }
    }
    let description = out
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let said = in_words(&dropped, description);
    if !said.is_empty() {
        let description = description.trim_end().trim_end_matches('.').to_string();
        out.insert(
            "description".into(),
            json!(format!("{description} ({}).", said.join("; "))),
        );
    }

    if let Some(properties) = source.get("properties").and_then(Value::as_object) {
        let own_required: Vec<&str> = source
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        // In name order, as the gateway serialises them: OpenAI's SDK rebuilds `required` from
        // the properties' order, and a strict schema must come back from it unchanged.
        let mut names: Vec<&String> = properties.keys().collect();
        names.sort();
        let mut converted = Map::new();
        for name in &names {
            let is_required = own_required.contains(&name.as_str());
            converted.insert(
                (*name).clone(),
                convert(&properties[*name], dialect, is_required),
            );
        }
        let names: Vec<Value> = names.into_iter().map(|n| json!(n)).collect();
        out.insert("properties".into(), Value::Object(converted));
        match dialect {
            Dialect::OpenAi => {
                out.insert("required".into(), Value::Array(names));
                out.insert("additionalProperties".into(), json!(false));
            }
            Dialect::Gemini if own_required.is_empty() => {
                out.remove("required");
            }
            Dialect::Gemini => {}
        }
    }
    if let Some(items) = source.get("items") {
        out.insert("items".into(), convert(items, dialect, true));
    }
    match dialect {
        Dialect::OpenAi if !required => make_nullable(&mut out),
        Dialect::OpenAi => {}
        Dialect::Gemini => one_type(&mut out),
    }
    Value::Object(out)
}

/// OpenAI's optional property: `[T, "null"]`, and null among an enum's values.
fn make_nullable(schema: &mut Map<String, Value>) {
    if let Some(Value::String(single)) = schema.get("type") {
        let single = single.clone();
        schema.insert("type".into(), json!([single, "null"]));
    }
    if let Some(Value::Array(values)) = schema.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
}

/// Gemini's Schema has one `type`; a JSON Schema `[T, "null"]` becomes `T` and `nullable`.
fn one_type(schema: &mut Map<String, Value>) {
    if let Some(Value::Array(types)) = schema.get("type") {
        let nullable = types.iter().any(|t| t == "null");
        let others: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if let [single] = others.as_slice() {
            schema.insert("type".into(), single.clone());
        }
        if nullable {
            schema.insert("nullable".into(), json!(true));
        }
        if let Some(Value::Array(values)) = schema.get_mut("enum") {
            values.retain(|v| !v.is_null());
        }
    }
}

/// The dropped constraints, in words, leaving out what `description` already says.
fn in_words(dropped: &Map<String, Value>, description: &str) -> Vec<String> {
    let says = |needle: &str| description.to_lowercase().contains(needle);
    let number = |keyword: &str| dropped.get(keyword).and_then(Value::as_u64);
    let mut said = Vec::new();
    match (number("minLength"), number("maxLength")) {
        (Some(min), Some(max)) if !says(&max.to_string()) => {
            said.push(format!("{min} to {max} characters"));
        }
        (None, Some(max)) if !says(&max.to_string()) => {
            said.push(format!("at most {max} characters"));
        }
        (Some(min), None) if min > 0 && !says("empty") && !says(&format!("{min} character")) => {
            said.push(format!("at least {min} character{}", plural(min)));
        }
        _ => {}
    }
    if dropped.get("uniqueItems") == Some(&json!(true))
        && !says("repeat")
        && !says("distinct")
        && !says("once")
    {
        said.push("no value may repeat".into());
    }
    match dropped.get("format").and_then(Value::as_str) {
        Some("email") if !says("email") => said.push("an email address".into()),
        Some("uri") if !says("url") && !says("uri") => said.push("an absolute URL".into()),
        Some("date") if !says("date") => said.push("a date, YYYY-MM-DD".into()),
        Some("date-time") if !says("rfc 3339") => said.push("an RFC 3339 timestamp".into()),
        _ => {}
    }
    for (keyword, relation) in [
        ("exclusiveMinimum", "greater than"),
        ("exclusiveMaximum", "less than"),
    ] {
        if let Some(bound) = dropped.get(keyword) {
            said.push(format!("{relation} {bound}"));
        }
    }
    if let Some(default) = dropped.get("default")
        && !says("default")
    {
        said.push(format!("defaults to {default}"));
    }
    said
}

fn plural(count: u64) -> &'static str {
    if count == 1 { "" } else { "s" }
}
