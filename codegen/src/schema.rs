//! OpenAPI 3.0 schema → self-contained JSON Schema (2020-12), as MCP clients want it.
//!
//! Every `$ref` is inlined (several model vendors reject `$ref`/`$defs`), `nullable` becomes a type
//! array, 3.0's boolean `exclusiveMinimum`/`exclusiveMaximum` become numbers, and OpenAPI-only
//! keywords are dropped. Constraints and descriptions are kept: they are what a model reads.

use crate::spec::Spec;
use serde_json::{Map, Value, json};

/// Keywords whose meaning is the same in OpenAPI 3.0 and JSON Schema, copied as they are.
const KEPT: &[&str] = &[
    "type",
    "title",
    "description",
    "enum",
    "default",
    "minimum",
    "maximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "required",
    "deprecated",
];

/// Formats that JSON Schema validators and clients know; OpenAPI's own (int64, byte, …) are dropped.
const KEPT_FORMATS: &[&str] = &["date-time", "date", "email", "uri"];

/// Converts `schema` (possibly a `$ref`), failing on recursion: an inlined schema must be finite.
pub fn convert(spec: &Spec, schema: &Value) -> Result<Value, String> {
    convert_at(spec, schema, &mut Vec::new())
}

fn convert_at(spec: &Spec, schema: &Value, stack: &mut Vec<String>) -> Result<Value, String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        if stack.iter().any(|r| r == reference) {
            return Err(format!("{reference} is recursive and cannot be inlined"));
        }
        stack.push(reference.to_string());
        let converted = convert_at(spec, spec.resolve(schema)?, stack);
        stack.pop();
        return converted;
    }
    let source = schema.as_object().ok_or("a schema must be an object")?;
    let mut out = Map::new();
    for key in KEPT {
        if let Some(value) = source.get(*key) {
            out.insert((*key).to_string(), value.clone());
        }
    }
    if let Some(format) = source.get("format").and_then(Value::as_str)
        && KEPT_FORMATS.contains(&format)
    {
        out.insert("format".into(), json!(format));
    }
    if let Some(example) = source.get("example") {
        out.insert("examples".into(), json!([example]));
    }
    for (flag, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if source.get(flag) == Some(&Value::Bool(true))
            && let Some(limit) = out.remove(bound)
        {
            out.insert(flag.into(), limit);
        }
    }
    if let Some(properties) = source.get("properties").and_then(Value::as_object) {
        let mut converted = Map::new();
        for (name, property) in properties {
            let property = convert_at(spec, property, stack).map_err(|e| format!("{name}: {e}"))?;
            converted.insert(name.clone(), property);
        }
        out.insert("properties".into(), Value::Object(converted));
    }
    if let Some(items) = source.get("items") {
        out.insert("items".into(), convert_at(spec, items, stack)?);
    }
    match source.get("additionalProperties") {
        Some(Value::Bool(allowed)) => {
            out.insert("additionalProperties".into(), json!(allowed));
        }
        Some(nested @ Value::Object(_)) => {
            out.insert(
                "additionalProperties".into(),
                convert_at(spec, nested, stack)?,
            );
        }
        _ => {}
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        if let Some(members) = source.get(combinator).and_then(Value::as_array) {
            let members = members
                .iter()
                .map(|member| convert_at(spec, member, stack))
                .collect::<Result<Vec<_>, _>>()?;
            out.insert(combinator.into(), Value::Array(members));
        }
    }
    if source.get("nullable") == Some(&Value::Bool(true)) {
        make_nullable(&mut out);
    }
    Ok(Value::Object(out))
}

fn make_nullable(schema: &mut Map<String, Value>) {
    match schema.get_mut("type") {
        Some(Value::String(single)) => {
            let single = std::mem::take(single);
            schema.insert("type".into(), json!([single, "null"]));
        }
        Some(Value::Array(types)) if !types.contains(&json!("null")) => types.push(json!("null")),
        _ => {}
    }
    if let Some(Value::Array(values)) = schema.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
}

/// Paths (`a.b[]`) of every property, at any depth, that has no description.
pub fn undescribed_properties(schema: &Value, at: &str, found: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let here = if at.is_empty() {
                name.clone()
            } else {
                format!("{at}.{name}")
            };
            if property
                .get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                found.push(here.clone());
            }
            undescribed_properties(property, &here, found);
        }
    }
    if let Some(items) = schema.get("items") {
        undescribed_properties(items, &format!("{at}[]"), found);
    }
    if let Some(Value::Object(_)) = schema.get("additionalProperties") {
        undescribed_properties(&schema["additionalProperties"], &format!("{at}{{}}"), found);
    }
}

/// Paths (`a.b[]`) and values of every enum value, at any depth, that the enum's description does
/// not name in backticks: a model picks a value by what the description says it means.
pub fn unexplained_enum_values(schema: &Value, at: &str, found: &mut Vec<String>) {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let description = schema["description"].as_str().unwrap_or_default();
        for value in values.iter().filter_map(Value::as_str) {
            if !description.contains(&format!("`{value}`")) {
                found.push(format!("{at} `{value}`"));
            }
        }
    }
    for (name, property) in schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let here = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}.{name}")
        };
        unexplained_enum_values(property, &here, found);
    }
    if let Some(items) = schema.get("items") {
        unexplained_enum_values(items, &format!("{at}[]"), found);
    }
}

/// An enum of scopes gets each scope's meaning from the security scheme, the one place scopes
/// are described, rather than from a second copy in its own description.
pub fn explain_scope_enums(schema: &mut Value, scopes: &[(String, String)]) {
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.is_empty()
        && values
            .iter()
            .all(|v| scopes.iter().any(|(name, _)| v == name.as_str()))
    {
        let meanings: Vec<String> = scopes
            .iter()
            .filter(|(name, _)| values.iter().any(|v| v == name.as_str()))
            .map(|(name, meaning)| format!("`{name}`: {}", meaning.trim_end_matches('.')))
            .collect();
        let description = schema["description"].as_str().unwrap_or_default().trim();
        schema["description"] = json!(format!("{description} {}.", meanings.join("; ")));
    }
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        for property in properties.values_mut() {
            explain_scope_enums(property, scopes);
        }
    }
    if let Some(items) = schema.get_mut("items") {
        explain_scope_enums(items, scopes);
    }
}

#[cfg(test)]
mod tests {
    use super::convert;
    use crate::testing::spec_with;
    use serde_json::json;

    #[test]
    fn refs_are_inlined() {
        let spec = spec_with(json!({}));
        let converted = convert(
            &spec,
            &json!({"type": "array", "items": {"$ref": "#/components/schemas/Task"}}),
        )
        .unwrap();
        assert_eq!(
            converted,
            json!({"type": "array", "items": {
                "type": "object",
                "description": "A task.",
                "properties": {"id": {"type": "string", "description": "The task's id."}},
            }})
        );
    }

    #[test]
    fn recursive_refs_are_refused() {
        let mut spec = spec_with(json!({}));
        spec.raw["components"]["schemas"]["Node"] = json!({
            "type": "object",
            "properties": {"child": {"$ref": "#/components/schemas/Node"}},
        });
        let error = convert(&spec, &json!({"$ref": "#/components/schemas/Node"})).unwrap_err();
        assert_eq!(
            error,
            "child: #/components/schemas/Node is recursive and cannot be inlined"
        );
    }

    #[test]
    fn nullable_becomes_a_type_array_and_a_null_enum_value() {
        let spec = spec_with(json!({}));
        let converted = convert(
            &spec,
            &json!({"type": "string", "enum": ["a", "b"], "nullable": true}),
        )
        .unwrap();
        assert_eq!(
            converted,
            json!({"type": ["string", "null"], "enum": ["a", "b", null]})
        );
    }

    #[test]
    fn openapi_3_0_keywords_become_json_schema_ones() {
        let spec = spec_with(json!({}));
        let converted = convert(
            &spec,
            &json!({
                "type": "integer",
                "format": "int64",
                "minimum": 0,
                "exclusiveMinimum": true,
                "maximum": 10,
                "exclusiveMaximum": false,
                "example": 5,
                "xml": {"name": "n"},
                "readOnly": true,
            }),
        )
        .unwrap();
        // int64 is OpenAPI's own format; `xml` and `readOnly` are OpenAPI-only keywords.
        assert_eq!(
            converted,
            json!({"type": "integer", "exclusiveMinimum": 0, "maximum": 10, "examples": [5]})
        );
        let converted = convert(&spec, &json!({"type": "string", "format": "date-time"})).unwrap();
        assert_eq!(converted, json!({"type": "string", "format": "date-time"}));
    }

    #[test]
    fn property_order_is_the_spec_s() {
        let spec = spec_with(json!({}));
        let converted = convert(
            &spec,
            &json!({"type": "object", "properties": {"z": {"type": "string"}, "a": {"type": "string"}}}),
        )
        .unwrap();
        let names: Vec<&String> = converted["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(names, ["z", "a"]);
    }
}
