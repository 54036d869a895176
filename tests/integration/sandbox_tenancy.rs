//! The sandbox as a multi-tenant service, over real HTTP: no tenant can stall another (a
//! backtracking schema, a write flood), keys never outlive or outrank the keys that made them,
//! and webhooks cannot probe the sandbox's own network.

use crate::sandbox_fixture::{ADMIN_KEY, KeyHolder, TestSandbox, fresh_dir};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tests that load the sandbox run one at a time: each measures latency under its own load,
/// not under the other's. (Multi-threaded runtimes: the sandbox's requests do not queue behind
/// the load's clients on one thread.)
static LOAD_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn id(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_string()
}

/// The `p`-th percentile (0..=100) of `samples`, by nearest rank.
fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    let rank = (samples.len() * p).div_ceil(100).max(1);
    samples[rank - 1]
}

/// `GET path` as `key` `count` times in a row, `pause` apart; each latency (a request that
/// fails or takes over 5 s counts as 5 s) and the statuses seen.
async fn timed_reads(
    sandbox: &TestSandbox,
    key: &str,
    path: &str,
    count: usize,
    pause: Duration,
) -> (Vec<Duration>, Vec<u16>) {
    let client = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(count);
    let mut statuses = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let sent = client
            .get(format!("{}{path}", sandbox.url))
            .bearer_auth(key)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let status = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.bytes().await;
                status
            }
            Err(_) => 0,
        };
        latencies.push(started.elapsed().min(Duration::from_secs(5)));
        statuses.push(status);
        tokio::time::sleep(pause).await;
    }
    (latencies, statuses)
}

/// Ends the load and waits for every worker, so that a worker's panic fails the test instead of
/// vanishing with its task.
async fn stop_load(stop: &AtomicBool, workers: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
}

// ---------------------------------------------------------------- one tenant cannot stall another

/// The issue's attack: nested quantifiers and a lookahead, against 2,200 arguments that almost
/// match. With a backtracking engine each argument costs a million steps.
const BACKTRACKING_PATTERN: &str = r"^(\w+\s?)*(?!x)$";

fn hostile_arguments(text: &str) -> Value {
    let arguments: serde_json::Map<String, Value> =
        (0..2200).map(|n| (format!("a{n}"), json!(text))).collect();
    Value::Object(arguments)
}

/// A published skill of the admin's tenant whose arguments must all match `pattern`.
async fn skill_with_pattern(sandbox: &TestSandbox, slug: &str, pattern: &str) -> (u16, Value) {
    let body = json!({
        "slug": slug, "name": slug, "status": "published",
        "input_schema": {"type": "object", "additionalProperties": {"type": "string", "pattern": pattern}},
        "steps": [{"title": "Only step", "instruction": "Do it."}],
    });
    sandbox
        .call(ADMIN_KEY, "POST", "/v1/skills", Some(body))
        .await
}

#[tokio::test]
async fn a_pattern_that_needs_backtracking_is_refused_when_the_skill_is_defined() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let (status, reply) = skill_with_pattern(&sandbox, "lookahead", BACKTRACKING_PATTERN).await;
    assert_eq!(status, 422, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains("lookaround"), "{message}");
    // A backreference needs backtracking too; the update path has the same rule.
    let (status, skill) = skill_with_pattern(&sandbox, "linear", r"^[a-z]+$").await;
    assert_eq!(status, 201, "{skill}");
    let update = json!({"input_schema": {"type": "object", "properties": {"a": {"type": "string", "pattern": r"(a)\1"}}}});
    admin
        .patch(422, &format!("/v1/skills/{}", id(&skill)), update)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtracking_schema_does_not_stall_another_tenants_reads() {
    let _alone = LOAD_TESTS.lock().await;
    let sandbox = TestSandbox::empty().await;
    let other = sandbox.other_tenant("Globex");
    for n in 0..20 {
        let body = json!({"title": format!("Globex task {n}")});
        sandbox.as_key(&other).post(201, "/v1/tasks", body).await;
    }
    // A skill stored before patterns were restricted: written straight into the database with
    // the backtracking pattern, as the API would have accepted it then.
    let (status, stored) = skill_with_pattern(&sandbox, "stored-before", r"^[a-z]+$").await;
    assert_eq!(status, 201, "{stored}");
    let schema = json!({"type": "object", "additionalProperties": {"type": "string", "pattern": BACKTRACKING_PATTERN}});
    let changed = sandbox.sql(
        "UPDATE objects SET body = json_set(body, '$.input_schema', json(?1)) WHERE kind = 'skill' AND id = ?2",
        rusqlite::params![schema.to_string(), id(&stored)],
    );
    assert_eq!(changed, 1);
    // And the heaviest schema the rules accept: the same nesting without the lookahead.
    let (status, heavy) = skill_with_pattern(&sandbox, "heavy", r"^(\w+\s?)*$").await;
    assert_eq!(status, 201, "{heavy}");

    let attacks = [
        (
            format!("/v1/skills/{}/executions", id(&stored)),
            json!({"arguments": hostile_arguments(&format!("{}!", "a".repeat(17))), "dry_run": true}),
        ),
        (
            format!("/v1/skills/{}/executions", id(&heavy)),
            json!({"arguments": hostile_arguments("aaaaaaaa aaaaaaa"), "dry_run": true}),
        ),
    ];
    // A few unmeasured reads first: the other tenant's first-use costs are not what is measured.
    timed_reads(&sandbox, &other, "/v1/tasks?limit=20", 10, Duration::ZERO).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let mut attackers = Vec::new();
    for attacker in 0..2 {
        let (url, stop, sent, statuses) = (
            sandbox.url.clone(),
            stop.clone(),
            sent.clone(),
            statuses.clone(),
        );
        let attacks = attacks.clone();
        attackers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            // Bounded: it stops when the reads are done, or after 300 requests.
            for round in 0..300 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (path, body) = &attacks[(round + attacker) % 2];
                let answer = client
                    .post(format!("{url}{path}"))
                    .bearer_auth(ADMIN_KEY)
                    .json(body)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                sent.fetch_add(1, Ordering::Relaxed);
                let status = answer.map(|a| a.status().as_u16()).unwrap_or(0);
                statuses.lock().unwrap().push(status);
                if status == 429 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    // Let the attack start before measuring.
    while sent.load(Ordering::Relaxed) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut latencies, read_statuses) = timed_reads(
        &sandbox,
        &other,
        "/v1/tasks?limit=20",
        300,
        Duration::from_millis(5),
    )
    .await;
    stop_load(&stop, attackers).await;
    let attack_statuses = statuses.lock().unwrap().clone();
    let p50 = percentile(&mut latencies, 50);
    let p99 = percentile(&mut latencies, 99);
    eprintln!(
        "backtracking attack: {} attack requests (statuses {:?}); the other tenant's GET /v1/tasks p50 {p50:?} p99 {p99:?}",
        attack_statuses.len(),
        {
            let mut counts = std::collections::BTreeMap::new();
            for s in &attack_statuses {
                *counts.entry(*s).or_insert(0) += 1;
            }
            counts
        }
    );
    assert!(read_statuses.iter().all(|s| *s == 200), "{read_statuses:?}");
    assert!(
        attack_statuses.iter().all(|s| *s != 0 && *s != 500),
        "every attack request got a clear answer: {attack_statuses:?}"
    );
    assert!(
        p99 < Duration::from_millis(100),
        "the other tenant's p99 is {p99:?} while the attack runs"
    );
}

// ---------------------------------------------------------------- keys and the keys they mint

/// Scopes enough to mint further keys, and scopes that only read.
const MINTER: &[&str] = &["manage:api_keys", "read:tasks"];
const READER: &[&str] = &["read:tasks"];

/// A key minted as `parent`, asking for `expires_at` if given (the sandbox may bring it forward
/// to the parent's).
async fn mint(
    parent: KeyHolder<'_>,
    name: &str,
    scopes: &[&str],
    expires_at: Option<&str>,
) -> Value {
    let mut body = json!({"name": name, "scopes": scopes});
    if let Some(expires_at) = expires_at {
        body["expires_at"] = json!(expires_at);
    }
    parent.post(201, "/v1/api-keys", body).await
}

/// Requests as a key that `mint` returned.
fn as_minted<'a>(sandbox: &'a TestSandbox, minted: &'a Value) -> KeyHolder<'a> {
    sandbox.as_key(minted["key"].as_str().unwrap())
}

#[tokio::test]
async fn a_child_key_stops_working_when_its_parent_expires() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let parent_expiry = chrono::Utc::now() + chrono::Duration::seconds(3);
    let parent_expiry_text = parent_expiry.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let parent = mint(admin, "short-lived", MINTER, Some(&parent_expiry_text)).await;
    let as_parent = as_minted(&sandbox, &parent);
    // Asked for without expiry, and for later than the parent: both get the parent's expiry.
    let forever = mint(as_parent, "forever", READER, None).await;
    let later = mint(as_parent, "later", READER, Some("2099-01-01T00:00:00Z")).await;
    assert_eq!(forever["expires_at"], parent["expires_at"], "{forever}");
    assert_eq!(later["expires_at"], parent["expires_at"], "{later}");
    // An earlier expiry than the parent's is kept as asked.
    let sooner_text = (parent_expiry - chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let sooner = mint(as_parent, "sooner", READER, Some(&sooner_text)).await;
    assert_ne!(sooner["expires_at"], parent["expires_at"]);

    as_minted(&sandbox, &forever).get(200, "/v1/tasks").await;
    // Past the parent's expiry (timestamps have one-second resolution).
    let wait = (parent_expiry - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(1100)).await;
    as_parent.get(401, "/v1/tasks").await;
    for key in [&forever, &later] {
        let reply = as_minted(&sandbox, key).get(401, "/v1/tasks").await;
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("expired"),
            "{reply}"
        );
    }
}

#[tokio::test]
async fn revoking_a_key_revokes_the_keys_it_minted() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let parent = mint(admin, "parent", MINTER, None).await;
    let child = mint(as_minted(&sandbox, &parent), "child", MINTER, None).await;
    let grandchild = mint(as_minted(&sandbox, &child), "grandchild", READER, None).await;
    let sibling = sandbox.key_with(&["read:tasks"]).await;
    admin
        .post(
            200,
            &format!("/v1/api-keys/{}/revoke", id(&parent)),
            json!({"reason": "leaked"}),
        )
        .await;
    for key in [&parent, &child, &grandchild] {
        as_minted(&sandbox, key).get(401, "/v1/tasks").await;
    }
    sandbox.as_key(&sibling).get(200, "/v1/tasks").await;
    let listed = admin
        .get(200, "/v1/api-keys?include_revoked=true&limit=100")
        .await;
    let revoked: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| !k["revoked_at"].is_null())
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(revoked.len(), 3, "{revoked:?}");
}

#[tokio::test]
async fn keys_minted_before_the_rules_are_brought_under_them_at_start() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let expiring = mint(admin, "expiring", MINTER, Some("2099-01-01T00:00:00Z")).await;
    let outliving = mint(as_minted(&sandbox, &expiring), "outliving", READER, None).await;
    let parent = mint(admin, "parent", MINTER, None).await;
    let orphan = mint(as_minted(&sandbox, &parent), "orphan", READER, None).await;
    // As the sandbox stored them before: a child without expiry under an expiring parent, and a
    // parent revoked without its child.
    let set = |id: String, path: &str, value: Value| {
        sandbox.sql(
            "UPDATE objects SET body = json_set(body, ?1, json(?2)) WHERE kind = 'api_key' AND id = ?3",
            rusqlite::params![path, value.to_string(), id],
        )
    };
    assert_eq!(set(id(&outliving), "$.expires_at", Value::Null), 1);
    assert_eq!(
        set(
            id(&parent),
            "$.revoked_at",
            json!("2026-01-01T00:00:00.000Z")
        ),
        1
    );
    as_minted(&sandbox, &orphan).get(200, "/v1/tasks").await;

    let sandbox = sandbox.restart().await;
    let admin = sandbox.as_admin();
    let listed = admin
        .get(200, "/v1/api-keys?include_revoked=true&limit=100")
        .await;
    let by_id = |wanted: &Value| {
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == wanted["id"])
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id(&outliving)["expires_at"], expiring["expires_at"]);
    assert_eq!(by_id(&orphan)["revoked_at"], "2026-01-01T00:00:00.000Z");
    as_minted(&sandbox, &orphan).get(401, "/v1/tasks").await;
}

#[tokio::test]
async fn a_narrow_key_cannot_revoke_the_admin_key() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let narrow = sandbox.key_with(&["manage:api_keys"]).await;
    let admin_record = admin.get(200, "/v1/api-keys/current").await;
    let revoke = format!("/v1/api-keys/{}/revoke", id(&admin_record));
    let reply = sandbox.as_key(&narrow).post(403, &revoke, json!({})).await;
    assert_eq!(reply["error"]["code"], "insufficient_scope");
    let lacking = reply["error"]["required_scopes"].as_array().unwrap();
    assert!(lacking.contains(&json!("manage:billing")), "{reply}");
    assert!(!lacking.contains(&json!("manage:api_keys")), "{reply}");
    admin.get(200, "/v1/tasks").await;
    // It may still revoke a key whose scopes it holds, itself included.
    let peer = mint(admin, "peer", &["manage:api_keys"], None).await;
    sandbox
        .as_key(&narrow)
        .post(
            200,
            &format!("/v1/api-keys/{}/revoke", id(&peer)),
            json!({}),
        )
        .await;
}

// ---------------------------------------------------------------- webhook addresses

async fn create_webhook(sandbox: &TestSandbox, url: &str) -> (u16, Value) {
    let body = json!({"url": url, "events": ["task.created"]});
    sandbox
        .call(ADMIN_KEY, "POST", "/v1/webhooks", Some(body))
        .await
}

/// What a loopback receiver saw: how many requests.
type Hits = Arc<AtomicUsize>;

/// A receiver on 127.0.0.1 that answers every request with `status` (and `location`, if any).
async fn receiver(status: u16, location: Option<String>) -> (u16, Hits) {
    let hits: Hits = Arc::default();
    let seen = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        let location = location.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut headers = HeaderMap::new();
            if let Some(location) = location {
                headers.insert("location", location.parse().unwrap());
            }
            (StatusCode::from_u16(status).unwrap(), headers)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, hits)
}

/// Waits (up to 10 s) until webhook `id` has recorded an attempt; returns it.
async fn after_an_attempt(sandbox: &TestSandbox, webhook_id: &str) -> Value {
    let admin = sandbox.as_admin();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = admin.get(200, "/v1/webhooks?limit=100").await;
        let webhook = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == webhook_id)
            .cloned()
            .expect("the webhook is listed");
        if !webhook["delivery_stats"]["last_delivery_at"].is_null() || Instant::now() > deadline {
            return webhook;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn webhooks_cannot_target_loopback_ports_or_the_metadata_address() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let (port, hits) = receiver(200, None).await;
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        "http://127.0.0.1:22/".to_string(),
        "https://[::1]:8443/hook".to_string(),
        "https://169.254.169.254/latest/meta-data/iam/".to_string(),
        "https://10.0.0.7/hook".to_string(),
        "https://metadata.google.internal/computeMetadata/v1/".to_string(),
    ] {
        let (status, reply) = create_webhook(&sandbox, &url).await;
        assert_eq!(status, 422, "{url}: {reply}");
        assert_eq!(
            reply["error"]["details"][0]["field"], "url",
            "{url}: {reply}"
        );
        assert!(
            reply["error"]["details"][0]["message"]
                .as_str()
                .unwrap()
                .contains("public addresses"),
            "{url}: {reply}"
        );
    }
    // Changing a public endpoint's URL to a loopback one is refused the same way.
    let (status, public) = create_webhook(&sandbox, "https://hooks.example.com/trainar").await;
    assert_eq!(status, 201, "{public}");
    let reply = admin
        .patch(
            422,
            &format!("/v1/webhooks/{}", id(&public)),
            json!({"url": format!("http://127.0.0.1:{port}/hook")}),
        )
        .await;
    assert_eq!(reply["error"]["details"][0]["field"], "url");
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // Where the operator allows private addresses, loopback is fine; metadata never is.
    let allowing = TestSandbox::allowing_private_webhooks().await;
    let (status, reply) = create_webhook(&allowing, &format!("http://127.0.0.1:{port}/hook")).await;
    assert_eq!(status, 201, "{reply}");
    for url in [
        "https://169.254.169.254/latest/meta-data/",
        "https://[fe80::1]/hook",
    ] {
        let (status, reply) = create_webhook(&allowing, url).await;
        assert_eq!(status, 422, "{url}: {reply}");
    }
}

#[tokio::test]
async fn delivery_checks_the_address_a_name_resolves_to_then() {
    // Endpoints made while the operator allowed private addresses; then the operator stops
    // allowing them. `localhost` resolves to loopback at delivery; the literal is checked too.
    let dir = fresh_dir("sandbox");
    let allowing =
        TestSandbox::open_with(dir, false, |config| config.allow_private_webhooks = true).await;
    let (port, hits) = receiver(200, None).await;
    let (status, by_name) =
        create_webhook(&allowing, &format!("http://localhost:{port}/hook")).await;
    assert_eq!(status, 201, "{by_name}");
    let (status, by_address) =
        create_webhook(&allowing, &format!("http://127.0.0.1:{port}/hook")).await;
    assert_eq!(status, 201, "{by_address}");
    let sandbox = allowing
        .restart_with(|config| config.allow_private_webhooks = false)
        .await;
    let admin = sandbox.as_admin();
    admin
        .post(201, "/v1/tasks", json!({"title": "an event"}))
        .await;
    for webhook in [&by_name, &by_address] {
        let seen = after_an_attempt(&sandbox, &id(webhook)).await;
        let stats = &seen["delivery_stats"];
        assert!(!stats["last_delivery_at"].is_null(), "an attempt: {seen}");
        assert_eq!(stats["consecutive_failures"], 1, "{seen}");
        assert!(
            stats["last_status_code"].is_null(),
            "nothing answered: {seen}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached loopback");
    let reason = sandbox.sql_text(
        "SELECT last_error FROM webhook_deliveries WHERE webhook_id = ?1",
        [id(&by_name)],
    );
    assert!(reason.contains("loopback"), "{reason}");
}

#[tokio::test]
async fn a_redirect_is_a_failed_attempt_and_is_not_followed() {
    let sandbox = TestSandbox::allowing_private_webhooks().await;
    let admin = sandbox.as_admin();
    let (target_port, target_hits) = receiver(200, None).await;
    let (port, hits) = receiver(
        307,
        Some(format!("http://127.0.0.1:{target_port}/elsewhere")),
    )
    .await;
    let (status, webhook) =
        create_webhook(&sandbox, &format!("http://127.0.0.1:{port}/hook")).await;
    assert_eq!(status, 201, "{webhook}");
    admin
        .post(201, "/v1/tasks", json!({"title": "an event"}))
        .await;
    let seen = after_an_attempt(&sandbox, &id(&webhook)).await;
    assert_eq!(seen["delivery_stats"]["last_status_code"], 307, "{seen}");
    assert_eq!(seen["delivery_stats"]["consecutive_failures"], 1, "{seen}");
    assert!(hits.load(Ordering::SeqCst) >= 1);
    assert_eq!(target_hits.load(Ordering::SeqCst), 0, "not followed");
    let reason = sandbox.sql_text(
        "SELECT last_error FROM webhook_deliveries WHERE webhook_id = ?1",
        [id(&webhook)],
    );
    assert!(reason.contains("redirects are not followed"), "{reason}");
}

// ---------------------------------------------------------------- fairness

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_flooding_writes_is_held_to_its_budget_while_another_reads() {
    let _alone = LOAD_TESTS.lock().await;
    let sandbox = TestSandbox::open_with(fresh_dir("sandbox"), false, |config| {
        config.limits.requests_per_second = 100.0;
        config.limits.request_burst = 100.0;
    })
    .await;
    let other = sandbox.other_tenant("Globex");
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut flooders = Vec::new();
    for _ in 0..8 {
        let (url, stop, outcomes) = (sandbox.url.clone(), stop.clone(), outcomes.clone());
        flooders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            // Bounded: until the reads are done, at most 300 requests per flooder.
            for n in 0..300 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let answer = client
                    .post(format!("{url}/v1/tasks"))
                    .bearer_auth(ADMIN_KEY)
                    .json(&json!({"title": format!("flood {n}"), "description": "x".repeat(2000)}))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .expect("the sandbox answers");
                let status = answer.status().as_u16();
                let retry_after = answer
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let body: Value = answer.json().await.unwrap_or(Value::Null);
                outcomes.lock().unwrap().push((status, retry_after, body));
            }
        }));
    }
    timed_reads(&sandbox, &other, "/v1/tasks?limit=20", 10, Duration::ZERO).await;
    // The reader stays within its budget: 200 reads at about 40 a second.
    let (mut latencies, statuses) = timed_reads(
        &sandbox,
        &other,
        "/v1/tasks?limit=20",
        200,
        Duration::from_millis(25),
    )
    .await;
    stop_load(&stop, flooders).await;
    let outcomes = outcomes.lock().unwrap().clone();
    let created = outcomes.iter().filter(|(s, _, _)| *s == 201).count();
    let limited: Vec<&(u16, Option<u64>, Value)> =
        outcomes.iter().filter(|(s, _, _)| *s == 429).collect();
    let p50 = percentile(&mut latencies, 50);
    let p99 = percentile(&mut latencies, 99);
    eprintln!(
        "write flood: {} requests, {created} created, {} refused with 429; the reader's p50 {p50:?} p99 {p99:?}",
        outcomes.len(),
        limited.len()
    );
    assert!(
        outcomes.iter().all(|(s, _, _)| *s == 201 || *s == 429),
        "only created or 429"
    );
    assert!(!limited.is_empty(), "the flood meets its budget");
    for (_, retry_after, body) in &limited {
        assert!(retry_after.is_some_and(|s| s >= 1), "Retry-After: {body}");
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("budget")
        );
    }
    assert!(
        statuses.iter().all(|s| *s == 200),
        "the reader is never refused: {statuses:?}"
    );
    assert!(
        p99 < Duration::from_millis(100),
        "the reader's p99 is {p99:?} during the flood"
    );
}
