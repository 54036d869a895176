//! Billing: the plan catalogue, the tenant's subscription and its lifecycle, billing details,
//! the period's usage balance and the minute ledger listing; `subscription.updated` events.
//!
//! The newest `subscription` object is the current one; earlier ones are canceled history.
//! Periods renew lazily: every billing operation first rolls an overdue subscription forward
//! (renewal, end of trial, scheduled cancellation), because the sandbox has no billing clock.
//! Period boundaries expire the unused minutes, so the ledger's balance is always the current
//! period's remaining balance, which is what `balance_after_minutes` promises.

use crate::generated::api::Operation;
use crate::sandbox::db::{Filter, Store, TimeWindow};
use crate::sandbox::error::ApiError;
use crate::sandbox::ledger::{self, Reference};
use crate::sandbox::request::{Input, Reply, created, ok};
use crate::sandbox::{Ctx, ids, not_served};
use chrono::{DateTime, Datelike, Duration, Months, Utc};
use serde_json::{Value, json};

const KIND: &str = "subscription";
const DETAILS: &str = "billing_details";
const TRIAL_DAYS: i64 = 14;
const CURRENCY: &str = "EUR";
/// Bounds the catch-up after a long idle spell; the next billing call continues from there.
const MAX_RENEWALS: usize = 240;
/// The default window of `get_minute_transactions` when `from` is omitted.
const DEFAULT_WINDOW_DAYS: i64 = 30;

/// One plan of the catalogue, in its monthly terms.
struct Plan {
    id: &'static str,
    name: &'static str,
    monthly_cents: i64,
    monthly_minutes: i64,
    included_seats: i64,
    extra_seat_monthly_cents: i64,
    overage_minute_cents: i64,
}

const PLANS: [Plan; 4] = [
    Plan {
        id: "starter",
        name: "Starter",
        monthly_cents: 29_000,
        monthly_minutes: 500,
        included_seats: 5,
        extra_seat_monthly_cents: 4_900,
        overage_minute_cents: 60,
    },
    Plan {
        id: "team",
        name: "Team",
        monthly_cents: 99_000,
        monthly_minutes: 2_000,
        included_seats: 20,
        extra_seat_monthly_cents: 3_900,
        overage_minute_cents: 50,
    },
    Plan {
        id: "business",
        name: "Business",
        monthly_cents: 299_000,
        monthly_minutes: 8_000,
        included_seats: 75,
        extra_seat_monthly_cents: 2_900,
        overage_minute_cents: 40,
    },
    Plan {
        id: "enterprise",
        name: "Enterprise",
        monthly_cents: 990_000,
        monthly_minutes: 30_000,
        included_seats: 250,
        extra_seat_monthly_cents: 1_900,
        overage_minute_cents: 30,
    },
];

/// The spec's BillingPlan for `id` billed every `interval`: a year costs ten months and
/// includes twelve months of minutes.
fn plan(id: &str, interval: &str) -> Result<Value, ApiError> {
    let plan = PLANS
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::invalid_field("plan_id", "is not a plan of the catalogue"))?;
    let (price_factor, minute_factor) = if interval == "year" { (10, 12) } else { (1, 1) };
    Ok(json!({
        "id": plan.id,
        "name": plan.name,
        "interval": interval,
        "price_cents": plan.monthly_cents * price_factor,
        "currency": CURRENCY,
        "included_minutes": plan.monthly_minutes * minute_factor,
        "included_seats": plan.included_seats,
        "extra_seat_price_cents": plan.extra_seat_monthly_cents * price_factor,
        "overage_minute_price_cents": plan.overage_minute_cents,
    }))
}

pub fn call(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    let store = &ctx.store;
    match ctx.operation {
        Operation::GetSubscription => ok(require_current(store)?),
        Operation::CreateSubscription => create(store, input),
        Operation::UpdateSubscription => update(store, input),
        Operation::CancelSubscription => cancel(store, input),
        Operation::GetBillingDetails => {
            require_current(store)?;
            ok(served_details(store.require(DETAILS, store.tenant_id())?))
        }
        Operation::GetUsageBalance => ok(usage_balance(store, &require_current(store)?)?),
        Operation::GetMinuteTransactions => transactions(store, input),
        _ => Err(not_served(ctx)),
    }
}

/// The tenant's newest subscription, rolled forward to the present, if it ever had one.
pub fn current(store: &Store) -> Result<Option<Value>, ApiError> {
    let Some(mut subscription) = store.list(KIND, &[], 1, None)?.data.into_iter().next() else {
        return Ok(None);
    };
    roll_forward(store, &mut subscription)?;
    Ok(Some(subscription))
}

fn require_current(store: &Store) -> Result<Value, ApiError> {
    current(store)?.ok_or_else(|| {
        ApiError::not_found(
            "this tenant has never had a subscription; start one with create_subscription",
        )
    })
}

fn create(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let plan_id = input.required_str("plan_id")?;
    if plan_id == "enterprise" {
        return Err(ApiError::unprocessable(
            "the enterprise plan is arranged through TrainAR sales, not self-service",
        ));
    }
    if let Some(existing) = current(store)?
        && existing["status"] != "canceled"
    {
        return Err(ApiError::conflict(format!(
            "the tenant already has a {} subscription {}; change it with update_subscription",
            existing["status"].as_str().unwrap_or("live"),
            existing["id"].as_str().unwrap_or("")
        )));
    }
    let seats = input
        .i64("seats")
        .ok_or_else(|| ApiError::invalid_field("seats", "is required"))?;
    check_seats(store, seats)?;
    let interval = input.required_str("interval")?;
    let plan = plan(plan_id, interval)?;
    let now = ids::now();
    let token = input.str("payment_method_token");
    // A card starts the paid period at once; without one the trial is the first period.
    let (status, period_end, trial_end) = match token {
        Some(_) => ("active", period_end(now, interval), Value::Null),
        None => {
            let end = now + Duration::days(TRIAL_DAYS);
            ("trialing", end, json!(ids::timestamp(end)))
        }
    };
    let at = ids::timestamp(now);
    let subscription = json!({
        "id": ids::new_id("sub_"),
        "plan": plan,
        "status": status,
        "seats": seats,
        "current_period_start": at,
        "current_period_end": ids::timestamp(period_end),
        "trial_end": trial_end,
        "cancel_at_period_end": false,
        "canceled_at": null,
        "cancellation_reason": null,
        "billing_email": input.required_str("billing_email")?,
        "created_at": at,
        "updated_at": at,
    });
    store.insert(KIND, &subscription)?;
    replace_details(store, input, &at)?;
    grant(store, &subscription["plan"], &at)?;
    store.emit("subscription.updated", &subscription)?;
    created(subscription)
}

fn update(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let mut subscription = require_current(store)?;
    if subscription["status"] == "canceled" {
        return Err(ApiError::conflict(
            "this subscription is canceled and cannot be changed; start a new one with create_subscription",
        ));
    }
    let now = ids::now();
    let at = ids::timestamp(now);
    if let Some(seats) = input.i64("seats") {
        check_seats(store, seats)?;
        subscription["seats"] = json!(seats);
    }
    change_plan(store, &mut subscription, input, now)?;
    match input.bool("cancel_at_period_end") {
        Some(false) => {
            subscription["cancel_at_period_end"] = json!(false);
            subscription["canceled_at"] = Value::Null;
            subscription["cancellation_reason"] = Value::Null;
        }
        Some(true) if subscription["cancel_at_period_end"] != true => {
            subscription["cancel_at_period_end"] = json!(true);
            subscription["canceled_at"] = json!(at);
        }
        _ => {}
    }
    // A new card retries the failed payment, which (in the sandbox) succeeds and restarts billing.
    if input.str("payment_method_token").is_some() && subscription["status"] == "past_due" {
        expire_unused(store, &at)?;
        start_period(store, &mut subscription, now)?;
    }
    if let Some(email) = input.str("billing_email") {
        subscription["billing_email"] = json!(email);
    }
    update_details(store, input, &at)?;
    subscription["updated_at"] = json!(at);
    store.update(KIND, &subscription)?;
    store.emit("subscription.updated", &subscription)?;
    ok(subscription)
}

/// Applies a plan or interval change at once. An upgrade credits the extra minutes the new plan
/// grants over the rest of the current period, above the highest daily rate already credited in
/// this period (kept on the private side): a downgrade takes back nothing, so without that mark
/// switching back and forth would credit the same upgrade again and again.
fn change_plan(
    store: &Store,
    subscription: &mut Value,
    input: &Input,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let old = subscription["plan"].clone();
    let plan_id = input
        .str("plan_id")
        .or(old["id"].as_str())
        .unwrap_or("team");
    let interval = input
        .str("interval")
        .or(old["interval"].as_str())
        .unwrap_or("month");
    if plan_id == old["id"] && interval == old["interval"] {
        return Ok(());
    }
    if plan_id == "enterprise" {
        return Err(ApiError::unprocessable(
            "the enterprise plan is arranged through TrainAR sales, not self-service",
        ));
    }
    let new = plan(plan_id, interval)?;
    let id = subscription["id"].as_str().unwrap_or("");
    let mut private = store.private(KIND, id)?;
    let period_start = &subscription["current_period_start"];
    // The mark is of one period: a renewal grants the plan's own minutes again.
    let credited = match private["credited_daily_minutes"].as_f64() {
        Some(rate) if private["credited_period_start"] == *period_start => rate,
        _ => daily_minutes(&old),
    };
    let rate = daily_minutes(&new);
    let end = timestamp_of(subscription, "current_period_end")?;
    let remaining_days = (end - now).num_seconds().max(0) as f64 / 86_400.0;
    let extra = ((rate - credited) * remaining_days).round() as i64;
    private["credited_daily_minutes"] = json!(rate.max(credited));
    private["credited_period_start"] = period_start.clone();
    store.set_private(KIND, id, &private)?;
    if extra > 0 {
        let description = format!(
            "Prorated minutes for the change to {} ({}ly) for the rest of the period",
            new["name"].as_str().unwrap_or(plan_id),
            interval
        );
        ledger::record(
            store,
            "grant",
            extra,
            Reference::default(),
            &description,
            &ids::timestamp(now),
        )?;
    }
    subscription["plan"] = new;
    Ok(())
}

/// The minutes a plan grants per day of its interval, the unit proration works in.
fn daily_minutes(plan: &Value) -> f64 {
    let days = if plan["interval"] == "year" {
        365.25
    } else {
        365.25 / 12.0
    };
    plan["included_minutes"].as_i64().unwrap_or(0) as f64 / days
}

fn cancel(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let mut subscription = require_current(store)?;
    if subscription["status"] == "canceled" {
        return Err(ApiError::conflict("this subscription is already canceled"));
    }
    let at_period_end = input.bool("at_period_end").unwrap_or(true);
    if at_period_end && subscription["cancel_at_period_end"] == true {
        return Err(ApiError::conflict(format!(
            "a cancellation is already scheduled for {}; pass at_period_end false to end it now",
            subscription["current_period_end"]
                .as_str()
                .unwrap_or("the period end")
        )));
    }
    let at = ids::now_string();
    subscription["canceled_at"] = json!(at);
    if let Some(reason) = input.get("reason") {
        subscription["cancellation_reason"] = reason.clone();
    }
    if at_period_end {
        subscription["cancel_at_period_end"] = json!(true);
    } else {
        // Ending now forfeits the period's remaining minutes, without a refund.
        subscription["status"] = json!("canceled");
        subscription["cancel_at_period_end"] = json!(false);
        subscription["current_period_end"] = json!(at);
        expire_unused(store, &at)?;
    }
    subscription["updated_at"] = json!(at);
    store.update(KIND, &subscription)?;
    store.emit("subscription.updated", &subscription)?;
    ok(subscription)
}

/// Renews, ends a trial or applies a scheduled cancellation for every period boundary passed.
fn roll_forward(store: &Store, subscription: &mut Value) -> Result<(), ApiError> {
    let now = ids::now();
    let mut changed = false;
    for _ in 0..MAX_RENEWALS {
        let end = timestamp_of(subscription, "current_period_end")?;
        let live = matches!(subscription["status"].as_str(), Some("active" | "trialing"));
        if !live || end > now {
            break;
        }
        let end_text = ids::timestamp(end);
        expire_unused(store, &end_text)?;
        changed = true;
        if subscription["cancel_at_period_end"] == true {
            subscription["status"] = json!("canceled");
            subscription["cancel_at_period_end"] = json!(false);
            break;
        }
        if subscription["status"] == "trialing" && !has_payment_method(store)? {
            // The trial ended without a card: the first charge fails and is retried.
            subscription["status"] = json!("past_due");
            break;
        }
        start_period(store, subscription, end)?;
    }
    if changed {
        subscription["updated_at"] = json!(ids::timestamp(now));
        store.update(KIND, subscription)?;
        store.emit("subscription.updated", subscription)?;
    }
    Ok(())
}

/// A paid period from `start`, with the plan's minutes granted at its start.
fn start_period(
    store: &Store,
    subscription: &mut Value,
    start: DateTime<Utc>,
) -> Result<(), ApiError> {
    let interval = subscription["plan"]["interval"]
        .as_str()
        .unwrap_or("month")
        .to_string();
    let at = ids::timestamp(start);
    subscription["status"] = json!("active");
    subscription["current_period_start"] = json!(at);
    subscription["current_period_end"] = json!(ids::timestamp(period_end(start, &interval)));
    grant(store, &subscription["plan"], &at)?;
    Ok(())
}

fn period_end(start: DateTime<Utc>, interval: &str) -> DateTime<Utc> {
    let months = if interval == "year" { 12 } else { 1 };
    start
        .checked_add_months(Months::new(months))
        .unwrap_or(start + Duration::days(30 * i64::from(months)))
}

/// Credits the plan's included minutes for a period starting at `at`.
fn grant(store: &Store, plan: &Value, at: &str) -> Result<Value, ApiError> {
    let minutes = plan["included_minutes"].as_i64().unwrap_or(0);
    let description = format!(
        "{} plan: {minutes} minutes included for the {}ly period",
        plan["name"].as_str().unwrap_or("Plan"),
        plan["interval"].as_str().unwrap_or("month")
    );
    ledger::record(
        store,
        "grant",
        minutes,
        Reference::default(),
        &description,
        at,
    )
}

/// Expires whatever is left of the balance at a period's end (in entries of at most the spec's
/// bound on one entry).
fn expire_unused(store: &Store, at: &str) -> Result<(), ApiError> {
    let mut left = ledger::balance(store)?;
    while left > 0 {
        let minutes = left.min(ledger::MAX_ENTRY_MINUTES);
        let description = format!("{minutes} unused minutes expired at the end of the period");
        ledger::record(
            store,
            "expiry",
            -minutes,
            Reference::default(),
            &description,
            at,
        )?;
        left -= minutes;
    }
    Ok(())
}

/// Seats cover the active users: fewer would lock someone out.
fn check_seats(store: &Store, seats: i64) -> Result<(), ApiError> {
    let active = store
        .all("user")?
        .iter()
        .filter(|user| user["status"] == "active")
        .count() as i64;
    if seats < active {
        return Err(ApiError::unprocessable(format!(
            "seats ({seats}) cannot be fewer than the tenant's {active} active users"
        )));
    }
    Ok(())
}

fn timestamp_of(object: &Value, field: &str) -> Result<DateTime<Utc>, ApiError> {
    object[field]
        .as_str()
        .and_then(ids::parse_timestamp)
        .ok_or_else(|| ApiError::internal(format!("stored {field} is not a timestamp")))
}

/// The BillingDetails response: the stored object without its storage id.
fn served_details(mut details: Value) -> Value {
    if let Some(fields) = details.as_object_mut() {
        fields.remove("id");
    }
    details
}

/// A new subscription's details are exactly what it was created with.
fn replace_details(store: &Store, input: &Input, at: &str) -> Result<(), ApiError> {
    let details = json!({
        "id": store.tenant_id(),
        "company_name": input.required_str("company_name")?,
        "billing_email": input.required_str("billing_email")?,
        "address": address(input.get("address").unwrap_or(&Value::Null)),
        "tax_id": input.get("tax_id"),
        "payment_method": input.str("payment_method_token").map(card_summary),
        "updated_at": at,
    });
    match store.get(DETAILS, store.tenant_id())? {
        Some(_) => store.update(DETAILS, &details)?,
        None => store.insert(DETAILS, &details)?,
    }
    store.set_private(DETAILS, store.tenant_id(), &payment_private(input))
}

/// Changes only the details fields given.
fn update_details(store: &Store, input: &Input, at: &str) -> Result<(), ApiError> {
    let fields = [
        "company_name",
        "billing_email",
        "address",
        "tax_id",
        "payment_method_token",
    ];
    if input.given(&fields).next().is_none() {
        return Ok(());
    }
    let mut details = store.require(DETAILS, store.tenant_id())?;
    for (field, value) in input.given(&fields) {
        match field {
            "address" => details["address"] = address(value),
            "payment_method_token" => {
                details["payment_method"] = value.as_str().map(card_summary).into();
                store.set_private(DETAILS, store.tenant_id(), &payment_private(input))?;
            }
            _ => details[field] = value.clone(),
        }
    }
    details["updated_at"] = json!(at);
    store.update(DETAILS, &details)
}

/// The token is never served; its hash records which payment method is on file.
fn payment_private(input: &Input) -> Value {
    json!({
        "payment_method_sha256": input.str("payment_method_token").map(|t| ids::sha256_hex(t.as_bytes())),
    })
}

fn has_payment_method(store: &Store) -> Result<bool, ApiError> {
    Ok(store
        .get(DETAILS, store.tenant_id())?
        .is_some_and(|details| !details["payment_method"].is_null()))
}

/// The spec's BillingAddress from a BillingAddressInput: optional lines become empty strings.
fn address(input: &Value) -> Value {
    let text = |field: &str| input[field].as_str().unwrap_or("").to_string();
    json!({
        "line1": text("line1"), "line2": text("line2"), "city": text("city"),
        "state": text("state"), "postal_code": text("postal_code"), "country": text("country"),
    })
}

/// What the hosted payment form would report for the card behind `token`: the sandbox has no
/// card, so it derives a stable, plausible summary from the token.
fn card_summary(token: &str) -> Value {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(token.as_bytes());
    let brands = ["visa", "mastercard", "amex", "discover"];
    let last4: String = hash[1..5]
        .iter()
        .map(|b| char::from(b'0' + b % 10))
        .collect();
    json!({
        "brand": brands[usize::from(hash[0]) % brands.len()],
        "last4": last4,
        "exp_month": 1 + i64::from(hash[5] % 12),
        "exp_year": i64::from(ids::now().year()) + 1 + i64::from(hash[6] % 5),
    })
}

/// The current period's figures from the ledger. `remaining`/`overage` are the ledger's balance
/// (which expiries and corrections keep equal to included + purchased − used otherwise).
fn usage_balance(store: &Store, subscription: &Value) -> Result<Value, ApiError> {
    let start = subscription["current_period_start"].as_str().unwrap_or("");
    let end = subscription["current_period_end"].as_str().unwrap_or("");
    let sums = period_sums(store, start, end)?;
    let positive = |kind: &str| {
        sums.iter()
            .filter(|s| s.0 == kind)
            .map(|s| s.1)
            .sum::<i64>()
    };
    let used = period_usage(store, start, end)?;
    let balance = ledger::balance(store)?;
    Ok(json!({
        "subscription_id": subscription["id"],
        "plan_id": subscription["plan"]["id"],
        "period_start": start,
        "period_end": end,
        "included_minutes": positive("grant"),
        "purchased_minutes": positive("top_up") + positive("adjustment"),
        "used_minutes": used,
        "remaining_minutes": balance.max(0),
        "overage_minutes": (-balance).max(0),
        "as_of": ids::now_string(),
    }))
}

/// Per ledger kind in [start, end): (kind, sum of credits, sum of debits).
fn period_sums(store: &Store, start: &str, end: &str) -> Result<Vec<(String, i64, i64)>, ApiError> {
    let mut statement = store.tx().prepare_cached(
        "SELECT json_extract(body, '$.kind'),
                COALESCE(SUM(MAX(json_extract(body, '$.minutes'), 0)), 0),
                COALESCE(SUM(MIN(json_extract(body, '$.minutes'), 0)), 0)
         FROM objects
         WHERE tenant_id = ?1 AND kind = ?2
           AND json_extract(body, '$.created_at') >= ?3 AND json_extract(body, '$.created_at') < ?4
         GROUP BY json_extract(body, '$.kind')",
    )?;
    let rows = statement.query_map(
        rusqlite::params![store.tenant_id(), ledger::KIND, start, end],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The ledger newest first by `created_at` (entries may be recorded after the fact, e.g. a
/// renewal caught up late), paged by keyset on (created_at, seq) with the cursor naming a seq.
fn transactions(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let to = window_bound(input, "to")?.unwrap_or_else(end_of_now);
    let from = window_bound(input, "from")?.unwrap_or(to - Duration::days(DEFAULT_WINDOW_DAYS));
    if from >= to {
        return Err(ApiError::invalid_field("from", "must be before `to`"));
    }
    let filters: Vec<Filter> = input
        .get("kind")
        .map(|kind| Filter::field("kind", kind.clone()))
        .into_iter()
        .collect();
    let page = store.list_by_time(
        ledger::KIND,
        &TimeWindow {
            field: "created_at",
            from,
            to,
        },
        &filters,
        input.limit(),
        input.cursor(),
    )?;
    ok(page.into_json())
}

/// The default end of a window: now, with this millisecond in it. Entries are stamped to the
/// millisecond and the end is exclusive, so plain `now` left out an entry written a moment before
/// the request in the same millisecond (a charge, then the ledger read at once).
fn end_of_now() -> DateTime<Utc> {
    ids::now() + Duration::milliseconds(1)
}

/// `from`/`to` as instants (any offset is accepted; the UTC year must have four digits).
fn window_bound(input: &Input, field: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    input
        .str(field)
        .map(|text| ids::parse_client_timestamp(field, text))
        .transpose()
}

/// An active Team subscription, started a month before its current period (which began 20
/// days ago), with both periods' grants, the first period's leftover expired, a top-up and the
/// billing details. The sessions seed has already charged the last 30 days of usage, so the
/// first period absorbs the older part of it; seeding runs billing after every category that
/// charges the ledger, so this is where the ledger's running balances are put in order.
pub fn seed_demo(store: &Store) -> Result<(), ApiError> {
    let now = ids::now();
    let start = now - Duration::days(20);
    let first = start
        .checked_sub_months(Months::new(1))
        .unwrap_or(start - Duration::days(30));
    let (first_at, at) = (ids::timestamp(first), ids::timestamp(start));
    let active_users = store
        .all("user")?
        .iter()
        .filter(|u| u["status"] == "active")
        .count() as i64;
    let plan = plan("team", "month")?;
    let email = format!("billing@{}", email_domain(store)?);
    let subscription = json!({
        "id": ids::new_id("sub_"),
        "seats": active_users.max(plan["included_seats"].as_i64().unwrap_or(1)),
        "plan": plan,
        "status": "active",
        "current_period_start": at,
        "current_period_end": ids::timestamp(period_end(start, "month")),
        "trial_end": null,
        "cancel_at_period_end": false,
        "canceled_at": null,
        "cancellation_reason": null,
        "billing_email": email,
        "created_at": first_at,
        "updated_at": at,
    });
    store.insert(KIND, &subscription)?;
    let first_grant = grant(store, &subscription["plan"], &first_at)?;
    let granted = first_grant["minutes"].as_i64().unwrap_or(0);
    let left = granted - period_usage(store, &first_at, &at)?;
    if left > 0 {
        let description = format!("{left} unused minutes expired at the end of the period");
        ledger::record(
            store,
            "expiry",
            -left,
            Reference::default(),
            &description,
            &at,
        )?;
    }
    grant(store, &subscription["plan"], &at)?;
    let top_up_at = ids::timestamp(now - Duration::days(6));
    ledger::record(
        store,
        "top_up",
        500,
        Reference::default(),
        "Top-up: 500 minutes purchased",
        &top_up_at,
    )?;
    restate_balances(store)?;
    seed_details(store, &email, &first_at)
}

/// Seeds record their entries out of time order (usage before the grants that cover it), so
/// each entry's `balance_after_minutes` is restated as the running balance in time order.
fn restate_balances(store: &Store) -> Result<(), ApiError> {
    let mut entries = store.all(ledger::KIND)?;
    // A stable sort: entries of the same instant keep their recording order.
    entries.sort_by(|a, b| a["created_at"].as_str().cmp(&b["created_at"].as_str()));
    let mut balance = 0;
    for mut entry in entries {
        balance += entry["minutes"].as_i64().unwrap_or(0);
        if entry["balance_after_minutes"] != balance {
            entry["balance_after_minutes"] = json!(balance);
            store.update(ledger::KIND, &entry)?;
        }
    }
    Ok(())
}

/// The minutes sessions and skill executions used in [start, end).
fn period_usage(store: &Store, start: &str, end: &str) -> Result<i64, ApiError> {
    let net: i64 = period_sums(store, start, end)?
        .iter()
        .filter(|(kind, _, _)| kind == "session_usage" || kind == "skill_execution")
        .map(|(_, credits, debits)| credits + debits)
        .sum();
    Ok((-net).max(0))
}

fn seed_details(store: &Store, email: &str, at: &str) -> Result<(), ApiError> {
    let company: String = store.tx().query_row(
        "SELECT name FROM tenants WHERE id = ?1",
        rusqlite::params![store.tenant_id()],
        |row| row.get(0),
    )?;
    let token = format!("pm_{}", ids::random_base62(24));
    let details = json!({
        "id": store.tenant_id(),
        "company_name": format!("{company} GmbH"),
        "billing_email": email,
        "address": {
            "line1": "Industriestraße 12", "line2": "Building 2, Accounts Payable",
            "city": "Stuttgart", "state": "", "postal_code": "70565", "country": "DE",
        },
        "tax_id": "DE293847561",
        "payment_method": card_summary(&token),
        "updated_at": at,
    });
    let private = json!({"payment_method_sha256": ids::sha256_hex(token.as_bytes())});
    store.insert_with_private(DETAILS, &details, &private)
}

/// The demo users' e-mail domain, so billing mail goes to the same company.
fn email_domain(store: &Store) -> Result<String, ApiError> {
    Ok(store
        .all("user")?
        .iter()
        .find_map(|user| {
            user["email"]
                .as_str()?
                .split_once('@')
                .map(|(_, d)| d.to_string())
        })
        .unwrap_or_else(|| "example.com".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::db::Db;

    #[test]
    fn an_entry_stamped_this_millisecond_is_inside_the_default_window() {
        for _ in 0..1000 {
            let stamped = ids::timestamp(ids::now());
            let end = ids::timestamp(end_of_now());
            assert!(
                stamped < end,
                "{stamped} must fall before the window's end {end}"
            );
        }
    }

    /// A subscription whose period ended while nobody looked renews on the next read, with the
    /// old period's minutes expired and the new period's granted.
    #[test]
    fn an_overdue_period_renews_lazily() {
        let db = Db::open_in_memory().unwrap();
        db.transaction_blocking(|tx| {
            let store = Store::new(tx, "ten_test0000000000");
            let start = ids::now() - Duration::days(40);
            let at = ids::timestamp(start);
            let plan = plan("starter", "month")?;
            store.insert(
                KIND,
                &json!({
                    "id": "sub_test000000000000", "plan": plan, "status": "active", "seats": 1,
                    "current_period_start": at,
                    "current_period_end": ids::timestamp(period_end(start, "month")),
                    "trial_end": null, "cancel_at_period_end": false, "canceled_at": null,
                    "cancellation_reason": null, "billing_email": "a@example.com",
                    "created_at": at, "updated_at": at,
                }),
            )?;
            grant(&store, &plan, &at)?;
            ledger::record(
                &store,
                "session_usage",
                -100,
                Reference::default(),
                "use",
                &at,
            )?;
            let renewed = current(&store)?.unwrap();
            assert_eq!(renewed["status"], "active");
            assert!(timestamp_of(&renewed, "current_period_end")? > ids::now());
            assert_eq!(
                ledger::balance(&store)?,
                500,
                "400 left expired, 500 granted"
            );
            let kinds: Vec<Value> = store
                .all(ledger::KIND)?
                .iter()
                .map(|e| e["kind"].clone())
                .collect();
            assert_eq!(
                kinds,
                [
                    json!("grant"),
                    json!("session_usage"),
                    json!("expiry"),
                    json!("grant")
                ]
            );
            let usage = usage_balance(&store, &renewed)?;
            assert_eq!(usage["included_minutes"], 500);
            assert_eq!(usage["used_minutes"], 0);
            Ok(())
        })
        .unwrap();
    }
}
