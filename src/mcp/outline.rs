//! The outline of each tool's output schema, checked against the API's success body on every
//! call: the top-level fields the schema requires, and the JSON type of each field it declares.
//!
//! A body that breaks its schema would make strict clients (the Python SDK validates
//! `structuredContent`) raise instead of showing anything, so it becomes a tool error naming the
//! field. Only the outline is checked: the body is split into its top-level members as borrowed
//! JSON text (no tree is built), which keeps the check to a few microseconds; a full check of
//! every nested field would cost more than the call's own parsing.

use crate::catalogue::Catalogue;
use crate::sync::FastMap;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
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

static OUTLINES: LazyLock<FastMap<&'static str, Outline>> = LazyLock::new(|| {
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

/// The JSON type of a value (its text) from its first byte (an integer also counts as a number).
fn type_of(text: &str) -> &'static str {
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
    let not_an_object = || {
        Some(format!(
            "the body is not a JSON object (it starts `{}`)",
            preview(body)
        ))
    };
    let Some(mut members) = Members::of(body.get()) else {
        return not_an_object();
    };
    let fields = &outline.fields;
    let mut present = vec![false; fields.len()];
    let mut wrong_type = None;
    for (name, value) in &mut members {
        let Some(at) = fields.iter().position(|field| field.name == name) else {
            continue;
        };
        present[at] = true;
        let allowed = &fields[at].types;
        if wrong_type.is_some() || allowed.is_empty() {
            continue;
        }
        let found = type_of(value);
        let fits = allowed.contains(&found) || (found == "integer" && allowed.contains(&"number"));
        if !fits {
            wrong_type = Some(format!(
                "`{name}` should be {}, not {found}",
                allowed.join(" or ")
            ));
        }
    }
    if members.malformed {
        return not_an_object();
    }
    wrong_type.or_else(|| {
        fields
            .iter()
            .zip(&present)
            .find(|(field, present)| field.required && !**present)
            .map(|(missing, _)| format!("`{}` is required but missing", missing.name))
    })
}

/// The top-level members of a JSON object, each as its name and its value's text, found by
/// skipping over the text without checking it again: the body is a `RawValue`, so serde_json has
/// just checked that it is JSON. (serde_json's own pass over the members checked every string
/// again: 6.8k instructions for a `get_task`; this costs about a third.) Text that is not an
/// object, or that ends early, stops the iteration and sets `malformed`.
struct Members<'a> {
    text: &'a str,
    at: usize,
    ended: bool,
    malformed: bool,
}

impl<'a> Members<'a> {
    /// None unless `text` starts (after whitespace) with `{`.
    fn of(text: &'a str) -> Option<Members<'a>> {
        let mut members = Members {
            text,
            at: 0,
            ended: false,
            malformed: false,
        };
        members.skip_whitespace();
        (members.peek() == Some(b'{')).then(|| {
            members.at += 1;
            members
        })
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// From an opening quote to just past its closing quote.
    fn skip_string(&mut self) -> Option<()> {
        let bytes = self.text.as_bytes();
        let mut at = self.at + 1;
        loop {
            at += memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
            if bytes[at] == b'"' {
                self.at = at + 1;
                return Some(());
            }
            at += 2;
        }
    }

    /// Past one value: a string, a container (nested to any depth) or a scalar.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.skip_string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                while !matches!(
                    self.peek()?,
                    b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                ) {
                    self.at += 1;
                }
                Some(())
            }
        }
    }

    /// One member, and the `,` after it (a closing `}` is left for `next`); None if malformed.
    fn member(&mut self) -> Option<(Cow<'a, str>, &'a str)> {
        let name_start = self.at;
        if self.peek()? != b'"' {
            return None;
        }
        self.skip_string()?;
        let quoted = &self.text[name_start..self.at];
        // A name with escapes is decoded; none of the schema's names needs one.
        let name = if quoted.contains('\\') {
            Cow::Owned(serde_json::from_str::<String>(quoted).ok()?)
        } else {
            Cow::Borrowed(&quoted[1..quoted.len() - 1])
        };
        self.skip_whitespace();
        if self.peek()? != b':' {
            return None;
        }
        self.at += 1;
        self.skip_whitespace();
        let value_start = self.at;
        self.skip_value()?;
        let value = &self.text[value_start..self.at];
        self.skip_whitespace();
        match self.peek()? {
            b',' => self.at += 1,
            b'}' => {}
            _ => return None,
        }
        Some((name, value))
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = (Cow<'a, str>, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.malformed || self.ended {
            return None;
        }
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.ended = true;
            return None;
        }
        let member = self.member();
        self.malformed = member.is_none();
        member
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

    /// The members found by skipping are the ones serde_json parses, with the same values.
    #[test]
    fn members_are_found_as_serde_json_finds_them() {
        let bodies = [
            "{}",
            " { } ",
            r#"{"id":"tsk_1","n":-1.5e3,"i":42,"t":true,"f":false,"z":null}"#,
            r#"{ "a" : "x\"}{,]" , "b":[{"c":"]"},[1,[2]],"}"], "d":{"e":{"f":"{"}} }"#,
            r#"{"esc\u0061ped":"\\","emoji":"🙂","last":[]}"#,
            "{\n\t\"pretty\": {\n  \"x\": 1\n },\r\n \"y\": \"2\"\n}",
        ];
        for body in bodies {
            let found: Vec<(String, String)> = Members::of(body)
                .unwrap()
                .map(|(name, value)| (name.into_owned(), value.to_string()))
                .collect();
            let parsed: serde_json::Map<String, Value> = serde_json::from_str(body).unwrap();
            let expected: Vec<(String, Value)> = parsed.into_iter().collect();
            let mut found_sorted: Vec<(String, Value)> = found
                .iter()
                .map(|(name, value)| (name.clone(), serde_json::from_str(value).unwrap()))
                .collect();
            found_sorted.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(found_sorted, expected, "{body}");
        }
        assert!(Members::of("[1]").is_none());
        assert!(Members::of("").is_none());
        let mut cut = Members::of(r#"{"a":1,"b":"#).unwrap();
        assert_eq!(cut.next().map(|(n, _)| n.into_owned()), Some("a".into()));
        assert!(cut.next().is_none() && cut.malformed);
    }
}
