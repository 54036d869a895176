//! Devices: the tenant's AR headsets and tablets (list, get, unpair with `device.unpaired`),
//! pairing codes for new devices, and hardware orders.
//!
//! A device's `paired`/`offline` status follows from when it was last seen, so it is brought up
//! to date whenever devices are read; `unpaired` is final. Pairing itself happens on the device
//! (it redeems a code), which is not a Tenant API operation.

use crate::generated::api::Operation;
use crate::sandbox::db::{Filter, Store};
use crate::sandbox::error::ApiError;
use crate::sandbox::request::{Input, Reply, created, ok, page};
use crate::sandbox::{Ctx, ids, not_served};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

const KIND: &str = "device";
const PAIRING_CODE: &str = "pairing_code";
const ORDER: &str = "order";
/// 32 letters and digits without the look-alikes 0, O, 1 and I; 256 is a multiple of 32, so a
/// random byte picks each of them equally often.
const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const CODE_LENGTH: usize = 8;
const DEFAULT_TTL_SECONDS: i64 = 900;
/// A device not seen for this long is `offline`.
const OFFLINE_AFTER: Duration = Duration::hours(24);

pub fn call(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    let store = &ctx.store;
    match ctx.operation {
        Operation::ListDevices => {
            refresh_all(store)?;
            let mut filters = Vec::new();
            for field in ["status", "model", "assigned_user_id"] {
                if let Some(value) = input.get(field) {
                    filters.push(Filter::field(field, value.clone()));
                }
            }
            page(store.list(KIND, &filters, input.limit(), input.cursor())?)
        }
        Operation::GetDevice => {
            let device = store.require(KIND, input.required_str("device_id")?)?;
            ok(refresh(store, device)?)
        }
        Operation::GeneratePairingCode => generate_pairing_code(store, input),
        Operation::UnpairDevice => unpair(store, input),
        Operation::ListOrders => {
            let filters: Vec<Filter> = input
                .get("status")
                .map(|status| Filter::field("status", status.clone()))
                .into_iter()
                .collect();
            page(store.list(ORDER, &filters, input.limit(), input.cursor())?)
        }
        _ => Err(not_served(ctx)),
    }
}

/// What a paired device's status is at `now`: `paired` if seen (or paired) within a day.
fn status_at(device: &Value, now: DateTime<Utc>) -> &'static str {
    let seen = device["last_seen_at"]
        .as_str()
        .or(device["paired_at"].as_str())
        .and_then(ids::parse_timestamp);
    match seen {
        Some(seen) if now - seen < OFFLINE_AFTER => "paired",
        _ => "offline",
    }
}

/// Stores and returns the device with its status brought up to date.
fn refresh(store: &Store, mut device: Value) -> Result<Value, ApiError> {
    if device["status"] == "unpaired" {
        return Ok(device);
    }
    let status = status_at(&device, ids::now());
    if device["status"] != status {
        device["status"] = json!(status);
        store.update(KIND, &device)?;
    }
    Ok(device)
}

/// Brings every device up to date, so that a `status` filter sees the present.
fn refresh_all(store: &Store) -> Result<(), ApiError> {
    for device in store.all(KIND)? {
        refresh(store, device)?;
    }
    Ok(())
}

fn generate_pairing_code(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    if let Some(user_id) = input.str("assigned_user_id") {
        require_active_user(store, user_id)?;
    }
    let ttl = input.i64("ttl_seconds").unwrap_or(DEFAULT_TTL_SECONDS);
    let now = ids::now();
    let pairing_code = json!({
        "id": ids::new_id("pc_"),
        "code": unused_code(store, now)?,
        "device_name": input.get("device_name"),
        "assigned_user_id": input.get("assigned_user_id"),
        "ttl_seconds": ttl,
        "expires_at": ids::timestamp(now + Duration::seconds(ttl)),
        "created_at": ids::timestamp(now),
    });
    store.insert_with_private(PAIRING_CODE, &pairing_code, &json!({"redeemed_at": null}))?;
    created(pairing_code)
}

/// A fresh code that no live code of any tenant has: the app redeems a code before it knows
/// its tenant, so codes must be unique across the sandbox.
fn unused_code(store: &Store, now: DateTime<Utc>) -> Result<String, ApiError> {
    for _ in 0..16 {
        let code = random_code()?;
        let taken: i64 = store.tx().query_row(
            "SELECT COUNT(*) FROM objects WHERE kind = ?1
               AND json_extract(body, '$.code') = ?2 AND json_extract(body, '$.expires_at') > ?3",
            rusqlite::params![PAIRING_CODE, code, ids::timestamp(now)],
            |row| row.get(0),
        )?;
        if taken == 0 {
            return Ok(code);
        }
    }
    Err(ApiError::internal("no unused pairing code after 16 draws"))
}

fn random_code() -> Result<String, ApiError> {
    let mut bytes = [0u8; CODE_LENGTH];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(bytes
        .iter()
        .map(|b| char::from(CODE_ALPHABET[usize::from(*b) % CODE_ALPHABET.len()]))
        .collect())
}

fn require_active_user(store: &Store, user_id: &str) -> Result<(), ApiError> {
    match store.get("user", user_id)? {
        Some(user) if user["status"] == "active" => Ok(()),
        Some(user) => Err(ApiError::unprocessable(format!(
            "user {user_id} is {} and cannot be assigned a device; only active users can",
            user["status"].as_str().unwrap_or("not active")
        ))),
        None => Err(ApiError::unprocessable(format!(
            "no user {user_id} in this tenant"
        ))),
    }
}

fn unpair(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let mut device = store.require(KIND, input.required_str("device_id")?)?;
    if device["status"] == "unpaired" {
        return Err(ApiError::conflict(format!(
            "device {} is already unpaired; pair it anew with a code from generate_pairing_code",
            device["id"].as_str().unwrap_or("")
        )));
    }
    // The assignment stays on the record: an unpaired device is kept for history.
    device["status"] = json!("unpaired");
    device["unpaired_at"] = json!(ids::now_string());
    device["unpair_reason"] = input.get("reason").cloned().unwrap_or(Value::Null);
    store.update(KIND, &device)?;
    store.emit("device.unpaired", &device)?;
    ok(device)
}

/// One demo device, with its times relative to the seeding.
struct DemoDevice {
    name: &'static str,
    model: &'static str,
    serial_prefix: &'static str,
    os: &'static str,
    app: &'static str,
    battery: Option<i64>,
    paired_days_ago: i64,
    seen_hours_ago: i64,
    /// Days since it was unpaired, and why.
    unpaired: Option<(i64, &'static str)>,
    /// Which of the active demo users it is assigned to (none: shared).
    user: Option<usize>,
}

/// A paired, shared demo device of `model` running `os` and TrainAR `app`.
const fn demo(
    name: &'static str,
    model: &'static str,
    serial_prefix: &'static str,
    os: &'static str,
    app: &'static str,
) -> DemoDevice {
    DemoDevice {
        name,
        model,
        serial_prefix,
        os,
        app,
        battery: None,
        paired_days_ago: 0,
        seen_hours_ago: 0,
        unpaired: None,
        user: None,
    }
}

/// Oldest pairing first, so that lists (newest first) show the latest device on top.
const DEMO_DEVICES: [DemoDevice; 6] = [
    DemoDevice {
        battery: Some(41),
        paired_days_ago: 120,
        seen_hours_ago: 24 * 30,
        unpaired: Some((29, "returned to vendor after the pilot")),
        ..demo(
            "Demo Vision Pro",
            "vision_pro",
            "VP",
            "visionOS 1.2",
            "4.9.3",
        )
    },
    DemoDevice {
        battery: Some(78),
        paired_days_ago: 90,
        seen_hours_ago: 2,
        user: Some(0),
        ..demo(
            "Line 3 HoloLens",
            "hololens_2",
            "HL2",
            "Windows Holographic 23H2",
            "4.12.0",
        )
    },
    DemoDevice {
        battery: Some(12),
        paired_days_ago: 85,
        seen_hours_ago: 24 * 4,
        ..demo(
            "Line 3 HoloLens (spare)",
            "hololens_2",
            "HL2",
            "Windows Holographic 22H2",
            "4.10.1",
        )
    },
    DemoDevice {
        battery: Some(64),
        paired_days_ago: 60,
        seen_hours_ago: 5,
        user: Some(1),
        ..demo(
            "Workshop Magic Leap",
            "magic_leap_2",
            "ML2",
            "Magic Leap OS 1.8.0",
            "4.12.0",
        )
    },
    DemoDevice {
        battery: Some(93),
        paired_days_ago: 30,
        seen_hours_ago: 20,
        ..demo(
            "Training Room Quest 1",
            "quest_3",
            "Q3",
            "Meta Horizon OS v69",
            "4.11.2",
        )
    },
    DemoDevice {
        battery: Some(54),
        paired_days_ago: 12,
        seen_hours_ago: 1,
        user: Some(2),
        ..demo(
            "Field iPad – Team North",
            "ipad_pro",
            "IPD",
            "iPadOS 17.5",
            "4.12.0",
        )
    },
];

/// Six devices of several models, some assigned to demo users, one offline and one unpaired;
/// and three hardware orders.
pub fn seed_demo(store: &Store) -> Result<(), ApiError> {
    let users: Vec<Value> = store
        .all("user")?
        .into_iter()
        .filter(|user| user["status"] == "active")
        .collect();
    let now = ids::now();
    for spec in &DEMO_DEVICES {
        let assigned = spec
            .user
            .and_then(|index| users.get(index))
            .map(|u| u["id"].clone());
        let serial = ids::random_base62(10).to_uppercase();
        let mut device = json!({
            "id": ids::new_id("dev_"),
            "name": spec.name,
            "model": spec.model,
            "serial_number": format!("{}-{serial}", spec.serial_prefix),
            "status": "paired",
            "os_version": spec.os,
            "app_version": spec.app,
            "battery_percent": spec.battery,
            "assigned_user_id": assigned,
            "last_seen_at": ids::timestamp(now - Duration::hours(spec.seen_hours_ago)),
            "paired_at": ids::timestamp(now - Duration::days(spec.paired_days_ago)),
            "unpaired_at": null,
            "unpair_reason": null,
        });
        match spec.unpaired {
            Some((days, reason)) => {
                device["status"] = json!("unpaired");
                device["unpaired_at"] = json!(ids::timestamp(now - Duration::days(days)));
                device["unpair_reason"] = json!(reason);
            }
            None => device["status"] = json!(status_at(&device, now)),
        }
        store.insert(KIND, &device)?;
    }
    seed_orders(store, users.first(), now)
}

/// A line of a demo order: (sku, model, description, quantity, unit price in cents).
type DemoItem = (&'static str, &'static str, &'static str, i64, i64);

fn seed_orders(
    store: &Store,
    recipient: Option<&Value>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let company: String = store.tx().query_row(
        "SELECT name FROM tenants WHERE id = ?1",
        rusqlite::params![store.tenant_id()],
        |row| row.get(0),
    )?;
    let address = json!({
        "recipient_name": recipient.and_then(|u| u["name"].as_str()).unwrap_or("Facilities team"),
        "company_name": company,
        "line1": "Industriestraße 12", "line2": "Building 2, Goods Receiving",
        "city": "Stuttgart", "state": "", "postal_code": "70565", "country": "DE",
        "phone": "+4971155501200",
    });
    let hololens: &[DemoItem] = &[(
        "HL2-IND-EU",
        "hololens_2",
        "HoloLens 2 Industrial Edition",
        4,
        499_900,
    )];
    let mixed: &[DemoItem] = &[
        (
            "ML2-ENT-EU",
            "magic_leap_2",
            "Magic Leap 2 Enterprise",
            2,
            449_900,
        ),
        (
            "IPADPRO-13-EU",
            "ipad_pro",
            "iPad Pro 13-inch (Wi-Fi + Cellular, 512 GB)",
            1,
            174_900,
        ),
    ];
    let quests: &[DemoItem] = &[(
        "Q3-BIZ-EU",
        "quest_3",
        "Meta Quest 3 for Business (512 GB)",
        3,
        64_900,
    )];
    let orders = [
        (hololens, "delivered", 75),
        (mixed, "shipped", 6),
        (quests, "processing", 1),
    ];
    for (items, status, days_ago) in orders {
        let placed = now - Duration::days(days_ago);
        store.insert(ORDER, &order(items, status, placed, &address))?;
    }
    Ok(())
}

/// An order with its totals computed from its lines (19 % German VAT on goods and shipping)
/// and the shipping milestones its status implies.
fn order(items: &[DemoItem], status: &str, placed: DateTime<Utc>, address: &Value) -> Value {
    let lines: Vec<Value> = items
        .iter()
        .map(|(sku, model, description, quantity, unit)| {
            json!({
                "sku": sku, "model": model, "description": description, "quantity": quantity,
                "unit_price_cents": unit, "total_cents": quantity * unit,
            })
        })
        .collect();
    let subtotal: i64 = items
        .iter()
        .map(|(_, _, _, quantity, unit)| quantity * unit)
        .sum();
    let shipping = 4_900;
    let tax = ((subtotal + shipping) as f64 * 0.19).round() as i64;
    let shipped = matches!(status, "shipped" | "delivered");
    let tracking = shipped.then(|| format!("00340434{}", digits(10)));
    json!({
        "id": ids::new_id("ord_"),
        "status": status,
        "items": lines,
        "subtotal_cents": subtotal,
        "shipping_cents": shipping,
        "tax_cents": tax,
        "total_cents": subtotal + shipping + tax,
        "currency": "EUR",
        "shipping_address": address,
        "carrier": shipped.then_some("dhl"),
        "tracking_url": tracking.as_ref().map(|n| format!("https://www.dhl.com/de-en/home/tracking.html?tracking-id={n}")),
        "tracking_number": tracking,
        "created_at": ids::timestamp(placed),
        "shipped_at": shipped.then(|| ids::timestamp(placed + Duration::days(3))),
        "delivered_at": (status == "delivered").then(|| ids::timestamp(placed + Duration::days(5))),
        "cancelled_at": null,
    })
}

/// `n` random decimal digits, for tracking numbers.
fn digits(n: usize) -> String {
    ids::random_base62(n)
        .bytes()
        .map(|b| char::from(b'0' + b % 10))
        .collect()
}
