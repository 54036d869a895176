//! The sandbox's skills, users, webhooks and account categories over real HTTP: every operation's
//! success and failure, the last-active-admin rule, skill execution (rendering, argument
//! validation naming the field, minute charging, dry runs), and signed webhook delivery to a
//! loopback receiver, including retries of a failing one.

use crate::sandbox_fixture::{TestSandbox, items};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NO_SUCH_USER: &str = "usr_0000000000000000";
const NO_SUCH_SKILL: &str = "skl_0000000000000000";
const NO_SUCH_WEBHOOK: &str = "whk_0000000000000000";

fn id(object: &Value) -> String {
    object["id"]
        .as_str()
        .expect("an object has an id")
        .to_string()
}

// ---------------------------------------------------------------- account

#[tokio::test]
async fn the_account_derives_its_counts_and_updates_only_given_fields() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let account = admin.get(200, "/v1/account").await;
    assert!(account["id"].as_str().unwrap().starts_with("ten_"));
    assert_eq!(account["slug"], "acme-field-services");
    assert_eq!(account["name"], "Acme Field Services");
    let users = admin.get(200, "/v1/users?limit=100").await;
    let not_deactivated = items(&users)
        .iter()
        .filter(|u| u["status"] != "deactivated")
        .count();
    assert_eq!(account["user_count"], json!(not_deactivated));
    for field in ["plan_id", "status", "seats", "included_minutes"] {
        assert!(
            account["plan"].get(field).is_some(),
            "plan.{field}: {account}"
        );
    }

    admin
        .post(201, "/v1/users", json!({"email": "new.hire@example.com"}))
        .await;
    let account = admin.get(200, "/v1/account").await;
    assert_eq!(
        account["user_count"],
        json!(not_deactivated + 1),
        "counts are derived at read time"
    );

    let change =
        json!({"name": "Acme Field Services GmbH", "timezone": "Europe/Berlin", "locale": "de-DE"});
    let updated = admin.patch(200, "/v1/account", change).await;
    assert_eq!(updated["timezone"], "Europe/Berlin");
    assert_eq!(updated["locale"], "de-DE");
    assert_eq!(
        updated["slug"], "acme-field-services",
        "the slug cannot change"
    );
    assert_eq!(
        updated["contact_email"], account["contact_email"],
        "omitted fields keep their values"
    );
    let me = admin.get(200, "/v1/api-keys/current").await;
    assert_eq!(me["tenant_name"], "Acme Field Services GmbH");

    admin
        .patch(422, "/v1/account", json!({"timezone": "Mars/Olympus_Mons"}))
        .await;
    admin
        .patch(422, "/v1/account", json!({"locale": "xx-YY"}))
        .await;
    admin.patch(400, "/v1/account", json!({})).await;
    let reader = sandbox.key_with(&["read:account"]).await;
    sandbox
        .as_key(&reader)
        .patch(403, "/v1/account", json!({"name": "x"}))
        .await;
}

#[tokio::test]
async fn account_settings_are_the_tenants_defaults() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let settings = admin.get(200, "/v1/account/settings").await;
    assert_eq!(settings["default_user_role"], "trainee");
    assert_eq!(settings["webhook_signing_algorithm"], "hmac_sha256");
    assert_eq!(settings["sso"]["enabled"], false);
    assert!(
        settings.get("id").is_none(),
        "settings have no id: {settings}"
    );
    let other = sandbox.other_tenant("Globex");
    let account = sandbox.as_key(&other).get(200, "/v1/account").await;
    assert_eq!(account["slug"], "globex");
    assert_eq!(account["plan"]["plan_id"], Value::Null);
    let tasks_only = sandbox.key_with(&["read:tasks"]).await;
    sandbox
        .as_key(&tasks_only)
        .get(403, "/v1/account/settings")
        .await;
}

// ---------------------------------------------------------------- users

#[tokio::test]
async fn users_are_listed_filtered_searched_and_fetched() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let all = admin.get(200, "/v1/users?limit=100").await;
    let roles: std::collections::BTreeSet<&str> = items(&all)
        .iter()
        .map(|u| u["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["admin", "manager", "trainee", "trainer"].into());
    let admins = admin.get(200, "/v1/users?role=admin").await;
    assert!(!items(&admins).is_empty() && items(&admins).iter().all(|u| u["role"] == "admin"));
    let invited = admin.get(200, "/v1/users?status=invited").await;
    assert!(
        items(&invited)
            .iter()
            .all(|u| u["status"] == "invited" && u["activated_at"].is_null())
    );
    assert_eq!(items(&invited).len(), 1);

    let first = &items(&all)[0];
    let needle = first["email"]
        .as_str()
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_uppercase();
    let found = admin.get(200, &format!("/v1/users?q={needle}")).await;
    assert_eq!(
        items(&found).len(),
        1,
        "q is a case-insensitive substring of the email: {found}"
    );
    assert_eq!(items(&found)[0]["id"], first["id"]);
    let none = admin.get(200, "/v1/users?q=nobody-by-this-name").await;
    assert_eq!(none["data"], json!([]));

    let mut seen = Vec::new();
    let mut path = "/v1/users?limit=3".to_string();
    loop {
        let page = admin.get(200, &path).await;
        seen.extend(items(&page).iter().map(id));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/users?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, items(&all).iter().map(id).collect::<Vec<_>>());

    let user = admin.get(200, &format!("/v1/users/{}", id(first))).await;
    assert_eq!(user["email"], first["email"]);
    assert!(
        user["sessions_count"].as_i64().unwrap() >= 0
            && user["minutes_used"].as_i64().unwrap() >= 0
    );
    let missing = admin.get(404, &format!("/v1/users/{NO_SUCH_USER}")).await;
    assert_eq!(missing["error"]["code"], "not_found");
}

#[tokio::test]
async fn invitations_default_the_role_and_refuse_duplicate_emails() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let invited = admin
        .post(
            201,
            "/v1/users",
            json!({"email": "ana.silva@example.com", "name": "Ana Silva"}),
        )
        .await;
    assert!(invited["id"].as_str().unwrap().starts_with("usr_"));
    assert_eq!(invited["status"], "invited");
    assert_eq!(invited["role"], "trainee");
    assert!(invited["invited_at"].is_string() && invited["activated_at"].is_null());
    let duplicate = json!({"email": "Ana.Silva@Example.com", "role": "admin"});
    let reply = admin.post(409, "/v1/users", duplicate).await;
    assert_eq!(reply["error"]["code"], "conflict");
    admin
        .post(400, "/v1/users", json!({"email": "not an email"}))
        .await;
    let trainer = admin
        .post(
            201,
            "/v1/users",
            json!({"email": "t@example.com", "role": "trainer"}),
        )
        .await;
    assert_eq!(trainer["role"], "trainer");
    assert_eq!(trainer["name"], "");
}

/// The demo tenant's active admins, oldest first.
async fn active_admins(sandbox: &TestSandbox) -> Vec<String> {
    let admin = sandbox.as_admin();
    let page = admin
        .get(200, "/v1/users?role=admin&status=active&limit=100")
        .await;
    items(&page).iter().rev().map(id).collect()
}

#[tokio::test]
async fn the_last_active_admin_can_be_neither_demoted_nor_deactivated() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let admins = active_admins(&sandbox).await;
    assert!(admins.len() >= 2, "the demo has several admins");
    let (last, others) = admins.split_last().unwrap();
    for other in others {
        let demoted = admin
            .put(
                200,
                &format!("/v1/users/{other}/role"),
                json!({"role": "manager"}),
            )
            .await;
        assert_eq!(demoted["role"], "manager");
    }
    let role = format!("/v1/users/{last}/role");
    let reply = admin.put(422, &role, json!({"role": "trainee"})).await;
    assert_eq!(reply["error"]["code"], "unprocessable");
    let deactivate = format!("/v1/users/{last}/deactivate");
    admin
        .post(422, &deactivate, json!({"reason": "leaving"}))
        .await;
    // Keeping the role is not a demotion.
    admin.put(200, &role, json!({"role": "admin"})).await;

    // Once someone else is an active admin, the former last one can step down.
    let promoted = &others[0];
    admin
        .put(
            200,
            &format!("/v1/users/{promoted}/role"),
            json!({"role": "admin"}),
        )
        .await;
    let stepped_down = admin.put(200, &role, json!({"role": "trainer"})).await;
    assert_eq!(stepped_down["role"], "trainer");
    admin
        .put(
            404,
            &format!("/v1/users/{NO_SUCH_USER}/role"),
            json!({"role": "admin"}),
        )
        .await;
    admin.put(400, &role, json!({"role": "owner"})).await;
}

#[tokio::test]
async fn deactivation_and_reactivation_follow_the_lifecycle() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let trainees = admin.get(200, "/v1/users?role=trainee&status=active").await;
    let trainee = id(&items(&trainees)[0]);
    let path = |action: &str, user: &str| format!("/v1/users/{user}/{action}");

    let gone = admin
        .post(
            200,
            &path("deactivate", &trainee),
            json!({"reason": "left the company"}),
        )
        .await;
    assert_eq!(gone["status"], "deactivated");
    assert!(gone["deactivated_at"].is_string());
    let again = admin
        .post(409, &path("deactivate", &trainee), json!({}))
        .await;
    assert_eq!(again["error"]["code"], "conflict");
    let back = admin
        .post(
            200,
            &path("reactivate", &trainee),
            json!({"note": "rehired"}),
        )
        .await;
    assert_eq!(back["status"], "active");
    assert!(back["deactivated_at"].is_null());
    admin
        .post(409, &path("reactivate", &trainee), json!({}))
        .await;

    // Someone who never accepted the invitation goes back to `invited`, with a fresh invitation.
    let invited = admin
        .post(201, "/v1/users", json!({"email": "late@example.com"}))
        .await;
    let invited_id = id(&invited);
    admin
        .post(200, &path("deactivate", &invited_id), json!({}))
        .await;
    let reinvited = admin
        .post(200, &path("reactivate", &invited_id), json!({}))
        .await;
    assert_eq!(reinvited["status"], "invited");
    assert!(reinvited["invited_at"].as_str().unwrap() >= invited["invited_at"].as_str().unwrap());

    admin
        .post(404, &path("deactivate", NO_SUCH_USER), json!({}))
        .await;
    admin
        .post(404, &path("reactivate", NO_SUCH_USER), json!({}))
        .await;
    let other = sandbox.other_tenant("Globex");
    sandbox
        .as_key(&other)
        .post(404, &path("deactivate", &trainee), json!({}))
        .await;
}

// ---------------------------------------------------------------- skills

fn pump_skill(slug: &str, status: &str) -> Value {
    json!({
        "slug": slug,
        "name": "Pump seal check",
        "category": "maintenance",
        "status": status,
        "input_schema": {
            "type": "object",
            "properties": {"pump_id": {"type": "string", "minLength": 1}, "pressure_bar": {"type": "number"}},
            "required": ["pump_id"]
        },
        "steps": [
            {"title": "Isolate", "instruction": "Isolate pump {{pump_id}}.", "duration_seconds": 90, "kind": "check"},
            {"title": "Pressurise", "instruction": "Bring {{ pump_id }} to {{pressure_bar}} bar."}
        ]
    })
}

#[tokio::test]
async fn skills_are_created_validated_updated_listed_and_deleted() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let skill = admin
        .post(201, "/v1/skills", pump_skill("pump-seal-check", "draft"))
        .await;
    assert!(skill["id"].as_str().unwrap().starts_with("skl_"));
    assert_eq!(skill["version"], 1);
    assert_eq!(skill["status"], "draft");
    assert_eq!(
        skill["estimated_minutes"], 3,
        "90 s + the default 60 s, rounded up"
    );
    assert_eq!(skill["steps"][1]["kind"], "instruction");
    assert_eq!(skill["steps"][1]["duration_seconds"], 60);
    let skill_path = format!("/v1/skills/{}", id(&skill));
    assert_eq!(admin.get(200, &skill_path).await, skill);

    let reply = admin
        .post(409, "/v1/skills", pump_skill("pump-seal-check", "draft"))
        .await;
    assert_eq!(reply["error"]["code"], "conflict");
    let mut invalid = pump_skill("broken-schema", "draft");
    invalid["input_schema"] =
        json!({"type": "object", "properties": {"pump_id": {"type": "strng"}}});
    admin.post(422, "/v1/skills", invalid).await;
    let mut undeclared = pump_skill("undeclared", "draft");
    undeclared["steps"][0]["instruction"] = json!("Ask {{supervisor}}.");
    let reply = admin.post(422, "/v1/skills", undeclared).await;
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("supervisor")
    );
    admin
        .post(
            400,
            "/v1/skills",
            json!({"slug": "x", "name": "n", "steps": []}),
        )
        .await;

    let other = admin
        .post(201, "/v1/skills", pump_skill("other-skill", "published"))
        .await;
    let renamed = admin
        .patch(200, &skill_path, json!({"name": "Pump seal inspection"}))
        .await;
    assert_eq!(renamed["version"], 2);
    assert_eq!(renamed["slug"], "pump-seal-check");
    let listed = admin.get(200, "/v1/skills").await;
    assert_eq!(
        items(&listed)[0]["id"],
        skill["id"],
        "most recently updated first"
    );
    let published = admin.get(200, "/v1/skills?status=published").await;
    assert_eq!(
        items(&published).iter().map(id).collect::<Vec<_>>(),
        [id(&other)]
    );
    let maintenance = admin
        .get(200, "/v1/skills?category=maintenance&limit=1")
        .await;
    assert!(maintenance["next_cursor"].is_string());

    admin
        .patch(409, &skill_path, json!({"slug": "other-skill"}))
        .await;
    let bad_steps = json!({"steps": [{"title": "t", "instruction": "Use {{wrench}}"}]});
    admin.patch(422, &skill_path, bad_steps).await;
    // The schema may not drop a property that a kept step still uses.
    let narrowing = json!({"input_schema": {"type": "object", "properties": {"pressure_bar": {"type": "number"}}}});
    admin.patch(422, &skill_path, narrowing).await;
    let unchanged = admin.get(200, &skill_path).await;
    assert_eq!(unchanged["version"], 2, "a refused update changes nothing");
    let missing = format!("/v1/skills/{NO_SUCH_SKILL}");
    admin.patch(404, &missing, json!({"name": "x"})).await;
    admin.get(404, &missing).await;

    let deleted = admin.delete(200, &skill_path).await;
    assert_eq!(deleted, json!({"id": id(&skill), "deleted": true}));
    admin.get(404, &skill_path).await;
    admin.delete(404, &skill_path).await;
}

/// The demo's published lockout/tagout skill.
async fn lockout_skill(sandbox: &TestSandbox) -> Value {
    let admin = sandbox.as_admin();
    let page = admin
        .get(200, "/v1/skills?status=published&limit=100")
        .await;
    items(&page)
        .iter()
        .find(|s| s["slug"] == "lockout-tagout")
        .cloned()
        .expect("the demo has a lockout/tagout skill")
}

#[tokio::test]
async fn executing_a_skill_renders_its_steps_and_charges_its_minutes() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let skill = lockout_skill(&sandbox).await;
    let executions = format!("/v1/skills/{}/executions", id(&skill));
    let arguments = json!({"equipment_id": "PRESS-7", "energy_sources": "electrical 480 V", "authorized_person": "Maria Keller"});
    let execution = admin
        .post(201, &executions, json!({"arguments": arguments}))
        .await;
    assert!(execution["id"].as_str().unwrap().starts_with("sxe_"));
    assert_eq!(execution["status"], "succeeded");
    assert_eq!(execution["skill_version"], skill["version"]);
    assert_eq!(execution["dry_run"], false);
    assert_eq!(execution["minutes_consumed"], skill["estimated_minutes"]);
    assert!(
        execution["executed_by_key_id"]
            .as_str()
            .unwrap()
            .starts_with("key_")
    );
    let steps = execution["result"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), skill["steps"].as_array().unwrap().len());
    assert!(
        steps[0]["instruction"]
            .as_str()
            .unwrap()
            .contains("PRESS-7")
    );
    assert!(
        steps
            .iter()
            .all(|s| !s["instruction"].as_str().unwrap().contains("{{")),
        "{steps:?}"
    );
    assert!(
        execution["result"]["summary"]
            .as_str()
            .unwrap()
            .contains("lockout-tagout")
    );

    let ledger = admin
        .get(200, "/v1/billing/minute-transactions?kind=skill_execution")
        .await;
    let entry = items(&ledger)
        .iter()
        .find(|t| t["skill_execution_id"] == execution["id"])
        .expect("the charge is in the ledger");
    assert_eq!(entry["kind"], "skill_execution");
    assert_eq!(
        entry["minutes"],
        json!(-skill["estimated_minutes"].as_i64().unwrap())
    );

    // A dry run renders but consumes nothing; an absent optional argument stays visible.
    let dry = json!({"arguments": {"equipment_id": "PRESS-8", "authorized_person": "D. Okafor"}, "dry_run": true});
    let dry = admin.post(201, &executions, dry).await;
    assert_eq!(dry["minutes_consumed"], 0);
    assert_eq!(dry["dry_run"], true);
    assert!(
        dry["result"]["steps"]
            .to_string()
            .contains("{{energy_sources}}")
    );
    let after = admin
        .get(200, "/v1/billing/minute-transactions?kind=skill_execution")
        .await;
    assert_eq!(
        items(&after).len(),
        items(&ledger).len(),
        "a dry run is not charged"
    );
}

#[tokio::test]
async fn execution_is_refused_for_bad_arguments_drafts_unknown_tasks_and_an_empty_balance() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let skill = lockout_skill(&sandbox).await;
    let executions = format!("/v1/skills/{}/executions", id(&skill));
    let missing = json!({"arguments": {"equipment_id": "PRESS-7"}});
    let reply = admin.post(422, &executions, missing).await;
    assert_eq!(reply["error"]["code"], "unprocessable");
    let fields: Vec<&str> = reply["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["arguments.authorized_person"], "{reply}");
    let wrong_type = json!({"arguments": {"equipment_id": 7, "authorized_person": "M"}});
    let reply = admin.post(422, &executions, wrong_type).await;
    assert!(
        reply["error"]["details"]
            .to_string()
            .contains("arguments.equipment_id"),
        "{reply}"
    );
    let good = json!({"equipment_id": "PRESS-7", "authorized_person": "M"});
    let unknown_task = json!({"arguments": good, "task_id": "tsk_0000000000000000"});
    admin.post(422, &executions, unknown_task).await;
    admin.post(400, &executions, json!({"args": {}})).await;
    admin
        .post(
            404,
            &format!("/v1/skills/{NO_SUCH_SKILL}/executions"),
            json!({"arguments": {}}),
        )
        .await;

    let drafts = admin.get(200, "/v1/skills?status=draft").await;
    let draft = &items(&drafts)[0];
    let reply = admin
        .post(
            422,
            &format!("/v1/skills/{}/executions", id(draft)),
            json!({"arguments": {}, "dry_run": true}),
        )
        .await;
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("published")
    );

    // A tenant without minutes cannot pay for an execution.
    let empty = TestSandbox::empty().await;
    let empty_admin = empty.as_admin();
    let skill = empty_admin
        .post(201, "/v1/skills", pump_skill("pump", "published"))
        .await;
    let executions = format!("/v1/skills/{}/executions", id(&skill));
    let run = json!({"arguments": {"pump_id": "P-1"}});
    let reply = empty_admin.post(409, &executions, run).await;
    assert_eq!(reply["error"]["code"], "conflict");
    let dry = json!({"arguments": {"pump_id": "P-1"}, "dry_run": true});
    empty_admin.post(201, &executions, dry).await;
}

/// A skill whose every step is one argument repeated as often as the spec's longest instruction
/// allows (800 × `{{a}}` = 4000 characters), 100 steps of it.
fn echo_skill() -> Value {
    let steps: Vec<Value> = (0..100)
        .map(|i| json!({"title": format!("Step {i}"), "instruction": "{{a}}".repeat(800)}))
        .collect();
    json!({
        "slug": "echo", "name": "Echo", "status": "published",
        "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}},
        "steps": steps,
    })
}

#[tokio::test]
async fn rendering_is_bounded_before_anything_is_rendered() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let skill = admin.post(201, "/v1/skills", echo_skill()).await;
    let executions = format!("/v1/skills/{}/executions", id(&skill));
    let run = |a: &str| json!({"arguments": {"a": a}, "dry_run": true});

    // 800 × 100 bytes: one instruction would be 80,000 bytes, over 64 KiB.
    let reply = admin.post(422, &executions, run(&"x".repeat(100))).await;
    assert_eq!(reply["error"]["code"], "unprocessable");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("steps[0]") && message.contains("80000"),
        "{message}"
    );
    // 800 × 20 bytes per step is 16,000 bytes, but 1.6 MB for all 100: over 1 MiB together.
    let reply = admin.post(422, &executions, run(&"x".repeat(20))).await;
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 MiB"),
        "{reply}"
    );
    // 800 × 10 bytes per step, 800 KB in all: within both bounds.
    let execution = admin.post(201, &executions, run(&"x".repeat(10))).await;
    let steps = execution["result"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 100);
    assert_eq!(steps[99]["instruction"], "x".repeat(8000));
}

#[tokio::test]
async fn whole_numbers_sent_as_floats_count_as_integers() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let mut skill = pump_skill("float-durations", "draft");
    skill["steps"][0]["duration_seconds"] = json!(600.0);
    skill["steps"][1]["duration_seconds"] = json!(120.0);
    let skill = admin.post(201, "/v1/skills", skill).await;
    assert_eq!(skill["steps"][0]["duration_seconds"], json!(600));
    assert_eq!(
        skill["estimated_minutes"], 12,
        "600 s + 120 s, not the defaults"
    );
    let updated = admin.patch(200, &format!("/v1/skills/{}", id(&skill)), json!({"steps": [{"title": "Only", "instruction": "Check {{pump_id}}.", "duration_seconds": 1800.0}]})).await;
    assert_eq!(updated["estimated_minutes"], 30);
    // A fractional number is still refused where the spec says integer.
    admin.get(400, "/v1/skills?limit=2.5").await;
}

// ---------------------------------------------------------------- webhooks

#[tokio::test]
async fn webhooks_show_their_secret_once_and_are_filtered_updated_and_deleted() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let body = json!({"url": "https://hooks.example.com/trainar", "events": ["task.created", "user.invited"], "description": "CRM"});
    let webhook = admin.post(201, "/v1/webhooks", body).await;
    let secret = webhook["secret"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("whsec_")
            && secret.len() == 38
            && secret[6..].bytes().all(|b| b.is_ascii_alphanumeric())
    );
    assert_eq!(webhook["secret_prefix"], secret[..10]);
    assert_eq!(webhook["enabled"], true);
    assert_eq!(webhook["delivery_stats"]["consecutive_failures"], 0);
    let paused = json!({"url": "https://hooks.example.com/paused", "events": ["skill.executed"], "enabled": false});
    let paused = admin.post(201, "/v1/webhooks", paused).await;

    let listed = admin.get(200, "/v1/webhooks").await;
    assert_eq!(items(&listed).len(), 2);
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is never listed"
    );
    assert!(items(&listed).iter().all(|w| w.get("secret").is_none()));
    let by_event = admin.get(200, "/v1/webhooks?event=user.invited").await;
    assert_eq!(
        items(&by_event).iter().map(id).collect::<Vec<_>>(),
        [id(&webhook)]
    );
    let disabled = admin.get(200, "/v1/webhooks?enabled=false").await;
    assert_eq!(
        items(&disabled).iter().map(id).collect::<Vec<_>>(),
        [id(&paused)]
    );
    let none = admin.get(200, "/v1/webhooks?event=device.paired").await;
    assert_eq!(none["data"], json!([]));

    let path = format!("/v1/webhooks/{}", id(&webhook));
    let updated = admin
        .patch(
            200,
            &path,
            json!({"events": ["task.deleted"], "enabled": false}),
        )
        .await;
    assert_eq!(updated["events"], json!(["task.deleted"]));
    assert_eq!(updated["enabled"], false);
    assert_eq!(
        updated["secret_prefix"], webhook["secret_prefix"],
        "the secret never changes"
    );
    assert!(updated.get("secret").is_none());
    admin
        .patch(
            404,
            &format!("/v1/webhooks/{NO_SUCH_WEBHOOK}"),
            json!({"enabled": true}),
        )
        .await;
    admin
        .patch(400, &path, json!({"url": "http://example.com/hook"}))
        .await;

    for url in [
        "http://example.com/hook",
        "ftp://example.com",
        "http://localhost.evil.com/x",
    ] {
        let reply = admin
            .post(
                400,
                "/v1/webhooks",
                json!({"url": url, "events": ["task.created"]}),
            )
            .await;
        assert!(
            reply["error"]["details"].to_string().contains("url"),
            "{url}: {reply}"
        );
    }
    admin
        .post(
            400,
            "/v1/webhooks",
            json!({"url": "https://a.example.com", "events": []}),
        )
        .await;

    let deleted = admin.delete(200, &path).await;
    assert_eq!(deleted["deleted"], true);
    admin.delete(404, &path).await;
    admin.patch(404, &path, json!({"enabled": true})).await;
}

#[tokio::test]
async fn a_tenant_has_at_most_twenty_webhook_endpoints() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    for n in 0..20 {
        let body = json!({"url": format!("https://hooks.example.com/{n}"), "events": ["task.created"], "enabled": false});
        admin.post(201, "/v1/webhooks", body).await;
    }
    let body = json!({"url": "https://hooks.example.com/21", "events": ["task.created"]});
    let reply = admin.post(422, "/v1/webhooks", body).await;
    assert_eq!(reply["error"]["code"], "unprocessable");
}

/// What a loopback receiver saw: each request's headers and raw body.
type Hits = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// An HTTP receiver on 127.0.0.1 that answers every POST with `status`; returns its URL.
async fn receiver(status: u16) -> (String, Hits) {
    let hits: Hits = Arc::default();
    let seen = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((headers, body));
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, hits)
}

/// Waits up to `seconds` for the receiver to have seen at least `count` requests.
async fn wait_for(hits: &Hits, count: usize, seconds: u64) -> Vec<(HeaderMap, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let seen = hits.lock().unwrap().clone();
        if seen.len() >= count || tokio::time::Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hmac_hex(secret: &str, message: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn events_are_delivered_signed_to_subscribed_endpoints() {
    // The receiver listens on loopback, which only an operator's opt-in allows.
    let sandbox = TestSandbox::allowing_private_webhooks().await;
    let admin = sandbox.as_admin();
    let before = admin
        .post(201, "/v1/tasks", json!({"title": "before the webhook"}))
        .await;
    let (url, hits) = receiver(200).await;
    let webhook = admin
        .post(
            201,
            "/v1/webhooks",
            json!({"url": url, "events": ["task.created"]}),
        )
        .await;
    let secret = webhook["secret"].as_str().unwrap();
    admin
        .patch(
            200,
            &format!("/v1/tasks/{}", id(&before)),
            json!({"status": "done"}),
        )
        .await;
    let task = admin
        .post(201, "/v1/tasks", json!({"title": "Inspect pump P-12"}))
        .await;

    let seen = wait_for(&hits, 1, 5).await;
    assert_eq!(
        seen.len(),
        1,
        "exactly the one task.created after the webhook's creation"
    );
    let (headers, body) = &seen[0];
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("trainar-event"), "task.created");
    assert!(!header("trainar-delivery").is_empty());
    let signature = header("trainar-signature");
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .expect("t=…,v1=…");
    assert_eq!(
        v1,
        hmac_hex(secret, &format!("{t}.{body}")),
        "the signature verifies with the secret"
    );
    let age = chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap();
    assert!((0..300).contains(&age));
    let event: Value = serde_json::from_str(body).unwrap();
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(event["type"], "task.created");
    assert!(event["created_at"].is_string());
    assert_eq!(event["data"]["id"], task["id"]);
    assert_eq!(event["data"]["title"], "Inspect pump P-12");

    let stats = async || {
        let listed = admin.get(200, "/v1/webhooks").await;
        items(&listed)[0]["delivery_stats"].clone()
    };
    let mut delivery_stats = stats().await;
    for _ in 0..20 {
        if delivery_stats["last_status_code"] == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        delivery_stats = stats().await;
    }
    assert_eq!(delivery_stats["last_status_code"], 200);
    assert_eq!(delivery_stats["consecutive_failures"], 0);
    assert!(delivery_stats["last_delivery_at"].is_string());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        hits.lock().unwrap().len(),
        1,
        "a delivered event is not sent again"
    );
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_with_backoff() {
    // The receiver listens on loopback, which only an operator's opt-in allows.
    let sandbox = TestSandbox::allowing_private_webhooks().await;
    let admin = sandbox.as_admin();
    let (url, hits) = receiver(500).await;
    let body = json!({"url": url, "events": ["user.invited"]});
    let webhook = admin.post(201, "/v1/webhooks", body).await;
    admin
        .post(201, "/v1/users", json!({"email": "retry@example.com"}))
        .await;

    let seen = wait_for(&hits, 2, 5).await;
    assert!(
        seen.len() >= 2,
        "retried at least once within 5 s: {} attempt(s)",
        seen.len()
    );
    let deliveries: std::collections::BTreeSet<String> = seen
        .iter()
        .map(|(h, _)| {
            h.get("trainar-delivery")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(deliveries.len(), 1, "the attempts are of one delivery");
    assert_eq!(seen[0].1, seen[1].1, "a retry resends the same event");
    let event: Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(event["data"]["email"], "retry@example.com");

    let listed = admin.get(200, "/v1/webhooks").await;
    let stats = &items(&listed)[0]["delivery_stats"];
    assert_eq!(stats["last_status_code"], 500);
    assert!(
        stats["consecutive_failures"].as_i64().unwrap() >= 1,
        "{stats}"
    );

    // Re-enabling resets the failure count.
    let path = format!("/v1/webhooks/{}", id(&webhook));
    admin.patch(200, &path, json!({"enabled": false})).await;
    let resumed = admin.patch(200, &path, json!({"enabled": true})).await;
    assert_eq!(resumed["delivery_stats"]["consecutive_failures"], 0);
}

#[tokio::test]
async fn a_failing_fan_out_does_not_hold_back_queued_retries() {
    // The receiver listens on loopback, which only an operator's opt-in allows.
    let sandbox = TestSandbox::allowing_private_webhooks().await;
    let admin = sandbox.as_admin();
    let (url, hits) = receiver(500).await;
    let body = json!({"url": url, "events": ["user.invited"]});
    admin.post(201, "/v1/webhooks", body).await;
    let body = json!({"url": "https://hooks.example.com/tasks", "events": ["task.created"]});
    let other = admin.post(201, "/v1/webhooks", body).await;
    admin
        .post(201, "/v1/users", json!({"email": "fanout@example.com"}))
        .await;
    assert_eq!(wait_for(&hits, 1, 5).await.len(), 1, "the first attempt");

    // Break the fan-out: with another endpoint's private side malformed, its query fails on
    // every poll once there is a new event to fan out.
    sandbox.sql(
        "UPDATE objects SET private = '{' WHERE kind = 'webhook' AND id = ?1",
        [id(&other)],
    );
    admin
        .post(201, "/v1/tasks", json!({"title": "an event to fan out"}))
        .await;
    let seen = wait_for(&hits, 2, 5).await;
    assert!(
        seen.len() >= 2,
        "the queued delivery is retried although fan-out fails: {} attempt(s)",
        seen.len()
    );
}
