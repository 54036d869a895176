//! Loading and linting the OpenAPI document.
//!
//! The document is read twice: as `openapiv3::OpenAPI` for progenitor, and as raw JSON for our own
//! walks (extensions and schemas are easier to carry over untouched from JSON). The lint runs before
//! progenitor, because progenitor panics without naming the operation on the shapes it cannot handle.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

pub const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

pub struct Spec {
    pub raw: Value,
    pub typed: openapiv3::OpenAPI,
}

/// One operation as written in the document, before any interpretation.
pub struct RawOperation<'a> {
    pub id: String,
    /// Upper-case HTTP method.
    pub method: String,
    pub path: String,
    pub op: &'a Value,
    /// Parameters declared on the path item, shared by all its operations.
    pub path_item_parameters: &'a [Value],
}

impl Spec {
    pub fn load(path: &Path) -> Result<Spec, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        let raw: Value =
            serde_norway::from_str(&text).map_err(|e| format!("not valid YAML: {e}"))?;
        Spec::from_raw(raw)
    }

    /// The document as JSON (what `load` makes of the YAML), typed for progenitor too.
    pub fn from_raw(raw: Value) -> Result<Spec, String> {
        let typed: openapiv3::OpenAPI = serde_json::from_value(raw.clone())
            .map_err(|e| format!("not a valid OpenAPI 3.0 document: {e}"))?;
        Ok(Spec { raw, typed })
    }

    /// Every operation, in document order.
    pub fn operations(&self) -> Vec<RawOperation<'_>> {
        let mut found = Vec::new();
        let Some(paths) = self.raw["paths"].as_object() else {
            return found;
        };
        for (path, item) in paths {
            let shared = item["parameters"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    found.push(RawOperation {
                        id: op["operationId"].as_str().unwrap_or_default().to_string(),
                        method: method.to_uppercase(),
                        path: path.clone(),
                        op,
                        path_item_parameters: shared,
                    });
                }
            }
        }
        found
    }

    /// Follows a `$ref` (transitively) within this document.
    pub fn resolve<'a>(&'a self, value: &'a Value) -> Result<&'a Value, String> {
        let mut current = value;
        for _ in 0..32 {
            let Some(reference) = current.get("$ref").and_then(Value::as_str) else {
                return Ok(current);
            };
            let pointer = reference
                .strip_prefix('#')
                .ok_or_else(|| format!("only local $refs are supported, found {reference}"))?;
            current = self
                .raw
                .pointer(pointer)
                .ok_or_else(|| format!("$ref {reference} points at nothing"))?;
        }
        Err("a $ref chain is longer than 32 steps".to_string())
    }

    /// The oauth2 scheme that lists the scope catalogue, and its name.
    pub fn scope_scheme(&self) -> Result<(&str, &Value), String> {
        let schemes = self.raw["components"]["securitySchemes"]
            .as_object()
            .ok_or("components.securitySchemes is missing")?;
        let mut oauth = schemes.iter().filter(|(_, s)| s["type"] == "oauth2");
        match (oauth.next(), oauth.next()) {
            (Some((name, scheme)), None) => Ok((name.as_str(), scheme)),
            _ => Err("exactly one oauth2 security scheme must list the scope catalogue".into()),
        }
    }

    /// The scope catalogue: name → description, in document order.
    pub fn scopes(&self) -> Result<Vec<(String, String)>, String> {
        let (name, scheme) = self.scope_scheme()?;
        let flows = scheme["flows"]
            .as_object()
            .ok_or_else(|| format!("security scheme {name} has no flows"))?;
        let mut seen = BTreeSet::new();
        let mut scopes = Vec::new();
        for flow in flows.values() {
            for (scope, description) in flow["scopes"].as_object().into_iter().flatten() {
                if seen.insert(scope.clone()) {
                    let description = description.as_str().unwrap_or_default().to_string();
                    scopes.push((scope.clone(), description));
                }
            }
        }
        Ok(scopes)
    }

    /// The scopes an operation requires, from its `security` requirement on the oauth2 scheme.
    pub fn required_scopes(&self, op: &RawOperation) -> Result<Vec<String>, String> {
        let (scheme, _) = self.scope_scheme()?;
        let security = op.op.get("security").unwrap_or(&self.raw["security"]);
        let requirements = security.as_array().map(Vec::as_slice).unwrap_or(&[]);
        if requirements.len() > 1 {
            return Err(format!(
                "{}: alternative security requirements are not supported; list one requirement",
                op.id
            ));
        }
        let scopes = requirements
            .first()
            .and_then(|r| r.get(scheme))
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok(scopes)
    }

    /// Checks the shapes that progenitor and the catalogue rely on, naming the operation at fault.
    pub fn lint(&self) -> Result<(), String> {
        let version = self.raw["openapi"].as_str().unwrap_or_default();
        if !version.starts_with("3.0.") {
            return Err(format!(
                "openapi: {version:?}: only 3.0.x is supported (progenitor)"
            ));
        }
        let catalogue: BTreeSet<String> = self.scopes()?.into_iter().map(|(s, _)| s).collect();
        let mut problems = Vec::new();
        let mut ids = BTreeSet::new();
        for op in self.operations() {
            let at = if op.id.is_empty() {
                format!("{} {}", op.method, op.path)
            } else {
                op.id.clone()
            };
            if op.id.is_empty() {
                problems.push(format!("{at}: no operationId"));
            } else if !ids.insert(op.id.clone()) {
                problems.push(format!("{at}: operationId is not unique"));
            } else if !is_tool_name(&op.id) {
                problems.push(format!(
                    "{at}: operationId must match ^[A-Za-z0-9_-]{{1,64}}$"
                ));
            }
            if let Err(problem) = self.lint_operation(&op, &catalogue) {
                problems.push(format!("{at}: {problem}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} problem(s):\n  {}",
                problems.len(),
                problems.join("\n  ")
            ))
        }
    }

    fn lint_operation(
        &self,
        op: &RawOperation,
        catalogue: &BTreeSet<String>,
    ) -> Result<(), String> {
        if let Some(body) = op.op.get("requestBody") {
            let body = self.resolve(body)?;
            let types: Vec<&String> = body["content"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .collect();
            if types.as_slice() != [&"application/json".to_string()] {
                return Err(format!(
                    "the request body must have exactly one content type, application/json; found {types:?}"
                ));
            }
        }
        let responses = op.op["responses"].as_object().ok_or("no responses")?;
        let mut success = BTreeSet::new();
        let mut failure = BTreeSet::new();
        for (status, response) in responses {
            let response = self.resolve(response)?;
            let schema = response["content"]["application/json"]["schema"].to_string();
            if status.starts_with('2') {
                success.insert(schema);
            } else if status.starts_with('4') || status.starts_with('5') {
                failure.insert(schema);
            } else {
                return Err(format!(
                    "response {status:?}: use explicit 2xx/4xx/5xx codes"
                ));
            }
        }
        if success.len() != 1 || success.contains("null") {
            return Err("exactly one JSON success body type is required".into());
        }
        if failure.len() > 1 {
            return Err("all error responses must share one body type".into());
        }
        let scopes = self.required_scopes(op)?;
        if let Some(unknown) = scopes.iter().find(|s| !catalogue.contains(*s)) {
            return Err(format!(
                "requires scope {unknown:?}, which the scope catalogue does not list"
            ));
        }
        let excluded = op.op["x-mcp"]["exclude"].as_bool().unwrap_or(false);
        if scopes.is_empty() && !excluded {
            return Err("a tool must require at least one scope".into());
        }
        Ok(())
    }
}

pub fn is_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use crate::testing::{operation, spec_with};
    use serde_json::json;

    fn lint(paths: serde_json::Value) -> Result<(), String> {
        spec_with(paths).lint()
    }

    #[test]
    fn a_well_formed_spec_passes() {
        lint(json!({"/tasks": {"get": operation("list_tasks", json!({}))}})).unwrap();
    }

    #[test]
    fn only_openapi_3_0_is_accepted() {
        let mut spec = spec_with(json!({}));
        spec.raw["openapi"] = json!("3.1.0");
        let error = spec.lint().unwrap_err();
        assert!(error.contains("only 3.0.x is supported"), "{error}");
    }

    #[test]
    fn operation_ids_must_exist_be_unique_and_be_tool_names() {
        let error = lint(json!({
            "/a": {"get": operation("same", json!({}))},
            "/b": {"get": operation("same", json!({}))},
            "/c": {"get": operation("has space", json!({}))},
            "/d": {"get": operation("", json!({"operationId": null}))},
        }))
        .unwrap_err();
        assert!(error.starts_with("3 problem(s):"), "{error}");
        assert!(error.contains("same: operationId is not unique"), "{error}");
        assert!(
            error.contains("has space: operationId must match"),
            "{error}"
        );
        assert!(error.contains("GET /d: no operationId"), "{error}");
    }

    #[test]
    fn a_tool_needs_a_known_scope_unless_excluded() {
        let error = lint(json!({"/tasks": {
            "get": operation("list_tasks", json!({"security": [{"scopes": ["tasks:delete"]}]})),
            "post": operation("create_task", json!({"security": []})),
        }}))
        .unwrap_err();
        assert!(
            error.contains("list_tasks: requires scope \"tasks:delete\", which the scope catalogue does not list"),
            "{error}"
        );
        assert!(
            error.contains("create_task: a tool must require at least one scope"),
            "{error}"
        );
        lint(json!({"/me": {"get": operation(
            "get_current_api_key",
            json!({"security": [], "x-mcp": {"exclude": true}})
        )}}))
        .unwrap();
    }

    #[test]
    fn bodies_are_json_and_responses_have_one_success_type() {
        let error = lint(json!({"/tasks": {"post": operation("create_task", json!({
            "requestBody": {"content": {"text/plain": {"schema": {"type": "string"}}}},
        }))}}))
        .unwrap_err();
        assert!(
            error.contains("exactly one content type, application/json"),
            "{error}"
        );

        let error = lint(json!({"/tasks": {"get": operation("list_tasks", json!({
            "responses": {
                "200": {"description": "A task.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}}},
                "201": {"description": "Text.", "content": {"application/json": {"schema": {"type": "string"}}}},
            },
        }))}}))
        .unwrap_err();
        assert!(
            error.contains("exactly one JSON success body type"),
            "{error}"
        );

        let error = lint(json!({"/tasks": {"get": operation("list_tasks", json!({
            "responses": {"default": {"description": "Anything."}},
        }))}}))
        .unwrap_err();
        assert!(error.contains("use explicit 2xx/4xx/5xx codes"), "{error}");
    }

    #[test]
    fn tool_names_follow_mcp() {
        assert!(super::is_tool_name("list_tasks"));
        assert!(super::is_tool_name("get-task-2"));
        assert!(!super::is_tool_name(""));
        assert!(!super::is_tool_name("tasks.list"));
        assert!(!super::is_tool_name(&"a".repeat(65)));
    }
}
