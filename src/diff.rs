//! `tools diff`: every change between two tool catalogues, classified as breaking or compatible.
//!
//! Breaking is judged from an existing caller's side: a call that worked against the old catalogue
//! may fail against the new one (input), or a field it read may be gone (output). When a change
//! cannot be proven safe (a pattern rewritten), it is breaking.

use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Breaking,
    Compatible,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    ToolRemoved,
    RequiredArgumentAdded,
    ArgumentRemoved,
    TypeChanged,
    EnumValueRemoved,
    ScopeAdded,
    OutputFieldRemoved,
    ToolAdded,
    OptionalArgumentAdded,
    DescriptionChanged,
    EnumValueAdded,
    ScopeRemoved,
    OutputFieldAdded,
    TypeWidened,
    AnnotationChanged,
}

impl ChangeKind {
    pub fn severity(self) -> Severity {
        use ChangeKind::*;
        match self {
            ToolRemoved
            | RequiredArgumentAdded
            | ArgumentRemoved
            | TypeChanged
            | EnumValueRemoved
            | ScopeAdded
            | OutputFieldRemoved => Severity::Breaking,
            ToolAdded
            | OptionalArgumentAdded
            | DescriptionChanged
            | EnumValueAdded
            | ScopeRemoved
            | OutputFieldAdded
            | TypeWidened
            | AnnotationChanged => Severity::Compatible,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub severity: Severity,
    pub kind: ChangeKind,
    pub tool: String,
    /// Where in the tool: `input.files[].filename`, `output.next_cursor`, `_meta.scopes`, ….
    pub path: String,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub breaking: usize,
    pub compatible: usize,
    pub changes: Vec<Change>,
}

impl Report {
    pub fn is_breaking(&self) -> bool {
        self.breaking > 0
    }

    /// The report for people: breaking changes first, one line each.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for change in &self.changes {
            let label = match change.severity {
                Severity::Breaking => "BREAKING  ",
                Severity::Compatible => "compatible",
            };
            text.push_str(&format!(
                "{label}  {}  {}: {}\n",
                change.tool, change.path, change.detail
            ));
        }
        text.push_str(&format!(
            "{} breaking, {} compatible change(s){}\n",
            self.breaking,
            self.compatible,
            if self.is_breaking() {
                ": existing callers may break"
            } else {
                ""
            }
        ));
        text
    }
}

/// Reads a catalogue: a JSON array of tools, or a `tools/list` result `{"tools": [...]}`.
pub fn parse_catalogue(text: &str) -> Result<BTreeMap<String, Value>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let tools = match &value {
        Value::Array(tools) => tools,
        Value::Object(object) => object
            .get("tools")
            .and_then(Value::as_array)
            .ok_or("expected an array of tools or an object with a `tools` array")?,
        _ => return Err("expected an array of tools or an object with a `tools` array".into()),
    };
    let mut by_name = BTreeMap::new();
    for (index, tool) in tools.iter().enumerate() {
        let name = tool["name"]
            .as_str()
            .ok_or_else(|| format!("tool #{index} has no name"))?;
        if by_name.insert(name.to_string(), tool.clone()).is_some() {
            return Err(format!("tool {name} appears twice"));
        }
    }
    Ok(by_name)
}

pub fn diff(old: &BTreeMap<String, Value>, new: &BTreeMap<String, Value>) -> Report {
    let mut changes = Vec::new();
    for (name, old_tool) in old {
        let mut out = Changes {
            tool: name,
            list: &mut changes,
        };
        match new.get(name) {
            None => out.push(
                ChangeKind::ToolRemoved,
                "",
                "the tool no longer exists".into(),
            ),
            Some(new_tool) => compare_tool(old_tool, new_tool, &mut out),
        }
    }
    for name in new.keys().filter(|name| !old.contains_key(*name)) {
        let mut out = Changes {
            tool: name,
            list: &mut changes,
        };
        out.push(ChangeKind::ToolAdded, "", "a new tool".into());
    }
    changes.sort_by(|a, b| (a.severity, &a.tool).cmp(&(b.severity, &b.tool)));
    let breaking = changes
        .iter()
        .filter(|c| c.severity == Severity::Breaking)
        .count();
    Report {
        breaking,
        compatible: changes.len() - breaking,
        changes,
    }
}

struct Changes<'a> {
    tool: &'a str,
    list: &'a mut Vec<Change>,
}

impl Changes<'_> {
    fn push(&mut self, kind: ChangeKind, path: &str, detail: String) {
        self.list.push(Change {
            severity: kind.severity(),
            kind,
            tool: self.tool.to_string(),
            path: path.to_string(),
            detail,
        });
    }
}

const SCOPES_META: &str = "ai.trainar/requiredScopes";

fn compare_tool(old: &Value, new: &Value, out: &mut Changes) {
    for field in ["title", "description"] {
        if old[field] != new[field] {
            out.push(
                ChangeKind::DescriptionChanged,
                field,
                format!("the tool's {field} changed"),
            );
        }
    }
    let scopes = |tool: &Value| -> BTreeSet<String> {
        tool["_meta"][SCOPES_META]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    let (old_scopes, new_scopes) = (scopes(old), scopes(new));
    for added in new_scopes.difference(&old_scopes) {
        out.push(
            ChangeKind::ScopeAdded,
            "scopes",
            format!("now also requires `{added}`"),
        );
    }
    for removed in old_scopes.difference(&new_scopes) {
        out.push(
            ChangeKind::ScopeRemoved,
            "scopes",
            format!("no longer requires `{removed}`"),
        );
    }
    if old["annotations"] != new["annotations"] {
        let detail = format!(
            "annotations {} → {}",
            old["annotations"], new["annotations"]
        );
        out.push(ChangeKind::AnnotationChanged, "annotations", detail);
    }
    compare_input(&old["inputSchema"], &new["inputSchema"], "input", out);
    compare_output(&old["outputSchema"], &new["outputSchema"], "output", out);
}

fn types_of(schema: &Value) -> BTreeSet<String> {
    match &schema["type"] {
        Value::String(single) => BTreeSet::from([single.clone()]),
        Value::Array(many) => many
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => BTreeSet::new(), // no `type`: anything goes
    }
}

/// Whether `new` accepts every type `old` accepted (an absent `type` accepts all).
fn accepts_all_types(old: &Value, new: &Value) -> bool {
    let (old_types, new_types) = (types_of(old), types_of(new));
    if new_types.is_empty() {
        return true;
    }
    if old_types.is_empty() {
        return false;
    }
    old_types
        .iter()
        .all(|t| new_types.contains(t) || (t == "integer" && new_types.contains("number")))
}

fn property_path(at: &str, name: &str) -> String {
    format!("{at}.{name}")
}

fn required_set(schema: &Value) -> BTreeSet<String> {
    schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

fn properties(schema: &Value) -> BTreeMap<String, Value> {
    schema["properties"]
        .as_object()
        .map(|m| m.clone().into_iter().collect())
        .unwrap_or_default()
}

/// Input side: what a caller sends. Narrowing anything is breaking.
fn compare_input(old: &Value, new: &Value, at: &str, out: &mut Changes) {
    if !accepts_all_types(old, new) {
        let detail = format!(
            "type {} → {}",
            json_or_any(&old["type"]),
            json_or_any(&new["type"])
        );
        out.push(ChangeKind::TypeChanged, at, detail);
    } else if types_of(old) != types_of(new) {
        let detail = format!(
            "type {} → {}",
            json_or_any(&old["type"]),
            json_or_any(&new["type"])
        );
        out.push(ChangeKind::TypeWidened, at, detail);
    }
    compare_enums(old, new, at, true, out);
    compare_constraints(old, new, at, out);
    if old["description"] != new["description"] && at != "input" {
        out.push(
            ChangeKind::DescriptionChanged,
            at,
            "the argument's description changed".into(),
        );
    }

    let (old_props, new_props) = (properties(old), properties(new));
    let (old_required, new_required) = (required_set(old), required_set(new));
    for (name, old_prop) in &old_props {
        let here = property_path(at, name);
        match new_props.get(name) {
            None => out.push(
                ChangeKind::ArgumentRemoved,
                &here,
                format!("argument `{name}` was removed"),
            ),
            Some(new_prop) => {
                if new_required.contains(name) && !old_required.contains(name) {
                    out.push(
                        ChangeKind::RequiredArgumentAdded,
                        &here,
                        format!("`{name}` is now required"),
                    );
                } else if old_required.contains(name) && !new_required.contains(name) {
                    out.push(
                        ChangeKind::TypeWidened,
                        &here,
                        format!("`{name}` is now optional"),
                    );
                }
                compare_input(old_prop, new_prop, &here, out);
            }
        }
    }
    for name in new_props
        .keys()
        .filter(|name| !old_props.contains_key(*name))
    {
        let here = property_path(at, name);
        if new_required.contains(name) {
            out.push(
                ChangeKind::RequiredArgumentAdded,
                &here,
                format!("new required argument `{name}`"),
            );
        } else {
            out.push(
                ChangeKind::OptionalArgumentAdded,
                &here,
                format!("new optional argument `{name}`"),
            );
        }
    }
    if old["additionalProperties"] != json!(false) && new["additionalProperties"] == json!(false) {
        out.push(
            ChangeKind::TypeChanged,
            at,
            "no longer accepts extra properties".into(),
        );
    }
    if !old["items"].is_null() || !new["items"].is_null() {
        compare_input(&old["items"], &new["items"], &format!("{at}[]"), out);
    }
}

/// Output side: what a caller reads. Losing a field, or a field changing type, is breaking.
fn compare_output(old: &Value, new: &Value, at: &str, out: &mut Changes) {
    if types_of(old) != types_of(new) {
        let detail = format!(
            "type {} → {}",
            json_or_any(&old["type"]),
            json_or_any(&new["type"])
        );
        out.push(ChangeKind::TypeChanged, at, detail);
    }
    compare_enums(old, new, at, false, out);
    let (old_props, new_props) = (properties(old), properties(new));
    let (old_required, new_required) = (required_set(old), required_set(new));
    for (name, old_prop) in &old_props {
        let here = property_path(at, name);
        match new_props.get(name) {
            None => out.push(
                ChangeKind::OutputFieldRemoved,
                &here,
                format!("field `{name}` was removed"),
            ),
            Some(new_prop) => {
                if old_required.contains(name) && !new_required.contains(name) {
                    out.push(
                        ChangeKind::OutputFieldRemoved,
                        &here,
                        format!("`{name}` may now be absent"),
                    );
                }
                compare_output(old_prop, new_prop, &here, out);
            }
        }
    }
    for name in new_props
        .keys()
        .filter(|name| !old_props.contains_key(*name))
    {
        out.push(
            ChangeKind::OutputFieldAdded,
            &property_path(at, name),
            format!("new field `{name}`"),
        );
    }
    if !old["items"].is_null() || !new["items"].is_null() {
        compare_output(&old["items"], &new["items"], &format!("{at}[]"), out);
    }
}

fn compare_enums(old: &Value, new: &Value, at: &str, input: bool, out: &mut Changes) {
    let values = |schema: &Value| -> Option<Vec<Value>> { schema["enum"].as_array().cloned() };
    match (values(old), values(new)) {
        (Some(old_values), Some(new_values)) => {
            for removed in old_values.iter().filter(|v| !new_values.contains(v)) {
                let kind = if input {
                    ChangeKind::EnumValueRemoved
                } else {
                    ChangeKind::DescriptionChanged
                };
                out.push(kind, at, format!("enum value {removed} removed"));
            }
            for added in new_values.iter().filter(|v| !old_values.contains(v)) {
                out.push(
                    ChangeKind::EnumValueAdded,
                    at,
                    format!("enum value {added} added"),
                );
            }
        }
        (None, Some(_)) if input => out.push(
            ChangeKind::TypeChanged,
            at,
            "now restricted to an enum".into(),
        ),
        (Some(_), None) if input => out.push(
            ChangeKind::TypeWidened,
            at,
            "no longer restricted to an enum".into(),
        ),
        _ => {}
    }
}

/// Lower bounds that narrow when they rise, upper bounds that narrow when they fall.
const LOWER_BOUNDS: &[&str] = &[
    "minimum",
    "exclusiveMinimum",
    "minLength",
    "minItems",
    "minProperties",
];
const UPPER_BOUNDS: &[&str] = &[
    "maximum",
    "exclusiveMaximum",
    "maxLength",
    "maxItems",
    "maxProperties",
];

fn compare_constraints(old: &Value, new: &Value, at: &str, out: &mut Changes) {
    for (bounds, narrows) in [(LOWER_BOUNDS, true), (UPPER_BOUNDS, false)] {
        for bound in bounds {
            let (before, after) = (old[*bound].as_f64(), new[*bound].as_f64());
            let narrowed = match (before, after) {
                (None, Some(_)) => true,
                (Some(b), Some(a)) => {
                    if narrows {
                        a > b
                    } else {
                        a < b
                    }
                }
                _ => false,
            };
            let widened = match (before, after) {
                (Some(_), None) => true,
                (Some(b), Some(a)) => {
                    if narrows {
                        a < b
                    } else {
                        a > b
                    }
                }
                _ => false,
            };
            let detail = format!(
                "{bound} {} → {}",
                json_or_any(&old[*bound]),
                json_or_any(&new[*bound])
            );
            if narrowed {
                out.push(ChangeKind::TypeChanged, at, detail);
            } else if widened {
                out.push(ChangeKind::TypeWidened, at, detail);
            }
        }
    }
    for keyword in ["pattern", "format", "multipleOf"] {
        match (&old[keyword], &new[keyword]) {
            (before, after) if before == after => {}
            (before, Value::Null) => {
                out.push(
                    ChangeKind::TypeWidened,
                    at,
                    format!("{keyword} {before} removed"),
                );
            }
            (before, after) => out.push(
                ChangeKind::TypeChanged,
                at,
                format!("{keyword} {} → {after}", json_or_any(before)),
            ),
        }
    }
    if old["uniqueItems"] != json!(true) && new["uniqueItems"] == json!(true) {
        out.push(
            ChangeKind::TypeChanged,
            at,
            "items must now be unique".into(),
        );
    }
}

fn json_or_any(value: &Value) -> String {
    if value.is_null() {
        "(none)".to_string()
    } else {
        value.to_string()
    }
}
