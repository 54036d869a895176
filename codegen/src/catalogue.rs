//! The MCP tool catalogue (`tools.json`, and its inputSchemas in vendor dialects in
//! `dialects.json`) and the operation and scope tables (`api.rs`).
//!
//! A tool's arguments are ONE flat object: path parameters, then query parameters, then the body's
//! properties at the top level. A parameter whose name collides with a body property is renamed
//! `<name>__<location>`; `Argument::name` is the flat name, `Argument::wire_name` the spec's.

use crate::dialect;
use crate::schema;
use crate::spec::{RawOperation, Spec};
use serde_json::{Map, Value, json};
use std::fmt::Write as _;

/// Where an argument travels in the HTTP request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Location {
    Path,
    Query,
    Body,
}

impl Location {
    fn as_str(self) -> &'static str {
        match self {
            Location::Path => "path",
            Location::Query => "query",
            Location::Body => "body",
        }
    }
}

pub struct Argument {
    /// The name in the tool's flat argument object.
    pub name: String,
    /// The name in the spec (the path/query parameter or body property).
    pub wire_name: String,
    pub location: Location,
    pub required: bool,
    pub schema: Value,
}

pub struct Operation {
    pub id: String,
    pub method: String,
    pub path: String,
    pub category: String,
    pub title: String,
    pub description: String,
    pub scopes: Vec<String>,
    /// Not a tool (`x-mcp: {exclude: true}`): in the client and the tables, not in the catalogue.
    pub excluded: bool,
    pub arguments: Vec<Argument>,
    pub has_body: bool,
    pub output_schema: Value,
    pub annotations: Map<String, Value>,
    /// A long operation (`x-mcp: {progress: true}`): the gateway reports progress on it.
    pub progress: bool,
    /// Words users use for it that its text may not (`x-mcp: {keywords}`), for tool search.
    pub keywords: String,
}

impl Operation {
    pub fn all_from(spec: &Spec) -> Result<Vec<Operation>, String> {
        spec.operations()
            .iter()
            .map(|raw| Operation::from_raw(spec, raw).map_err(|e| format!("{}: {e}", raw.id)))
            .collect()
    }

    pub fn parameters(&self) -> impl Iterator<Item = &Argument> {
        self.arguments
            .iter()
            .filter(|a| a.location != Location::Body)
    }

    pub fn body_arguments(&self) -> impl Iterator<Item = &Argument> {
        self.arguments
            .iter()
            .filter(|a| a.location == Location::Body)
    }

    fn from_raw(spec: &Spec, raw: &RawOperation) -> Result<Operation, String> {
        let op = raw.op;
        let text = |key: &str| op[key].as_str().unwrap_or_default().trim().to_string();
        let tags = op["tags"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let [category] = tags else {
            return Err("needs exactly one tag (its category)".into());
        };
        let category = category.as_str().unwrap_or_default().to_string();

        let mut arguments = Vec::new();
        for location in [Location::Path, Location::Query] {
            // Operation-level parameters override path-item ones of the same name and location.
            let own: Vec<&Value> = op["parameters"].as_array().into_iter().flatten().collect();
            let mut declared: Vec<&Value> = Vec::new();
            for parameter in raw.path_item_parameters.iter().chain(own) {
                let parameter = spec.resolve(parameter)?;
                if parameter["in"] != location.as_str() {
                    continue;
                }
                declared.retain(|p| p["name"] != parameter["name"]);
                declared.push(parameter);
            }
            if location == Location::Path {
                // Path parameters in the order they appear in the path, as progenitor orders them.
                declared.sort_by_key(|p| {
                    raw.path
                        .find(&format!("{{{}}}", p["name"].as_str().unwrap_or("")))
                });
            }
            for parameter in declared {
                let name = parameter["name"]
                    .as_str()
                    .ok_or("a parameter has no name")?
                    .to_string();
                let mut schema = schema::convert(spec, &parameter["schema"])
                    .map_err(|e| format!("parameter {name}: {e}"))?;
                if let Some(description) = parameter["description"].as_str() {
                    // An enum's own description explains its values; the parameter's says what
                    // it filters or sets. A model needs both.
                    let described = match schema["description"].as_str() {
                        Some(values) if schema.get("enum").is_some() => {
                            format!("{} {}", description.trim(), values.trim())
                        }
                        _ => description.to_string(),
                    };
                    schema["description"] = json!(described);
                }
                arguments.push(Argument {
                    name: name.clone(),
                    wire_name: name,
                    location,
                    required: location == Location::Path || parameter["required"] == true,
                    schema,
                });
            }
        }

        let mut has_body = false;
        if let Some(body) = op.get("requestBody") {
            has_body = true;
            let body = spec.resolve(body)?;
            let body_schema =
                schema::convert(spec, &body["content"]["application/json"]["schema"])?;
            if body_schema["type"] != "object" {
                return Err(
                    "the request body must be an object so its fields can be flattened".into(),
                );
            }
            let required: Vec<&str> = body_schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for (name, property) in body_schema["properties"].as_object().into_iter().flatten() {
                arguments.push(Argument {
                    name: name.clone(),
                    wire_name: name.clone(),
                    location: Location::Body,
                    required: required.contains(&name.as_str()),
                    schema: property.clone(),
                });
            }
        }
        rename_collisions(&mut arguments);
        let scopes = spec.scopes()?;
        for argument in &mut arguments {
            schema::explain_scope_enums(&mut argument.schema, &scopes);
        }

        let success = op["responses"]
            .as_object()
            .into_iter()
            .flatten()
            .find(|(status, _)| status.starts_with('2'))
            .map(|(_, response)| response)
            .ok_or("no success response")?;
        let success = spec.resolve(success)?;
        let output_schema =
            schema::convert(spec, &success["content"]["application/json"]["schema"])?;
        if output_schema["type"] != "object" {
            return Err("the success body must be an object (MCP outputSchema)".into());
        }

        let x_mcp = op["x-mcp"].as_object().cloned().unwrap_or_default();
        for (key, value) in &x_mcp {
            let expected_bool = matches!(key.as_str(), "exclude" | "progress");
            if !(expected_bool && value.is_boolean()
                || key == "annotations" && value.is_object()
                || key == "keywords" && value.is_string())
            {
                return Err(format!(
                    "x-mcp.{key} is not understood (expected exclude: bool, progress: bool, \
                     annotations: object, keywords: string)"
                ));
            }
        }
        let mut annotations = default_annotations(&raw.method);
        if let Some(overrides) = op["x-mcp"]["annotations"].as_object() {
            for (hint, value) in overrides {
                if !annotations.contains_key(hint) {
                    return Err(format!("x-mcp.annotations.{hint} is not a tool annotation"));
                }
                annotations.insert(hint.clone(), value.clone());
            }
        }

        Ok(Operation {
            id: raw.id.clone(),
            method: raw.method.clone(),
            path: raw.path.clone(),
            category,
            title: text("summary"),
            description: text("description"),
            scopes: spec.required_scopes(raw)?,
            excluded: op["x-mcp"]["exclude"].as_bool().unwrap_or(false),
            arguments,
            has_body,
            output_schema,
            annotations,
            progress: op["x-mcp"]["progress"].as_bool().unwrap_or(false),
            keywords: op["x-mcp"]["keywords"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .to_string(),
        })
    }

    /// The flat argument object's schema: path, query and body properties side by side.
    fn input_schema(&self) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for argument in &self.arguments {
            properties.insert(argument.name.clone(), argument.schema.clone());
            if argument.required {
                required.push(json!(argument.name));
            }
        }
        let mut input = json!({"type": "object", "properties": properties});
        if !required.is_empty() {
            input["required"] = Value::Array(required);
        }
        input["additionalProperties"] = json!(false);
        input
    }

    /// The tool exactly as MCP `tools/list` shows it.
    fn tool(&self) -> Result<Value, String> {
        let input = self.input_schema();
        let mut undescribed = Vec::new();
        schema::undescribed_properties(&input, "", &mut undescribed);
        schema::undescribed_properties(&self.output_schema, "output", &mut undescribed);
        if !undescribed.is_empty() {
            return Err(format!(
                "properties without a description: {}",
                undescribed.join(", ")
            ));
        }
        let mut unexplained = Vec::new();
        schema::unexplained_enum_values(&input, "", &mut unexplained);
        if !unexplained.is_empty() {
            return Err(format!(
                "enum values that their description does not name (in backticks): {}",
                unexplained.join(", ")
            ));
        }
        if self.description.is_empty() || self.title.is_empty() {
            return Err("a tool needs a summary (its title) and a description".into());
        }
        // No `annotations.title`: it would repeat `title`, which every client since 2025-06-18
        // reads first, and cost every listing the bytes.
        let annotations = self.annotations.clone();
        let mut meta = json!({
            "ai.trainar/category": self.category,
            "ai.trainar/requiredScopes": self.scopes,
        });
        if self.progress {
            meta["ai.trainar/progress"] = json!(true);
        }
        Ok(json!({
            "name": self.id,
            "title": self.title,
            "description": self.description,
            "inputSchema": input,
            "outputSchema": self.output_schema,
            "annotations": annotations,
            "_meta": meta,
        }))
    }
}

/// Suffixes a path or query parameter that shares its name with a body property (or each other).
fn rename_collisions(arguments: &mut [Argument]) {
    let names: Vec<(String, Location)> = arguments
        .iter()
        .map(|a| (a.name.clone(), a.location))
        .collect();
    for argument in arguments.iter_mut() {
        let clashes = names
            .iter()
            .any(|(name, location)| *name == argument.name && *location != argument.location);
        let yields = match argument.location {
            Location::Body => false,
            Location::Query => true,
            // A path parameter yields only to the body; a query parameter yields to it.
            Location::Path => names
                .iter()
                .any(|(n, l)| *n == argument.name && *l == Location::Body),
        };
        if clashes && yields {
            argument.name = format!("{}__{}", argument.name, argument.location.as_str());
        }
    }
}

/// Hints from the HTTP method; `x-mcp.annotations` in the spec overrides them per operation.
fn default_annotations(method: &str) -> Map<String, Value> {
    let (read_only, destructive, idempotent) = match method {
        "GET" => (true, false, true),
        "PUT" | "PATCH" | "DELETE" => (false, true, true),
        _ => (false, false, false),
    };
    let mut hints = Map::new();
    hints.insert("readOnlyHint".into(), json!(read_only));
    hints.insert("destructiveHint".into(), json!(destructive));
    hints.insert("idempotentHint".into(), json!(idempotent));
    // Every operation reaches only the calling tenant's own account, never the open world.
    hints.insert("openWorldHint".into(), json!(false));
    hints
}

/// The catalogue: every non-excluded operation as a tool, in document order.
pub fn tools(operations: &[Operation]) -> Result<Vec<Value>, String> {
    let mut tools = Vec::new();
    let mut problems = Vec::new();
    for operation in operations.iter().filter(|o| !o.excluded) {
        match operation.tool() {
            Ok(tool) => tools.push(tool),
            Err(problem) => problems.push(format!("{}: {problem}", operation.id)),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n  "));
    }
    Ok(tools)
}

/// `tools.json`: the catalogue as pretty JSON.
pub fn tools_json(tools: &[Value]) -> Result<String, String> {
    let mut text = serde_json::to_string_pretty(tools).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(text)
}

/// `dialects.json`: `{"openai": {tool: inputSchema}, "gemini": {…}, "jsonTextArguments": {tool:
/// [argument]}}`, from the catalogue's tools as `tools.json` has them.
pub fn dialects_json(tools: &[Value]) -> Result<String, String> {
    let mut openai = Map::new();
    let mut gemini = Map::new();
    let mut json_text = Map::new();
    for tool in tools {
        let name = tool["name"].as_str().ok_or("a tool without a name")?;
        let input = &tool["inputSchema"];
        let free_form = dialect::free_form_arguments(input).map_err(|e| format!("{name}: {e}"))?;
        if !free_form.is_empty() {
            json_text.insert(name.into(), json!(free_form));
        }
        openai.insert(name.into(), dialect::openai(input));
        gemini.insert(name.into(), dialect::gemini(input));
    }
    let dialects = json!({"openai": openai, "gemini": gemini, "jsonTextArguments": json_text});
    let mut text = serde_json::to_string_pretty(&dialects).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(text)
}

/// `search.json`: `{tool: keywords}` for every tool, for tool search.
pub fn search_json(operations: &[Operation]) -> Result<String, String> {
    let keywords: Map<String, Value> = operations
        .iter()
        .filter(|o| !o.excluded)
        .map(|o| (o.id.clone(), json!(o.keywords)))
        .collect();
    serde_json::to_string_pretty(&keywords).map_err(|e| e.to_string())
}

/// `requests.json`: for every operation, where each flat argument travels and the flat schema
/// that a request to the REST API must satisfy. The sandbox validates incoming requests with it.
pub fn requests_json(operations: &[Operation]) -> Result<String, String> {
    let mut requests = Map::new();
    for operation in operations {
        let names = |location: Location| -> Vec<Value> {
            operation
                .arguments
                .iter()
                .filter(|a| a.location == location)
                .map(|a| json!([a.name, a.wire_name]))
                .collect()
        };
        let body = if operation.has_body {
            Value::Array(names(Location::Body))
        } else {
            Value::Null
        };
        requests.insert(
            operation.id.clone(),
            json!({
                "path": names(Location::Path),
                "query": names(Location::Query),
                "body": body,
                "schema": operation.input_schema(),
            }),
        );
    }
    serde_json::to_string(&requests).map_err(|e| e.to_string())
}

/// `api.rs`: the closed enums `Operation` and `Scope`, with the tables the runtime and sandbox share.
pub fn api_rs(spec: &Spec, operations: &[Operation]) -> Result<String, String> {
    let scopes = spec.scopes()?;
    let (_, scheme) = spec.scope_scheme()?;
    let implies = &scheme["x-scope-implies"];
    for (scope, implied) in implies.as_object().into_iter().flatten() {
        let known = |s: &str| scopes.iter().any(|(name, _)| name == s);
        if !known(scope) {
            return Err(format!("x-scope-implies names an unknown scope {scope:?}"));
        }
        for target in implied.as_array().into_iter().flatten() {
            if !known(target.as_str().unwrap_or_default()) {
                return Err(format!(
                    "x-scope-implies: {scope} implies an unknown scope {target}"
                ));
            }
        }
    }

    let mut out = String::from(crate::GENERATED_HEADER);
    out.push_str("/// Every operation of the API, tools and non-tools alike.\n");
    out.push_str("#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]\npub enum Operation {\n");
    for op in operations {
        let _ = writeln!(out, "    /// `{} {}`: {}", op.method, op.path, op.title);
        let _ = writeln!(out, "    {},", camel(&op.id));
    }
    out.push_str("}\n\nimpl Operation {\n");
    out.push_str("    pub const ALL: &'static [Operation] = &[\n");
    for op in operations {
        let _ = writeln!(out, "        Operation::{},", camel(&op.id));
    }
    out.push_str("    ];\n\n");
    let arms = |out: &mut String, signature: &str, value: &dyn Fn(&Operation) -> String| {
        let _ = writeln!(
            out,
            "    pub const fn {signature} {{\n        match self {{"
        );
        for op in operations {
            let _ = writeln!(
                out,
                "            Operation::{} => {},",
                camel(&op.id),
                value(op)
            );
        }
        out.push_str("        }\n    }\n\n");
    };
    arms(&mut out, "name(self) -> &'static str", &|op| {
        format!("{:?}", op.id)
    });
    arms(&mut out, "method(self) -> &'static str", &|op| {
        format!("{:?}", op.method)
    });
    arms(&mut out, "path(self) -> &'static str", &|op| {
        format!("{:?}", op.path)
    });
    arms(&mut out, "category(self) -> &'static str", &|op| {
        format!("{:?}", op.category)
    });
    arms(&mut out, "is_tool(self) -> bool", &|op| {
        (!op.excluded).to_string()
    });
    arms(
        &mut out,
        "required_scopes(self) -> &'static [Scope]",
        &|op| {
            let list: Vec<String> = op
                .scopes
                .iter()
                .map(|s| format!("Scope::{}", scope_variant(s)))
                .collect();
            format!("&[{}]", list.join(", "))
        },
    );
    out.push_str("    pub fn from_name(name: &str) -> Option<Operation> {\n        match name {\n");
    for op in operations {
        let _ = writeln!(
            out,
            "            {:?} => Some(Operation::{}),",
            op.id,
            camel(&op.id)
        );
    }
    out.push_str("            _ => None,\n        }\n    }\n}\n\n");

    out.push_str("/// The scope catalogue of the `scopes` security scheme.\n");
    out.push_str(
        "#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]\npub enum Scope {\n",
    );
    for (scope, description) in &scopes {
        let _ = writeln!(out, "    /// `{scope}`: {description}");
        let _ = writeln!(out, "    {},", scope_variant(scope));
    }
    out.push_str("}\n\nimpl Scope {\n    pub const ALL: &'static [Scope] = &[\n");
    for (scope, _) in &scopes {
        let _ = writeln!(out, "        Scope::{},", scope_variant(scope));
    }
    out.push_str("    ];\n\n");
    let scope_arms = |out: &mut String, signature: &str, value: &dyn Fn(&str, &str) -> String| {
        let _ = writeln!(
            out,
            "    pub const fn {signature} {{\n        match self {{"
        );
        for (scope, description) in &scopes {
            let _ = writeln!(
                out,
                "            Scope::{} => {},",
                scope_variant(scope),
                value(scope, description)
            );
        }
        out.push_str("        }\n    }\n\n");
    };
    scope_arms(&mut out, "as_str(self) -> &'static str", &|scope, _| {
        format!("{scope:?}")
    });
    scope_arms(
        &mut out,
        "description(self) -> &'static str",
        &|_, description| format!("{description:?}"),
    );
    scope_arms(
        &mut out,
        "implies(self) -> &'static [Scope]",
        &|scope, _| {
            let list: Vec<String> = implies[scope]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|s| format!("Scope::{}", scope_variant(s)))
                .collect();
            format!("&[{}]", list.join(", "))
        },
    );
    out.push_str("    pub fn parse(name: &str) -> Option<Scope> {\n        match name {\n");
    for (scope, _) in &scopes {
        let _ = writeln!(
            out,
            "            {:?} => Some(Scope::{}),",
            scope,
            scope_variant(scope)
        );
    }
    out.push_str("            _ => None,\n        }\n    }\n}\n");
    Ok(out)
}

/// `list_tasks` → `ListTasks`.
pub fn camel(snake: &str) -> String {
    snake
        .split(['_', '-', ':'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// `read:api_keys` → `ReadApiKeys`.
fn scope_variant(scope: &str) -> String {
    camel(scope)
}

#[cfg(test)]
mod tests {
    use super::{Operation, tools};
    use crate::testing::{operation, spec_with};
    use serde_json::{Value, json};

    /// The annotations of the one tool at `method` on `/tasks`, with `extra` merged into it.
    fn annotations(method: &str, extra: Value) -> Result<Value, String> {
        let spec = spec_with(json!({"/tasks": {method: operation("a_tool", extra)}}));
        let operations = Operation::all_from(&spec)?;
        let tools = tools(&operations)?;
        Ok(tools[0]["annotations"].clone())
    }

    #[test]
    fn annotation_defaults_follow_the_http_method() {
        let hints = |read_only, destructive, idempotent| {
            json!({
                "readOnlyHint": read_only,
                "destructiveHint": destructive,
                "idempotentHint": idempotent,
                "openWorldHint": false,
            })
        };
        assert_eq!(
            annotations("get", json!({})).unwrap(),
            hints(true, false, true)
        );
        assert_eq!(
            annotations("post", json!({})).unwrap(),
            hints(false, false, false)
        );
        for method in ["put", "patch", "delete"] {
            assert_eq!(
                annotations(method, json!({})).unwrap(),
                hints(false, true, true),
                "{method}"
            );
        }
    }

    #[test]
    fn x_mcp_annotations_override_a_default_and_nothing_else() {
        let overridden = annotations(
            "post",
            json!({"x-mcp": {"annotations": {"idempotentHint": true}}}),
        )
        .unwrap();
        assert_eq!(overridden["idempotentHint"], json!(true));
        assert_eq!(overridden["readOnlyHint"], json!(false));

        let error =
            annotations("post", json!({"x-mcp": {"annotations": {"title": "T"}}})).unwrap_err();
        assert_eq!(
            error,
            "a_tool: x-mcp.annotations.title is not a tool annotation"
        );
    }

    #[test]
    fn unknown_x_mcp_keys_are_refused() {
        let error = annotations("get", json!({"x-mcp": {"hidden": true}})).unwrap_err();
        assert!(
            error.starts_with("a_tool: x-mcp.hidden is not understood"),
            "{error}"
        );
    }

    #[test]
    fn parameters_and_body_flatten_into_one_argument_object() {
        let spec = spec_with(
            json!({"/tasks/{id}": {"put": operation("update_task", json!({
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "description": "The task.", "schema": {"type": "string"}},
                    {"name": "dry_run", "in": "query", "description": "Only check.", "schema": {"type": "boolean"}},
                ],
                "requestBody": {"content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {"id": {"type": "string", "description": "The new id."}},
                }}}},
            }))}}),
        );
        let operations = Operation::all_from(&spec).unwrap();
        let tool = &tools(&operations).unwrap()[0];
        // The path parameter yields its name to the body property it collides with.
        assert_eq!(tool["inputSchema"]["required"], json!(["id__path", "id"]));
        let names: Vec<&String> = tool["inputSchema"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(names, ["id__path", "dry_run", "id"]);
        assert_eq!(tool["inputSchema"]["additionalProperties"], json!(false));
    }
}
