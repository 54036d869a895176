//! Skills: templated procedures (an `input_schema` for the arguments, steps whose instructions
//! hold `{{argument}}` placeholders), their CRUD, and `execute_skill`, which validates the
//! arguments, renders the steps, charges the minutes to the ledger and records a
//! `skill_execution` (emitting `skill.executed`).
//!
//! Rules kept here:
//! - A definition is valid when `input_schema` compiles as a JSON Schema for an object and every
//!   placeholder names one of its top-level properties (422 otherwise); slugs are unique (409).
//! - The schema is the tenant's code, so its cost is bounded and kept off the shared lock:
//!   its patterns compile for a linear-time engine (lookaround and backreferences are refused,
//!   422), and compiling it (create, update), checking arguments against it and rendering the
//!   steps with them (execute) run in `prepare`, in the tenant's lane, before the transaction. The transaction only confirms that
//!   the skill is still the version the arguments were checked against (else 409, retry).
//! - Rendering: a string argument is inserted as is, any other JSON value as its JSON text; an
//!   argument left out takes its schema's `default`; a placeholder with neither stays visible as
//!   `{{name}}`, so the gap shows in the rendered procedure instead of silently disappearing.
//! - `estimated_minutes` is the steps' durations summed and rounded up to minutes (at least 1);
//!   it is what an execution consumes. Dry runs consume nothing and emit nothing.
//! - Lists are "most recently updated first": an update re-inserts the skill so that it takes the
//!   newest position (its private side travels with it).

use crate::generated::api::Operation;
use crate::sandbox::db::Db;
use crate::sandbox::db::{Filter, Store};
use crate::sandbox::error::{ApiError, FieldError};
use crate::sandbox::ledger::{self, Reference};
use crate::sandbox::limits::Budgets;
use crate::sandbox::request::{Input, Principal, Reply, created, deleted, ok, page};
use crate::sandbox::{Ctx, Prepared, Stopwatch, ids, not_served};
use crate::validation::SchemaCheck;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::HashMap;

const KIND: &str = "skill";
const EXECUTION: &str = "skill_execution";
/// The spec's bound on `input_schema` and `arguments`, serialized.
const MAX_JSON_BYTES: usize = 64 * 1024;
const DEFAULT_STEP_SECONDS: i64 = 60;
/// The most one rendered instruction, and all of an execution's together, may take.
const MAX_RENDERED_STEP_BYTES: usize = 64 * 1024;
const MAX_RENDERED_BYTES: usize = 1024 * 1024;

pub fn call(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    match ctx.operation {
        Operation::ListSkills => {
            let mut filters = Vec::new();
            for field in ["status", "category"] {
                if let Some(value) = input.get(field) {
                    filters.push(Filter::field(field, value.clone()));
                }
            }
            page(
                ctx.store
                    .list(KIND, &filters, input.limit(), input.cursor())?,
            )
        }
        Operation::GetSkill => ok(ctx.store.require(KIND, input.required_str("skill_id")?)?),
        Operation::CreateSkill => create_skill(&ctx.store, input),
        Operation::UpdateSkill => update_skill(&ctx.store, input),
        Operation::DeleteSkill => delete_skill(&ctx.store, input),
        Operation::ExecuteSkill => execute_skill(ctx, input),
        _ => Err(not_served(ctx)),
    }
}

fn create_skill(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let slug = input.required_str("slug")?;
    ensure_slug_free(store, slug, None)?;
    let schema = input
        .get("input_schema")
        .cloned()
        .unwrap_or_else(|| json!({"type": "object"}));
    let steps = normalize_steps(input.get("steps"));
    // `prepare` compiled a given schema; the default one is trivially valid.
    check_placeholders(&schema, &steps)?;
    let now = ids::now_string();
    let skill = json!({
        "id": ids::new_id("skl_"),
        "slug": slug,
        "name": input.required_str("name")?,
        "description": input.str("description").unwrap_or(""),
        "category": input.str("category").unwrap_or("general"),
        "status": input.str("status").unwrap_or("draft"),
        "version": 1,
        "input_schema": schema,
        "estimated_minutes": estimated_minutes(&steps),
        "steps": steps,
        "created_at": now,
        "updated_at": now,
    });
    store.insert(KIND, &skill)?;
    created(skill)
}

fn update_skill(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let id = input.required_str("skill_id")?;
    let mut skill = store.require(KIND, id)?;
    if let Some(slug) = input.str("slug") {
        ensure_slug_free(store, slug, Some(id))?;
    }
    for (field, value) in input.given(&["slug", "name", "description", "category", "status"]) {
        skill[field] = value.clone();
    }
    if let Some(schema) = input.get("input_schema") {
        skill["input_schema"] = schema.clone();
    }
    if input.get("steps").is_some() {
        let steps = normalize_steps(input.get("steps"));
        skill["estimated_minutes"] = json!(estimated_minutes(&steps));
        skill["steps"] = json!(steps);
    }
    // A new schema must still declare every placeholder of the kept steps, and vice versa.
    let steps: Vec<Value> = skill["steps"].as_array().cloned().unwrap_or_default();
    // A new schema was compiled by `prepare`; the stored one was valid when stored.
    check_placeholders(&skill["input_schema"], &steps)?;
    skill["version"] = json!(skill["version"].as_i64().unwrap_or(1) + 1);
    skill["updated_at"] = json!(ids::now_string());
    let private = store.private(KIND, id)?;
    store.delete(KIND, id)?;
    store.insert_with_private(KIND, &skill, &private)?;
    ok(skill)
}

fn delete_skill(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let id = input.required_str("skill_id")?;
    store.delete(KIND, id)?;
    // The spec shows a session of a deleted skill with `skill_id: null`.
    for mut session in store.all("session")? {
        if session["skill_id"] == id {
            session["skill_id"] = Value::Null;
            store.update("session", &session)?;
        }
    }
    deleted(id)
}

fn execute_skill(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    let store = &ctx.store;
    let skill = store.require(KIND, input.required_str("skill_id")?)?;
    let slug = skill["slug"].as_str().unwrap_or("");
    if skill["status"] != "published" {
        return Err(ApiError::unprocessable(format!(
            "skill {slug} is {}; only published skills can be executed (publish it with update_skill)",
            skill["status"].as_str().unwrap_or("not published")
        )));
    }
    let arguments = input.get("arguments").cloned().unwrap_or_else(|| json!({}));
    check_arguments_size(&arguments)?;
    // `prepare` checked the arguments against a version of the skill; it must still be this one.
    let rendered = match ctx.prepared {
        Prepared::SkillArguments {
            skill_id,
            version,
            steps,
        } if skill["id"] == skill_id.as_str() && skill["version"] == *version => steps,
        _ => {
            return Err(ApiError::conflict(format!(
                "skill {slug} changed while the arguments were being checked; send the request again"
            )));
        }
    };
    let task_id = input.str("task_id");
    if let Some(task_id) = task_id
        && store.get("task", task_id)?.is_none()
    {
        return Err(ApiError::unprocessable(format!(
            "no task {task_id} in this tenant"
        )));
    }
    let started_at = ids::now_string();
    let id = ids::new_id("sxe_");
    let steps = rendered.clone();
    let dry_run = input.bool("dry_run").unwrap_or(false);
    let estimated = skill["estimated_minutes"].as_i64().unwrap_or(1).max(1);
    let version = skill["version"].as_i64().unwrap_or(1);
    let minutes = if dry_run {
        0
    } else {
        let description = format!("Skill execution: {slug} v{version}");
        let reference = Reference {
            skill_execution_id: Some(&id),
            ..Reference::default()
        };
        ledger::charge(store, "skill_execution", estimated, reference, &description)?;
        estimated
    };
    let mode = if dry_run { ", dry run" } else { "" };
    let summary = format!(
        "Rendered {} steps of {slug} v{version} ({estimated} min{mode})",
        steps.len()
    );
    let execution = json!({
        "id": id,
        "skill_id": skill["id"],
        "skill_version": version,
        "status": "succeeded",
        "dry_run": dry_run,
        "arguments": arguments,
        "result": {"steps": steps, "summary": summary},
        "error": null,
        "minutes_consumed": minutes,
        "task_id": task_id,
        "executed_by_key_id": ctx.principal.key_id,
        "started_at": started_at,
        "finished_at": ids::now_string(),
        "created_at": started_at,
    });
    store.insert(EXECUTION, &execution)?;
    if !dry_run {
        store.emit("skill.executed", &execution)?;
    }
    created(execution)
}

/// The checks of create, update and execute whose cost the tenant's schema shapes, run before
/// the transaction in the tenant's lane (one at a time per tenant) on the blocking pool, and
/// timed for the tenant's budget. For `execute_skill` the skill is read from a snapshot; a skill
/// that is missing or not published is left to the handler, which says so.
pub async fn prepare(
    db: &Db,
    budgets: &Budgets,
    operation: Operation,
    principal: &Principal,
    input: &Input,
    spent: &Stopwatch,
) -> Result<Prepared, ApiError> {
    let work: Box<dyn FnOnce() -> Result<Prepared, ApiError> + Send> = match operation {
        Operation::CreateSkill | Operation::UpdateSkill => {
            let Some(schema) = input.get("input_schema").cloned() else {
                return Ok(Prepared::Nothing);
            };
            Box::new(move || check_schema(&schema).map(|_| Prepared::Nothing))
        }
        Operation::ExecuteSkill => {
            let skill_id = input.required_str("skill_id")?.to_string();
            let tenant_id = principal.tenant_id.clone();
            let skill = db
                .read(move |tx| Store::new(tx, &tenant_id).get(KIND, &skill_id))
                .await?;
            let Some(skill) = skill.filter(|skill| skill["status"] == "published") else {
                return Ok(Prepared::Nothing);
            };
            let arguments = input.get("arguments").cloned().unwrap_or_else(|| json!({}));
            check_arguments_size(&arguments)?;
            Box::new(move || {
                check_arguments(&skill, &arguments)?;
                Ok(Prepared::SkillArguments {
                    skill_id: skill["id"].as_str().unwrap_or_default().to_string(),
                    version: skill["version"].as_i64().unwrap_or(1),
                    steps: render_steps(&skill, &arguments)?,
                })
            })
        }
        _ => return Ok(Prepared::Nothing),
    };
    let _lane = budgets.lane(&principal.tenant_id).await;
    let watch = spent.clone();
    tokio::task::spawn_blocking(move || {
        let _timing = watch.time();
        work()
    })
    .await
    .map_err(ApiError::internal)?
}

fn check_arguments_size(arguments: &Value) -> Result<(), ApiError> {
    if arguments.to_string().len() > MAX_JSON_BYTES {
        return Err(ApiError::invalid_field(
            "arguments",
            "is over 64 KiB serialized",
        ));
    }
    Ok(())
}

/// 422 naming every argument that fails the skill's `input_schema`.
fn check_arguments(skill: &Value, arguments: &Value) -> Result<(), ApiError> {
    let check = SchemaCheck::new_linear_time(&skill["input_schema"]).map_err(|e| {
        ApiError::unprocessable(format!(
            "the skill's input_schema does not compile under the current rules ({e}); fix it with update_skill"
        ))
    })?;
    let problems = check.problems(arguments);
    if problems.is_empty() {
        return Ok(());
    }
    let details: Vec<FieldError> = problems
        .into_iter()
        .map(|p| FieldError {
            field: if p.field == "(request)" {
                "arguments".into()
            } else {
                format!("arguments.{}", p.field)
            },
            message: p.message,
        })
        .collect();
    let fields: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
    let mut error = ApiError::unprocessable(format!(
        "the arguments do not match the skill's input_schema: check {}",
        fields.join(", ")
    ));
    error.details = details;
    Err(error)
}

/// 409 when another skill of the tenant already uses `slug`.
fn ensure_slug_free(store: &Store, slug: &str, except: Option<&str>) -> Result<(), ApiError> {
    let holders = store.list(KIND, &[Filter::field("slug", json!(slug))], 2, None)?;
    match holders
        .data
        .iter()
        .find(|s| except.is_none_or(|id| s["id"] != id))
    {
        Some(other) => Err(ApiError::conflict(format!(
            "the slug {slug} is already used by skill {}",
            other["id"].as_str().unwrap_or("")
        ))),
        None => Ok(()),
    }
}

/// Request steps (`SkillStepInput`) as stored steps, with the spec's defaults filled in.
fn normalize_steps(steps: Option<&Value>) -> Vec<Value> {
    steps
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|step| {
            json!({
                "title": step["title"],
                "instruction": step["instruction"],
                "duration_seconds": step["duration_seconds"].as_i64().unwrap_or(DEFAULT_STEP_SECONDS),
                "kind": step["kind"].as_str().unwrap_or("instruction"),
            })
        })
        .collect()
}

fn estimated_minutes(steps: &[Value]) -> i64 {
    let seconds: i64 = steps
        .iter()
        .filter_map(|s| s["duration_seconds"].as_i64())
        .sum();
    ((seconds + 59) / 60).max(1)
}

/// 422 unless `schema` is a compilable JSON Schema for an object declaring every placeholder.
fn check_definition(schema: &Value, steps: &[Value]) -> Result<(), ApiError> {
    check_schema(schema)?;
    check_placeholders(schema, steps)
}

/// 422 unless `schema` is a JSON Schema for an object, within size, whose patterns compile for
/// the linear-time engine.
fn check_schema(schema: &Value) -> Result<SchemaCheck, ApiError> {
    if schema.to_string().len() > MAX_JSON_BYTES {
        return Err(ApiError::invalid_field(
            "input_schema",
            "is over 64 KiB serialized",
        ));
    }
    let describes_object = match &schema["type"] {
        Value::Null => true,
        Value::String(kind) => kind == "object",
        Value::Array(kinds) => kinds.iter().any(|k| k == "object"),
        _ => false,
    };
    if !describes_object {
        return Err(ApiError::unprocessable(
            "input_schema must describe an object (`\"type\": \"object\"`): the arguments are an object",
        ));
    }
    SchemaCheck::new_linear_time(schema).map_err(|e| {
        ApiError::unprocessable(format!(
            "input_schema is not a valid JSON Schema for this API: {e}. Patterns are matched in linear time: lookaround ((?=…), (?!…), (?<=…), (?<!…)) and backreferences are not supported, and a pattern may compile to at most {} KiB",
            crate::validation::PATTERN_SIZE_LIMIT / 1024
        ))
    })
}

/// 422 unless every placeholder of the steps is a property `schema` declares.
fn check_placeholders(schema: &Value, steps: &[Value]) -> Result<(), ApiError> {
    let declared = schema["properties"].as_object();
    for (index, step) in steps.iter().enumerate() {
        let instruction = step["instruction"].as_str().unwrap_or("");
        for name in placeholders(instruction) {
            if !declared.is_some_and(|properties| properties.contains_key(name)) {
                return Err(ApiError::unprocessable(format!(
                    "steps[{index}] uses the placeholder {{{{{name}}}}}, which input_schema.properties does not declare"
                )));
            }
        }
    }
    Ok(())
}

/// The placeholders of a template: each `{{ name }}` (spaces optional), in order.
fn placeholders(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some((_, name, after)) = next_placeholder(rest) {
        names.push(name);
        rest = after;
    }
    names
}

/// Splits `text` at its first placeholder: (text before, name, text after).
fn next_placeholder(text: &str) -> Option<(&str, &str, &str)> {
    let mut from = 0;
    loop {
        let open = from + text[from..].find("{{")?;
        let inner_start = open + 2;
        let close = inner_start + text[inner_start..].find("}}")?;
        let name = text[inner_start..close].trim();
        if !name.is_empty() && !name.contains(['{', '}']) {
            return Some((&text[..open], name, &text[close + 2..]));
        }
        from = open + 1;
    }
}

/// What each argument's placeholders are replaced with: a string as is, any other value as its
/// JSON text.
fn replacement_texts(arguments: &Map<String, Value>) -> HashMap<&str, Cow<'_, str>> {
    arguments
        .iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(text) => Cow::Borrowed(text.as_str()),
                other => Cow::Owned(other.to_string()),
            };
            (name.as_str(), text)
        })
        .collect()
}

/// The pieces `template` renders to, in order; a placeholder without an argument stays as it is.
fn render_pieces<'a>(
    template: &'a str,
    texts: &'a HashMap<&str, Cow<'_, str>>,
) -> impl Iterator<Item = &'a str> {
    let mut rest = Some(template);
    std::iter::from_fn(move || {
        let text = rest?;
        match next_placeholder(text) {
            Some((before, name, after)) => {
                rest = Some(after);
                let placeholder = &text[before.len()..text.len() - after.len()];
                let value = texts.get(name).map_or(placeholder, |t| t.as_ref());
                Some([before, value])
            }
            None => {
                rest = None;
                Some([text, ""])
            }
        }
    })
    .flatten()
}

/// The rendered length in bytes, computed without rendering.
fn rendered_len(template: &str, texts: &HashMap<&str, Cow<'_, str>>) -> usize {
    render_pieces(template, texts).map(str::len).sum()
}

fn render(template: &str, texts: &HashMap<&str, Cow<'_, str>>) -> String {
    let mut out = String::with_capacity(rendered_len(template, texts));
    render_pieces(template, texts).for_each(|piece| out.push_str(piece));
    out
}

/// The steps rendered with the arguments; 422, before anything is built, when a rendered
/// instruction would exceed `MAX_RENDERED_STEP_BYTES` or all of them `MAX_RENDERED_BYTES` (a
/// 4000-character instruction of `{{a}}` repeats a 64 KiB argument 800 times).
fn render_steps(skill: &Value, arguments: &Value) -> Result<Vec<Value>, ApiError> {
    let mut values = arguments.as_object().cloned().unwrap_or_default();
    // An argument left out falls back to the `default` its schema declares, if any.
    for (name, property) in skill["input_schema"]["properties"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if let Some(default) = property.get("default")
            && !values.contains_key(name)
        {
            values.insert(name.clone(), default.clone());
        }
    }
    let texts = replacement_texts(&values);
    let steps = skill["steps"].as_array().map_or(&[][..], Vec::as_slice);
    let mut total = 0;
    for (index, step) in steps.iter().enumerate() {
        let size = rendered_len(instruction_of(step), &texts);
        if size > MAX_RENDERED_STEP_BYTES {
            return Err(ApiError::unprocessable(format!(
                "with these arguments steps[{index}] would render to {size} bytes; a rendered instruction is at most {MAX_RENDERED_STEP_BYTES} bytes (64 KiB): shorten the arguments it repeats"
            )));
        }
        total += size;
        if total > MAX_RENDERED_BYTES {
            return Err(ApiError::unprocessable(format!(
                "with these arguments the steps would render to more than {MAX_RENDERED_BYTES} bytes (1 MiB) together: shorten the arguments they repeat"
            )));
        }
    }
    let rendered = steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let template = instruction_of(step);
            let rendered = render(template, &texts);
            // An instruction made only of empty arguments would render to nothing.
            let instruction = if rendered.is_empty() {
                template.to_string()
            } else {
                rendered
            };
            json!({"index": index, "title": step["title"], "instruction": instruction})
        })
        .collect();
    Ok(rendered)
}

fn instruction_of(step: &Value) -> &str {
    step["instruction"].as_str().unwrap_or("")
}

/// Demo procedures of a field-service tenant: four published, one still a draft.
pub fn seed_demo(store: &Store) -> Result<(), ApiError> {
    let now = ids::now();
    for (index, demo) in demo_skills().into_iter().enumerate() {
        let (slug, name, description, category, status, version, schema, steps) = demo;
        let steps: Vec<Value> = steps
            .iter()
            .map(|(title, instruction, seconds, kind)| {
                json!({"title": title, "instruction": instruction, "duration_seconds": seconds, "kind": kind})
            })
            .collect();
        check_definition(&schema, &steps)?;
        let created = now - chrono::Duration::days(160 - 25 * index as i64);
        let updated = created + chrono::Duration::days(3 * (version - 1));
        store.insert(
            KIND,
            &json!({
                "id": ids::new_id("skl_"), "slug": slug, "name": name, "description": description,
                "category": category, "status": status, "version": version, "input_schema": schema,
                "estimated_minutes": estimated_minutes(&steps), "steps": steps,
                "created_at": ids::timestamp(created), "updated_at": ids::timestamp(updated),
            }),
        )?;
    }
    Ok(())
}

type DemoStep = (&'static str, &'static str, i64, &'static str);
type DemoSkill = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    i64,
    Value,
    Vec<DemoStep>,
);

fn demo_skills() -> Vec<DemoSkill> {
    vec![
        (
            "lockout-tagout",
            "Lockout/tagout of a machine",
            "Isolates every energy source of a machine before maintenance (OSHA 1910.147).",
            "safety",
            "published",
            3,
            json!({"type": "object", "properties": {
                "equipment_id": {"type": "string", "minLength": 1, "description": "The machine's asset tag"},
                "energy_sources": {"type": "string", "description": "e.g. electrical 480 V, pneumatic"},
                "authorized_person": {"type": "string", "minLength": 1}
            }, "required": ["equipment_id", "authorized_person"]}),
            vec![
                (
                    "Notify affected staff",
                    "Tell everyone working near {{equipment_id}} that it is being shut down for maintenance.",
                    120,
                    "instruction",
                ),
                (
                    "Identify energy sources",
                    "Confirm the energy sources of {{equipment_id}}: {{energy_sources}}.",
                    180,
                    "check",
                ),
                (
                    "Shut down",
                    "Stop {{equipment_id}} with its normal stopping procedure.",
                    60,
                    "instruction",
                ),
                (
                    "Isolate and lock",
                    "Isolate every source and apply {{authorized_person}}'s personal lock and tag to each isolation point.",
                    300,
                    "instruction",
                ),
                (
                    "Verify zero energy",
                    "Try to start {{equipment_id}}; it must not start. Bleed stored pressure to zero.",
                    180,
                    "check",
                ),
                (
                    "Photograph the locks",
                    "Take a photo of every applied lock and tag.",
                    60,
                    "capture",
                ),
            ],
        ),
        (
            "torque-wrench-calibration",
            "Torque wrench calibration check",
            "Checks a click-type torque wrench against the bench tester and records the deviation.",
            "maintenance",
            "published",
            2,
            json!({"type": "object", "properties": {
                "wrench_serial": {"type": "string", "minLength": 1},
                "target_torque_nm": {"type": "number", "minimum": 5, "maximum": 1000},
                "tolerance_percent": {"type": "number", "minimum": 1, "maximum": 10, "default": 4}
            }, "required": ["wrench_serial", "target_torque_nm"]}),
            vec![
                (
                    "Set up the tester",
                    "Mount wrench {{wrench_serial}} on the bench tester and zero the tester.",
                    240,
                    "instruction",
                ),
                (
                    "Set the target",
                    "Set the wrench to {{target_torque_nm}} N·m.",
                    60,
                    "instruction",
                ),
                (
                    "Pull three times",
                    "Pull slowly until the click, three times, and note each reading.",
                    300,
                    "capture",
                ),
                (
                    "Judge the deviation",
                    "The mean must be within {{tolerance_percent}} % of {{target_torque_nm}} N·m; otherwise tag the wrench out of service.",
                    120,
                    "check",
                ),
            ],
        ),
        (
            "pump-seal-replacement",
            "Hydraulic pump seal replacement",
            "Replaces the shaft seal of a hydraulic pump and checks it for leaks.",
            "maintenance",
            "published",
            1,
            json!({"type": "object", "properties": {
                "pump_id": {"type": "string", "pattern": "^P-[0-9]{1,4}$"},
                "seal_kit": {"type": "string", "description": "The seal kit's part number"}
            }, "required": ["pump_id", "seal_kit"]}),
            vec![
                (
                    "Lock out the pump",
                    "Apply lockout/tagout to pump {{pump_id}} and relieve system pressure.",
                    600,
                    "check",
                ),
                (
                    "Remove the old seal",
                    "Remove the coupling guard and extract the old shaft seal of {{pump_id}}.",
                    900,
                    "instruction",
                ),
                (
                    "Fit the new seal",
                    "Lubricate and press in the new seal from kit {{seal_kit}}.",
                    600,
                    "instruction",
                ),
                (
                    "Leak test",
                    "Run {{pump_id}} for 10 minutes at working pressure and inspect the seal for leaks.",
                    720,
                    "check",
                ),
                (
                    "Record the job",
                    "Photograph the installed seal and the kit label.",
                    60,
                    "capture",
                ),
            ],
        ),
        (
            "forklift-pre-shift-inspection",
            "Forklift pre-shift inspection",
            "The daily walk-around check before a forklift is used.",
            "safety",
            "published",
            1,
            json!({"type": "object", "properties": {
                "forklift_id": {"type": "string", "minLength": 1},
                "operator_name": {"type": "string", "minLength": 1}
            }, "required": ["forklift_id"]}),
            vec![
                (
                    "Walk around",
                    "Walk around forklift {{forklift_id}}: tyres, forks, chains and mast.",
                    180,
                    "check",
                ),
                (
                    "Fluids",
                    "Check the hydraulic fluid and battery charge of {{forklift_id}}.",
                    120,
                    "check",
                ),
                (
                    "Controls",
                    "{{operator_name}}: test horn, lights, brakes and steering before driving.",
                    120,
                    "check",
                ),
            ],
        ),
        (
            "conveyor-belt-tracking",
            "Conveyor belt tracking adjustment",
            "Re-centres a conveyor belt that runs off to one side.",
            "maintenance",
            "draft",
            1,
            json!({"type": "object", "properties": {
                "conveyor_id": {"type": "string", "minLength": 1},
                "drift_side": {"type": "string", "enum": ["left", "right"]}
            }, "required": ["conveyor_id", "drift_side"]}),
            vec![
                (
                    "Observe",
                    "Run conveyor {{conveyor_id}} empty and watch where the belt drifts ({{drift_side}}).",
                    300,
                    "instruction",
                ),
                (
                    "Adjust the idler",
                    "Stop and lock out the conveyor, then adjust the snub idler on the {{drift_side}} side a quarter turn.",
                    600,
                    "instruction",
                ),
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_render_and_missing_ones_stay_visible() {
        let args = json!({"a": "A", "n": 3});
        let texts = replacement_texts(args.as_object().unwrap());
        let template = "x {{a}} {{ n }} {{b}} {{}} {";
        assert_eq!(render(template, &texts), "x A 3 {{b}} {{}} {");
        assert_eq!(rendered_len(template, &texts), "x A 3 {{b}} {{}} {".len());
        assert_eq!(render("{{a}}{{a}}", &texts), "AA");
        assert_eq!(render("", &texts), "");
        assert_eq!(placeholders("{{a}}{{ b }}{x}}"), ["a", "b"]);
    }

    #[test]
    fn definitions_need_a_valid_object_schema_declaring_every_placeholder() {
        let steps = vec![json!({"instruction": "Use {{tool}}"})];
        let ok = json!({"type": "object", "properties": {"tool": {"type": "string"}}});
        assert!(check_definition(&ok, &steps).is_ok());
        assert!(check_definition(&json!({"type": "object"}), &steps).is_err());
        assert!(check_definition(&json!({"type": "strng"}), &[]).is_err());
        assert!(check_definition(&json!({"type": "string"}), &[]).is_err());
    }

    #[test]
    fn patterns_that_need_backtracking_are_refused_and_linear_ones_run_fast() {
        let lookahead = json!({"type": "object", "additionalProperties":
            {"type": "string", "pattern": "^(\\w+\\s?)*(?!x)$"}});
        let refused = check_definition(&lookahead, &[]).unwrap_err();
        assert_eq!(refused.status.as_u16(), 422);
        assert!(
            refused.message.contains("lookaround"),
            "{}",
            refused.message
        );
        let backreference = json!({"type": "object", "properties": {"a": {"pattern": "(a)\\1"}}});
        assert!(check_definition(&backreference, &[]).is_err());
        // The same nesting without lookahead compiles, and 2,200 hostile arguments check quickly.
        let nested = json!({"type": "object", "additionalProperties":
            {"type": "string", "pattern": "^(\\w+\\s?)*$"}});
        let check = check_schema(&nested).unwrap();
        let hostile: Map<String, Value> = (0..2200)
            .map(|n| (format!("a{n}"), json!(format!("{}!", "a".repeat(17)))))
            .collect();
        let started = std::time::Instant::now();
        assert_eq!(check.problems(&Value::Object(hostile)).len(), 2200);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn estimated_minutes_round_up_and_are_at_least_one() {
        let steps = |s: &[i64]| {
            s.iter()
                .map(|n| json!({"duration_seconds": n}))
                .collect::<Vec<_>>()
        };
        assert_eq!(estimated_minutes(&steps(&[30])), 1);
        assert_eq!(estimated_minutes(&steps(&[60, 61])), 3);
    }
}
