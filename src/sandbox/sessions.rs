//! Sessions: AR training sessions (list with filters, one session, analytics) and their demo data.
//!
//! Sessions are produced by devices, not by the Tenant API, so the API only reads them; the demo
//! seed plays the devices' part: it records sessions over the past 30 days across the tenant's
//! users, devices and skills, bills the minutes of the ended ones to the ledger, and moves the
//! users' `last_active_at` up to their latest session, so every figure agrees with the sessions.
//!
//! Lists are ordered by `started_at`, newest first. The cursor is db.rs's (the `seq` of the last
//! row); a page continues after that row's (`started_at`, `seq`), so it stays stable even if a
//! session's row order and start order ever differ.

use crate::generated::api::Operation;
use crate::sandbox::db::{Filter, Page, Store, TimeWindow};
use crate::sandbox::error::ApiError;
use crate::sandbox::ledger::{self, Reference};
use crate::sandbox::reports::{
    Buckets, Granularity, Period, by_skill, sessions_in, tally_series, time,
};
use crate::sandbox::request::{Input, Reply, ok, page};
use crate::sandbox::{Ctx, ids, not_served};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;

const KIND: &str = "session";

pub fn call(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    match ctx.operation {
        Operation::ListSessions => page(list(&ctx.store, input)?),
        Operation::GetSession => ok(ctx.store.require(KIND, input.required_str("session_id")?)?),
        Operation::GetSessionAnalytics => analytics(&ctx.store, input),
        _ => Err(not_served(ctx)),
    }
}

/// One page of sessions started in the period, newest `started_at` first, with the filters.
fn list(store: &Store, input: &Input) -> Result<Page, ApiError> {
    let period = Period::from_input(input)?;
    let filters: Vec<Filter> = ["user_id", "device_id", "skill_id", "status"]
        .into_iter()
        .filter_map(|field| {
            input
                .get(field)
                .map(|value| Filter::field(field, value.clone()))
        })
        .collect();
    store.list_by_time(
        KIND,
        &TimeWindow {
            field: "started_at",
            from: period.from,
            to: period.to,
        },
        &filters,
        input.limit(),
        input.cursor(),
    )
}

fn analytics(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let period = Period::from_input(input)?;
    let granularity = Granularity::from_input(input);
    let buckets = Buckets::new(&period, granularity)?;
    let user_id = input.str("user_id");
    let skill_id = input.str("skill_id");
    let sessions: Vec<Value> = sessions_in(store, &period)?
        .into_iter()
        .filter(|s| user_id.is_none_or(|u| s["user_id"] == u))
        .filter(|s| skill_id.is_none_or(|k| s["skill_id"] == k))
        .collect();
    let (totals, series) = tally_series(&sessions, &buckets);
    let series: Vec<Value> = series
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"bucket_start": buckets.start(i), "sessions": t.sessions, "minutes": t.minutes, "completed": t.completed})
        })
        .collect();
    let by_skill: Vec<Value> = by_skill(store, &sessions)?
        .iter()
        .map(|skill| skill.json("minutes"))
        .collect();
    ok(json!({
        "period": period.json(),
        "granularity": granularity.as_str(),
        "user_id": user_id,
        "skill_id": skill_id,
        "totals": {
            "sessions": totals.sessions, "completed": totals.completed, "abandoned": totals.abandoned,
            "completion_rate": totals.completion_rate(), "total_minutes": totals.minutes,
            "average_duration_seconds": totals.average_duration_seconds(),
            "average_score": totals.average_score(),
        },
        "by_skill": by_skill,
        "series": series,
    }))
}

/// How many demo sessions have ended; two more are still running.
const ENDED_SESSIONS: i64 = 38;

/// A small deterministic generator, so the demo tenant looks the same on every first start.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % sides.max(1)
    }
}

/// What the demo sessions draw on: who trains, where, and what.
struct Cast {
    users: Vec<Value>,
    devices: Vec<Value>,
    skills: Vec<Value>,
}

impl Cast {
    fn load(store: &Store) -> Result<Cast, ApiError> {
        // Active users train; without any, whoever ever signed in does.
        let signed_in: Vec<Value> = store
            .all("user")?
            .into_iter()
            .filter(|u| u["status"] != "invited")
            .collect();
        let active: Vec<Value> = signed_in
            .iter()
            .filter(|u| u["status"] == "active")
            .cloned()
            .collect();
        let users = if active.is_empty() { signed_in } else { active };
        let devices = store
            .all("device")?
            .into_iter()
            .filter(|d| d["status"] != "unpaired")
            .collect();
        let all_skills = store.all("skill")?;
        let published: Vec<Value> = all_skills
            .iter()
            .filter(|s| s["status"] == "published")
            .cloned()
            .collect();
        let skills = if published.is_empty() {
            all_skills
        } else {
            published
        };
        Ok(Cast {
            users,
            devices,
            skills,
        })
    }

    /// The user's own device when one is assigned to them, else a shared one.
    fn device_for(&self, user_id: &str, dice: &mut Dice) -> Value {
        let own = self
            .devices
            .iter()
            .find(|d| d["assigned_user_id"] == user_id);
        own.or_else(|| {
            self.devices
                .get(dice.roll(self.devices.len() as u64) as usize)
        })
        .map(|d| d["id"].clone())
        .unwrap_or(Value::Null)
    }
}

/// How a demo session turns out.
#[derive(Clone, Copy, PartialEq)]
enum Outcome {
    Completed,
    Abandoned,
    Failed,
    Running,
}

impl Outcome {
    fn status(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Abandoned => "abandoned",
            Outcome::Failed => "failed",
            Outcome::Running => "in_progress",
        }
    }

    /// Minutes are billed for time the trainee used; a platform failure is not billed, and a
    /// running session is billed when it ends.
    fn billed(self) -> bool {
        matches!(self, Outcome::Completed | Outcome::Abandoned)
    }
}

const FREE_PRACTICE_STEPS: [(&str, i64); 4] = [
    ("Fit and calibrate the headset", 90),
    ("Explore the training scene", 240),
    ("Practise pinch and gaze gestures", 180),
    ("Review the safety overlay", 120),
];

const NOTES: [&str; 6] = [
    "Trainee asked for a second run-through of the isolation steps.",
    "Good technique; remind about gloves before handling the seal.",
    "Headset tracking drifted near the conveyor; recalibrated once.",
    "Completed under supervision of the shift lead.",
    "Needed help locating the torque values in the overlay.",
    "",
];

/// Demo sessions over the past 30 days, billed to the ledger.
pub fn seed_demo(store: &Store) -> Result<(), ApiError> {
    let cast = Cast::load(store)?;
    if cast.users.is_empty() {
        return Ok(());
    }
    let mut dice = Dice(0x5EED_7A1A);
    let now = ids::now();
    let start = now - Duration::days(30) + Duration::minutes(30);
    for index in 0..ENDED_SESSIONS + 2 {
        let outcome = match (index >= ENDED_SESSIONS, dice.roll(20)) {
            (true, _) => Outcome::Running,
            (_, 0..=14) | (_, 19) => Outcome::Completed,
            (_, 15..=17) => Outcome::Abandoned,
            _ => Outcome::Failed,
        };
        // ~18.6 hours apart with up to 4 hours of jitter: start times rise with the index.
        let planned = start + Duration::minutes(index * 1117 + dice.roll(240) as i64);
        let session = demo_session(&cast, &mut dice, outcome, planned, now);
        store.insert(KIND, &session)?;
        bill(store, &cast, &session)?;
    }
    refresh_last_active(store, &cast)
}

fn demo_session(
    cast: &Cast,
    dice: &mut Dice,
    outcome: Outcome,
    planned: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Value {
    let user = &cast.users[dice.roll(cast.users.len() as u64) as usize];
    let user_id = user["id"].as_str().unwrap_or_default();
    // One session in eight is free practice, and every session is when there are no skills.
    let skill = (dice.roll(8) != 0)
        .then(|| {
            cast.skills
                .get(dice.roll(cast.skills.len() as u64) as usize)
        })
        .flatten();
    let (steps, score) = demo_steps(skill, dice, outcome);
    let duration: i64 = steps
        .iter()
        .map(|s| s["duration_seconds"].as_i64().unwrap_or(0))
        .sum::<i64>()
        + 30
        + dice.roll(90) as i64;
    let started = if outcome == Outcome::Running {
        now - Duration::seconds(duration)
    } else {
        planned
    };
    let ended = (outcome != Outcome::Running)
        .then(|| ids::timestamp(started + Duration::seconds(duration)));
    let completed = steps.iter().filter(|s| s["status"] == "completed").count();
    let notes = match outcome {
        Outcome::Failed => "Session ended by a device error: tracking was lost.",
        Outcome::Running => "",
        _ => NOTES[dice.roll(NOTES.len() as u64) as usize],
    };
    json!({
        "id": ids::new_id("ses_"),
        "user_id": user_id,
        "device_id": cast.device_for(user_id, dice),
        "skill_id": skill.map(|s| s["id"].clone()),
        "status": outcome.status(),
        "started_at": ids::timestamp(started),
        "ended_at": ended,
        "duration_seconds": duration,
        "minutes_used": if outcome.billed() { (duration + 59) / 60 } else { 0 },
        "score": score,
        "steps_completed": completed,
        "steps_total": steps.len(),
        "steps": steps,
        "task_id": null,
        "notes": notes,
        "created_at": ids::timestamp(started),
    })
}

/// The step results of a session and its score (only finished, skill-based sessions are scored).
fn demo_steps(skill: Option<&Value>, dice: &mut Dice, outcome: Outcome) -> (Vec<Value>, Value) {
    let plan: Vec<(String, i64)> = match skill
        .and_then(|s| s["steps"].as_array())
        .filter(|s| !s.is_empty())
    {
        Some(steps) => steps
            .iter()
            .map(|s| {
                (
                    s["title"].as_str().unwrap_or("Step").to_string(),
                    s["duration_seconds"].as_i64().unwrap_or(60),
                )
            })
            .collect(),
        None => FREE_PRACTICE_STEPS
            .iter()
            .map(|(t, d)| (t.to_string(), *d))
            .collect(),
    };
    let total = plan.len() as u64;
    // Where an unfinished session stopped; completed sessions may skip one optional step.
    let stop = if outcome == Outcome::Completed {
        total
    } else {
        dice.roll(total)
    };
    let skipped = (outcome == Outcome::Completed && total > 2 && dice.roll(5) == 0)
        .then(|| 1 + dice.roll(total - 1));
    let mut steps = Vec::new();
    for (index, (title, estimate)) in plan.iter().enumerate() {
        let index = index as u64;
        let spent = estimate * (70 + dice.roll(110) as i64) / 100;
        let (status, seconds) = if Some(index) == skipped {
            ("skipped", 0)
        } else if index < stop {
            ("completed", spent)
        } else if index == stop {
            match outcome {
                Outcome::Failed => ("failed", spent / 2),
                Outcome::Running => ("in_progress", spent / 2),
                _ => ("pending", 0),
            }
        } else {
            ("pending", 0)
        };
        steps.push(json!({"index": index + 1, "title": title, "status": status, "duration_seconds": seconds}));
    }
    let scored = outcome == Outcome::Completed && skill.is_some();
    let score =
        scored.then(|| (62 + dice.roll(39) - if skipped.is_some() { 10 } else { 0 }).min(100));
    (steps, json!(score))
}

/// Charges an ended session's minutes to the ledger.
fn bill(store: &Store, cast: &Cast, session: &Value) -> Result<(), ApiError> {
    let minutes = session["minutes_used"].as_i64().unwrap_or(0);
    if minutes == 0 {
        return Ok(());
    }
    let skill_name = cast
        .skills
        .iter()
        .find(|s| s["id"] == session["skill_id"])
        .and_then(|s| s["name"].as_str())
        .unwrap_or("Free practice");
    let reference = Reference {
        session_id: session["id"].as_str(),
        user_id: session["user_id"].as_str(),
        ..Reference::default()
    };
    let description = format!("Session \"{skill_name}\" ({minutes} min)");
    let at = session["started_at"].as_str().unwrap_or_default();
    ledger::record(
        store,
        "session_usage",
        -minutes,
        reference,
        &description,
        at,
    )?;
    Ok(())
}

/// Users' `last_active_at`, moved up to their latest session (users.rs derives their session
/// counters from the sessions at read time; their activity time is stored).
fn refresh_last_active(store: &Store, cast: &Cast) -> Result<(), ApiError> {
    let mut latest: HashMap<String, DateTime<Utc>> = HashMap::new();
    for session in store.all(KIND)? {
        let user = session["user_id"].as_str().unwrap_or_default().to_string();
        if let Some(at) = time(&session, "ended_at").or_else(|| time(&session, "started_at")) {
            let entry = latest.entry(user).or_insert(at);
            *entry = (*entry).max(at);
        }
    }
    for user in &cast.users {
        let Some(id) = user["id"].as_str() else {
            continue;
        };
        let Some(mut fresh) = store.get("user", id)? else {
            continue;
        };
        let known = time(&fresh, "last_active_at");
        if let Some(last) = latest
            .get(id)
            .copied()
            .filter(|at| known.is_none_or(|k| *at > k))
        {
            fresh["last_active_at"] = json!(ids::timestamp(last));
            store.update("user", &fresh)?;
        }
    }
    Ok(())
}
