//! Tasks: CRUD with status/source/assignee filters; `task.created`, `task.updated` and
//! `task.deleted` events for webhooks.
//!
//! This module is the pattern the other categories follow: `call` matches the category's
//! operations; reads go through `Store`, changes emit their event in the same transaction.

use crate::generated::api::Operation;
use crate::sandbox::db::{Filter, Store};
use crate::sandbox::error::ApiError;
use crate::sandbox::request::{Input, Reply, created, deleted, ok, page};
use crate::sandbox::{Ctx, ids, not_served};
use serde_json::{Value, json};

const KIND: &str = "task";

pub fn call(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    match ctx.operation {
        Operation::ListTasks => {
            let mut filters = Vec::new();
            for field in ["status", "source", "assignee_id"] {
                if let Some(value) = input.get(field) {
                    filters.push(Filter::field(field, value.clone()));
                }
            }
            page(
                ctx.store
                    .list(KIND, &filters, input.limit(), input.cursor())?,
            )
        }
        Operation::GetTask => ok(ctx.store.require(KIND, input.required_str("task_id")?)?),
        Operation::CreateTask => {
            check_due_at(input)?;
            if let Some(assignee) = input.str("assignee_id") {
                require_user(&ctx.store, assignee)?;
            }
            let now = ids::now_string();
            let task = json!({
                "id": ids::new_id("tsk_"),
                "title": input.required_str("title")?,
                "description": input.str("description").unwrap_or(""),
                "status": input.str("status").unwrap_or("open"),
                "source": "api",
                "assignee_id": input.get("assignee_id"),
                "due_at": input.get("due_at"),
                "created_at": now,
                "updated_at": now,
            });
            ctx.store.insert(KIND, &task)?;
            ctx.store.emit("task.created", &task)?;
            created(task)
        }
        Operation::UpdateTask => {
            check_due_at(input)?;
            let mut task = ctx.store.require(KIND, input.required_str("task_id")?)?;
            if let Some(assignee) = input.str("assignee_id") {
                require_user(&ctx.store, assignee)?;
            }
            for (field, value) in
                input.given(&["title", "description", "status", "assignee_id", "due_at"])
            {
                task[field] = value.clone();
            }
            task["updated_at"] = json!(ids::now_string());
            ctx.store.update(KIND, &task)?;
            ctx.store.emit("task.updated", &task)?;
            ok(task)
        }
        Operation::DeleteTask => {
            let id = input.required_str("task_id")?;
            let task = ctx.store.require(KIND, id)?;
            ctx.store.delete(KIND, id)?;
            ctx.store.emit("task.deleted", &task)?;
            deleted(id)
        }
        _ => Err(not_served(ctx)),
    }
}

/// `due_at` is kept as sent, so it must be a date-time whose UTC year has four digits.
fn check_due_at(input: &Input) -> Result<(), ApiError> {
    if let Some(text) = input.str("due_at") {
        ids::parse_client_timestamp("due_at", text)?;
    }
    Ok(())
}

/// An assignee must be a user of this tenant who is not deactivated.
fn require_user(store: &Store, user_id: &str) -> Result<(), ApiError> {
    match store.get("user", user_id)? {
        Some(user) if user["status"] == "deactivated" => Err(ApiError::unprocessable(format!(
            "user {user_id} is deactivated and cannot be assigned tasks"
        ))),
        Some(_) => Ok(()),
        None => Err(ApiError::unprocessable(format!(
            "no user {user_id} in this tenant"
        ))),
    }
}

/// Demo tasks in every status, spread over the tenant's users.
pub fn seed_demo(store: &Store) -> Result<(), ApiError> {
    let users: Vec<Value> = store.all("user")?;
    let titles = [
        ("Inspect hydraulic pump P-12", "open", "manual"),
        ("Complete lockout/tagout refresher", "in_progress", "skill"),
        ("Calibrate torque wrench set B", "done", "session"),
        ("Review HoloLens fit-check feedback", "open", "api"),
        (
            "Replace filter on compressor C-3",
            "cancelled",
            "integration",
        ),
        (
            "Shadow senior tech on conveyor repair",
            "in_progress",
            "manual",
        ),
        ("Upload updated SOP for line 4", "done", "manual"),
        ("Schedule forklift certification", "open", "integration"),
    ];
    let start = ids::now() - chrono::Duration::days(20);
    for (index, (title, status, source)) in titles.iter().enumerate() {
        let at = ids::timestamp(start + chrono::Duration::days(index as i64 * 2));
        let assignee = users
            .get(index % users.len().max(1))
            .map(|u| u["id"].clone())
            .unwrap_or(Value::Null);
        let due = ids::timestamp(start + chrono::Duration::days(index as i64 * 2 + 10));
        store.insert(
            KIND,
            &json!({
                "id": ids::new_id("tsk_"), "title": title, "description": "", "status": status,
                "source": source, "assignee_id": assignee, "due_at": due,
                "created_at": at, "updated_at": at,
            }),
        )?;
    }
    Ok(())
}
