//! JSON Schema validation that reports every failing field by name, for people and models.
//!
//! Shared by the gateway (tool arguments, before anything goes upstream) and the sandbox (incoming
//! REST requests): both validate against schemas that build.rs derived from the spec.

use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value};

/// One failing field: `files[2].filename`, and what was expected of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// The most a client-written pattern may compile to, in bytes (`new_linear_time`).
pub const PATTERN_SIZE_LIMIT: usize = 256 * 1024;

/// A compiled schema.
pub struct SchemaCheck {
    validator: jsonschema::Validator,
    /// The schema itself: `strip_optional_nulls` walks it beside the instance.
    schema: Value,
}

impl SchemaCheck {
    pub fn new(schema: &Value) -> Result<SchemaCheck, String> {
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(schema)
            .map_err(|e| e.to_string())?;
        Ok(SchemaCheck {
            validator,
            schema: schema.clone(),
        })
    }

    /// Removes every `null` given for an optional property whose schema does not accept null, at
    /// any depth: models (and OpenAI's strict mode, which types optional properties `[T, "null"]`)
    /// send null to mean "not given", and the API should see exactly what omitting it sends.
    /// Returns the fields where null was given for a required property, which stays an error.
    pub fn strip_optional_nulls(&self, instance: &mut Value) -> Vec<String> {
        let mut required_nulls = Vec::new();
        strip_nulls(&self.schema, instance, "", &mut required_nulls);
        required_nulls
    }

    /// `problems_with_nulls_omitted` for an object's fields (a tool's arguments), in place.
    pub fn field_problems_with_nulls_omitted(
        &self,
        fields: &mut Map<String, Value>,
    ) -> Vec<FieldProblem> {
        let mut instance = Value::Object(std::mem::take(fields));
        let problems = self.problems_with_nulls_omitted(&mut instance);
        if let Value::Object(stripped) = instance {
            *fields = stripped;
        }
        problems
    }

    /// `strip_optional_nulls`, then `problems`; a required field given as null reads as missing.
    pub fn problems_with_nulls_omitted(&self, instance: &mut Value) -> Vec<FieldProblem> {
        let required_nulls = self.strip_optional_nulls(instance);
        let mut problems = self.problems(instance);
        for problem in &mut problems {
            if required_nulls.contains(&problem.field) {
                problem.message = "is required, and null is not a value for it".to_string();
            }
        }
        problems.dedup();
        problems
    }

    /// For a schema a client wrote (a skill's `input_schema`): every `pattern` and
    /// `patternProperties` key runs on a linear-time engine, so no instance can make matching
    /// backtrack; a pattern that needs backtracking (lookaround, backreferences) does not
    /// compile, nor one whose compiled program would exceed `PATTERN_SIZE_LIMIT` bytes.
    pub fn new_linear_time(schema: &Value) -> Result<SchemaCheck, String> {
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .with_pattern_options(
                jsonschema::PatternOptions::regex()
                    .size_limit(PATTERN_SIZE_LIMIT)
                    .dfa_size_limit(PATTERN_SIZE_LIMIT),
            )
            .build(schema)
            .map_err(|e| e.to_string())?;
        Ok(SchemaCheck {
            validator,
            schema: schema.clone(),
        })
    }

    /// Every problem of `instance`, in a stable order; empty when it is valid.
    pub fn problems(&self, instance: &Value) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        for error in self.validator.iter_errors(instance) {
            let at = field_name(error.instance_path().as_str());
            match error.kind() {
                ValidationErrorKind::Required { property } => problems.push(FieldProblem {
                    field: join(&at, property.as_str().unwrap_or_default()),
                    message: "is required".to_string(),
                }),
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for name in unexpected {
                        problems.push(FieldProblem {
                            field: join(&at, name),
                            message: "is not a known field".to_string(),
                        });
                    }
                }
                ValidationErrorKind::Enum { options } => {
                    let allowed: Vec<String> = options
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(Value::to_string)
                        .collect();
                    problems.push(FieldProblem {
                        field: if at.is_empty() {
                            "(request)".to_string()
                        } else {
                            at
                        },
                        message: format!(
                            "{} is not one of: {}",
                            error.instance(),
                            allowed.join(", ")
                        ),
                    });
                }
                _ => problems.push(FieldProblem {
                    field: if at.is_empty() {
                        "(request)".to_string()
                    } else {
                        at
                    },
                    message: error.to_string(),
                }),
            }
        }
        problems.sort_by(|a, b| a.field.cmp(&b.field));
        problems.dedup();
        problems
    }
}

fn strip_nulls(schema: &Value, instance: &mut Value, at: &str, required_nulls: &mut Vec<String>) {
    match instance {
        Value::Object(fields) => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            let required = |name: &str| {
                schema["required"]
                    .as_array()
                    .is_some_and(|names| names.iter().any(|n| n == name))
            };
            fields.retain(|name, value| {
                !(value.is_null()
                    && !required(name)
                    && properties.get(name).is_some_and(|p| !accepts_null(p)))
            });
            for (name, value) in fields.iter_mut() {
                let Some(property) = properties.get(name) else {
                    continue;
                };
                let here = join(at, name);
                if value.is_null() {
                    if !accepts_null(property) {
                        required_nulls.push(here);
                    }
                } else {
                    strip_nulls(property, value, &here, required_nulls);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter_mut().enumerate() {
                    strip_nulls(item_schema, item, &format!("{at}[{index}]"), required_nulls);
                }
            }
        }
        _ => {}
    }
}

/// Whether null is a valid value of `schema`: it names no type, or names null among its types.
fn accepts_null(schema: &Value) -> bool {
    match schema.get("type") {
        None => schema
            .get("enum")
            .and_then(Value::as_array)
            .is_none_or(|values| values.contains(&Value::Null)),
        Some(Value::String(single)) => single == "null",
        Some(Value::Array(types)) => types.iter().any(|t| t == "null"),
        Some(_) => false,
    }
}

/// `/files/2/filename` → `files[2].filename`.
fn field_name(pointer: &str) -> String {
    let mut name = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.chars().all(|c| c.is_ascii_digit()) && !name.is_empty() {
            name.push_str(&format!("[{segment}]"));
        } else {
            if !name.is_empty() {
                name.push('.');
            }
            name.push_str(&segment);
        }
    }
    name
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_every_failing_field() {
        let check = SchemaCheck::new(&json!({
            "type": "object",
            "properties": {
                "title": {"type": "string", "minLength": 1},
                "files": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}}
            },
            "required": ["title"],
            "additionalProperties": false
        }))
        .unwrap();
        let problems = check.problems(&json!({"files": [{"n": 1}, {"n": "x"}], "extra": 1}));
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["extra", "files[1].n", "title"]);
        assert!(check.problems(&json!({"title": "ok"})).is_empty());
    }

    #[test]
    fn null_for_an_optional_field_is_omitted_at_any_depth() {
        let check = SchemaCheck::new(&json!({
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "cursor": {"type": "string"},
                "note": {"type": ["string", "null"]},
                "steps": {"type": "array", "items": {"type": "object",
                    "properties": {"title": {"type": "string"}, "hint": {"type": "string"}},
                    "required": ["title"], "additionalProperties": false}}
            },
            "required": ["id"],
            "additionalProperties": false
        }))
        .unwrap();
        let mut instance = json!({"id": "t_1", "cursor": null, "note": null,
            "steps": [{"title": "a", "hint": null}, {"title": null}]});
        let problems = check.problems_with_nulls_omitted(&mut instance);
        // The spec's own nullable field keeps its null: there, null is a value.
        assert_eq!(
            instance,
            json!({"id": "t_1", "note": null, "steps": [{"title": "a"}, {"title": null}]})
        );
        assert_eq!(
            problems,
            [FieldProblem {
                field: "steps[1].title".into(),
                message: "is required, and null is not a value for it".into()
            }]
        );
        let problems = check.problems_with_nulls_omitted(&mut json!({"id": null}));
        assert_eq!(problems[0].field, "id");
        assert_eq!(
            problems[0].message,
            "is required, and null is not a value for it"
        );
    }

    #[test]
    fn an_enum_problem_lists_every_allowed_value() {
        let check = SchemaCheck::new(&json!({"type": "object", "properties": {
            "status": {"type": "string", "enum": ["open", "in_progress", "done", "cancelled"]}}}))
        .unwrap();
        let problems = check.problems(&json!({"status": "later"}));
        assert_eq!(
            problems[0].message,
            r#""later" is not one of: "open", "in_progress", "done", "cancelled""#
        );
    }
}
