//! The catalogue as models see it, over real loopback HTTP: the conventions the server's
//! instructions state, null for an optional argument meaning omitted (in both eras), the lean
//! listing, and inputSchemas in vendor dialects (`?schema=`), with free-form objects as JSON text.

use crate::gateway_fixture::{TestGateway, text_of};
use crate::mcp_modern::{modern, send};
use serde_json::{Value, json};
use trainar_mcp::catalogue::Dialect;

/// tools/list in a new session opened on `path` (with its query), by tool name.
async fn listed(gateway: &TestGateway, key: &str, path: &str) -> Vec<Value> {
    let session = gateway.initialize(key, path).await;
    let reply = gateway
        .request(key, &session, "tools/list", json!({}))
        .await;
    reply["result"]["tools"].as_array().unwrap().clone()
}

fn named<'t>(tools: &'t [Value], name: &str) -> &'t Value {
    tools.iter().find(|t| t["name"] == name).unwrap()
}

#[tokio::test]
async fn null_for_an_optional_argument_is_the_same_as_omitting_it() {
    let gateway = TestGateway::demo(|_| {}).await;
    let admin = gateway.admin();
    let session = gateway.initialize(&admin, "/mcp").await;

    let omitted = gateway
        .call_tool(&admin, &session, "list_tasks", json!({"limit": 2}))
        .await;
    let nulled = gateway
        .call_tool(
            &admin,
            &session,
            "list_tasks",
            json!({"limit": 2, "cursor": null, "status": null, "assignee_id": null}),
        )
        .await;
    assert_eq!(nulled["isError"], false, "{}", text_of(&nulled));
    assert_eq!(nulled["structuredContent"], omitted["structuredContent"]);
    assert_eq!(
        nulled["structuredContent"]["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The stateless era goes through the same core.
    let call = modern(
        1,
        "tools/call",
        json!({"name": "list_tasks", "arguments": {"limit": 2, "cursor": null}}),
        json!({}),
    );
    let reply = send(&gateway, &admin, &call, &[], &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["result"]["isError"], false, "{}", reply.body);
    assert_eq!(
        reply.body["result"]["structuredContent"],
        omitted["structuredContent"]
    );

    let created = gateway
        .call_tool(
            &admin,
            &session,
            "create_task",
            json!({"title": "nulls", "description": null, "due_at": null, "assignee_id": null}),
        )
        .await;
    assert_eq!(created["isError"], false, "{}", text_of(&created));
    let task = &created["structuredContent"];
    assert_eq!(task["title"], "nulls");
    assert!(
        task["due_at"].is_null() && task["assignee_id"].is_null(),
        "{task}"
    );

    // A required argument given as null is still an error, and says so.
    let refused = gateway
        .call_tool(&admin, &session, "get_task", json!({"task_id": null}))
        .await;
    assert_eq!(refused["isError"], true);
    assert_eq!(
        text_of(&refused),
        "Invalid arguments for get_task:\n- `task_id`: is required, and null is not a value for it"
    );
}

#[tokio::test]
async fn the_instructions_state_the_conventions_every_tool_shares() {
    let gateway = TestGateway::demo(|_| {}).await;
    let reply = gateway
        .post(
            Some(&gateway.admin()),
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25"}}),
            &[],
        )
        .await;
    let instructions = reply.body["result"]["instructions"].as_str().unwrap();
    for convention in [
        "null means the same as leaving an argument out",
        "pass `next_cursor` back as `cursor`",
        "404 no such object",
        "429 too many requests",
        "\"Permission denied\" names the scope",
    ] {
        assert!(
            instructions.contains(convention),
            "{convention:?} is not in {instructions}"
        );
    }
}

#[tokio::test]
async fn a_connection_chooses_a_lean_listing_and_a_schema_dialect() {
    let gateway = TestGateway::demo(|_| {}).await;
    let admin = gateway.admin();
    let full = listed(&gateway, &admin, "/mcp").await;
    let lean = listed(&gateway, &admin, "/mcp?lean=1").await;
    assert_eq!(full.len(), 67);
    assert_eq!(lean.len(), 67);
    for (full, lean) in full.iter().zip(&lean) {
        let mut expected = full.clone();
        expected.as_object_mut().unwrap().remove("outputSchema");
        assert_eq!(lean, &expected);
        assert!(full["outputSchema"].is_object());
        assert!(full["annotations"].get("title").is_none());
    }

    let openai = listed(&gateway, &admin, "/mcp?schema=openai&lean=true").await;
    let list_tasks = &named(&openai, "list_tasks")["inputSchema"];
    assert_eq!(
        list_tasks["properties"]["cursor"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(
        list_tasks["required"],
        json!(["assignee_id", "cursor", "limit", "source", "status"])
    );
    assert!(named(&openai, "list_tasks").get("outputSchema").is_none());
    let title = &named(&openai, "create_task")["inputSchema"]["properties"]["title"];
    assert_eq!(title["type"], "string", "required stays non-nullable");
    assert!(title.get("maxLength").is_none(), "{title}");

    let gemini = listed(&gateway, &admin, "/mcp?schema=gemini").await;
    let events = &named(&gemini, "create_webhook")["inputSchema"]["properties"]["events"];
    assert!(events.get("uniqueItems").is_none(), "{events}");
    assert!(
        events["description"]
            .as_str()
            .unwrap()
            .contains("at most once"),
        "the constraint is said in words: {events}"
    );
    let arguments = &named(&gemini, "execute_skill")["inputSchema"]["properties"]["arguments"];
    assert_eq!(arguments["type"], "string");
    assert!(named(&gemini, "execute_skill")["outputSchema"].is_object());

    let refused = gateway
        .post_raw(
            Some(&admin),
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}).to_string(),
            &[],
            "/mcp?schema=yaml",
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused
            .body
            .to_string()
            .contains("unknown schema dialect `yaml`")
    );
}

#[tokio::test]
async fn the_server_default_dialect_can_be_overridden_per_connection() {
    let gateway = TestGateway::demo(|config| {
        config.core.selection.presentation.dialect = Some(Dialect::Gemini);
    })
    .await;
    let admin = gateway.admin();
    let by_default = listed(&gateway, &admin, "/mcp").await;
    let input = &named(&by_default, "create_webhook")["inputSchema"];
    assert!(input.get("additionalProperties").is_none(), "{input}");
    let full = listed(&gateway, &admin, "/mcp?schema=full").await;
    assert_eq!(
        named(&full, "create_webhook")["inputSchema"]["additionalProperties"],
        false
    );
}

#[tokio::test]
async fn dialects_carry_free_form_objects_as_json_text_and_calls_are_still_validated_in_full() {
    let gateway = TestGateway::demo(|_| {}).await;
    let admin = gateway.admin();
    let skill = |input_schema: Value| {
        json!({
            "slug": format!("text-{}", input_schema.to_string().len()),
            "name": "Pump check",
            "status": "published",
            "input_schema": input_schema,
            "steps": [{"title": "Check", "instruction": "Check pump {{pump_id}}.", "kind": null}],
            "description": null,
            "category": null,
        })
    };
    let schema_text = r#"{"type": "object", "properties": {"pump_id": {"type": "string"}}, "required": ["pump_id"]}"#;
    for dialect in ["openai", "gemini"] {
        let session = gateway
            .initialize(&admin, &format!("/mcp?schema={dialect}"))
            .await;
        let mut arguments = skill(json!(schema_text));
        arguments["slug"] = json!(format!("pump-check-{dialect}"));
        let created = gateway
            .call_tool(&admin, &session, "create_skill", arguments)
            .await;
        assert_eq!(
            created["isError"],
            false,
            "{dialect}: {}",
            text_of(&created)
        );
        let stored = &created["structuredContent"];
        assert_eq!(stored["input_schema"]["required"], json!(["pump_id"]));

        let executed = gateway
            .call_tool(
                &admin,
                &session,
                "execute_skill",
                json!({"skill_id": stored["id"], "arguments": r#"{"pump_id": "P-7"}"#, "dry_run": true}),
            )
            .await;
        assert_eq!(
            executed["isError"],
            false,
            "{dialect}: {}",
            text_of(&executed)
        );

        let not_json = gateway
            .call_tool(
                &admin,
                &session,
                "create_skill",
                skill(json!("{type: object")),
            )
            .await;
        assert_eq!(not_json["isError"], true);
        assert!(
            text_of(&not_json).contains("`input_schema`: is not JSON text of an object"),
            "{}",
            text_of(&not_json)
        );

        // What the dialect could not carry, the gateway still enforces (the full schema).
        let too_long = gateway
            .call_tool(
                &admin,
                &session,
                "create_task",
                json!({"title": "x".repeat(201)}),
            )
            .await;
        assert_eq!(too_long["isError"], true);
        assert!(
            text_of(&too_long).contains("`title`"),
            "{}",
            text_of(&too_long)
        );
    }

    // The full schema takes the object itself, and text is not an object there.
    let session = gateway.initialize(&admin, "/mcp").await;
    let text = gateway
        .call_tool(&admin, &session, "create_skill", skill(json!(schema_text)))
        .await;
    assert_eq!(text["isError"], true);
    assert!(
        text_of(&text).contains("`input_schema`"),
        "{}",
        text_of(&text)
    );
}
