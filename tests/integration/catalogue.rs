//! The generated tool catalogue: the seed's 67 names, self-contained schemas, scopes and
//! annotations exactly as the spec states them, and the committed snapshot.

use crate::common::{binary, repo_root};
use serde_json::Value;
use trainar_mcp::catalogue::Catalogue;
use trainar_mcp::diff;
use trainar_mcp::generated::api::Operation;

/// The tool catalogue that trainar-mcp must match (../shared/seed/tenant-mcp-server.md), by category.
const SEED: &[(&str, &[&str])] = &[
    (
        "api_keys",
        &["list_api_keys", "create_api_key", "revoke_api_key"],
    ),
    (
        "billing",
        &[
            "get_subscription",
            "create_subscription",
            "update_subscription",
            "cancel_subscription",
            "get_billing_details",
            "get_usage_balance",
            "get_minute_transactions",
        ],
    ),
    (
        "devices",
        &[
            "list_devices",
            "get_device",
            "generate_pairing_code",
            "unpair_device",
            "list_orders",
        ],
    ),
    (
        "integrations",
        &[
            "list_integrations",
            "list_tenant_integrations",
            "get_integration_connect_url",
            "get_integration_status",
            "disconnect_integration",
            "trigger_sync",
        ],
    ),
    (
        "knowledge",
        &[
            "list_knowledge",
            "get_knowledge",
            "upload_knowledge",
            "upload_knowledge_file",
            "bulk_upload_knowledge_files",
            "process_knowledge",
            "search_knowledge",
            "update_knowledge_file",
            "delete_knowledge",
            "list_knowledge_collections",
            "get_knowledge_collection",
            "create_knowledge_collection",
            "update_knowledge_collection",
            "delete_knowledge_collection",
        ],
    ),
    (
        "reports",
        &[
            "get_reports_overview",
            "get_sessions_report",
            "get_users_report",
            "get_minutes_report",
            "get_tasks_report",
        ],
    ),
    (
        "sessions",
        &["list_sessions", "get_session", "get_session_analytics"],
    ),
    (
        "skills",
        &[
            "list_skills",
            "get_skill",
            "create_skill",
            "update_skill",
            "delete_skill",
            "execute_skill",
        ],
    ),
    (
        "tasks",
        &[
            "list_tasks",
            "get_task",
            "create_task",
            "update_task",
            "delete_task",
        ],
    ),
    (
        "account",
        &["get_account", "update_account", "get_account_settings"],
    ),
    (
        "users",
        &[
            "list_users",
            "get_user",
            "invite_user",
            "update_user_role",
            "deactivate_user",
            "reactivate_user",
        ],
    ),
    (
        "webhooks",
        &[
            "list_webhooks",
            "create_webhook",
            "update_webhook",
            "delete_webhook",
        ],
    ),
];

const SNAPSHOT: &str = "tests/snapshots/tools.json";
const UPDATE_COMMAND: &str = "cargo run -q -- tools list --json > tests/snapshots/tools.json";

fn spec() -> Value {
    let text = std::fs::read_to_string(repo_root().join("spec/trainar.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// Every (method, operation) of the spec, read independently of build.rs.
fn spec_operations(spec: &Value) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for item in spec["paths"].as_object().unwrap().values() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if let Some(op) = item.get(method) {
                found.push((method.to_uppercase(), op.clone()));
            }
        }
    }
    found
}

#[test]
fn the_catalogue_has_exactly_the_seed_tools_in_their_categories() {
    let catalogue = Catalogue::get();
    let mut expected: Vec<(&str, &str)> = SEED
        .iter()
        .flat_map(|(category, names)| names.iter().map(move |n| (*n, *category)))
        .collect();
    let mut actual: Vec<(&str, &str)> = catalogue
        .tools()
        .iter()
        .map(|t| (t.name(), t.category()))
        .collect();
    expected.sort();
    actual.sort();
    assert_eq!(actual, expected);
    assert_eq!(catalogue.tools().len(), 67);
    assert_eq!(catalogue.categories().len(), 12);
}

#[test]
fn introspection_is_an_operation_but_not_a_tool() {
    let introspection = Operation::from_name("get_current_api_key").unwrap();
    assert!(!introspection.is_tool());
    assert_eq!(introspection.path(), "/v1/api-keys/current");
    assert!(Catalogue::get().find("get_current_api_key").is_none());
    // OAuth token introspection (RFC 7662), for the gateway's own use: no tool either.
    let tokens = Operation::from_name("introspect_oauth_token").unwrap();
    assert!(!tokens.is_tool());
    assert_eq!(tokens.path(), "/v1/oauth/introspect");
    assert!(Catalogue::get().find("introspect_oauth_token").is_none());
    assert_eq!(Operation::ALL.len(), 69);
}

fn walk<'a>(value: &'a Value, at: String, visit: &mut dyn FnMut(&str, &'a Value)) {
    visit(&at, value);
    match value {
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| walk(v, format!("{at}/{k}"), visit)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| walk(v, format!("{at}/{i}"), visit)),
        _ => {}
    }
}

#[test]
fn schemas_are_self_contained_and_every_property_is_described() {
    for tool in Catalogue::get().tools() {
        let definition = &tool.definition;
        for key in ["inputSchema", "outputSchema"] {
            assert_eq!(definition[key]["type"], "object", "{}: {key}", tool.name());
        }
        assert_eq!(
            definition["inputSchema"]["additionalProperties"],
            false,
            "{}",
            tool.name()
        );
        walk(definition, tool.name().to_string(), &mut |at, node| {
            if let Value::Object(map) = node {
                assert!(
                    !map.contains_key("$ref") && !map.contains_key("$defs"),
                    "{at} has a $ref"
                );
                assert!(
                    !map.contains_key("nullable"),
                    "{at} keeps OpenAPI's nullable"
                );
                if let Some(Value::Object(properties)) = map.get("properties") {
                    for (name, property) in properties {
                        let described = property["description"]
                            .as_str()
                            .is_some_and(|d| !d.is_empty());
                        assert!(described, "{at}/properties/{name} has no description");
                    }
                }
            }
        });
        let required = definition["inputSchema"]["required"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let properties = definition["inputSchema"]["properties"].as_object().unwrap();
        for name in &required {
            assert!(
                properties.contains_key(name.as_str().unwrap()),
                "{}: required {name} is not a property",
                tool.name()
            );
        }
    }
}

#[test]
fn scopes_and_annotations_come_from_the_spec() {
    let spec = spec();
    let destructive_posts = [
        "revoke_api_key",
        "cancel_subscription",
        "unpair_device",
        "deactivate_user",
        "disconnect_integration",
    ];
    for (method, op) in spec_operations(&spec) {
        let name = op["operationId"].as_str().unwrap();
        let Some(tool) = Catalogue::get().find(name) else {
            assert_eq!(
                op["x-mcp"]["exclude"], true,
                "{name} is neither a tool nor excluded"
            );
            continue;
        };
        let spec_scopes = &op["security"][0]["scopes"];
        assert_eq!(
            &tool.definition["_meta"]["ai.trainar/requiredScopes"], spec_scopes,
            "{name}"
        );
        let generated: Vec<&str> = tool
            .operation
            .required_scopes()
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(
            serde_json::to_value(generated).unwrap(),
            *spec_scopes,
            "{name}"
        );
        assert_eq!(tool.definition["title"], op["summary"], "{name}");

        let hints = &tool.definition["annotations"];
        let (read_only, destructive, idempotent) = match method.as_str() {
            "GET" => (true, false, true),
            "POST" => (false, destructive_posts.contains(&name), false),
            _ => (false, true, true),
        };
        assert_eq!(hints["readOnlyHint"], read_only, "{name}");
        assert_eq!(hints["destructiveHint"], destructive, "{name}");
        assert_eq!(hints["idempotentHint"], idempotent, "{name}");
        assert_eq!(hints["openWorldHint"], false, "{name}");
    }
}

#[test]
fn the_catalogue_matches_its_committed_snapshot() {
    let committed = std::fs::read_to_string(repo_root().join(SNAPSHOT)).unwrap_or_default();
    let current = binary().args(["tools", "list", "--json"]).output().unwrap();
    assert!(current.status.success());
    let current = String::from_utf8(current.stdout).unwrap();
    if committed != current {
        let report = match (
            diff::parse_catalogue(&committed),
            diff::parse_catalogue(&current),
        ) {
            (Ok(old), Ok(new)) => diff::diff(&old, &new).to_text(),
            _ => "(the snapshot is missing or not a catalogue)\n".to_string(),
        };
        panic!(
            "the tool catalogue differs from {SNAPSHOT}:\n{report}\nIf the change is intended, update the snapshot with:\n    {UPDATE_COMMAND}\n"
        );
    }
}

#[test]
fn tools_list_prints_a_table_of_every_tool() {
    let output = binary().args(["tools", "list"]).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("NAME"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("create_task "))
        .unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells, ["create_task", "tasks", "write:tasks", "no"]);
    assert!(text.contains("67 tools in 12 categories"), "{text}");
}

/// Every `backticked_name` in a description that names an operation names a tool: a model told to
/// call something it cannot call is stuck.
#[test]
fn descriptions_point_only_to_tools() {
    for tool in Catalogue::get().tools() {
        let mut texts = Vec::new();
        walk(&tool.definition, tool.name().to_string(), &mut |_, node| {
            if let Some(text) = node.get("description").and_then(Value::as_str) {
                texts.push(text);
            }
        });
        for text in texts {
            for name in text.split('`').skip(1).step_by(2) {
                if let Some(operation) = Operation::from_name(name) {
                    assert!(
                        operation.is_tool(),
                        "{}: a description points to `{name}`, which is not a tool",
                        tool.name()
                    );
                }
            }
        }
    }
}

/// A model picks an enum value by what it means: each input enum's description names every value.
#[test]
fn every_input_enum_value_is_explained() {
    for tool in Catalogue::get().tools() {
        walk(
            &tool.definition["inputSchema"],
            tool.name().to_string(),
            &mut |at, node| {
                let Some(values) = node.get("enum").and_then(Value::as_array) else {
                    return;
                };
                let description = node["description"].as_str().unwrap_or_default();
                for value in values.iter().filter_map(Value::as_str) {
                    assert!(
                        description.contains(&format!("`{value}`")),
                        "{at}: `{value}` is not explained in {description:?}"
                    );
                }
            },
        );
    }
}
