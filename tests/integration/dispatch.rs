//! The generated dispatch against a recording loopback server: arguments land in the right path,
//! query and body places, the caller's key arrives in `Authorization`, keys share one pool, and
//! every failure maps to the right `DispatchError`.

use crate::common::RecordingServer;
use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use std::time::Duration;
use trainar_mcp::api_key::ApiKey;
use trainar_mcp::generated::api::Operation;
use trainar_mcp::upstream::{DispatchError, Upstream};

const KEY_A: &str = "tak_AAAAAAAAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const KEY_B: &str = "tak_BBBBBBBBbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const TASK_ID: &str = "tsk_0123456789ab";

fn task() -> Value {
    json!({
        "id": TASK_ID, "title": "Inspect pump", "description": "", "status": "open", "source": "api",
        "assignee_id": null, "due_at": null,
        "created_at": "2026-11-01T10:00:00Z", "updated_at": "2026-11-01T10:00:00Z"
    })
}

fn user() -> Value {
    json!({
        "id": "usr_0123456789ab", "email": "ana@example.com", "name": "Ana", "role": "manager",
        "status": "active", "invited_at": null, "activated_at": "2026-10-01T10:00:00Z",
        "deactivated_at": null, "last_active_at": null, "sessions_count": 3, "minutes_used": 42,
        "created_at": "2026-10-01T10:00:00Z", "updated_at": "2026-10-01T10:00:00Z"
    })
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

async fn setup() -> (RecordingServer, Upstream) {
    let server = RecordingServer::start().await;
    let upstream = Upstream::new(&server.url, upstream_options(Duration::from_secs(5)), 1).unwrap();
    (server, upstream)
}

fn key(secret: &str) -> ApiKey {
    ApiKey::parse(secret).unwrap()
}

#[tokio::test]
async fn get_puts_filters_in_the_query_and_the_key_in_authorization() {
    let (server, upstream) = setup().await;
    server.answer(
        StatusCode::OK,
        "application/json",
        json!({"data": [task()], "next_cursor": null}).to_string(),
    );
    let result = upstream
        .call(
            &key(KEY_A),
            Operation::ListTasks,
            args(json!({"status": "open", "limit": 5})),
            None,
        )
        .await
        .unwrap();
    let result: Value = serde_json::from_str(result.get()).unwrap();
    assert_eq!(result["data"][0]["id"], TASK_ID);
    let seen = server.last();
    assert_eq!(seen.method, Method::GET);
    assert_eq!(seen.path, "/v1/tasks");
    let query = seen.query.unwrap();
    assert!(
        query.contains("status=open") && query.contains("limit=5"),
        "{query}"
    );
    assert_eq!(
        seen.authorization.as_deref(),
        Some(format!("Bearer {KEY_A}").as_str())
    );
}

#[tokio::test]
async fn post_sends_the_flat_arguments_as_the_body() {
    let (server, upstream) = setup().await;
    server.answer(StatusCode::CREATED, "application/json", task().to_string());
    let arguments = args(json!({"title": "Inspect pump", "assignee_id": "usr_0123456789ab"}));
    upstream
        .call(&key(KEY_A), Operation::CreateTask, arguments, None)
        .await
        .unwrap();
    let seen = server.last();
    assert_eq!(
        (seen.method, seen.path.as_str()),
        (Method::POST, "/v1/tasks")
    );
    assert_eq!(
        seen.body,
        json!({"title": "Inspect pump", "assignee_id": "usr_0123456789ab"})
    );
}

#[tokio::test]
async fn patch_splits_path_and_body() {
    let (server, upstream) = setup().await;
    server.answer(StatusCode::OK, "application/json", task().to_string());
    let arguments = args(json!({"task_id": TASK_ID, "status": "done"}));
    upstream
        .call(&key(KEY_A), Operation::UpdateTask, arguments, None)
        .await
        .unwrap();
    let seen = server.last();
    assert_eq!(
        (seen.method, seen.path.as_str()),
        (Method::PATCH, "/v1/tasks/tsk_0123456789ab")
    );
    assert_eq!(seen.body, json!({"status": "done"}));
}

#[tokio::test]
async fn put_and_delete_reach_their_paths() {
    let (server, upstream) = setup().await;
    server.answer(StatusCode::OK, "application/json", user().to_string());
    let arguments = args(json!({"user_id": "usr_0123456789ab", "role": "trainer"}));
    upstream
        .call(&key(KEY_A), Operation::UpdateUserRole, arguments, None)
        .await
        .unwrap();
    let seen = server.last();
    assert_eq!(
        (seen.method, seen.path.as_str()),
        (Method::PUT, "/v1/users/usr_0123456789ab/role")
    );
    assert_eq!(seen.body, json!({"role": "trainer"}));

    server.answer(
        StatusCode::OK,
        "application/json",
        json!({"id": TASK_ID, "deleted": true}).to_string(),
    );
    let result = upstream
        .call(
            &key(KEY_A),
            Operation::DeleteTask,
            args(json!({"task_id": TASK_ID})),
            None,
        )
        .await
        .unwrap();
    let result: Value = serde_json::from_str(result.get()).unwrap();
    assert_eq!(result, json!({"id": TASK_ID, "deleted": true}));
    let seen = server.last();
    assert_eq!(
        (seen.method, seen.path.as_str()),
        (Method::DELETE, "/v1/tasks/tsk_0123456789ab")
    );
}

#[tokio::test]
async fn two_keys_share_one_connection_pool() {
    let (server, upstream) = setup().await;
    server.answer(StatusCode::OK, "application/json", task().to_string());
    for secret in [KEY_A, KEY_B, KEY_A] {
        upstream
            .call(
                &key(secret),
                Operation::GetTask,
                args(json!({"task_id": TASK_ID})),
                None,
            )
            .await
            .unwrap();
    }
    let seen = server.requests();
    let authorizations: Vec<_> = seen
        .iter()
        .map(|r| r.authorization.clone().unwrap())
        .collect();
    assert_eq!(
        authorizations,
        [KEY_A, KEY_B, KEY_A].map(|k| format!("Bearer {k}"))
    );
    assert!(
        seen.iter().all(|r| r.peer == seen[0].peer),
        "one kept-alive connection served both keys: {seen:?}"
    );
}

#[tokio::test]
async fn invalid_arguments_are_refused_before_anything_is_sent() {
    let (server, upstream) = setup().await;
    let cases = [
        (
            Operation::GetTask,
            json!({"task_id": "not-a-task-id"}),
            "task_id",
        ),
        (Operation::GetTask, json!({}), "task_id"),
        (
            Operation::GetTask,
            json!({"task_id": TASK_ID, "surprise": 1}),
            "surprise",
        ),
        (Operation::CreateTask, json!({"title": 42}), "title"),
        (
            Operation::ListTasks,
            json!({"status": "finished"}),
            "status",
        ),
    ];
    for (operation, arguments, field) in cases {
        let error = upstream
            .call(&key(KEY_A), operation, args(arguments.clone()), None)
            .await
            .unwrap_err();
        match error {
            DispatchError::InvalidArgument { field: named, .. } => {
                assert_eq!(named, field, "{arguments}")
            }
            other => panic!("{arguments}: expected InvalidArgument, got {other:?}"),
        }
    }
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn api_errors_keep_status_code_and_message() {
    let (server, upstream) = setup().await;
    let body = json!({"error": {"code": "not_found", "message": "No task tsk_0123456789ab."}});
    server.answer(StatusCode::NOT_FOUND, "application/json", body.to_string());
    let error = upstream
        .call(
            &key(KEY_A),
            Operation::GetTask,
            args(json!({"task_id": TASK_ID})),
            None,
        )
        .await;
    match error.unwrap_err() {
        DispatchError::Upstream {
            status,
            code,
            message,
            ..
        } => {
            assert_eq!(
                (status, code.as_deref(), message.as_str()),
                (404, Some("not_found"), "No task tsk_0123456789ab.")
            );
        }
        other => panic!("expected Upstream, got {other:?}"),
    }

    server.answer(
        StatusCode::BAD_GATEWAY,
        "text/html",
        "<html>bad gateway</html>",
    );
    let error = upstream
        .call(
            &key(KEY_A),
            Operation::GetTask,
            args(json!({"task_id": TASK_ID})),
            None,
        )
        .await;
    assert!(
        matches!(
            error,
            Err(DispatchError::Upstream {
                status: 502,
                code: None,
                ..
            })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unreachable_api_is_a_transport_error_without_the_key() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let upstream = Upstream::new(&url, upstream_options(Duration::from_secs(2)), 1).unwrap();
    let error = upstream
        .call(
            &key(KEY_A),
            Operation::GetTask,
            args(json!({"task_id": TASK_ID})),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, DispatchError::Transport { .. }),
        "{error:?}"
    );
    assert!(!format!("{error} {error:?}").contains(KEY_A));
}

#[tokio::test]
async fn a_slow_api_times_out() {
    // A listener that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let upstream = Upstream::new(&url, upstream_options(Duration::from_millis(300)), 1).unwrap();
    let error = upstream
        .call(
            &key(KEY_A),
            Operation::GetTask,
            args(json!({"task_id": TASK_ID})),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        error,
        DispatchError::Transport {
            message: "the request timed out".into(),
            timed_out: true,
        }
    );
}

fn upstream_options(timeout: Duration) -> trainar_mcp::upstream::UpstreamOptions {
    trainar_mcp::upstream::UpstreamOptions {
        timeout,
        ..Default::default()
    }
}
