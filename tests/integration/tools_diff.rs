//! `tools diff` on hand-made catalogue pairs: one pair per change class, through the real binary,
//! exit codes included (0 compatible, 1 breaking, 2 error).

use crate::common::binary;
use serde_json::{Value, json};
use std::path::PathBuf;

fn base_tool() -> Value {
    json!({
        "name": "create_task",
        "title": "Create a new task",
        "description": "Creates a task.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "title": {"type": "string", "description": "Title.", "minLength": 1, "maxLength": 200},
                "status": {"type": "string", "description": "Status.", "enum": ["open", "done"]},
                "limit": {"type": "integer", "description": "Page size.", "minimum": 1, "maximum": 100}
            },
            "required": ["title"],
            "additionalProperties": false
        },
        "outputSchema": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": "Id."},
                "title": {"type": "string", "description": "Title."}
            },
            "required": ["id", "title"]
        },
        "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false},
        "_meta": {"ai.trainar/category": "tasks", "ai.trainar/requiredScopes": ["write:tasks"]}
    })
}

fn other_tool() -> Value {
    let mut tool = base_tool();
    tool["name"] = json!("get_task");
    tool
}

struct Outcome {
    code: i32,
    report: Value,
}

fn write(dir: &std::path::Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    path
}

fn run(old: Value, new: Value) -> Outcome {
    let dir = tempdir();
    let (old, new) = (write(&dir, "old.json", &old), write(&dir, "new.json", &new));
    let output = binary()
        .args(["tools", "diff"])
        .arg(&old)
        .arg(&new)
        .arg("--json")
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    Outcome {
        code: output.status.code().unwrap(),
        report,
    }
}

fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "trainar-diff-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Applies `edit` to a copy of the base tool and returns the kinds the diff reports.
fn kinds_after(edit: impl FnOnce(&mut Value)) -> (i32, Vec<String>) {
    let mut new = base_tool();
    edit(&mut new);
    let outcome = run(json!([base_tool()]), json!([new]));
    let kinds = outcome.report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap().to_string())
        .collect();
    (outcome.code, kinds)
}

fn assert_class(edit: impl FnOnce(&mut Value), kind: &str, code: i32) {
    let (actual_code, kinds) = kinds_after(edit);
    assert!(
        kinds.iter().any(|k| k == kind),
        "expected {kind} in {kinds:?}"
    );
    assert_eq!(actual_code, code, "exit code for {kind} ({kinds:?})");
}

#[test]
fn identical_catalogues_have_no_changes() {
    let outcome = run(json!([base_tool()]), json!({"tools": [base_tool()]}));
    assert_eq!(outcome.code, 0);
    assert_eq!(outcome.report["changes"], json!([]));
}

#[test]
fn breaking_changes_exit_1() {
    let outcome = run(json!([base_tool(), other_tool()]), json!([base_tool()]));
    assert_eq!(outcome.code, 1);
    assert_eq!(outcome.report["changes"][0]["kind"], "tool_removed");

    assert_class(
        |t| {
            t["inputSchema"]["properties"]["priority"] =
                json!({"type": "string", "description": "P."});
            t["inputSchema"]["required"] = json!(["title", "priority"]);
        },
        "required_argument_added",
        1,
    );
    assert_class(
        |t| t["inputSchema"]["required"] = json!(["title", "status"]),
        "required_argument_added",
        1,
    );
    assert_class(
        |t| {
            t["inputSchema"]["properties"]
                .as_object_mut()
                .unwrap()
                .remove("status");
        },
        "argument_removed",
        1,
    );
    assert_class(
        |t| t["inputSchema"]["properties"]["limit"]["type"] = json!("string"),
        "type_changed",
        1,
    );
    assert_class(
        |t| t["inputSchema"]["properties"]["title"]["maxLength"] = json!(100),
        "type_changed",
        1,
    );
    assert_class(
        |t| t["inputSchema"]["properties"]["limit"]["minimum"] = json!(5),
        "type_changed",
        1,
    );
    assert_class(
        |t| t["inputSchema"]["properties"]["title"]["pattern"] = json!("^[A-Z]"),
        "type_changed",
        1,
    );
    assert_class(
        |t| t["inputSchema"]["properties"]["status"]["enum"] = json!(["open"]),
        "enum_value_removed",
        1,
    );
    assert_class(
        |t| t["_meta"]["ai.trainar/requiredScopes"] = json!(["write:tasks", "manage:users"]),
        "scope_added",
        1,
    );
    assert_class(
        |t| {
            t["outputSchema"]["properties"]
                .as_object_mut()
                .unwrap()
                .remove("title");
        },
        "output_field_removed",
        1,
    );
}

#[test]
fn compatible_changes_exit_0() {
    let outcome = run(json!([base_tool()]), json!([base_tool(), other_tool()]));
    assert_eq!(outcome.code, 0);
    assert_eq!(outcome.report["changes"][0]["kind"], "tool_added");
    assert_eq!(outcome.report["compatible"], 1);

    assert_class(
        |t| {
            t["inputSchema"]["properties"]["q"] =
                json!({"type": "string", "description": "Search."});
        },
        "optional_argument_added",
        0,
    );
    assert_class(
        |t| t["description"] = json!("Creates a task, better described."),
        "description_changed",
        0,
    );
    assert_class(
        |t| t["inputSchema"]["properties"]["title"]["description"] = json!("The title."),
        "description_changed",
        0,
    );
    assert_class(
        |t| t["inputSchema"]["properties"]["status"]["enum"] = json!(["open", "done", "blocked"]),
        "enum_value_added",
        0,
    );
    assert_class(
        |t| t["inputSchema"]["properties"]["title"]["maxLength"] = json!(500),
        "type_widened",
        0,
    );
    assert_class(
        |t| t["_meta"]["ai.trainar/requiredScopes"] = json!([]),
        "scope_removed",
        0,
    );
    assert_class(
        |t| {
            t["outputSchema"]["properties"]["due_at"] =
                json!({"type": "string", "description": "Due."});
        },
        "output_field_added",
        0,
    );
}

#[test]
fn a_human_report_names_tool_path_and_verdict() {
    let dir = tempdir();
    let mut new = base_tool();
    new["inputSchema"]["properties"]["status"]["enum"] = json!(["open"]);
    let (old, new) = (
        write(&dir, "old.json", &json!([base_tool()])),
        write(&dir, "new.json", &json!([new])),
    );
    let output = binary()
        .args(["tools", "diff"])
        .arg(&old)
        .arg(&new)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("BREAKING") && text.contains("create_task") && text.contains("input.status"),
        "{text}"
    );
    assert!(text.contains("1 breaking, 0 compatible"), "{text}");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn unreadable_input_exits_2() {
    let dir = tempdir();
    let good = write(&dir, "good.json", &json!([base_tool()]));
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    for (old, new) in [
        (&good, &bad),
        (&bad, &good),
        (&good, &dir.join("missing.json")),
    ] {
        let output = binary()
            .args(["tools", "diff"])
            .arg(old)
            .arg(new)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        assert!(!output.stderr.is_empty());
    }
    let duplicate = write(&dir, "dup.json", &json!([base_tool(), base_tool()]));
    let output = binary()
        .args(["tools", "diff"])
        .arg(&good)
        .arg(&duplicate)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
