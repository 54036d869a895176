//! Reports: the dashboard's Reports pages (overview, sessions, users, minutes, tasks), computed on
//! demand from the stored sessions, minute ledger, tasks, users, devices and knowledge items.
//!
//! Nothing here is stored or cached: every figure is derived at request time, so a report always
//! agrees with the data it summarises. This module also owns the period/bucket arithmetic and the
//! session tallies that `sessions::get_session_analytics` shares.
//!
//! Tasks carry no transition timestamps, so "moved to done/cancelled in the period" is read as
//! "now done/cancelled and last updated in the period", and the time to complete as
//! `updated_at − created_at` of done tasks.

use crate::generated::api::Operation;
use crate::sandbox::db::{Store, decode_cursor, encode_cursor};
use crate::sandbox::error::ApiError;
use crate::sandbox::request::{Input, Reply, ok};
use crate::sandbox::{Ctx, billing, ids, ledger, not_served};
use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Past this many buckets a series is refused: the spec caps report series at 1000 items.
const MAX_BUCKETS: usize = 1000;

pub fn call(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    match ctx.operation {
        Operation::GetReportsOverview => overview(&ctx.store, &Period::from_input(input)?),
        Operation::GetSessionsReport => sessions_report(&ctx.store, input),
        Operation::GetUsersReport => users_report(&ctx.store, input),
        Operation::GetMinutesReport => minutes_report(&ctx.store, input),
        Operation::GetTasksReport => tasks_report(&ctx.store, input),
        _ => Err(not_served(ctx)),
    }
}

/// A report's period: `from` inclusive, `to` exclusive; defaults to the 30 days before now.
pub(super) struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Period {
    pub fn from_input(input: &Input) -> Result<Period, ApiError> {
        let to = match input.str("to") {
            Some(text) => ids::parse_client_timestamp("to", text)?,
            None => ids::now(),
        };
        let from = match input.str("from") {
            Some(text) => ids::parse_client_timestamp("from", text)?,
            None => to - Duration::days(30),
        };
        if from >= to {
            return Err(ApiError::invalid_field("from", "must be before `to`"));
        }
        // Year 0000 and earlier are valid for chrono but not as answers: validators of RFC 3339
        // (the spec's `date-time`) reject them. A given `from` was checked when parsed; the
        // default, 30 days before an early `to`, is checked here.
        if from.year() < 1 {
            return Err(ApiError::invalid_field(
                "from",
                "must not be before 0001-01-01",
            ));
        }
        Ok(Period { from, to })
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from <= at && at < self.to
    }

    /// Whether the timestamp in `object[field]` falls in the period.
    pub fn holds(&self, object: &Value, field: &str) -> bool {
        time(object, field).is_some_and(|at| self.contains(at))
    }

    pub fn json(&self) -> Value {
        json!({"from": ids::timestamp(self.from), "to": ids::timestamp(self.to)})
    }
}

/// The timestamp stored in `object[field]`, if any.
pub(super) fn time(object: &Value, field: &str) -> Option<DateTime<Utc>> {
    object[field].as_str().and_then(ids::parse_timestamp)
}

/// The width of a time-series bucket.
#[derive(Clone, Copy)]
pub(super) enum Granularity {
    Day,
    Week,
    Month,
}

impl Granularity {
    /// `granularity`, defaulting to `day` as the spec says.
    pub fn from_input(input: &Input) -> Granularity {
        match input.str("granularity") {
            Some("week") => Granularity::Week,
            Some("month") => Granularity::Month,
            _ => Granularity::Day,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
        }
    }

    /// The start of the bucket holding `at`: midnight UTC, the Monday, or the 1st of the month.
    fn floor(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let day = at.date_naive();
        let day = match self {
            Granularity::Day => Some(day),
            Granularity::Week => day.checked_sub_signed(Duration::days(i64::from(
                day.weekday().num_days_from_monday(),
            ))),
            Granularity::Month => day.with_day(1),
        }
        .unwrap_or(day);
        day.and_time(NaiveTime::MIN).and_utc()
    }

    fn next(self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Granularity::Day => start.checked_add_signed(Duration::days(1)),
            Granularity::Week => start.checked_add_signed(Duration::days(7)),
            Granularity::Month => start.checked_add_months(chrono::Months::new(1)),
        }
    }
}

/// The bucket starts covering a period, oldest first, empty buckets included.
pub(super) struct Buckets {
    starts: Vec<DateTime<Utc>>,
}

impl Buckets {
    pub fn new(period: &Period, granularity: Granularity) -> Result<Buckets, ApiError> {
        let mut starts = Vec::new();
        let mut start = Some(granularity.floor(period.from));
        while let Some(at) = start.filter(|at| *at < period.to) {
            if starts.len() == MAX_BUCKETS {
                return Err(ApiError::invalid_field(
                    "granularity",
                    format!(
                        "the period needs more than {MAX_BUCKETS} {} buckets; use a coarser granularity or a shorter period",
                        granularity.as_str()
                    ),
                ));
            }
            starts.push(at);
            start = granularity.next(at);
        }
        Ok(Buckets { starts })
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// The bucket holding `at`, if it is in the covered range.
    pub fn index(&self, at: DateTime<Utc>) -> Option<usize> {
        let after = self.starts.partition_point(|start| *start <= at);
        after.checked_sub(1)
    }

    pub fn start(&self, index: usize) -> String {
        self.starts
            .get(index)
            .map(|s| ids::timestamp(*s))
            .unwrap_or_default()
    }
}

/// Running totals over a set of sessions.
#[derive(Default)]
pub(super) struct Tally {
    pub sessions: i64,
    pub completed: i64,
    pub abandoned: i64,
    pub failed: i64,
    pub in_progress: i64,
    pub minutes: i64,
    duration_seconds: i64,
    score_sum: i64,
    scored: i64,
    users: BTreeSet<String>,
}

impl Tally {
    pub fn add(&mut self, session: &Value) {
        self.sessions += 1;
        match session["status"].as_str() {
            Some("completed") => self.completed += 1,
            Some("abandoned") => self.abandoned += 1,
            Some("failed") => self.failed += 1,
            _ => self.in_progress += 1,
        }
        self.minutes += session["minutes_used"].as_i64().unwrap_or(0).max(0);
        self.duration_seconds += session["duration_seconds"].as_i64().unwrap_or(0).max(0);
        if let Some(score) = session["score"].as_i64() {
            self.score_sum += score;
            self.scored += 1;
        }
        if let Some(user) = session["user_id"].as_str() {
            self.users.insert(user.to_string());
        }
    }

    pub fn completion_rate(&self) -> f64 {
        ratio(self.completed, self.sessions)
    }

    pub fn average_duration_seconds(&self) -> i64 {
        if self.sessions == 0 {
            0
        } else {
            self.duration_seconds / self.sessions
        }
    }

    pub fn average_score(&self) -> Value {
        if self.scored == 0 {
            return Value::Null;
        }
        json!(round(self.score_sum as f64 / self.scored as f64, 1))
    }

    pub fn active_users(&self) -> usize {
        self.users.len()
    }
}

/// `part / whole` in 0..=1, 0 when there is no whole.
fn ratio(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        round((part as f64 / whole as f64).clamp(0.0, 1.0), 4)
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// The tenant's sessions whose `started_at` is in the period.
pub(super) fn sessions_in(store: &Store, period: &Period) -> Result<Vec<Value>, ApiError> {
    Ok(store
        .all("session")?
        .into_iter()
        .filter(|s| period.holds(s, "started_at"))
        .collect())
}

/// The totals of `sessions` and their tallies per bucket of `started_at`.
pub(super) fn tally_series(sessions: &[Value], buckets: &Buckets) -> (Tally, Vec<Tally>) {
    let mut totals = Tally::default();
    let mut series: Vec<Tally> = (0..buckets.len()).map(|_| Tally::default()).collect();
    for session in sessions {
        totals.add(session);
        let bucket = time(session, "started_at").and_then(|at| buckets.index(at));
        if let Some(tally) = bucket.and_then(|i| series.get_mut(i)) {
            tally.add(session);
        }
    }
    (totals, series)
}

/// The sessions of one skill (no skill = free practice), with the skill's name when it exists.
pub(super) struct SkillTally {
    id: Option<String>,
    name: Option<String>,
    tally: Tally,
}

impl SkillTally {
    /// The row as the spec shapes it; the two shapes differ only in the minutes field's name.
    pub fn json(&self, minutes_field: &str) -> Value {
        let mut row = json!({
            "skill_id": self.id, "skill_name": self.name, "sessions": self.tally.sessions,
            "completed": self.tally.completed, "average_score": self.tally.average_score(),
        });
        row[minutes_field] = json!(self.tally.minutes);
        row
    }
}

/// Tallies per skill, most sessions first.
pub(super) fn by_skill(store: &Store, sessions: &[Value]) -> Result<Vec<SkillTally>, ApiError> {
    let names: HashMap<String, String> = store
        .all("skill")?
        .into_iter()
        .filter_map(|s| {
            Some((
                s["id"].as_str()?.to_string(),
                s["name"].as_str()?.to_string(),
            ))
        })
        .collect();
    let mut tallies: BTreeMap<Option<String>, Tally> = BTreeMap::new();
    for session in sessions {
        let skill = session["skill_id"].as_str().map(String::from);
        tallies.entry(skill).or_default().add(session);
    }
    let mut rows: Vec<SkillTally> = tallies
        .into_iter()
        .map(|(id, tally)| {
            let name = id.as_ref().and_then(|id| names.get(id).cloned());
            SkillTally { id, name, tally }
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.tally.sessions, b.tally.completed).cmp(&(a.tally.sessions, a.tally.completed))
    });
    Ok(rows)
}

/// Ledger kinds that consume minutes.
const USAGE_KINDS: [&str; 2] = ["session_usage", "skill_execution"];

/// Minutes consumed by the usage entries among `entries` (debits count, refunds offset them).
fn used_minutes<'a>(entries: impl Iterator<Item = &'a Value>) -> i64 {
    let net: i64 = entries
        .filter(|e| USAGE_KINDS.contains(&e["kind"].as_str().unwrap_or("")))
        .map(|e| e["minutes"].as_i64().unwrap_or(0))
        .sum();
    (-net).max(0)
}

fn ledger_in<'a>(entries: &'a [Value], period: &'a Period) -> impl Iterator<Item = &'a Value> {
    entries.iter().filter(|e| period.holds(e, "created_at"))
}

/// The current subscription unless it is canceled, rolled forward to the present as
/// `get_subscription` sees it. Call it before reading the ledger: rolling forward records the
/// renewals' grants and expiries.
fn current_subscription(store: &Store) -> Result<Option<Value>, ApiError> {
    Ok(billing::current(store)?.filter(|s| s["status"] != "canceled"))
}

/// The minute pool of the current billing period, and its remaining minutes (None without a
/// live subscription).
fn minute_pool(subscription: Option<Value>, entries: &[Value]) -> (Value, Option<i64>) {
    let billing_period = subscription.as_ref().and_then(|s| {
        Some(Period {
            from: time(s, "current_period_start")?,
            to: time(s, "current_period_end")?,
        })
    });
    let (Some(subscription), Some(billing_period)) = (subscription, billing_period) else {
        let empty = json!({
            "included_minutes": 0, "purchased_minutes": 0, "used_minutes": 0,
            "remaining_minutes": 0, "billing_period_start": null, "billing_period_end": null,
        });
        return (empty, None);
    };
    let included = subscription["plan"]["included_minutes"]
        .as_i64()
        .unwrap_or(0)
        .max(0);
    let purchased: i64 = ledger_in(entries, &billing_period)
        .filter(|e| matches!(e["kind"].as_str(), Some("top_up") | Some("adjustment")))
        .map(|e| e["minutes"].as_i64().unwrap_or(0).max(0))
        .sum();
    let used = used_minutes(ledger_in(entries, &billing_period));
    let remaining = (included + purchased - used).max(0);
    let pool = json!({
        "included_minutes": included, "purchased_minutes": purchased, "used_minutes": used,
        "remaining_minutes": remaining,
        "billing_period_start": ids::timestamp(billing_period.from),
        "billing_period_end": ids::timestamp(billing_period.to),
    });
    (pool, Some(remaining))
}

fn overview(store: &Store, period: &Period) -> Result<Reply, ApiError> {
    let mut tally = Tally::default();
    for session in sessions_in(store, period)? {
        tally.add(&session);
    }
    let subscription = current_subscription(store)?;
    let entries = store.all(ledger::KIND)?;
    let tasks = store.all("task")?;
    let tasks_open = tasks
        .iter()
        .filter(|t| matches!(t["status"].as_str(), Some("open") | Some("in_progress")))
        .count();
    let tasks_done = tasks
        .iter()
        .filter(|t| t["status"] == "done" && period.holds(t, "updated_at"))
        .count();
    // `offline` devices are still paired to the tenant, only not seen lately.
    let devices_paired = store
        .all("device")?
        .iter()
        .filter(|d| matches!(d["status"].as_str(), Some("paired") | Some("offline")))
        .count();
    let (_, minutes_remaining) = minute_pool(subscription, &entries);
    ok(json!({
        "period": period.json(),
        "active_users": tally.active_users(),
        "sessions": tally.sessions,
        "completed_sessions": tally.completed,
        "minutes_used": used_minutes(ledger_in(&entries, period)),
        "completion_rate": tally.completion_rate(),
        "tasks_open": tasks_open,
        "tasks_done": tasks_done,
        "knowledge_items": store.all("knowledge")?.len(),
        "devices_paired": devices_paired,
        "minutes_remaining": minutes_remaining,
        "generated_at": ids::now_string(),
    }))
}

fn sessions_report(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let period = Period::from_input(input)?;
    let granularity = Granularity::from_input(input);
    let buckets = Buckets::new(&period, granularity)?;
    let sessions = sessions_in(store, &period)?;
    let (totals, series) = tally_series(&sessions, &buckets);
    let series: Vec<Value> = series
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "bucket_start": buckets.start(i), "sessions": t.sessions, "completed": t.completed,
                "minutes_used": t.minutes, "active_users": t.active_users(),
            })
        })
        .collect();
    let top_skills: Vec<Value> = by_skill(store, &sessions)?
        .iter()
        .take(10)
        .map(|skill| skill.json("minutes_used"))
        .collect();
    ok(json!({
        "period": period.json(),
        "granularity": granularity.as_str(),
        "totals": {
            "sessions": totals.sessions, "completed": totals.completed,
            "completion_rate": totals.completion_rate(), "active_users": totals.active_users(),
            "minutes_used": totals.minutes,
            "average_duration_seconds": totals.average_duration_seconds(),
            "average_score": totals.average_score(),
        },
        "by_status": {
            "in_progress": totals.in_progress, "completed": totals.completed,
            "abandoned": totals.abandoned, "failed": totals.failed,
        },
        "series": series,
        "top_skills": top_skills,
        "generated_at": ids::now_string(),
    }))
}

/// One row of the users report, before it is rendered.
struct UserRow {
    user: Value,
    tally: Tally,
    minutes: i64,
    last_active: Option<DateTime<Utc>>,
}

impl UserRow {
    fn json(&self) -> Value {
        json!({
            "user_id": self.user["id"], "name": self.user["name"].as_str().unwrap_or(""),
            "email": self.user["email"], "role": self.user["role"],
            "sessions": self.tally.sessions, "completed": self.tally.completed,
            "minutes": self.minutes, "average_score": self.tally.average_score(),
            "last_active_at": self.last_active.map(ids::timestamp),
        })
    }
}

fn users_report(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let period = Period::from_input(input)?;
    let sort = input.str("sort").unwrap_or("minutes");
    let offset = match input.cursor() {
        Some(cursor) => usize::try_from(decode_cursor(cursor)?)
            .map_err(|_| crate::sandbox::db::invalid_cursor())?,
        None => 0,
    };
    let mut rows = user_rows(store, &period)?;
    rows.sort_by(|a, b| {
        let order = match sort {
            "sessions" => b.tally.sessions.cmp(&a.tally.sessions),
            // `Option` orders None first, so descending puts never-active users last.
            "last_active" => b.last_active.cmp(&a.last_active),
            _ => b.minutes.cmp(&a.minutes),
        };
        order.then_with(|| a.user["id"].as_str().cmp(&b.user["id"].as_str()))
    });
    let limit = input.limit();
    let data: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(limit)
        .map(UserRow::json)
        .collect();
    let next = offset + limit;
    let next_cursor = (next < rows.len()).then(|| encode_cursor(next as i64));
    ok(json!({
        "period": period.json(),
        "sort": sort,
        "data": data,
        "next_cursor": next_cursor,
        "generated_at": ids::now_string(),
    }))
}

/// A row per user; deactivated users only when they trained in the period.
fn user_rows(store: &Store, period: &Period) -> Result<Vec<UserRow>, ApiError> {
    let mut tallies: HashMap<String, Tally> = HashMap::new();
    let mut last_session: HashMap<String, DateTime<Utc>> = HashMap::new();
    for session in store.all("session")? {
        let Some(user) = session["user_id"].as_str().map(String::from) else {
            continue;
        };
        let latest = time(&session, "ended_at").or_else(|| time(&session, "started_at"));
        if let Some(at) = latest {
            let entry = last_session.entry(user.clone()).or_insert(at);
            *entry = (*entry).max(at);
        }
        if period.holds(&session, "started_at") {
            tallies.entry(user).or_default().add(&session);
        }
    }
    let entries = store.all(ledger::KIND)?;
    let mut minutes: HashMap<String, i64> = HashMap::new();
    for entry in ledger_in(&entries, period) {
        if let Some(user) = entry["user_id"].as_str() {
            *minutes.entry(user.to_string()).or_default() += used_minutes(std::iter::once(entry));
        }
    }
    let mut rows = Vec::new();
    for user in store.all("user")? {
        let id = user["id"].as_str().unwrap_or("").to_string();
        let tally = tallies.remove(&id).unwrap_or_default();
        if user["status"] == "deactivated" && tally.sessions == 0 {
            continue;
        }
        let last_active = time(&user, "last_active_at").max(last_session.get(&id).copied());
        rows.push(UserRow {
            minutes: minutes.get(&id).copied().unwrap_or(0),
            user,
            tally,
            last_active,
        });
    }
    Ok(rows)
}

fn minutes_report(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let period = Period::from_input(input)?;
    let granularity = Granularity::from_input(input);
    let buckets = Buckets::new(&period, granularity)?;
    let subscription = current_subscription(store)?;
    let entries = store.all(ledger::KIND)?;
    let (pool, _) = minute_pool(subscription, &entries);
    let mut sums: Vec<BTreeMap<&str, i64>> = vec![BTreeMap::new(); buckets.len()];
    for entry in ledger_in(&entries, &period) {
        let bucket = time(entry, "created_at").and_then(|at| buckets.index(at));
        if let (Some(sums), Some(kind)) =
            (bucket.and_then(|i| sums.get_mut(i)), entry["kind"].as_str())
        {
            *sums.entry(kind).or_default() += entry["minutes"].as_i64().unwrap_or(0);
        }
    }
    let series: Vec<Value> = sums
        .iter()
        .enumerate()
        .map(|(i, by_kind)| {
            let net = |kind: &str| by_kind.get(kind).copied().unwrap_or(0);
            let sessions = (-net("session_usage")).max(0);
            let executions = (-net("skill_execution")).max(0);
            json!({
                "bucket_start": buckets.start(i),
                "used_minutes": sessions + executions,
                "session_minutes": sessions,
                "skill_execution_minutes": executions,
                "granted_minutes": net("grant").max(0),
                "purchased_minutes": net("top_up").max(0),
                "adjustment_minutes": net("adjustment").clamp(-1_000_000, 1_000_000),
                "expired_minutes": (-net("expiry")).max(0),
            })
        })
        .collect();
    ok(json!({
        "period": period.json(),
        "granularity": granularity.as_str(),
        "pool": pool,
        "used_minutes": used_minutes(ledger_in(&entries, &period)),
        "series": series,
        "generated_at": ids::now_string(),
    }))
}

fn tasks_report(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let period = Period::from_input(input)?;
    let granularity = Granularity::from_input(input);
    let buckets = Buckets::new(&period, granularity)?;
    let now = ids::now();
    let mut stats = TaskStats::new(&buckets);
    for task in store.all("task")? {
        stats.add(&task, &period, &buckets, now);
    }
    let average = (!stats.completion_seconds.is_empty()).then(|| {
        stats.completion_seconds.iter().sum::<i64>() / stats.completion_seconds.len() as i64
    });
    let series: Vec<Value> = stats
        .series
        .iter()
        .enumerate()
        .map(|(i, [created, completed, cancelled])| {
            json!({
                "bucket_start": buckets.start(i), "created": created,
                "completed": completed, "cancelled": cancelled,
            })
        })
        .collect();
    ok(json!({
        "period": period.json(),
        "granularity": granularity.as_str(),
        "created": stats.created,
        "completed": stats.completed,
        "cancelled": stats.cancelled,
        "by_status": stats.by_status,
        "by_source": stats.by_source,
        "average_time_to_complete_seconds": average,
        "overdue": stats.overdue,
        "series": series,
        "generated_at": ids::timestamp(now),
    }))
}

/// The tasks report's running figures.
struct TaskStats {
    created: i64,
    completed: i64,
    cancelled: i64,
    by_status: BTreeMap<&'static str, i64>,
    by_source: BTreeMap<&'static str, i64>,
    completion_seconds: Vec<i64>,
    overdue: i64,
    /// Per bucket: created, completed, cancelled.
    series: Vec<[i64; 3]>,
}

impl TaskStats {
    fn new(buckets: &Buckets) -> TaskStats {
        TaskStats {
            created: 0,
            completed: 0,
            cancelled: 0,
            by_status: ["open", "in_progress", "done", "cancelled"]
                .map(|s| (s, 0))
                .into(),
            by_source: ["manual", "api", "session", "skill", "integration"]
                .map(|s| (s, 0))
                .into(),
            completion_seconds: Vec::new(),
            overdue: 0,
            series: vec![[0; 3]; buckets.len()],
        }
    }

    fn count_in_bucket(&mut self, buckets: &Buckets, at: Option<DateTime<Utc>>, column: usize) {
        if let Some(bucket) = at
            .and_then(|at| buckets.index(at))
            .and_then(|i| self.series.get_mut(i))
        {
            bucket[column] += 1;
        }
    }

    fn add(&mut self, task: &Value, period: &Period, buckets: &Buckets, now: DateTime<Utc>) {
        let status = task["status"].as_str().unwrap_or("");
        if period.holds(task, "created_at") {
            self.created += 1;
            if let Some(n) = self.by_status.get_mut(status) {
                *n += 1;
            }
            if let Some(n) = task["source"]
                .as_str()
                .and_then(|s| self.by_source.get_mut(s))
            {
                *n += 1;
            }
            self.count_in_bucket(buckets, time(task, "created_at"), 0);
        }
        if period.holds(task, "updated_at") {
            match status {
                "done" => {
                    self.completed += 1;
                    if let (Some(start), Some(end)) =
                        (time(task, "created_at"), time(task, "updated_at"))
                    {
                        self.completion_seconds
                            .push((end - start).num_seconds().max(0));
                    }
                    self.count_in_bucket(buckets, time(task, "updated_at"), 1);
                }
                "cancelled" => {
                    self.cancelled += 1;
                    self.count_in_bucket(buckets, time(task, "updated_at"), 2);
                }
                _ => {}
            }
        }
        let unfinished = matches!(status, "open" | "in_progress");
        if unfinished && time(task, "due_at").is_some_and(|due| due < now) {
            self.overdue += 1;
        }
    }
}
