//! The sandbox's integrations (catalogue, the signed connection flow through the OAuth callback,
//! syncs, disconnection), sessions (filters, pagination, analytics) and reports (every figure
//! computed from stored data), including tenant isolation.

use crate::sandbox_fixture::{ADMIN_KEY, TestSandbox, items};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Completes a connection flow as the provider's redirect would; returns the status and body.
async fn callback(sandbox: &TestSandbox, integration: &str, query: &str) -> (u16, Value) {
    let url = format!("{}/oauth/callback/{integration}?{query}", sandbox.url);
    let response = sandbox.http().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_provider_catalogue_is_ordered_filtered_and_paged() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let all = sandbox
        .all_pages(ADMIN_KEY, "/v1/integrations/providers", 3)
        .await;
    let names: Vec<&str> = all.iter().map(|p| p["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "ordered by name");
    assert!(all.len() >= 8);
    let categories: BTreeSet<&str> = all
        .iter()
        .map(|p| p["category"].as_str().unwrap())
        .collect();
    assert_eq!(
        categories,
        ["chat", "hris", "lms", "storage", "ticketing"].into()
    );
    let servicenow = all.iter().find(|p| p["id"] == "servicenow").unwrap();
    assert_eq!(servicenow["auth_type"], "oauth2");
    assert!(
        servicenow["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("import_tasks"))
    );
    assert!(
        servicenow["docs_url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );

    let hris = admin
        .get(200, "/v1/integrations/providers?category=hris")
        .await;
    assert!(!items(&hris).is_empty());
    assert!(items(&hris).iter().all(|p| p["category"] == "hris"));
    admin
        .get(400, "/v1/integrations/providers?category=crm")
        .await;
    admin
        .get(400, "/v1/integrations/providers?cursor=bogus")
        .await;
}

#[tokio::test]
async fn a_connection_flow_runs_from_connect_url_to_disconnect() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    for n in 0..2 {
        admin
            .post(
                201,
                "/v1/tasks",
                json!({"title": format!("work order {n}")}),
            )
            .await;
    }
    let status = admin.get(200, "/v1/integrations/servicenow").await;
    assert_eq!(status["status"], "not_connected");
    assert_eq!(status["integration_id"], "servicenow");
    assert!(
        status.get("id").is_none(),
        "served as the spec's TenantIntegration"
    );
    let listed = admin.get(200, "/v1/integrations").await;
    assert_eq!(
        listed["data"],
        json!([]),
        "never-connected providers are not listed"
    );
    admin.get(404, "/v1/integrations/nosuchprovider").await;
    admin
        .post(
            404,
            "/v1/integrations/nosuchprovider/connect-url",
            json!({}),
        )
        .await;

    // Start the flow: the integration is pending, and the URL carries the state.
    let body = json!({"redirect_uri": "https://example.com/done"});
    let flow = admin
        .post(201, "/v1/integrations/servicenow/connect-url", body)
        .await;
    let state = flow["state"].as_str().unwrap().to_string();
    let url = flow["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://connect.trainar.ai/oauth/servicenow/authorize?"),
        "{url}"
    );
    assert!(url.contains(&format!("state={state}")), "{url}");
    assert!(
        url.contains("redirect_uri=https%3A%2F%2Fexample.com%2Fdone"),
        "{url}"
    );
    assert!(flow["expires_at"].as_str().unwrap() > flow_now(&sandbox).await.as_str());
    let pending = admin.get(200, "/v1/integrations/servicenow").await;
    assert_eq!(pending["status"], "pending");
    let listed = admin.get(200, "/v1/integrations?status=pending").await;
    assert_eq!(items(&listed).len(), 1);
    admin
        .post(409, "/v1/integrations/servicenow/syncs", json!({}))
        .await;
    admin
        .post(409, "/v1/integrations/servicenow/disconnect", json!({}))
        .await;

    // The provider redirects back with the state: connected.
    let (code, done) = callback(
        &sandbox,
        "servicenow",
        &format!("state={state}&code=abc123"),
    )
    .await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["status"], "connected");
    assert_eq!(done["redirect_uri"], "https://example.com/done");
    let connected = admin.get(200, "/v1/integrations/servicenow").await;
    assert_eq!(connected["status"], "connected");
    assert!(connected["connected_at"].is_string());
    assert_eq!(
        connected["external_account"],
        "acme-field-services.service-now.com"
    );
    assert_eq!(connected["last_sync_at"], Value::Null);
    let (code, _) = callback(
        &sandbox,
        "servicenow",
        &format!("state={state}&code=abc123"),
    )
    .await;
    assert_eq!(code, 400, "a state is single-use");
    admin
        .post(409, "/v1/integrations/servicenow/connect-url", json!({}))
        .await;

    // A sync is recorded at once, counted from the stored tasks, and updates the integration.
    // Stamps are to the millisecond and an incremental sync re-reads the last sync's millisecond,
    // so the tasks above are kept out of that millisecond for the count below to be exact.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let run = admin
        .post(202, "/v1/integrations/servicenow/syncs", json!({}))
        .await;
    assert!(run["id"].as_str().unwrap().starts_with("syn_"));
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["kind"], "full", "the first sync reads everything");
    assert_eq!(run["records_synced"], 2);
    assert!(run["started_at"].is_string() && run["finished_at"].is_string());
    let synced = admin.get(200, "/v1/integrations/servicenow").await;
    assert_eq!(synced["last_sync_at"], run["finished_at"]);
    assert_eq!(synced["last_sync_status"], "succeeded");
    admin
        .post(201, "/v1/tasks", json!({"title": "new since the sync"}))
        .await;
    let run = admin
        .post(202, "/v1/integrations/servicenow/syncs", json!({}))
        .await;
    assert_eq!(
        (run["kind"].clone(), run["records_synced"].clone()),
        (json!("incremental"), json!(1))
    );
    let run = admin
        .post(
            202,
            "/v1/integrations/servicenow/syncs",
            json!({"full": true}),
        )
        .await;
    assert_eq!(
        (run["kind"].clone(), run["records_synced"].clone()),
        (json!("full"), json!(3))
    );
    admin
        .post(
            400,
            "/v1/integrations/servicenow/syncs",
            json!({"full": "yes"}),
        )
        .await;
    admin
        .post(404, "/v1/integrations/nosuchprovider/syncs", json!({}))
        .await;

    // Disconnect: once.
    let body = json!({"reason": "moving to a new ITSM"});
    let gone = admin
        .post(200, "/v1/integrations/servicenow/disconnect", body)
        .await;
    assert_eq!(gone["status"], "disconnected");
    assert_eq!(gone["external_account"], Value::Null);
    assert_eq!(gone["last_sync_status"], "succeeded", "history stays");
    admin
        .post(409, "/v1/integrations/servicenow/disconnect", json!({}))
        .await;
    admin
        .post(409, "/v1/integrations/servicenow/syncs", json!({}))
        .await;
    admin
        .post(404, "/v1/integrations/nosuchprovider/disconnect", json!({}))
        .await;
    // Reconnecting needs a new flow.
    admin
        .post(201, "/v1/integrations/servicenow/connect-url", json!({}))
        .await;
}

/// The sandbox's clock, read from a fresh object it stamps.
async fn flow_now(sandbox: &TestSandbox) -> String {
    let admin = sandbox.as_admin();
    let task = admin
        .post(201, "/v1/tasks", json!({"title": "clock"}))
        .await;
    let path = format!("/v1/tasks/{}", task["id"].as_str().unwrap());
    admin.delete(200, &path).await;
    task["created_at"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_tampered_misdirected_or_superseded_state_is_rejected() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let first = admin
        .post(201, "/v1/integrations/workday/connect-url", json!({}))
        .await;
    let first = first["state"].as_str().unwrap().to_string();
    let flow = admin
        .post(201, "/v1/integrations/workday/connect-url", json!({}))
        .await;
    let state = flow["state"].as_str().unwrap().to_string();

    let (payload, signature) = state.split_once('.').unwrap();
    let flipped = |text: &str| -> String {
        let mut chars: Vec<char> = text.chars().collect();
        chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect()
    };
    let attempts = [
        format!("state={payload}.{}&code=x", flipped(signature)),
        format!("state={}.{signature}&code=x", flipped(payload)),
        format!("state={payload}&code=x"),
        "state=garbage&code=x".to_string(),
        format!("code=x&state={first}"),
        format!("state={state}"),
        "code=x".to_string(),
    ];
    for query in &attempts {
        let (code, body) = callback(&sandbox, "workday", query).await;
        assert_eq!(code, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{query}");
    }
    let (code, _) = callback(&sandbox, "slack", &format!("state={state}&code=x")).await;
    assert_eq!(
        code, 400,
        "a state only completes the flow it was issued for"
    );
    let unchanged = admin.get(200, "/v1/integrations/workday").await;
    assert_eq!(unchanged["status"], "pending");
    assert_eq!(unchanged["connected_at"], Value::Null);

    let (code, body) = callback(&sandbox, "workday", &format!("state={state}&code=x")).await;
    assert_eq!(code, 200, "{body}");
    let connected = admin.get(200, "/v1/integrations/workday").await;
    assert_eq!(connected["status"], "connected");
}

#[tokio::test]
async fn the_demo_tenant_has_integrations_in_every_state() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let listed = admin.get(200, "/v1/integrations?limit=100").await;
    let statuses: BTreeSet<&str> = items(&listed)
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["connected", "disconnected", "error", "pending"].into()
    );
    let names: Vec<&str> = items(&listed)
        .iter()
        .map(|i| i["provider_name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let broken = admin.get(200, "/v1/integrations?status=error").await;
    assert!(
        items(&broken)
            .iter()
            .all(|i| i["error"].is_string() && i["last_sync_status"] == "failed")
    );
    admin
        .post(409, "/v1/integrations/docebo/syncs", json!({}))
        .await;
    let connected = admin.get(200, "/v1/integrations/servicenow").await;
    assert_eq!(connected["status"], "connected");
    assert!(connected["last_sync_at"].is_string());
}

#[tokio::test]
async fn sessions_are_listed_newest_first_with_filters_and_stable_pages() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let all = sandbox.all_pages(ADMIN_KEY, "/v1/sessions", 7).await;
    assert!(
        all.len() >= 30,
        "the demo has sessions over the past 30 days: {}",
        all.len()
    );
    let ids: BTreeSet<&str> = all.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.len(),
        all.len(),
        "no session appears twice across pages"
    );
    let starts: Vec<&str> = all
        .iter()
        .map(|s| s["started_at"].as_str().unwrap())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "newest started_at first"
    );
    let statuses: BTreeSet<&str> = all.iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert!(
        statuses.contains("completed") && statuses.contains("in_progress"),
        "{statuses:?}"
    );
    for session in &all {
        let steps = session["steps"].as_array().unwrap();
        assert_eq!(session["steps_total"], steps.len());
        let done = steps.iter().filter(|s| s["status"] == "completed").count();
        assert_eq!(session["steps_completed"], done);
        assert_eq!(
            session["ended_at"].is_null(),
            session["status"] == "in_progress"
        );
    }

    let sample = &all[all.len() / 2];
    for field in ["user_id", "device_id", "skill_id", "status"] {
        let Some(value) = sample[field].as_str() else {
            continue;
        };
        let filtered = sandbox
            .all_pages(ADMIN_KEY, &format!("/v1/sessions?{field}={value}"), 100)
            .await;
        let expected = all.iter().filter(|s| s[field] == value).count();
        assert_eq!(filtered.len(), expected, "{field}={value}");
    }
    let from = sample["started_at"].as_str().unwrap();
    let query = serde_urlencoded::to_string([("from", from)]).unwrap();
    let recent = sandbox
        .all_pages(ADMIN_KEY, &format!("/v1/sessions?{query}"), 100)
        .await;
    assert_eq!(
        recent.len(),
        all.iter()
            .filter(|s| s["started_at"].as_str().unwrap() >= from)
            .count()
    );
    let query = serde_urlencoded::to_string([("to", from)]).unwrap();
    let older = sandbox
        .all_pages(ADMIN_KEY, &format!("/v1/sessions?{query}"), 100)
        .await;
    assert_eq!(older.len() + recent.len(), all.len());

    let bad_period = serde_urlencoded::to_string([("from", from), ("to", from)]).unwrap();
    admin.get(400, &format!("/v1/sessions?{bad_period}")).await;
    admin.get(400, "/v1/sessions?status=paused").await;
    admin.get(400, "/v1/sessions?cursor=djE6OTk5OTk5").await;
    let none = admin
        .get(200, "/v1/sessions?user_id=usr_0000000000000000")
        .await;
    assert_eq!(none["data"], json!([]));
}

#[tokio::test]
async fn a_session_is_read_by_id_and_invisible_to_other_tenants() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let listed = admin
        .get(200, "/v1/sessions?status=completed&limit=1")
        .await;
    let summary = &items(&listed)[0];
    let path = format!("/v1/sessions/{}", summary["id"].as_str().unwrap());
    let session = admin.get(200, &path).await;
    assert_eq!(&session, summary);
    assert!(session["minutes_used"].as_i64().unwrap() >= 1);
    let duration = session["duration_seconds"].as_i64().unwrap();
    assert_eq!(
        session["minutes_used"].as_i64().unwrap(),
        (duration + 59) / 60,
        "billed rounded up"
    );
    assert!(session["user_id"].as_str().unwrap().starts_with("usr_"));
    admin.get(404, "/v1/sessions/ses_0000000000000000").await;
    admin.get(400, "/v1/sessions/not-a-session").await;

    let other_key = sandbox.other_tenant("Globex");
    let other = sandbox.as_key(&other_key);
    other.get(404, &path).await;
    let theirs = other.get(200, "/v1/sessions?limit=100").await;
    assert_eq!(theirs["data"], json!([]));
    let analytics = other.get(200, "/v1/analytics/sessions").await;
    assert_eq!(analytics["totals"]["sessions"], 0);
    assert_eq!(analytics["totals"]["average_score"], Value::Null);
    let overview = other.get(200, "/v1/reports/overview").await;
    for field in [
        "active_users",
        "sessions",
        "completed_sessions",
        "minutes_used",
        "tasks_open",
        "tasks_done",
    ] {
        assert_eq!(overview[field], 0, "{field}");
    }
    let users = other.get(200, "/v1/reports/users").await;
    assert!(items(&users).iter().all(|row| row["sessions"] == 0));
    let integrations = other.get(200, "/v1/integrations").await;
    assert_eq!(integrations["data"], json!([]));
}

#[tokio::test]
async fn session_analytics_add_up_to_the_listed_sessions() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let all = sandbox.all_pages(ADMIN_KEY, "/v1/sessions", 100).await;
    let analytics = admin.get(200, "/v1/analytics/sessions").await;
    let totals = &analytics["totals"];
    assert_eq!(totals["sessions"], all.len());
    let completed = all.iter().filter(|s| s["status"] == "completed").count();
    assert_eq!(totals["completed"], completed);
    let minutes: i64 = all
        .iter()
        .map(|s| s["minutes_used"].as_i64().unwrap())
        .sum();
    assert_eq!(totals["total_minutes"], minutes);
    let rate = totals["completion_rate"].as_f64().unwrap();
    assert!((rate - completed as f64 / all.len() as f64).abs() < 0.001);
    let series = analytics["series"].as_array().unwrap();
    assert!(
        (30..=31).contains(&series.len()),
        "a bucket per day: {}",
        series.len()
    );
    let in_series: i64 = series.iter().map(|b| b["sessions"].as_i64().unwrap()).sum();
    assert_eq!(in_series, all.len() as i64);
    let by_skill: i64 = analytics["by_skill"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sessions"].as_i64().unwrap())
        .sum();
    assert_eq!(by_skill, all.len() as i64);

    let weekly = admin
        .get(200, "/v1/analytics/sessions?granularity=week")
        .await;
    assert_eq!(weekly["granularity"], "week");
    assert!((5..=6).contains(&weekly["series"].as_array().unwrap().len()));

    let user = all[0]["user_id"].as_str().unwrap();
    let mine = admin
        .get(200, &format!("/v1/analytics/sessions?user_id={user}"))
        .await;
    assert_eq!(mine["user_id"], user);
    assert_eq!(
        mine["totals"]["sessions"],
        all.iter().filter(|s| s["user_id"] == user).count()
    );
    let query = serde_urlencoded::to_string([
        ("from", "2020-01-02T00:00:00Z"),
        ("to", "2020-01-01T00:00:00Z"),
    ])
    .unwrap();
    admin
        .get(400, &format!("/v1/analytics/sessions?{query}"))
        .await;
    let query = serde_urlencoded::to_string([
        ("from", "1990-01-01T00:00:00Z"),
        ("to", "2020-01-01T00:00:00Z"),
    ])
    .unwrap();
    admin
        .get(400, &format!("/v1/analytics/sessions?{query}"))
        .await;
}

#[tokio::test]
async fn the_tasks_report_counts_a_new_task() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let before = admin.get(200, "/v1/reports/tasks").await;
    let body = json!({"title": "Counted", "due_at": "2021-01-01T00:00:00Z"});
    admin.post(201, "/v1/tasks", body).await;
    let after = admin.get(200, "/v1/reports/tasks").await;
    let plus_one = |path: &[&str]| {
        let read = |report: &Value| {
            path.iter()
                .fold(report.clone(), |v, k| v[*k].clone())
                .as_i64()
                .unwrap()
        };
        assert_eq!(read(&after), read(&before) + 1, "{path:?}");
    };
    plus_one(&["created"]);
    plus_one(&["by_status", "open"]);
    plus_one(&["by_source", "api"]);
    plus_one(&["overdue"]);
    let created_in_series = |report: &Value| -> i64 {
        report["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["created"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(created_in_series(&after), created_in_series(&before) + 1);
    assert_eq!(
        created_in_series(&after),
        after["created"].as_i64().unwrap()
    );

    let overview = admin.get(200, "/v1/reports/overview").await;
    let open = admin.get(200, "/v1/tasks?status=open&limit=100").await;
    let in_progress = admin
        .get(200, "/v1/tasks?status=in_progress&limit=100")
        .await;
    assert_eq!(
        overview["tasks_open"],
        items(&open).len() + items(&in_progress).len()
    );
    let monthly = admin.get(200, "/v1/reports/tasks?granularity=month").await;
    assert_eq!(monthly["created"], after["created"]);
    let query = serde_urlencoded::to_string([
        ("from", "2030-01-01T00:00:00Z"),
        ("to", "2029-01-01T00:00:00Z"),
    ])
    .unwrap();
    admin.get(400, &format!("/v1/reports/tasks?{query}")).await;
}

#[tokio::test]
async fn reports_agree_with_sessions_and_the_ledger() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let sessions = sandbox.all_pages(ADMIN_KEY, "/v1/sessions", 100).await;
    let completed = sessions
        .iter()
        .filter(|s| s["status"] == "completed")
        .count();
    let users: BTreeSet<&str> = sessions
        .iter()
        .map(|s| s["user_id"].as_str().unwrap())
        .collect();

    let overview = admin.get(200, "/v1/reports/overview").await;
    assert_eq!(overview["sessions"], sessions.len());
    assert_eq!(overview["completed_sessions"], completed);
    assert_eq!(overview["active_users"], users.len());
    assert!(overview["generated_at"].is_string());

    let report = admin
        .get(200, "/v1/reports/sessions?granularity=week")
        .await;
    assert_eq!(report["totals"]["sessions"], sessions.len());
    assert_eq!(report["by_status"]["completed"], completed);
    let by_status: i64 = ["in_progress", "completed", "abandoned", "failed"]
        .iter()
        .map(|s| report["by_status"][*s].as_i64().unwrap())
        .sum();
    assert_eq!(by_status, sessions.len() as i64);
    let top = report["top_skills"].as_array().unwrap();
    assert!(top.len() <= 10 && !top.is_empty());
    assert!(
        top.windows(2)
            .all(|w| w[0]["sessions"].as_i64() >= w[1]["sessions"].as_i64())
    );
    let session_minutes: i64 = sessions
        .iter()
        .map(|s| s["minutes_used"].as_i64().unwrap())
        .sum();
    assert_eq!(report["totals"]["minutes_used"], session_minutes);

    let minutes = admin.get(200, "/v1/reports/minutes").await;
    let series = minutes["series"].as_array().unwrap();
    let used_in_series: i64 = series
        .iter()
        .map(|b| b["used_minutes"].as_i64().unwrap())
        .sum();
    assert_eq!(used_in_series, minutes["used_minutes"].as_i64().unwrap());
    let session_in_series: i64 = series
        .iter()
        .map(|b| b["session_minutes"].as_i64().unwrap())
        .sum();
    assert_eq!(
        session_in_series, session_minutes,
        "session minutes are billed to the ledger"
    );
    assert_eq!(overview["minutes_used"], minutes["used_minutes"]);
    let pool = &minutes["pool"];
    let expected = (pool["included_minutes"].as_i64().unwrap()
        + pool["purchased_minutes"].as_i64().unwrap()
        - pool["used_minutes"].as_i64().unwrap())
    .max(0);
    assert_eq!(pool["remaining_minutes"], expected);

    let rows = sandbox
        .all_pages(ADMIN_KEY, "/v1/reports/users?sort=sessions", 2)
        .await;
    let row_ids: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        row_ids.len(),
        rows.len(),
        "no user appears twice across pages"
    );
    assert!(
        rows.windows(2)
            .all(|w| w[0]["sessions"].as_i64() >= w[1]["sessions"].as_i64())
    );
    let row_sessions: i64 = rows.iter().map(|r| r["sessions"].as_i64().unwrap()).sum();
    assert_eq!(row_sessions, sessions.len() as i64);
    let by_minutes = admin.get(200, "/v1/reports/users?limit=100").await;
    assert_eq!(by_minutes["sort"], "minutes");
    assert!(
        items(&by_minutes)
            .windows(2)
            .all(|w| w[0]["minutes"].as_i64() >= w[1]["minutes"].as_i64())
    );
    admin.get(400, "/v1/reports/users?sort=name").await;

    let query = serde_urlencoded::to_string([
        ("from", "2025-06-01T00:00:00Z"),
        ("to", "2025-06-01T00:00:00Z"),
    ])
    .unwrap();
    for report in ["overview", "sessions", "users", "minutes", "tasks"] {
        let reply = admin
            .get(400, &format!("/v1/reports/{report}?{query}"))
            .await;
        assert_eq!(reply["error"]["details"][0]["field"], "from", "{report}");
    }
    let empty_period = serde_urlencoded::to_string([
        ("from", "2001-01-01T00:00:00Z"),
        ("to", "2001-02-01T00:00:00Z"),
    ])
    .unwrap();
    let old = admin
        .get(200, &format!("/v1/reports/sessions?{empty_period}"))
        .await;
    assert_eq!(old["totals"]["sessions"], 0);
    assert_eq!(old["series"].as_array().unwrap().len(), 31);
}

#[tokio::test]
async fn a_long_redirect_uri_is_kept_with_the_flow_and_the_url_stays_in_bounds() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let redirect = format!("https://example.com/back?{}", "a=1&".repeat(500));
    let body = json!({"redirect_uri": redirect});
    let flow = admin
        .post(201, "/v1/integrations/slack/connect-url", body)
        .await;
    let url = flow["url"].as_str().unwrap();
    assert!(
        url.len() <= 4096,
        "the spec bounds `url` at 4096 characters: {}",
        url.len()
    );
    let state = flow["state"].as_str().unwrap();
    assert!(url.contains(state));
    let (code, done) = callback(&sandbox, "slack", &format!("state={state}&code=x")).await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["redirect_uri"], redirect);
}

#[tokio::test]
async fn a_forged_state_learns_nothing_about_which_flows_exist() {
    use base64::Engine;
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let me = admin.get(200, "/v1/api-keys/current").await;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let claims = json!({
        "t": me["tenant_id"], "i": "workday", "n": "guessed",
        "e": chrono::Utc::now().timestamp() + 600,
    });
    let forged = format!(
        "state={}.{}&code=x",
        encode(claims.to_string().as_bytes()),
        encode(&[0u8; 32])
    );
    // No workday flow in this tenant yet.
    let (code, without_flow) = callback(&sandbox, "workday", &forged).await;
    assert_eq!(code, 400, "{without_flow}");
    admin
        .post(201, "/v1/integrations/workday/connect-url", json!({}))
        .await;
    let (code, with_flow) = callback(&sandbox, "workday", &forged).await;
    assert_eq!(code, 400, "{with_flow}");
    assert_eq!(
        without_flow, with_flow,
        "the same answer whether or not the tenant has a flow"
    );
}
