//! The sandbox's billing and devices categories over HTTP: the subscription lifecycle and its
//! state rules, billing details, the usage balance and the minute ledger (pages, filters),
//! devices (filters, unpairing, isolation), pairing codes and hardware orders.

use crate::sandbox_fixture::{ADMIN_KEY, TestSandbox, items};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::BTreeSet;

const SUBSCRIPTION: &str = "/v1/billing/subscription";
const CANCEL: &str = "/v1/billing/subscription/cancel";
const LEDGER: &str = "/v1/billing/minute-transactions";

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a time: {value}")),
    )
    .unwrap()
    .with_timezone(&Utc)
}

fn new_subscription(plan: &str) -> Value {
    json!({
        "plan_id": plan, "interval": "month", "seats": 25, "company_name": "Globex Corporation",
        "billing_email": "ap@globex.example.com",
        "address": {"line1": "1 Globex Way", "city": "Springfield", "postal_code": "97477", "country": "US"},
    })
}

#[tokio::test]
async fn a_subscription_goes_through_its_whole_lifecycle() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    for path in [SUBSCRIPTION, "/v1/billing/details", "/v1/billing/usage"] {
        let reply = admin.get(404, path).await;
        assert_eq!(reply["error"]["code"], "not_found");
    }
    admin.patch(404, SUBSCRIPTION, json!({"seats": 30})).await;
    admin.post(404, CANCEL, json!({})).await;
    let reply = admin
        .post(422, SUBSCRIPTION, new_subscription("enterprise"))
        .await;
    assert_eq!(reply["error"]["code"], "unprocessable");

    // Without a card: a 14-day trial, with the plan's minutes granted.
    let created = admin
        .post(201, SUBSCRIPTION, new_subscription("team"))
        .await;
    assert!(created["id"].as_str().unwrap().starts_with("sub_"));
    assert_eq!(created["status"], "trialing");
    assert_eq!(created["plan"]["id"], "team");
    assert_eq!(created["plan"]["interval"], "month");
    assert_eq!(created["plan"]["included_minutes"], 2000);
    assert_eq!(created["seats"], 25);
    assert_eq!(created["cancel_at_period_end"], false);
    assert!(created["canceled_at"].is_null());
    let trial = time(&created["trial_end"]) - time(&created["created_at"]);
    assert_eq!(trial.num_days(), 14);
    assert_eq!(admin.get(200, SUBSCRIPTION).await, created);
    let reply = admin
        .post(409, SUBSCRIPTION, new_subscription("starter"))
        .await;
    assert_eq!(reply["error"]["code"], "conflict");

    let details = admin.get(200, "/v1/billing/details").await;
    assert_eq!(details["company_name"], "Globex Corporation");
    assert_eq!(details["billing_email"], "ap@globex.example.com");
    assert_eq!(details["address"]["line2"], "");
    assert_eq!(details["address"]["country"], "US");
    assert!(details["tax_id"].is_null() && details["payment_method"].is_null());
    assert!(
        details.get("id").is_none(),
        "the storage id is not part of BillingDetails"
    );

    // An upgrade with a card and new billing details.
    let change = json!({
        "plan_id": "business", "seats": 40, "billing_email": "billing@globex.example.com",
        "tax_id": "US12-3456789", "payment_method_token": "pm_TestCard00000001",
        "address": {"line1": "2 Globex Way", "line2": "Floor 3", "city": "Springfield", "state": "OR", "postal_code": "97477", "country": "US"},
    });
    let updated = admin.patch(200, SUBSCRIPTION, change).await;
    assert_eq!(updated["plan"]["id"], "business");
    assert_eq!(updated["seats"], 40);
    assert_eq!(updated["billing_email"], "billing@globex.example.com");
    assert_eq!(
        updated["status"], "trialing",
        "a card does not end the trial early"
    );
    let details = admin.get(200, "/v1/billing/details").await;
    assert_eq!(details["billing_email"], "billing@globex.example.com");
    assert_eq!(details["tax_id"], "US12-3456789");
    assert_eq!(details["address"]["line2"], "Floor 3");
    let card = &details["payment_method"];
    assert!(
        card["last4"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_digit())
            && card["last4"].as_str().unwrap().len() == 4
    );
    assert!(
        !details.to_string().contains("pm_TestCard"),
        "the token is never served"
    );
    let grants = admin.get(200, &format!("{LEDGER}?kind=grant")).await;
    assert_eq!(
        items(&grants).len(),
        2,
        "the upgrade credits prorated minutes: {grants}"
    );
    admin
        .patch(422, SUBSCRIPTION, json!({"plan_id": "enterprise"}))
        .await;

    // Cancel at the period end, undo it, then cancel at once.
    let cancel = json!({"at_period_end": true, "reason": "Moving to a group contract"});
    let scheduled = admin.post(200, CANCEL, cancel.clone()).await;
    assert_eq!(scheduled["cancel_at_period_end"], true);
    assert_eq!(scheduled["status"], "trialing");
    assert_eq!(
        scheduled["cancellation_reason"],
        "Moving to a group contract"
    );
    assert!(scheduled["canceled_at"].is_string());
    admin.post(409, CANCEL, cancel).await;
    let undone = admin
        .patch(200, SUBSCRIPTION, json!({"cancel_at_period_end": false}))
        .await;
    assert_eq!(undone["cancel_at_period_end"], false);
    assert!(undone["canceled_at"].is_null());
    let ended = admin
        .post(200, CANCEL, json!({"at_period_end": false}))
        .await;
    assert_eq!(ended["status"], "canceled");
    assert!(ended["canceled_at"].is_string());
    let usage = admin.get(200, "/v1/billing/usage").await;
    assert_eq!(
        usage["remaining_minutes"], 0,
        "ending now forfeits the minutes: {usage}"
    );
    let expiries = admin.get(200, &format!("{LEDGER}?kind=expiry")).await;
    assert_eq!(items(&expiries).len(), 1);
    assert_eq!(items(&expiries)[0]["balance_after_minutes"], 0);
    admin.post(409, CANCEL, json!({})).await;
    admin.patch(409, SUBSCRIPTION, json!({"seats": 30})).await;

    // After a cancellation a new subscription may start; with a card it is active at once.
    let mut restart = new_subscription("starter");
    restart["payment_method_token"] = json!("pm_TestCard00000002");
    let again = admin.post(201, SUBSCRIPTION, restart).await;
    assert_eq!(again["status"], "active");
    assert!(again["trial_end"].is_null());
    assert_ne!(again["id"], created["id"]);
    assert!(
        time(&again["current_period_end"])
            > time(&again["current_period_start"]) + chrono::Duration::days(27)
    );
    let usage = admin.get(200, "/v1/billing/usage").await;
    assert_eq!(usage["subscription_id"], again["id"]);
    assert_eq!(usage["included_minutes"], 500);
    assert_eq!(usage["remaining_minutes"], 500);
    let details = admin.get(200, "/v1/billing/details").await;
    assert!(
        details["tax_id"].is_null(),
        "a new subscription's details are what it was created with"
    );
}

#[tokio::test]
async fn the_grant_shows_in_the_usage_balance_and_the_ledger() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let ledger = admin.get(200, LEDGER).await;
    assert_eq!(ledger, json!({"data": [], "next_cursor": null}));
    let subscription = admin
        .post(201, SUBSCRIPTION, new_subscription("team"))
        .await;
    let usage = admin.get(200, "/v1/billing/usage").await;
    assert_eq!(usage["subscription_id"], subscription["id"]);
    assert_eq!(usage["plan_id"], "team");
    assert_eq!(usage["period_start"], subscription["current_period_start"]);
    assert_eq!(usage["period_end"], subscription["current_period_end"]);
    assert_eq!(usage["included_minutes"], 2000);
    assert_eq!(usage["purchased_minutes"], 0);
    assert_eq!(usage["used_minutes"], 0);
    assert_eq!(usage["remaining_minutes"], 2000);
    assert_eq!(usage["overage_minutes"], 0);
    assert!(time(&usage["as_of"]) >= time(&subscription["created_at"]));
    let ledger = admin.get(200, LEDGER).await;
    let entry = &items(&ledger)[0];
    assert_eq!(items(&ledger).len(), 1);
    assert!(entry["id"].as_str().unwrap().starts_with("mtx_"));
    assert_eq!(entry["kind"], "grant");
    assert_eq!(entry["minutes"], 2000);
    assert_eq!(entry["balance_after_minutes"], 2000);
    assert!(entry["session_id"].is_null() && entry["user_id"].is_null());
}

#[tokio::test]
async fn the_minute_ledger_pages_newest_first_and_filters() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    // Grants, prorated grants on upgrades and an expiry on cancel: six entries.
    admin
        .post(201, SUBSCRIPTION, new_subscription("starter"))
        .await;
    for plan in ["team", "business"] {
        admin
            .patch(200, SUBSCRIPTION, json!({"plan_id": plan}))
            .await;
    }
    admin
        .post(200, CANCEL, json!({"at_period_end": false}))
        .await;
    admin
        .post(201, SUBSCRIPTION, new_subscription("team"))
        .await;
    admin
        .patch(200, SUBSCRIPTION, json!({"plan_id": "business"}))
        .await;

    let everything = admin.get(200, &format!("{LEDGER}?limit=100")).await;
    let all = items(&everything);
    assert_eq!(all.len(), 6, "{everything}");
    let paged = sandbox.all_pages(ADMIN_KEY, LEDGER, 2).await;
    assert_eq!(
        &paged, all,
        "pages of 2 add up to the whole ledger, in the same order"
    );
    let ids: BTreeSet<&str> = paged.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), paged.len());
    assert!(
        paged
            .windows(2)
            .all(|w| time(&w[0]["created_at"]) >= time(&w[1]["created_at"])),
        "newest first"
    );
    assert_eq!(
        paged.last().unwrap()["minutes"],
        500,
        "the oldest entry is the first grant"
    );
    assert_eq!(
        paged[0]["balance_after_minutes"].as_i64().unwrap(),
        all.iter()
            .map(|e| e["minutes"].as_i64().unwrap())
            .sum::<i64>()
    );

    let grants = sandbox
        .all_pages(ADMIN_KEY, &format!("{LEDGER}?kind=grant"), 3)
        .await;
    assert_eq!(grants.len(), 5);
    assert!(
        grants
            .iter()
            .all(|e| e["kind"] == "grant" && e["minutes"].as_i64().unwrap() > 0)
    );
    let expiries = admin.get(200, &format!("{LEDGER}?kind=expiry")).await;
    assert_eq!(items(&expiries).len(), 1);
    assert!(items(&expiries)[0]["minutes"].as_i64().unwrap() < 0);
    let none = admin.get(200, &format!("{LEDGER}?kind=top_up")).await;
    assert_eq!(items(&none).len(), 0);

    // from/to bound created_at: [from, to).
    let first = &paged.last().unwrap()["created_at"];
    let before = admin
        .get(200, &format!("{LEDGER}?to={}", first.as_str().unwrap()))
        .await;
    assert_eq!(items(&before).len(), 0);
    let from_first = admin
        .get(
            200,
            &format!("{LEDGER}?limit=100&from={}", first.as_str().unwrap()),
        )
        .await;
    assert_eq!(items(&from_first).len(), 6);
    let old = admin
        .get(
            200,
            &format!("{LEDGER}?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00%2B02:00"),
        )
        .await;
    assert_eq!(items(&old).len(), 0);
    admin
        .get(
            400,
            &format!("{LEDGER}?from=2021-01-01T00:00:00Z&to=2020-01-01T00:00:00Z"),
        )
        .await;
    admin.get(400, &format!("{LEDGER}?kind=refund")).await;
    admin
        .get(400, &format!("{LEDGER}?cursor=djE6OTk5OTk5"))
        .await;
}

#[tokio::test]
async fn the_demo_tenant_has_an_active_team_plan_with_a_consistent_balance() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let subscription = admin.get(200, SUBSCRIPTION).await;
    assert_eq!(subscription["status"], "active");
    assert_eq!(subscription["plan"]["id"], "team");
    let started = chrono::Utc::now() - time(&subscription["current_period_start"]);
    assert!((19..=21).contains(&started.num_days()), "{subscription}");
    let usage = admin.get(200, "/v1/billing/usage").await;
    assert_eq!(usage["included_minutes"], 2000);
    assert_eq!(usage["purchased_minutes"], 500);
    let (included, purchased, used) = (
        usage["included_minutes"].as_i64().unwrap(),
        usage["purchased_minutes"].as_i64().unwrap(),
        usage["used_minutes"].as_i64().unwrap(),
    );
    assert_eq!(
        usage["remaining_minutes"].as_i64().unwrap(),
        (included + purchased - used).max(0),
        "{usage}"
    );
    let ledger = sandbox
        .all_pages(
            ADMIN_KEY,
            &format!("{LEDGER}?from=2000-01-01T00:00:00Z"),
            100,
        )
        .await;
    let kinds: BTreeSet<&str> = ledger.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(
        kinds.contains("grant") && kinds.contains("top_up") && kinds.contains("session_usage"),
        "{kinds:?}"
    );
    // Newest first, each entry's balance is the previous one's plus its own minutes.
    for pair in ledger.windows(2) {
        let (newer, older) = (&pair[0], &pair[1]);
        let expected =
            older["balance_after_minutes"].as_i64().unwrap() + newer["minutes"].as_i64().unwrap();
        assert_eq!(
            newer["balance_after_minutes"].as_i64().unwrap(),
            expected,
            "{newer} after {older}"
        );
    }
    assert_eq!(
        ledger[0]["balance_after_minutes"],
        usage["remaining_minutes"]
    );
    let details = admin.get(200, "/v1/billing/details").await;
    assert!(details["payment_method"]["brand"].is_string());
    assert_eq!(details["billing_email"], subscription["billing_email"]);
    let reply = admin
        .post(409, SUBSCRIPTION, new_subscription("business"))
        .await;
    assert_eq!(reply["error"]["code"], "conflict");
}

#[tokio::test]
async fn seats_cannot_drop_below_the_active_users() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let active = sandbox
        .all_pages(ADMIN_KEY, "/v1/users?status=active", 100)
        .await
        .len();
    assert!(active >= 2, "the demo tenant has several active users");
    let reply = admin
        .patch(422, SUBSCRIPTION, json!({"seats": active - 1}))
        .await;
    assert_eq!(reply["error"]["code"], "unprocessable");
    let updated = admin
        .patch(200, SUBSCRIPTION, json!({"seats": active}))
        .await;
    assert_eq!(updated["seats"], active);
}

#[tokio::test]
async fn devices_list_with_filters_and_unpair_once() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let devices = sandbox.all_pages(ADMIN_KEY, "/v1/devices", 2).await;
    assert!(devices.len() >= 6, "{devices:?}");
    assert!(
        devices
            .windows(2)
            .all(|w| time(&w[0]["paired_at"]) >= time(&w[1]["paired_at"])),
        "most recently paired first"
    );
    let models: BTreeSet<&str> = devices
        .iter()
        .map(|d| d["model"].as_str().unwrap())
        .collect();
    let statuses: BTreeSet<&str> = devices
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert!(models.len() >= 4, "{models:?}");
    assert_eq!(statuses, ["offline", "paired", "unpaired"].into());
    for query in ["status=unpaired", "status=paired", "model=hololens_2"] {
        let (field, value) = query.split_once('=').unwrap();
        let page = admin.get(200, &format!("/v1/devices?{query}")).await;
        assert!(!items(&page).is_empty(), "{query}");
        assert!(
            items(&page).iter().all(|d| d[field] == value),
            "{query}: {page}"
        );
    }
    if let Some(user) = devices.iter().find_map(|d| d["assigned_user_id"].as_str()) {
        let page = admin
            .get(200, &format!("/v1/devices?assigned_user_id={user}"))
            .await;
        assert!(
            !items(&page).is_empty() && items(&page).iter().all(|d| d["assigned_user_id"] == user)
        );
    }
    admin.get(400, "/v1/devices?model=walkman").await;

    let device = devices.iter().find(|d| d["status"] == "paired").unwrap();
    let path = format!("/v1/devices/{}", device["id"].as_str().unwrap());
    assert_eq!(&admin.get(200, &path).await, device);
    admin.get(404, "/v1/devices/dev_0000000000000000").await;
    admin.get(400, "/v1/devices/not-a-device").await;

    let unpaired = admin
        .post(
            200,
            &format!("{path}/unpair"),
            json!({"reason": "lost on site"}),
        )
        .await;
    assert_eq!(unpaired["status"], "unpaired");
    assert_eq!(unpaired["unpair_reason"], "lost on site");
    assert!(time(&unpaired["unpaired_at"]) >= time(&device["paired_at"]));
    assert_eq!(unpaired["serial_number"], device["serial_number"]);
    assert_eq!(admin.get(200, &path).await, unpaired);
    let reply = admin.post(409, &format!("{path}/unpair"), json!({})).await;
    assert_eq!(reply["error"]["code"], "conflict");
    admin
        .post(404, "/v1/devices/dev_0000000000000000/unpair", json!({}))
        .await;
}

#[tokio::test]
async fn another_tenant_cannot_see_or_unpair_a_device() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let other_key = sandbox.other_tenant("Globex");
    let other = sandbox.as_key(&other_key);
    let devices = admin.get(200, "/v1/devices").await;
    let id = items(&devices)[0]["id"].as_str().unwrap().to_string();
    other.get(404, &format!("/v1/devices/{id}")).await;
    other
        .post(404, &format!("/v1/devices/{id}/unpair"), json!({}))
        .await;
    assert_eq!(
        other.get(200, "/v1/devices").await,
        json!({"data": [], "next_cursor": null})
    );
    assert_eq!(
        other.get(200, "/v1/orders").await,
        json!({"data": [], "next_cursor": null})
    );
    other.get(404, SUBSCRIPTION).await;
    admin.get(200, &format!("/v1/devices/{id}")).await;
}

#[tokio::test]
async fn pairing_codes_are_typeable_and_expire() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let is_code = |code: &str| {
        code.len() == 8
            && code
                .chars()
                .all(|c| c.is_ascii_uppercase() || ('2'..='9').contains(&c))
            && !code.contains(['O', 'I'])
    };
    let plain = admin
        .post(201, "/v1/devices/pairing-codes", json!({}))
        .await;
    assert!(plain["id"].as_str().unwrap().starts_with("pc_"));
    assert!(is_code(plain["code"].as_str().unwrap()), "{plain}");
    assert_eq!(plain["ttl_seconds"], 900);
    assert!(plain["device_name"].is_null() && plain["assigned_user_id"].is_null());
    assert_eq!(
        (time(&plain["expires_at"]) - time(&plain["created_at"])).num_seconds(),
        900
    );

    let devices = admin.get(200, "/v1/devices?limit=100").await;
    let user = items(&devices)
        .iter()
        .find_map(|d| d["assigned_user_id"].as_str())
        .map(String::from);
    let mut request = json!({"device_name": "Line 4 HoloLens", "ttl_seconds": 60});
    if let Some(user) = &user {
        request["assigned_user_id"] = json!(user);
    }
    let named = admin.post(201, "/v1/devices/pairing-codes", request).await;
    assert!(is_code(named["code"].as_str().unwrap()));
    assert_ne!(named["code"], plain["code"]);
    assert_eq!(named["device_name"], "Line 4 HoloLens");
    assert_eq!(named["assigned_user_id"], json!(user));
    assert_eq!(
        (time(&named["expires_at"]) - time(&named["created_at"])).num_seconds(),
        60
    );

    for ttl in [59, 3601] {
        admin
            .post(
                400,
                "/v1/devices/pairing-codes",
                json!({"ttl_seconds": ttl}),
            )
            .await;
    }
    let reply = admin
        .post(
            422,
            "/v1/devices/pairing-codes",
            json!({"assigned_user_id": "usr_0000000000000000"}),
        )
        .await;
    assert_eq!(reply["error"]["code"], "unprocessable");
}

#[tokio::test]
async fn orders_list_newest_first_with_consistent_totals() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let orders = sandbox.all_pages(ADMIN_KEY, "/v1/orders", 1).await;
    assert!((2..=5).contains(&orders.len()), "{orders:?}");
    assert!(
        orders
            .windows(2)
            .all(|w| time(&w[0]["created_at"]) >= time(&w[1]["created_at"])),
        "newest first"
    );
    for order in &orders {
        assert!(order["id"].as_str().unwrap().starts_with("ord_"));
        let lines = order["items"].as_array().unwrap();
        let subtotal: i64 = lines
            .iter()
            .map(|l| l["total_cents"].as_i64().unwrap())
            .sum();
        assert!(lines.iter().all(|l| l["total_cents"].as_i64()
            == Some(l["quantity"].as_i64().unwrap() * l["unit_price_cents"].as_i64().unwrap())));
        assert_eq!(order["subtotal_cents"].as_i64(), Some(subtotal));
        let total = subtotal
            + order["shipping_cents"].as_i64().unwrap()
            + order["tax_cents"].as_i64().unwrap();
        assert_eq!(order["total_cents"].as_i64(), Some(total));
        assert_eq!(
            order["tracking_number"].is_null(),
            order["shipped_at"].is_null()
        );
    }
    let shipped = admin.get(200, "/v1/orders?status=shipped").await;
    assert!(!items(&shipped).is_empty());
    assert!(items(&shipped).iter().all(|o| o["status"] == "shipped"
        && o["tracking_url"].is_string()
        && o["delivered_at"].is_null()));
    let cancelled = admin.get(200, "/v1/orders?status=cancelled").await;
    assert!(items(&cancelled).is_empty());
    admin.get(400, "/v1/orders?status=lost").await;
}

#[tokio::test]
async fn switching_plans_back_and_forth_credits_an_upgrade_once_per_period() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    admin
        .post(201, SUBSCRIPTION, new_subscription("starter"))
        .await;
    for plan in [
        "business", "starter", "business", "team", "business", "starter",
    ] {
        admin
            .patch(200, SUBSCRIPTION, json!({"plan_id": plan}))
            .await;
    }
    let grants = admin.get(200, &format!("{LEDGER}?kind=grant")).await;
    let prorated: Vec<&Value> = items(&grants)
        .iter()
        .filter(|g| g["description"].as_str().unwrap().starts_with("Prorated"))
        .collect();
    assert_eq!(
        prorated.len(),
        1,
        "only the first upgrade to business credits minutes: {grants}"
    );
    let credited = prorated[0]["minutes"].as_i64().unwrap();
    let usage = admin.get(200, "/v1/billing/usage").await;
    assert_eq!(usage["remaining_minutes"], 500 + credited, "{usage}");
}

/// The ISO form the sandbox writes, `days` before now.
fn days_ago(days: i64) -> String {
    (Utc::now() - chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test]
async fn the_account_and_reports_see_the_subscription_as_get_subscription_does() {
    for reader in ["/v1/account", "/v1/reports/overview"] {
        let sandbox = TestSandbox::empty().await;
        let admin = sandbox.as_admin();
        let mut body = new_subscription("starter");
        body["payment_method_token"] = json!("pm_TestCard00000001");
        admin.post(201, SUBSCRIPTION, body).await;
        admin
            .post(200, CANCEL, json!({"at_period_end": true}))
            .await;
        // The period ended, with its scheduled cancellation, while nobody looked.
        let changed = sandbox.sql(
            "UPDATE objects SET body = json_set(body, '$.current_period_start', ?1, '$.current_period_end', ?2)
             WHERE kind = 'subscription'",
            [days_ago(40), days_ago(10)],
        );
        assert_eq!(changed, 1);

        let read = admin.get(200, reader).await;
        if reader == "/v1/account" {
            assert_eq!(read["plan"]["status"], "canceled", "{read}");
        } else {
            assert_eq!(
                read["minutes_remaining"],
                Value::Null,
                "a canceled subscription has no minute pool: {read}"
            );
        }
        let subscription = admin.get(200, SUBSCRIPTION).await;
        assert_eq!(subscription["status"], "canceled");
    }
}

#[tokio::test]
async fn seats_sent_as_a_whole_float_are_seats() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let mut body = new_subscription("starter");
    body["seats"] = json!(7.0);
    let subscription = admin.post(201, SUBSCRIPTION, body).await;
    assert_eq!(subscription["seats"], json!(7));
}
