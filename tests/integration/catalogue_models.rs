//! The catalogue as models see it, over real loopback HTTP: the conventions the server's
//! instructions state, and null for an optional argument meaning omitted, in both eras.

use crate::gateway_fixture::{TestGateway, text_of};
use crate::mcp_modern::{modern, send};
use serde_json::json;

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
