//! The catalogue as models see it, over real loopback HTTP: the conventions the server's
//! instructions state, null for an optional argument meaning omitted (in both eras), the lean
//! listing, inputSchemas in vendor dialects (`?schema=`) with free-form objects as JSON text, tool
//! search (`?discovery=search`), and `tools stats`.

use crate::gateway_fixture::{
    SLOW_KEY, TestGateway, hanging_api, read_events, text_of, until_abandoned,
};
use crate::mcp_modern::{modern, send};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
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

/// Requests in users' own words, and the tools that serve them. The spec's `x-mcp.keywords` were
/// written with these in view; `UNSEEN_REQUESTS` were written before any search was tried on them.
const REQUESTS: &[(&str, &[&str])] = &[
    (
        "we got a new headset, connect it",
        &["generate_pairing_code"],
    ),
    ("how many minutes are left", &["get_usage_balance"]),
    ("what's still open on my to-do list", &["list_tasks"]),
    ("add a new employee to our account", &["invite_user"]),
    (
        "someone left the company, take away their access",
        &["deactivate_user"],
    ),
    (
        "upload our safety manual PDF",
        &[
            "upload_knowledge",
            "upload_knowledge_file",
            "bulk_upload_knowledge_files",
        ],
    ),
    (
        "what does the manual say about lockout procedures",
        &["search_knowledge"],
    ),
    (
        "which trainees trained the most this month",
        &["get_users_report"],
    ),
    ("cancel our plan", &["cancel_subscription"]),
    ("switch us to yearly billing", &["update_subscription"]),
    ("where is the hardware we ordered", &["list_orders"]),
    (
        "notify our server whenever a task is done",
        &["create_webhook"],
    ),
    (
        "hook up our learning management system",
        &["get_integration_connect_url", "list_integrations"],
    ),
    (
        "run the pump inspection procedure for a technician",
        &["execute_skill"],
    ),
    ("make Priya a manager", &["update_user_role"]),
    ("create a token for our CI pipeline", &["create_api_key"]),
    (
        "how did training go last week",
        &[
            "get_sessions_report",
            "get_session_analytics",
            "list_sessions",
        ],
    ),
    (
        "remove the old tablet we don't use anymore",
        &["unpair_device"],
    ),
    ("mark that task as finished", &["update_task"]),
    ("change the company's time zone", &["update_account"]),
];

/// Requests never used to tune the keywords or the ranking.
const UNSEEN_REQUESTS: &[(&str, &[&str])] = &[
    (
        "is anyone's headset running out of battery",
        &["list_devices", "get_device"],
    ),
    (
        "show me the invoice address we have on file",
        &["get_billing_details"],
    ),
    ("who is on the team", &["list_users"]),
    ("give Tom trainer rights", &["update_user_role"]),
    (
        "stop sending events to the old endpoint",
        &["delete_webhook", "update_webhook"],
    ),
    (
        "how much have we spent in minutes this month",
        &[
            "get_minutes_report",
            "get_minute_transactions",
            "get_usage_balance",
        ],
    ),
    (
        "find the procedure for replacing a filter",
        &["list_skills", "search_knowledge"],
    ),
    (
        "put the new SOP into the forklift folder",
        &[
            "upload_knowledge",
            "create_knowledge_collection",
            "update_knowledge_collection",
        ],
    ),
    (
        "is the HR system sync working",
        &["get_integration_status", "list_tenant_integrations"],
    ),
    (
        "turn on single sign-on requirement",
        &["update_account", "get_account_settings"],
    ),
];

/// The requests of `requests` whose top three from search_tools hold none of the right tools.
async fn misses(requests: &[(&str, &[&str])]) -> Vec<String> {
    let gateway = TestGateway::demo(|_| {}).await;
    let admin = gateway.admin();
    let session = gateway.initialize(&admin, "/mcp?discovery=search").await;
    let mut misses = Vec::new();
    for (request, right) in requests {
        let found = gateway
            .call_tool(
                &admin,
                &session,
                "search_tools",
                json!({"query": request, "limit": 3}),
            )
            .await;
        assert_eq!(found["isError"], false, "{}", text_of(&found));
        let names = names_of(found["structuredContent"]["tools"].as_array().unwrap());
        if !names.iter().any(|n| right.contains(n)) {
            misses.push(format!("{request:?} → {names:?}, wanted one of {right:?}"));
        }
    }
    misses
}

#[tokio::test]
async fn search_finds_a_right_tool_in_the_top_three_for_requests_in_users_words() {
    let missed = misses(REQUESTS).await;
    assert!(
        missed.len() <= 2,
        "{} of 20 missed:\n{}",
        missed.len(),
        missed.join("\n")
    );
    let missed = misses(UNSEEN_REQUESTS).await;
    assert!(
        missed.len() <= 1,
        "{} of 10 missed:\n{}",
        missed.len(),
        missed.join("\n")
    );
}

fn names_of(tools: &[Value]) -> Vec<&str> {
    tools.iter().map(|t| t["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn search_mode_lists_two_meta_tools_and_call_tool_takes_the_direct_path() {
    let gateway = TestGateway::demo(|_| {}).await;
    let reader = gateway.sandbox().key_with(&["read:tasks"]).await;
    let listed_tools = listed(&gateway, &reader, "/mcp?discovery=search").await;
    assert_eq!(names_of(&listed_tools), ["search_tools", "call_tool"]);

    let session = gateway.initialize(&reader, "/mcp?discovery=search").await;
    // Only tools this key may call are found, however the request is worded.
    let found = gateway
        .call_tool(
            &reader,
            &session,
            "search_tools",
            json!({"query": "create a new task", "limit": null}),
        )
        .await;
    let found = found["structuredContent"]["tools"].as_array().unwrap();
    let mut names = names_of(found);
    names.sort();
    assert_eq!(names, ["get_task", "list_tasks"]);
    let list_tasks = named(found, "list_tasks");
    assert_eq!(
        list_tasks["inputSchema"]["properties"]["limit"]["maximum"],
        100
    );

    let call = |arguments: Value| gateway.call_tool(&reader, &session, "call_tool", arguments);
    let page = call(json!({"name": "list_tasks", "arguments": {"limit": 1, "cursor": null}})).await;
    assert_eq!(page["isError"], false, "{}", text_of(&page));
    assert_eq!(
        page["structuredContent"]["data"].as_array().unwrap().len(),
        1
    );
    let denied = call(json!({"name": "create_task", "arguments": {"title": "no"}})).await;
    assert!(
        text_of(&denied)
            .starts_with("Permission denied: create_task requires the scope write:tasks"),
        "{}",
        text_of(&denied)
    );
    let invalid = call(json!({"name": "get_task", "arguments": {}})).await;
    assert_eq!(
        text_of(&invalid),
        "Invalid arguments for get_task:\n- `task_id`: is required"
    );
    let unknown = call(json!({"name": "drop_tables"})).await;
    assert_eq!(unknown["isError"], true);
    assert!(
        text_of(&unknown).contains("`search_tools` finds the tools"),
        "{}",
        text_of(&unknown)
    );
    let bad = call(json!({"arguments": {}})).await;
    assert!(
        text_of(&bad).contains("Invalid arguments for call_tool"),
        "{}",
        text_of(&bad)
    );
    // A tool found may also be called by its own name.
    let direct = gateway
        .call_tool(
            &reader,
            &session,
            "get_task",
            json!({"task_id": page["structuredContent"]["data"][0]["id"]}),
        )
        .await;
    assert_eq!(direct["isError"], false, "{}", text_of(&direct));

    // The connection's selection holds for search and calls alike.
    let admin = gateway.admin();
    let tasks_only = gateway
        .initialize(&admin, "/mcp?discovery=search&toolsets=tasks")
        .await;
    let found = gateway
        .call_tool(
            &admin,
            &tasks_only,
            "search_tools",
            json!({"query": "invite a new user"}),
        )
        .await;
    for name in names_of(found["structuredContent"]["tools"].as_array().unwrap()) {
        assert!(name.ends_with("task") || name.ends_with("tasks"), "{name}");
    }
    let outside = gateway
        .call_tool(
            &admin,
            &tasks_only,
            "call_tool",
            json!({"name": "invite_user", "arguments": {}}),
        )
        .await;
    assert!(
        text_of(&outside).starts_with("Unknown tool `invite_user`"),
        "{}",
        text_of(&outside)
    );

    // Without search, the meta-tools do not exist.
    let plain = gateway.initialize(&admin, "/mcp").await;
    let reply = gateway
        .request(
            &admin,
            &plain,
            "tools/call",
            json!({"name": "search_tools", "arguments": {"query": "x"}}),
        )
        .await;
    assert_eq!(reply["error"]["code"], -32602);
}

#[tokio::test]
async fn search_mode_works_stateless_in_a_dialect_and_as_the_server_default() {
    let gateway = TestGateway::demo(|config| {
        config.core.selection.presentation.discovery =
            Some(trainar_mcp::mcp::discovery::Discovery::Search);
    })
    .await;
    let admin = gateway.admin();
    let list = send(
        &gateway,
        &admin,
        &modern(1, "tools/list", json!({}), json!({})),
        &[],
        &[],
    )
    .await;
    assert_eq!(
        names_of(list.body["result"]["tools"].as_array().unwrap()),
        ["search_tools", "call_tool"]
    );
    let call = modern(
        2,
        "tools/call",
        json!({"name": "call_tool", "arguments": {"name": "list_tasks", "arguments": {"limit": 2}}}),
        json!({}),
    );
    let reply = send(&gateway, &admin, &call, &[], &[]).await;
    assert_eq!(reply.body["result"]["isError"], false, "{}", reply.body);
    assert_eq!(
        reply.body["result"]["structuredContent"]["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // In the openai dialect, call_tool's free-form `arguments` is JSON text, and what
    // search_tools returns is in the dialect too.
    let listed_tools = listed(&gateway, &admin, "/mcp?schema=openai").await;
    let call_tool = named(&listed_tools, "call_tool");
    assert_eq!(
        call_tool["inputSchema"]["properties"]["arguments"]["type"],
        json!(["string", "null"])
    );
    let session = gateway.initialize(&admin, "/mcp?schema=openai").await;
    let found = gateway
        .call_tool(
            &admin,
            &session,
            "search_tools",
            json!({"query": "list my tasks", "limit": 1}),
        )
        .await;
    let schema = &found["structuredContent"]["tools"][0]["inputSchema"];
    assert_eq!(
        schema["properties"]["cursor"]["type"],
        json!(["string", "null"])
    );
    let page = gateway
        .call_tool(
            &admin,
            &session,
            "call_tool",
            json!({"name": "list_tasks", "arguments": "{\"limit\": 1, \"cursor\": null}"}),
        )
        .await;
    assert_eq!(page["isError"], false, "{}", text_of(&page));
    let not_json = gateway
        .call_tool(
            &admin,
            &session,
            "call_tool",
            json!({"name": "list_tasks", "arguments": "limit=1"}),
        )
        .await;
    assert!(
        text_of(&not_json).contains("`arguments`: is not JSON text of an object"),
        "{}",
        text_of(&not_json)
    );

    // A connection may still ask for every tool.
    let direct = listed(&gateway, &admin, "/mcp?discovery=direct").await;
    assert_eq!(direct.len(), 67);
}

#[test]
fn tools_stats_measures_every_listing_and_each_dialect_meets_its_vendors_rules() {
    let listings = trainar_mcp::stats::listings();
    let tokens = |mode: &str| {
        listings
            .iter()
            .find(|l| l.mode.starts_with(mode))
            .unwrap_or_else(|| panic!("no {mode} row"))
            .tokens
    };
    assert!(tokens("discovery (") <= 2_000, "{listings:?}");
    assert!(tokens("lean (") * 2 < tokens("full"), "{listings:?}");
    assert!(tokens("model view") < tokens("lean ("), "{listings:?}");
    for count in trainar_mcp::stats::dialect_counts() {
        match count.dialect {
            Dialect::Openai => assert_eq!(count.openai_strict, count.total),
            Dialect::Gemini => assert_eq!(count.gemini_subset, count.total),
            Dialect::Full => assert!(count.openai_strict < count.total),
        }
    }
    let printed = crate::common::binary()
        .args(["tools", "stats"])
        .output()
        .unwrap();
    let text = String::from_utf8(printed.stdout).unwrap();
    assert!(
        text.contains("?schema=openai") && text.contains("67/67"),
        "{text}"
    );
}

#[tokio::test]
async fn call_tool_streams_the_progress_of_a_long_tool_as_a_direct_call_does() {
    let abandoned = Arc::new(AtomicBool::new(false));
    let upstream = hanging_api(abandoned.clone()).await;
    let gateway = TestGateway::in_front_of(&upstream, |_| {}).await;
    let call = modern(
        1,
        "tools/call",
        json!({"name": "call_tool", "arguments": {"name": "execute_skill",
            "arguments": {"skill_id": "skl_0123456789abcdef", "arguments": {}}}}),
        json!({"progressToken": "search-1"}),
    );
    let mut response = gateway
        .http()
        .post(format!("{}/mcp?discovery=search", gateway.url))
        .bearer_auth(SLOW_KEY)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "call_tool")
        .body(call.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = read_events(&mut response, 2).await;
    let first: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(first["method"], "notifications/progress", "{first}");
    assert_eq!(first["params"]["progressToken"], "search-1");
    assert_eq!(
        first["params"]["message"],
        "Calling the TrainAR API: execute_skill"
    );
    drop(response);
    assert!(
        until_abandoned(&abandoned).await,
        "closing the stream aborted the call"
    );
}
