//! The outline of each tool's output schema, checked against the API's success body on every
//! call: the top-level fields the schema requires, and the JSON type of each field it declares.
//!
//! A body that breaks its schema would make strict clients (the Python SDK validates
//! `structuredContent`) raise instead of showing anything, so it becomes a tool error naming the
//! field. Only the outline is checked: the body is split into its top-level members as borrowed
//! JSON text (no tree is built), which keeps the check to a few microseconds; a full check of
//! every nested field would cost more than the call's own parsing.

use crate::catalogue::Catalogue;
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::LazyLock;

/// JSON types, as a schema names them.
const TYPES: [&str; 7] = [
    "object", "array", "string", "number", "integer", "boolean", "null",
];

struct Outline {
    /// The required fields first, in the schema's order, then the other declared ones. A body has
    /// about ten top-level members: a scan of this short list costs less than hashing each name.
    fields: Vec<Field>,
}

struct Field {
    name: String,
    required: bool,
    /// The types the schema allows (empty: any).
    types: Vec<&'static str>,
}

static OUTLINES: LazyLock<HashMap<&'static str, Outline>> = LazyLock::new(|| {
    Catalogue::get()
        .tools()
        .iter()
        .filter_map(|tool| {
            Some((
                tool.name(),
                Outline::of(tool.definition.get("outputSchema")?),
            ))
        })
        .collect()
});

impl Outline {
    fn of(schema: &Value) -> Outline {
        let properties = schema["properties"].as_object();
        let types_of = |name: &str| {
            properties
                .and_then(|properties| properties.get(name))
                .map(allowed_types)
                .unwrap_or_default()
        };
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let optional = properties
            .into_iter()
            .flat_map(|properties| properties.keys())
            .map(String::as_str)
            .filter(|name| !required.contains(name));
        let fields = required
            .iter()
            .map(|name| (*name, true))
            .chain(optional.map(|name| (name, false)))
            .map(|(name, required)| Field {
                name: name.to_string(),
                required,
                types: types_of(name),
            })
            .collect();
        Outline { fields }
    }
}

fn allowed_types(property: &Value) -> Vec<&'static str> {
    let named: Vec<&str> = match &property["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    TYPES.into_iter().filter(|t| named.contains(t)).collect()
}

/// The JSON type of a value from its first byte (an integer also counts as a number).
fn type_of(value: &RawValue) -> &'static str {
    let text = value.get();
    match text.as_bytes().first() {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ if text.contains(['.', 'e', 'E']) => "number",
        _ => "integer",
    }
}

/// What is wrong with `body` as the success of `tool`, naming the field; None when its outline
/// fits (or the tool declares no output schema). One pass over the body's top-level members as
/// borrowed text: no map, no tree.
pub fn problem(tool: &str, body: &RawValue) -> Option<String> {
    let outline = OUTLINES.get(tool)?;
    let mut reader = serde_json::Deserializer::from_str(body.get());
    match serde::Deserializer::deserialize_map(&mut reader, Members { outline }) {
        Ok(problem) => problem,
        Err(_) => Some(format!(
            "the body is not a JSON object (it starts `{}`)",
            preview(body)
        )),
    }
}

/// A member's name, borrowed from the body unless it has escapes.
#[derive(serde::Deserialize)]
struct MemberName<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

/// Visits the top-level members once: the first member of a wrong type, else the first required
/// member missing.
struct Members<'o> {
    outline: &'o Outline,
}

impl<'de> serde::de::Visitor<'de> for Members<'_> {
    type Value = Option<String>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<Option<String>, A::Error> {
        let fields = &self.outline.fields;
        let mut present = vec![false; fields.len()];
        let mut wrong_type = None;
        while let Some(MemberName(name)) = map.next_key::<MemberName<'de>>()? {
            let value: &RawValue = map.next_value()?;
            let Some(at) = fields.iter().position(|field| field.name == name) else {
                continue;
            };
            present[at] = true;
            let allowed = &fields[at].types;
            if wrong_type.is_some() || allowed.is_empty() {
                continue;
            }
            let found = type_of(value);
            let fits =
                allowed.contains(&found) || (found == "integer" && allowed.contains(&"number"));
            if !fits {
                wrong_type = Some(format!(
                    "`{name}` should be {}, not {found}",
                    allowed.join(" or ")
                ));
            }
        }
        Ok(wrong_type.or_else(|| {
            fields
                .iter()
                .zip(&present)
                .find(|(field, present)| field.required && !**present)
                .map(|(missing, _)| format!("`{}` is required but missing", missing.name))
        }))
    }
}

fn preview(body: &RawValue) -> String {
    body.get().chars().take(20).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    #[test]
    fn a_body_that_fits_its_outline_passes_and_one_that_breaks_it_names_the_field() {
        let outline = OUTLINES
            .get("get_task")
            .expect("get_task declares an output schema");
        assert!(outline.fields.iter().any(|f| f.name == "id" && f.required));
        // Every required field, each with a value of its first allowed type: it fits.
        let sample = |allowed: &[&str]| match allowed.first().copied() {
            Some("object") => "{}",
            Some("array") => "[]",
            Some("integer" | "number") => "1",
            Some("boolean") => "true",
            Some("null") => "null",
            _ => "\"x\"",
        };
        let members: Vec<String> = outline
            .fields
            .iter()
            .filter(|field| field.required)
            .map(|field| format!("\"{}\":{}", field.name, sample(&field.types)))
            .collect();
        let fitting = format!("{{{}}}", members.join(","));
        assert_eq!(problem("get_task", &raw(&fitting)), None, "{fitting}");
        let wrong_type = problem("get_task", &raw(r#"{"id":42,"title":"t"}"#)).unwrap();
        assert!(
            wrong_type.contains("`id`") && wrong_type.contains("not integer"),
            "{wrong_type}"
        );
        let not_an_object = problem("get_task", &raw("[1,2]")).unwrap();
        assert!(
            not_an_object.contains("not a JSON object"),
            "{not_an_object}"
        );
        let missing = problem("list_tasks", &raw(r#"{"next_cursor":null}"#)).unwrap();
        assert!(missing.contains("`data` is required"), "{missing}");
    }
}
