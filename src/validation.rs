//! JSON Schema validation that reports every failing field by name, for people and models.
//!
//! Shared by the gateway (tool arguments, before anything goes upstream) and the sandbox (incoming
//! REST requests): both validate against schemas that build.rs derived from the spec.

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

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
}

impl SchemaCheck {
    pub fn new(schema: &Value) -> Result<SchemaCheck, String> {
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(schema)
            .map_err(|e| e.to_string())?;
        Ok(SchemaCheck { validator })
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
        Ok(SchemaCheck { validator })
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
