//! Knowledge: items and their files, collections, processing and full-text search.
//!
//! - Files arrive base64-encoded; their bytes are stored once, content-addressed, in `blobs`
//!   (shared between items and tenants: a file record only names its sha256), and the item (kind
//!   `knowledge`) embeds its file records, as the API shows them.
//! - `process_knowledge` only marks an item `processing`; `process_forever` (a background worker,
//!   one item at a time, holding the database only to read the files and to write the result)
//!   extracts the text of every file, splits it into chunks and indexes them in the FTS5 table
//!   `knowledge_fts`, one row per chunk plus one row for the item's title and description (the
//!   row whose `file_id` is NULL). The item then becomes `ready`, or `failed` when a file cannot
//!   be read here (binary formats such as PDF need an extractor the sandbox does not have).
//! - `search_knowledge` is BM25 full-text search over `ready` items: the sandbox's stand-in for
//!   the production semantic search, with the same response shape.
//! - Collections (kind `collection`) keep a stored `item_count`, recomputed from the items
//!   whenever membership changes, so every reader sees the same number.

use crate::generated::api::Operation;
use crate::sandbox::db::{Db, Page, Store, decode_cursor, encode_cursor};
use crate::sandbox::error::ApiError;
use crate::sandbox::limits::Budgets;
use crate::sandbox::request::{Input, Principal, Reply, accepted, created, deleted, ok, page};
use crate::sandbox::{Ctx, Prepared, Stopwatch, ids, not_served};
use crate::sync::lock;
use base64::Engine;
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

const KIND: &str = "knowledge";
const COLLECTION: &str = "collection";
/// The spec's per-file limit, on the decoded bytes.
const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;
/// The spec's limit of files per item.
const MAX_FILES: usize = 100;
/// A chunk grows paragraph by paragraph up to about this many words.
const CHUNK_WORDS: usize = 150;
/// The most query terms a search uses; the rest of a very long query adds little.
const MAX_QUERY_TERMS: usize = 32;
/// `status_detail` and `snippet` bounds from the spec.
const MAX_DETAIL_CHARS: usize = 1000;
const MAX_SNIPPET_CHARS: usize = 1000;

pub fn call(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    match ctx.operation {
        Operation::ListKnowledge => list_items(&ctx.store, input),
        Operation::GetKnowledge => ok(ctx
            .store
            .require(KIND, input.required_str("knowledge_id")?)?),
        Operation::UploadKnowledge => upload_item(ctx, input),
        Operation::UploadKnowledgeFile => {
            let uploads = decoded(ctx, input)?;
            let mut files = add_files(&ctx.store, input.required_str("knowledge_id")?, uploads)?;
            created(files.pop().unwrap_or(Value::Null))
        }
        Operation::BulkUploadKnowledgeFiles => {
            let uploads = decoded(ctx, input)?;
            let files = add_files(&ctx.store, input.required_str("knowledge_id")?, uploads)?;
            created(json!({ "data": files }))
        }
        Operation::ProcessKnowledge => start_processing(&ctx.store, input),
        Operation::SearchKnowledge => search(&ctx.store, input),
        Operation::UpdateKnowledgeFile => update_file(&ctx.store, input),
        Operation::DeleteKnowledge => delete_item(&ctx.store, input.required_str("knowledge_id")?),
        Operation::ListKnowledgeCollections => list_collections(&ctx.store, input),
        Operation::GetKnowledgeCollection => ok(ctx
            .store
            .require(COLLECTION, input.required_str("collection_id")?)?),
        Operation::CreateKnowledgeCollection => create_collection(&ctx.store, input),
        Operation::UpdateKnowledgeCollection => update_collection(&ctx.store, input),
        Operation::DeleteKnowledgeCollection => delete_collection(&ctx.store, input),
        _ => Err(not_served(ctx)),
    }
}

// ---------------------------------------------------------------------------------------------
// Items

/// Newest first, filtered by collection and status in SQL and by the title substring here:
/// `to_lowercase` is Unicode-aware, SQLite's `lower` is not.
fn list_items(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let before = input
        .cursor()
        .map(decode_cursor)
        .transpose()?
        .unwrap_or(i64::MAX);
    let limit = input.limit();
    let needle = input.str("q").map(str::to_lowercase);
    let mut statement = store.tx().prepare_cached(
        "SELECT seq, body FROM objects WHERE tenant_id = ?1 AND kind = ?2 AND seq < ?3
           AND (?4 IS NULL OR json_extract(body, '$.collection_id') = ?4)
           AND (?5 IS NULL OR json_extract(body, '$.status') = ?5)
         ORDER BY seq DESC",
    )?;
    let mut rows = statement.query(params![
        store.tenant_id(),
        KIND,
        before,
        input.str("collection_id"),
        input.str("status")
    ])?;
    let mut found: Vec<(i64, Value)> = Vec::new();
    while let Some(row) = rows.next()? {
        let item: Value =
            serde_json::from_str(&row.get::<_, String>(1)?).map_err(ApiError::internal)?;
        let title = item["title"].as_str().unwrap_or("").to_lowercase();
        if needle
            .as_deref()
            .is_none_or(|needle| title.contains(needle))
        {
            found.push((row.get(0)?, item));
            if found.len() > limit {
                break;
            }
        }
    }
    let next_cursor = if found.len() > limit {
        found.truncate(limit);
        found.last().map(|(seq, _)| encode_cursor(*seq))
    } else {
        None
    };
    let data = found.into_iter().map(|(_, item)| item).collect();
    page(Page { data, next_cursor })
}

fn upload_item(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    let store = &ctx.store;
    let uploads = decoded(ctx, input)?;
    let collection_id = input.str("collection_id");
    if let Some(collection_id) = collection_id {
        require_collection_ref(store, collection_id)?;
    }
    let now = ids::now_string();
    let item = new_item(
        store,
        NewItem {
            title: input.required_str("title")?,
            description: input.str("description").unwrap_or(""),
            collection_id,
            tags: input.get("tags").cloned().unwrap_or_else(|| json!([])),
            created_at: &now,
        },
        uploads,
    )?;
    created(item)
}

/// The fields of a new item besides its files.
struct NewItem<'a> {
    title: &'a str,
    description: &'a str,
    collection_id: Option<&'a str>,
    tags: Value,
    created_at: &'a str,
}

/// Stores a new `pending` item with its files and returns it.
fn new_item(store: &Store, fields: NewItem, uploads: Vec<Upload>) -> Result<Value, ApiError> {
    let mut item = json!({
        "id": ids::new_id("kn_"),
        "title": fields.title,
        "description": fields.description,
        "collection_id": fields.collection_id,
        "tags": fields.tags,
        "status": "pending",
        "status_detail": null,
        "files": [],
        "total_size": 0,
        "chunk_count": 0,
        "word_count": 0,
        "processed_at": null,
        "created_at": fields.created_at,
        "updated_at": fields.created_at,
    });
    attach_files(store, &mut item, uploads, fields.created_at)?;
    store.insert(KIND, &item)?;
    if let Some(collection_id) = fields.collection_id {
        refresh_item_count(store, collection_id)?;
    }
    Ok(item)
}

/// An item's `collection_id` must name a collection of this tenant: 422, since the request
/// itself is well-formed.
fn require_collection_ref(store: &Store, collection_id: &str) -> Result<(), ApiError> {
    match store.get(COLLECTION, collection_id)? {
        Some(_) => Ok(()),
        None => Err(ApiError::unprocessable(format!(
            "no collection {collection_id} in this tenant; create it with create_knowledge_collection"
        ))),
    }
}

/// `upload_knowledge_file` and `bulk_upload_knowledge_files`: all files or none (one
/// transaction), refused while the item is being processed.
fn add_files(
    store: &Store,
    knowledge_id: &str,
    uploads: Vec<Upload>,
) -> Result<Vec<Value>, ApiError> {
    let mut item = store.require(KIND, knowledge_id)?;
    if item["status"] == "processing" {
        return Err(ApiError::conflict(format!(
            "knowledge item {knowledge_id} is being processed; upload once it is ready or failed"
        )));
    }
    let files = attach_files(store, &mut item, uploads, &ids::now_string())?;
    store.update(KIND, &item)?;
    Ok(files)
}

/// Stores the uploads' bytes and appends their file records to `item`; a `ready` or `failed`
/// item goes back to `pending`, since its index no longer covers all its files.
fn attach_files(
    store: &Store,
    item: &mut Value,
    uploads: Vec<Upload>,
    now: &str,
) -> Result<Vec<Value>, ApiError> {
    let existing = item["files"].as_array().map_or(0, Vec::len);
    if existing + uploads.len() > MAX_FILES {
        return Err(ApiError::unprocessable(format!(
            "a knowledge item holds at most {MAX_FILES} files; it has {existing} and {} more were sent",
            uploads.len()
        )));
    }
    let knowledge_id = item["id"].clone();
    let mut added = Vec::new();
    for upload in uploads {
        let sha256 = store_blob(store.tx(), &upload.bytes)?;
        added.push(json!({
            "id": ids::new_id("kf_"),
            "knowledge_id": knowledge_id,
            "filename": upload.filename,
            "content_type": upload.content_type,
            "size": upload.bytes.len(),
            "sha256": sha256,
            "description": upload.description,
            "status": "pending",
            "created_at": now,
            "updated_at": now,
        }));
    }
    if let Some(files) = item["files"].as_array_mut() {
        files.extend(added.iter().cloned());
    }
    item["total_size"] = json!(total_size(item));
    if !added.is_empty() {
        item["updated_at"] = json!(now);
        if item["status"] == "ready" || item["status"] == "failed" {
            item["status"] = json!("pending");
            item["status_detail"] = Value::Null;
        }
    }
    Ok(added)
}

fn total_size(item: &Value) -> u64 {
    item["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["size"].as_u64())
        .sum()
}

/// Content-addressed: identical bytes are stored once, whoever uploads them.
fn store_blob(tx: &Transaction, bytes: &[u8]) -> Result<String, ApiError> {
    let sha256 = ids::sha256_hex(bytes);
    tx.execute(
        "INSERT OR IGNORE INTO blobs (sha256, size, content) VALUES (?1, ?2, ?3)",
        params![sha256, bytes.len() as i64, bytes],
    )?;
    Ok(sha256)
}

fn update_file(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let knowledge_id = input.required_str("knowledge_id")?;
    let file_id = input.required_str("file_id")?;
    let mut item = store.require(KIND, knowledge_id)?;
    let now = ids::now_string();
    let file = item["files"]
        .as_array_mut()
        .and_then(|files| files.iter_mut().find(|f| f["id"] == file_id))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no file {file_id} in knowledge item {knowledge_id}"
            ))
        })?;
    for (field, value) in input.given(&["filename", "description"]) {
        file[field] = value.clone();
    }
    file["updated_at"] = json!(now);
    let file = file.clone();
    item["updated_at"] = json!(now);
    store.update(KIND, &item)?;
    ok(file)
}

fn delete_item(store: &Store, knowledge_id: &str) -> Result<Reply, ApiError> {
    let item = store.require(KIND, knowledge_id)?;
    store.delete(KIND, knowledge_id)?;
    clear_index(store, knowledge_id)?;
    if let Some(collection_id) = item["collection_id"].as_str() {
        refresh_item_count(store, collection_id)?;
    }
    deleted(knowledge_id)
}

// ---------------------------------------------------------------------------------------------
// Uploads

/// The request's files as `prepare` decoded them before the transaction (or, had it not, now).
fn decoded(ctx: &Ctx, input: &Input) -> Result<Vec<Upload>, ApiError> {
    if let Prepared::Uploads(decoded) = ctx.prepared
        && let Some(uploads) = lock(decoded).take()
    {
        return Ok(uploads);
    }
    decode_request(ctx.operation, input.as_map())
}

/// The files of an upload request: one file's fields at the top (`upload_knowledge_file`) or
/// a `files` array.
fn decode_request(
    operation: Operation,
    fields: &Map<String, Value>,
) -> Result<Vec<Upload>, ApiError> {
    match operation {
        Operation::UploadKnowledgeFile => Ok(vec![decode_upload(fields, "")?]),
        _ => decode_uploads(fields.get("files").filter(|files| !files.is_null())),
    }
}

/// Before the transaction, in the tenant's lane: base64-decodes the request's files (up to
/// `--max-body-bytes` of them), so the writer is not held while they are.
pub async fn prepare(
    budgets: &Budgets,
    operation: Operation,
    principal: &Principal,
    input: &Input,
    spent: &Stopwatch,
) -> Result<Prepared, ApiError> {
    let fields = input.as_map().clone();
    let _lane = budgets.lane(&principal.tenant_id).await;
    let watch = spent.clone();
    let uploads = tokio::task::spawn_blocking(move || {
        let _timing = watch.time();
        decode_request(operation, &fields)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Prepared::Uploads(std::sync::Mutex::new(Some(uploads))))
}

/// One decoded file of a request.
pub struct Upload {
    filename: String,
    content_type: String,
    description: String,
    bytes: Vec<u8>,
}

/// The `files` array of a request (absent: none); errors name `files[i].…`.
fn decode_uploads(files: Option<&Value>) -> Result<Vec<Upload>, ApiError> {
    let Some(files) = files else {
        return Ok(Vec::new());
    };
    let files = files
        .as_array()
        .ok_or_else(|| ApiError::invalid_field("files", "must be an array of files"))?;
    files
        .iter()
        .enumerate()
        .map(|(index, file)| {
            let at = format!("files[{index}]");
            let file = file
                .as_object()
                .ok_or_else(|| ApiError::invalid_field(&at, "must be an object"))?;
            decode_upload(file, &format!("{at}."))
        })
        .collect()
}

/// One file's fields; `at` prefixes field names in errors. Base64 is decoded strictly (the
/// standard alphabet with canonical padding), so the stored bytes are exactly the ones sent.
fn decode_upload(file: &Map<String, Value>, at: &str) -> Result<Upload, ApiError> {
    let text = |name: &str| {
        file.get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let field = format!("{at}content_base64");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text("content_base64"))
        .map_err(|e| {
            ApiError::invalid_field(&field, format!("is not standard base64 with padding ({e})"))
        })?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ApiError::payload_too_large(format!(
            "{field} decodes to {} bytes; a file is at most {MAX_FILE_BYTES} bytes (10 MiB)",
            bytes.len()
        )));
    }
    Ok(Upload {
        filename: text("filename"),
        content_type: text("content_type"),
        description: text("description"),
        bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// Processing

fn start_processing(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let knowledge_id = input.required_str("knowledge_id")?;
    let mut item = store.require(KIND, knowledge_id)?;
    match item["status"].as_str() {
        Some("processing") => {
            return Err(ApiError::conflict(format!(
                "knowledge item {knowledge_id} is already being processed"
            )));
        }
        Some("ready") if !input.bool("force").unwrap_or(false) => {
            return Err(ApiError::conflict(format!(
                "knowledge item {knowledge_id} is already ready; pass force: true to reprocess it"
            )));
        }
        _ => {}
    }
    if item["files"].as_array().is_none_or(Vec::is_empty) {
        return Err(ApiError::unprocessable(format!(
            "knowledge item {knowledge_id} has no files to process; upload one first"
        )));
    }
    mark_processing(&mut item);
    store.update(KIND, &item)?;
    accepted(item)
}

fn mark_processing(item: &mut Value) {
    item["status"] = json!("processing");
    item["status_detail"] = Value::Null;
    for file in item["files"].as_array_mut().into_iter().flatten() {
        file["status"] = json!("processing");
    }
}

/// How many waiting items one poll takes on; each is processed on its own.
const BATCH: i64 = 8;
/// After this many failures in a row of the sandbox itself (not of an item's files), an item is
/// marked `failed`, so that it stops taking the worker's time.
const MAX_ATTEMPTS: u32 = 3;
const POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// The items waiting for the worker, oldest first, across tenants. Literal kind and status, so
/// that SQLite answers it from the partial index `objects_processing` (migration 4), which holds
/// exactly these rows: the poll costs nothing however many objects there are.
const DUE_SQL: &str = "SELECT tenant_id, id FROM objects
     WHERE kind = 'knowledge' AND json_extract(body, '$.status') = 'processing'
     ORDER BY seq LIMIT ?1";

/// The background worker: every ~100 ms, processes the items of every tenant that are
/// `processing`, one at a time (see `process_one`). Runs until its task is aborted.
pub async fn process_forever(db: Db) {
    // Failures in a row per (tenant, item); forgotten once it succeeds or leaves the queue.
    let mut failures: HashMap<(String, String), u32> = HashMap::new();
    loop {
        let due = db
            .transaction(|tx| {
                let mut statement = tx.prepare_cached(DUE_SQL)?;
                let rows = statement.query_map([BATCH], |row| Ok((row.get(0)?, row.get(1)?)))?;
                Ok(rows.collect::<Result<Vec<(String, String)>, _>>()?)
            })
            .await;
        let due = due.unwrap_or_else(|error| {
            tracing::warn!(error = %error.message, "cannot list the knowledge items to process");
            Vec::new()
        });
        failures.retain(|key, _| due.contains(key));
        for key in due {
            let Err(error) = process_one(&db, &key.0, &key.1).await else {
                failures.remove(&key);
                continue;
            };
            let attempts = failures.entry(key.clone()).or_default();
            *attempts += 1;
            tracing::warn!(knowledge_id = %key.1, attempts = *attempts, error = %error.message,
                "processing a knowledge item failed");
            if *attempts >= MAX_ATTEMPTS {
                let (tenant_id, knowledge_id) = key.clone();
                let given_up = db
                    .transaction(move |tx| give_up(&Store::new(tx, &tenant_id), &knowledge_id))
                    .await;
                match given_up {
                    Ok(()) => {
                        failures.remove(&key);
                    }
                    Err(error) => tracing::warn!(knowledge_id = %key.1, error = %error.message,
                        "cannot mark a knowledge item failed"),
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Processes one item, holding the database only to read and to write: the files' bytes are
/// read one file per transaction; their text is extracted and chunked with no lock held; the
/// index, the item and its event are written in one last transaction, which first checks that
/// the item is still `processing` with the same files (if it was deleted meanwhile, the work is
/// dropped). While an item is `processing` nothing else changes its files.
async fn process_one(db: &Db, tenant_id: &str, knowledge_id: &str) -> Result<(), ApiError> {
    let (tenant, id) = (tenant_id.to_string(), knowledge_id.to_string());
    let files = db
        .transaction(move |tx| {
            let item = Store::new(tx, &tenant).get(KIND, &id)?;
            Ok(item
                .filter(|item| item["status"] == "processing")
                .map(|item| file_refs(&item)))
        })
        .await?;
    let Some(files) = files else {
        return Ok(());
    };
    let mut outcomes = Vec::with_capacity(files.len());
    for file in &files {
        let file = file.clone();
        let content = db.transaction(move |tx| read_content(tx, &file)).await?;
        let outcome = match content {
            Ok(bytes) => tokio::task::spawn_blocking(move || extract(bytes))
                .await
                .map_err(ApiError::internal)?,
            Err(reason) => Err(reason),
        };
        outcomes.push(outcome);
    }
    let (tenant, id) = (tenant_id.to_string(), knowledge_id.to_string());
    db.transaction(move |tx| {
        let store = Store::new(tx, &tenant);
        if let Some((event, item)) = finish(&store, &id, &files, outcomes)? {
            store.emit(event, &item)?;
        }
        Ok(())
    })
    .await
}

/// Extracts and indexes one item within the caller's transaction (the demo seed's way); returns
/// the event to report and the item as it now is, or None if the item is not `processing`.
fn process_item(
    store: &Store,
    knowledge_id: &str,
) -> Result<Option<(&'static str, Value)>, ApiError> {
    let files = file_refs(&store.require(KIND, knowledge_id)?);
    let outcomes = files
        .iter()
        .map(|file| Ok(read_content(store.tx(), file)?.and_then(extract)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    finish(store, knowledge_id, &files, outcomes)
}

/// What processing reads of one file (its name and description may change meanwhile).
#[derive(Clone, PartialEq)]
struct FileRef {
    id: String,
    content_type: String,
    sha256: String,
}

fn file_refs(item: &Value) -> Vec<FileRef> {
    let text = |file: &Value, field: &str| file[field].as_str().unwrap_or("").to_string();
    item["files"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|file| FileRef {
            id: text(file, "id"),
            content_type: text(file, "content_type"),
            sha256: text(file, "sha256"),
        })
        .collect()
}

/// What became of one file: its text's words and chunks, or why it cannot be read.
type Outcome = Result<Extracted, String>;

struct Extracted {
    words: usize,
    chunks: Vec<String>,
}

/// The file's bytes, or why they cannot be read (the outer error is the sandbox's own failure).
fn read_content(tx: &Transaction, file: &FileRef) -> Result<Result<Vec<u8>, String>, ApiError> {
    if !is_text_type(&file.content_type) {
        return Ok(Err(format!(
            "{} files cannot be read by the sandbox; only text (text/*, application/json) is extracted",
            file.content_type
        )));
    }
    let bytes: Option<Vec<u8>> = tx
        .query_row(
            "SELECT content FROM blobs WHERE sha256 = ?1",
            params![file.sha256],
            |row| row.get(0),
        )
        .optional()?;
    Ok(bytes.ok_or_else(|| "its content is missing".to_string()))
}

/// The text of a file's bytes, counted and chunked for the index: no database involved.
fn extract(bytes: Vec<u8>) -> Outcome {
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "it is not valid UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    let text = text.trim_start_matches('\u{feff}');
    Ok(Extracted {
        words: text.split_whitespace().count(),
        chunks: split_into_chunks(text),
    })
}

fn is_text_type(content_type: &str) -> bool {
    content_type.starts_with("text/") || content_type == "application/json"
}

/// Writes what processing made of the item's `files` (`outcomes` in the same order): its index,
/// file statuses, status and counts. Returns the event to report and the item as it now is, or
/// None (writing nothing) unless the item is still `processing` with exactly those files.
fn finish(
    store: &Store,
    knowledge_id: &str,
    files: &[FileRef],
    outcomes: Vec<Outcome>,
) -> Result<Option<(&'static str, Value)>, ApiError> {
    let Some(mut item) = store.get(KIND, knowledge_id)? else {
        return Ok(None);
    };
    if item["status"] != "processing" || file_refs(&item) != files {
        return Ok(None);
    }
    let mut extracted = Vec::new();
    let mut failures = Vec::new();
    let records = item["files"].as_array_mut().into_iter().flatten();
    for ((record, file), outcome) in records.zip(files).zip(outcomes) {
        match outcome {
            Ok(text) => {
                record["status"] = json!("ready");
                extracted.push((file.id.as_str(), text));
            }
            Err(reason) => {
                record["status"] = json!("failed");
                let filename = record["filename"].as_str().unwrap_or("");
                failures.push(format!("{filename}: {reason}"));
            }
        }
    }
    clear_index(store, knowledge_id)?;
    let event = if failures.is_empty() {
        let (words, chunks) = index_item(store, &item, &extracted)?;
        item["status"] = json!("ready");
        item["status_detail"] = Value::Null;
        item["word_count"] = json!(words);
        item["chunk_count"] = json!(chunks);
        "knowledge.ready"
    } else {
        mark_failed(&mut item, &format!("cannot read {}", failures.join("; ")));
        "knowledge.failed"
    };
    item["processed_at"] = json!(ids::now_string());
    store.update(KIND, &item)?;
    Ok(Some((event, item)))
}

/// A failed item is not searchable, so none of its text counts as indexed.
fn mark_failed(item: &mut Value, detail: &str) {
    item["status"] = json!("failed");
    item["status_detail"] = json!(truncate(detail, MAX_DETAIL_CHARS));
    item["word_count"] = json!(0);
    item["chunk_count"] = json!(0);
}

/// Ends the processing of an item the worker keeps failing on (if it is still `processing`):
/// `failed`, every file with it, and `knowledge.failed` reported.
fn give_up(store: &Store, knowledge_id: &str) -> Result<(), ApiError> {
    let Some(mut item) = store.get(KIND, knowledge_id)? else {
        return Ok(());
    };
    if item["status"] != "processing" {
        return Ok(());
    }
    for file in item["files"].as_array_mut().into_iter().flatten() {
        file["status"] = json!("failed");
    }
    clear_index(store, knowledge_id)?;
    mark_failed(
        &mut item,
        &format!(
            "the sandbox failed to process this item {MAX_ATTEMPTS} times in a row (see its log); process it again to retry"
        ),
    );
    item["processed_at"] = json!(ids::now_string());
    store.update(KIND, &item)?;
    store.emit("knowledge.failed", &item)
}

/// Indexes the title and description (file_id NULL) and every chunk of every file; returns
/// (words, chunks).
fn index_item(
    store: &Store,
    item: &Value,
    texts: &[(&str, Extracted)],
) -> Result<(usize, usize), ApiError> {
    let mut insert = store.tx().prepare_cached(
        "INSERT INTO knowledge_fts (tenant_id, knowledge_id, file_id, title, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let knowledge_id = item["id"].as_str().unwrap_or("");
    let title = item["title"].as_str().unwrap_or("");
    let description = item["description"].as_str().unwrap_or("");
    insert.execute(params![
        store.tenant_id(),
        knowledge_id,
        None::<&str>,
        title,
        description
    ])?;
    let (mut words, mut chunks) = (0, 0);
    for (file_id, text) in texts {
        words += text.words;
        for chunk in &text.chunks {
            insert.execute(params![store.tenant_id(), knowledge_id, file_id, "", chunk])?;
            chunks += 1;
        }
    }
    Ok((words, chunks))
}

fn clear_index(store: &Store, knowledge_id: &str) -> Result<(), ApiError> {
    store.tx().execute(
        "DELETE FROM knowledge_fts WHERE tenant_id = ?1 AND knowledge_id = ?2",
        params![store.tenant_id(), knowledge_id],
    )?;
    Ok(())
}

/// Passages for search: whole paragraphs packed up to about `CHUNK_WORDS` words, so that a hit
/// reads as coherent text; an oversized paragraph is cut into word windows.
fn split_into_chunks(text: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let text = text.replace("\r\n", "\n");
    for paragraph in text.split("\n\n") {
        let words: Vec<&str> = paragraph.split_whitespace().collect();
        if !current.is_empty() && current.len() + words.len() > CHUNK_WORDS {
            chunks.push(current.join(" "));
            current.clear();
        }
        for window in words.chunks(CHUNK_WORDS) {
            if window.len() == CHUNK_WORDS {
                chunks.push(window.join(" "));
            } else {
                current.extend_from_slice(window);
            }
        }
    }
    if !current.is_empty() {
        chunks.push(current.join(" "));
    }
    chunks
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

// ---------------------------------------------------------------------------------------------
// Search

fn search(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let query = input.required_str("query")?;
    let limit = input.i64("limit").unwrap_or(10).clamp(1, 50);
    let Some(fts_query) = to_fts_query(query) else {
        // Nothing searchable in the query (only punctuation): nothing can match.
        return ok(json!({ "query": query, "data": [] }));
    };
    let mut statement = store.tx().prepare_cached(
        "SELECT knowledge_fts.knowledge_id, knowledge_fts.file_id,
                json_extract(o.body, '$.title'), json_extract(o.body, '$.collection_id'),
                bm25(knowledge_fts, 0.0, 0.0, 0.0, 2.0, 1.0) AS rank,
                snippet(knowledge_fts, -1, '', '', '…', 32)
           FROM knowledge_fts
           JOIN objects AS o ON o.tenant_id = knowledge_fts.tenant_id AND o.kind = 'knowledge'
                            AND o.id = knowledge_fts.knowledge_id
          WHERE knowledge_fts MATCH ?1 AND knowledge_fts.tenant_id = ?2
            AND json_extract(o.body, '$.status') = 'ready'
            AND (?3 IS NULL OR json_extract(o.body, '$.collection_id') = ?3)
          ORDER BY rank LIMIT ?4",
    )?;
    let hits = statement
        .query_map(
            params![
                fts_query,
                store.tenant_id(),
                input.str("collection_id"),
                limit
            ],
            search_hit,
        )
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(search_error)?;
    ok(json!({ "query": query, "data": with_scores(hits) }))
}

/// A hit and its bm25 strength (`-bm25()`: higher is better, unbounded).
fn search_hit(row: &rusqlite::Row) -> rusqlite::Result<(Value, f64)> {
    let title: String = row.get(2)?;
    let rank: f64 = row.get(4)?;
    let snippet: String = row.get(5)?;
    let snippet = snippet.trim();
    let hit = json!({
        "knowledge_id": row.get::<_, String>(0)?,
        "file_id": row.get::<_, Option<String>>(1)?,
        "collection_id": row.get::<_, Option<String>>(3)?,
        "snippet": truncate(if snippet.is_empty() { &title } else { snippet }, MAX_SNIPPET_CHARS),
        "title": title,
    });
    Ok((hit, (-rank).max(0.0)))
}

/// The spec's score is 0..1 with 1 the best. bm25 strengths have no fixed scale (in a small
/// corpus every term's IDF is clamped near zero), so each is relative to the best hit's: the
/// best scores 1 and the order is kept.
fn with_scores(hits: Vec<(Value, f64)>) -> Vec<Value> {
    let best = hits
        .iter()
        .map(|(_, strength)| *strength)
        .fold(0.0, f64::max);
    hits.into_iter()
        .map(|(mut hit, strength)| {
            let score = if best > 0.0 { strength / best } else { 1.0 };
            let score = if score.is_finite() {
                (score.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0
            } else {
                0.0
            };
            hit["score"] = json!(score);
            hit
        })
        .collect()
}

/// FTS5 errors can only come from the query text; they are the caller's 400, never a 500.
fn search_error(error: rusqlite::Error) -> ApiError {
    if error.to_string().to_lowercase().contains("fts5") {
        ApiError::invalid_field("query", "cannot be searched; use plain words")
    } else {
        error.into()
    }
}

/// The user's text as a safe FTS5 query: its words, each quoted (so FTS5 operators and syntax
/// characters are plain text), OR-ed so that natural-language questions match passages with
/// most of the words (bm25 ranks those first). Common words are dropped unless nothing else is
/// left. None when the text has no word at all.
fn to_fts_query(text: &str) -> Option<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_lowercase();
        if !terms.contains(&word) && terms.len() < MAX_QUERY_TERMS {
            terms.push(word);
        }
    }
    let meaningful: Vec<&String> = terms
        .iter()
        .filter(|t| !STOPWORDS.contains(&t.as_str()))
        .collect();
    let chosen = if meaningful.is_empty() {
        terms.iter().collect()
    } else {
        meaningful
    };
    if chosen.is_empty() {
        return None;
    }
    let quoted: Vec<String> = chosen
        .iter()
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    Some(quoted.join(" OR "))
}

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how",
    "i", "in", "is", "it", "of", "on", "or", "should", "that", "the", "this", "to", "what", "when",
    "where", "which", "who", "why", "with", "you", "my", "we", "our", "there", "their", "into",
    "about",
];

// ---------------------------------------------------------------------------------------------
// Collections

/// Sorted by name (case-insensitively, then by id), as the spec says; the cursor carries the
/// last row's sort key, so pages stay stable while collections are added.
fn list_collections(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let after = input
        .cursor()
        .map(|c| decode_name_cursor(store, c))
        .transpose()?;
    let mut all: Vec<(String, String, Value)> = store
        .all(COLLECTION)?
        .into_iter()
        .map(|c| (name_key(&c), c["id"].as_str().unwrap_or("").to_string(), c))
        .filter(|(key, id, _)| after.as_ref().is_none_or(|(k, i)| (key, id) > (k, i)))
        .collect();
    all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let limit = input.limit();
    let next_cursor = if all.len() > limit {
        all.truncate(limit);
        all.last().map(|(key, id, _)| encode_name_cursor(key, id))
    } else {
        None
    };
    let data = all.into_iter().map(|(_, _, c)| c).collect();
    page(Page { data, next_cursor })
}

fn name_key(collection: &Value) -> String {
    collection["name"].as_str().unwrap_or("").to_lowercase()
}

/// `n1:<id>:<key>`; when the key makes the cursor too long for the spec's 200 characters it is
/// cut (`t1:`) and decoding looks the collection up for its full key.
fn encode_name_cursor(key: &str, id: &str) -> String {
    let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let full = engine.encode(format!("n1:{id}:{key}"));
    if full.len() <= 200 {
        return full;
    }
    let mut cut: String = key.chars().collect();
    while engine.encode(format!("t1:{id}:{cut}")).len() > 200 {
        cut.pop();
    }
    engine.encode(format!("t1:{id}:{cut}"))
}

fn decode_name_cursor(store: &Store, cursor: &str) -> Result<(String, String), ApiError> {
    let invalid = crate::sandbox::db::invalid_cursor;
    let text = crate::sandbox::db::decode_cursor_text(cursor)?;
    let (version, rest) = text.split_once(':').ok_or_else(invalid)?;
    let (id, key) = rest.split_once(':').ok_or_else(invalid)?;
    match version {
        "n1" => Ok((key.to_string(), id.to_string())),
        "t1" => {
            let key = store
                .get(COLLECTION, id)?
                .map_or_else(|| key.to_string(), |c| name_key(&c));
            Ok((key, id.to_string()))
        }
        _ => Err(invalid()),
    }
}

fn create_collection(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let name = input.required_str("name")?;
    require_unique_name(store, name, None)?;
    let now = ids::now_string();
    let collection = json!({
        "id": ids::new_id("col_"),
        "name": name,
        "description": input.str("description").unwrap_or(""),
        "item_count": 0,
        "created_at": now,
        "updated_at": now,
    });
    store.insert(COLLECTION, &collection)?;
    created(collection)
}

fn update_collection(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let id = input.required_str("collection_id")?;
    let mut collection = store.require(COLLECTION, id)?;
    if let Some(name) = input.str("name") {
        require_unique_name(store, name, Some(id))?;
    }
    for (field, value) in input.given(&["name", "description"]) {
        collection[field] = value.clone();
    }
    collection["updated_at"] = json!(ids::now_string());
    store.update(COLLECTION, &collection)?;
    ok(collection)
}

/// Names are unique per tenant ignoring case; `except` is the collection being renamed.
fn require_unique_name(store: &Store, name: &str, except: Option<&str>) -> Result<(), ApiError> {
    let wanted = name.to_lowercase();
    let clash = store
        .all(COLLECTION)?
        .into_iter()
        .find(|c| name_key(c) == wanted && c["id"].as_str() != except);
    match clash {
        Some(other) => Err(ApiError::conflict(format!(
            "collection {} is already named {:?} (names are unique, ignoring case)",
            other["id"].as_str().unwrap_or(""),
            other["name"].as_str().unwrap_or("")
        ))),
        None => Ok(()),
    }
}

fn delete_collection(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let id = input.required_str("collection_id")?;
    store.require(COLLECTION, id)?;
    let members = items_in(store, id)?;
    if !members.is_empty() && !input.bool("force").unwrap_or(false) {
        return Err(ApiError::conflict(format!(
            "collection {id} holds {} knowledge item(s); pass force=true to move them out and delete it",
            members.len()
        )));
    }
    let now = ids::now_string();
    for mut item in members {
        item["collection_id"] = Value::Null;
        item["updated_at"] = json!(now);
        store.update(KIND, &item)?;
    }
    store.delete(COLLECTION, id)?;
    deleted(id)
}

fn items_in(store: &Store, collection_id: &str) -> Result<Vec<Value>, ApiError> {
    let mut statement = store.tx().prepare_cached(
        "SELECT body FROM objects WHERE tenant_id = ?1 AND kind = ?2
           AND json_extract(body, '$.collection_id') = ?3 ORDER BY seq",
    )?;
    let rows = statement.query_map(params![store.tenant_id(), KIND, collection_id], |row| {
        row.get::<_, String>(0)
    })?;
    let mut items = Vec::new();
    for row in rows {
        items.push(serde_json::from_str(&row?).map_err(ApiError::internal)?);
    }
    Ok(items)
}

/// Recomputes a collection's `item_count` from its items (a no-op if the collection is gone).
fn refresh_item_count(store: &Store, collection_id: &str) -> Result<(), ApiError> {
    let Some(mut collection) = store.get(COLLECTION, collection_id)? else {
        return Ok(());
    };
    let count: i64 = store.tx().query_row(
        "SELECT COUNT(*) FROM objects WHERE tenant_id = ?1 AND kind = ?2
           AND json_extract(body, '$.collection_id') = ?3",
        params![store.tenant_id(), KIND, collection_id],
        |row| row.get(0),
    )?;
    collection["item_count"] = json!(count);
    store.update(COLLECTION, &collection)
}

// ---------------------------------------------------------------------------------------------
// Demo data

/// Three collections and six items with real documents, processed as the worker would (so
/// search works from the first request); the scanned PDF manual is `failed`.
pub fn seed_demo(store: &Store) -> Result<(), ApiError> {
    let start = ids::now() - chrono::Duration::days(30);
    let mut collections = Vec::new();
    for (index, (name, description)) in DEMO_COLLECTIONS.iter().enumerate() {
        let at = ids::timestamp(start + chrono::Duration::days(index as i64));
        let collection = json!({
            "id": ids::new_id("col_"), "name": name, "description": description,
            "item_count": 0, "created_at": at, "updated_at": at,
        });
        store.insert(COLLECTION, &collection)?;
        collections.push(collection["id"].as_str().unwrap_or("").to_string());
    }
    for (index, doc) in DEMO_DOCUMENTS.iter().enumerate() {
        let at = ids::timestamp(start + chrono::Duration::days(4 + index as i64 * 3));
        let uploads = doc
            .files
            .iter()
            .map(|(filename, content_type, content)| Upload {
                filename: filename.to_string(),
                content_type: content_type.to_string(),
                description: String::new(),
                bytes: content.as_bytes().to_vec(),
            })
            .collect();
        let fields = NewItem {
            title: doc.title,
            description: doc.description,
            collection_id: collections.get(doc.collection).map(String::as_str),
            tags: json!(doc.tags),
            created_at: &at,
        };
        let mut item = new_item(store, fields, uploads)?;
        mark_processing(&mut item);
        store.update(KIND, &item)?;
        // No event: the demo history starts before any webhook endpoint exists.
        process_item(store, item["id"].as_str().unwrap_or(""))?;
    }
    Ok(())
}

const DEMO_COLLECTIONS: &[(&str, &str)] = &[
    (
        "Maintenance SOPs",
        "Standard operating procedures for planned and corrective maintenance.",
    ),
    (
        "Safety & Compliance",
        "Checklists and rules every technician follows on site.",
    ),
    (
        "Onboarding",
        "What new field technicians read in their first weeks.",
    ),
];

struct DemoDocument {
    title: &'static str,
    description: &'static str,
    collection: usize,
    tags: &'static [&'static str],
    files: &'static [(&'static str, &'static str, &'static str)],
}

const DEMO_DOCUMENTS: &[DemoDocument] = &[
    DemoDocument {
        title: "Hydraulic pump P-12 maintenance SOP",
        description: "Quarterly inspection and seal replacement for the P-12 hydraulic power unit.",
        collection: 0,
        tags: &["pump-maintenance", "hydraulics"],
        files: &[("pump-p12-sop.md", "text/markdown", PUMP_SOP)],
    },
    DemoDocument {
        title: "Compressor C-3 filter replacement",
        description: "",
        collection: 0,
        tags: &["compressors"],
        files: &[(
            "compressor-c3-filters.txt",
            "text/plain",
            COMPRESSOR_FILTERS,
        )],
    },
    DemoDocument {
        title: "Lockout/tagout safety checklist",
        description: "Energy isolation before any maintenance on powered equipment.",
        collection: 1,
        tags: &["safety", "loto"],
        files: &[("loto-checklist.md", "text/markdown", LOTO_CHECKLIST)],
    },
    DemoDocument {
        title: "Working at height checklist",
        description: "Ladders, mobile elevating work platforms and fall arrest.",
        collection: 1,
        tags: &["safety", "fall-protection"],
        files: &[
            ("working-at-height.txt", "text/plain", HEIGHT_CHECKLIST),
            ("harness-inspection.csv", "text/csv", HARNESS_CSV),
        ],
    },
    DemoDocument {
        title: "New technician first-week guide",
        description: "Accounts, HoloLens fit check, shadowing and the first solo job.",
        collection: 2,
        tags: &["onboarding"],
        files: &[("first-week.md", "text/markdown", FIRST_WEEK)],
    },
    DemoDocument {
        title: "Conveyor CV-4 manufacturer manual (scanned)",
        description: "The OEM manual as scanned from paper; needs a text version to be searchable.",
        collection: 0,
        tags: &["conveyors"],
        files: &[("conveyor-cv4-manual.pdf", "application/pdf", CONVEYOR_PDF)],
    },
];

const PUMP_SOP: &str = "# Hydraulic pump P-12: quarterly maintenance

## Scope
This procedure covers the quarterly inspection of the P-12 hydraulic power unit on line 2, including the pump shaft seal, the suction strainer and the return-line filter. Allow two hours with two technicians.

## Before you start
Apply lockout/tagout to the main isolator and to the accumulator dump valve. Bleed the accumulator until the pressure gauge reads zero bar, and verify zero energy by attempting a start from the local panel. Wear nitrile gloves and safety glasses: hydraulic oil at operating temperature can exceed 60 °C.

## Inspection
1. Check the oil level in the sight glass; top up with ISO VG 46 oil only.
2. Inspect the shaft seal for weeping. More than three drops per minute means the seal must be replaced.
3. Remove and clean the suction strainer in solvent; replace it if the mesh is torn.
4. Replace the return-line filter element and record the differential pressure before the change.

## Seal replacement
Drain the pump casing, remove the coupling guard and the coupling, then withdraw the seal carrier. Fit the new mechanical seal with clean hands and a light film of oil on the O-rings. Torque the carrier bolts to 25 Nm in a cross pattern.

## Return to service
Remove your locks in reverse order, run the pump at low pressure for ten minutes and check for leaks. Log the work order with the measured vibration and the filter differential pressure.
";

const COMPRESSOR_FILTERS: &str = "Compressor C-3: intake and oil filter replacement

Replace the intake filter every 2,000 running hours or when the differential pressure indicator turns red, whichever comes first. Replace the oil filter at every oil change (4,000 hours).

Isolate the compressor electrically and close the discharge valve. Wait five minutes for the internal pressure to vent through the blow-down valve; the gauge must read zero before any cover is opened.

Intake filter: release the four clips of the filter housing, remove the old element and wipe the housing with a lint-free cloth. Never blow compressed air into the clean side. Fit the new element with the seal facing the housing.

Oil filter: place a drip tray, unscrew the cartridge by hand or with a strap wrench, lightly oil the new gasket and tighten a further three quarters of a turn after contact.

Restart and run for fifteen minutes, check for oil leaks and reset the service counter on the controller.
";

const LOTO_CHECKLIST: &str = "# Lockout/tagout (LOTO) checklist

Use this checklist every time you service equipment that could start up or release stored energy. Skipping a step is never allowed, whatever the time pressure.

## Prepare
- [ ] Identify every energy source: electrical, hydraulic, pneumatic, mechanical (springs, gravity), thermal and chemical.
- [ ] Tell the operators and the shift lead that the machine is going down for maintenance.

## Isolate and lock
- [ ] Shut the machine down with its normal stop.
- [ ] Open every isolator and close every valve identified above.
- [ ] Fit your personal lock and a signed tag to each isolation point. One person, one lock, one key.
- [ ] Release stored energy: bleed accumulators, block raised loads, discharge capacitors.

## Verify zero energy
- [ ] Try to start the machine from every control point.
- [ ] Test for absence of voltage with a tested meter (test the meter before and after).
- [ ] Check pressure gauges read zero.

## Return to service
- [ ] Remove tools and refit guards.
- [ ] Make sure everyone is clear, then remove locks: only the person who fitted a lock removes it.
- [ ] Tell the operators the machine is back in service.
";

const HEIGHT_CHECKLIST: &str = "Working at height: pre-task checklist

Any work where a person could fall two metres or more needs this checklist and a permit signed by the shift lead.

Ladders are for short tasks only (under 30 minutes) with three points of contact. Inspect the stiles, rungs and feet before use, set the ladder at a 1-in-4 angle and secure it at the top.

Mobile elevating work platforms (MEWPs) may only be operated by certified staff. Check the ground conditions, the outriggers, the emergency lowering controls and the platform gate before lifting.

Fall arrest: wear a full-body harness clipped to a certified anchor point with an energy-absorbing lanyard. Inspect the harness before every use (see the harness inspection record) and never clip to handrails or pipework.

Keep an exclusion zone below the work, and secure tools with lanyards so nothing can drop on people below.
";

const HARNESS_CSV: &str = "harness_id,inspected_on,inspector,webbing,buckles,stitching,result
H-014,2025-09-02,R. Alvarez,ok,ok,ok,pass
H-015,2025-09-02,R. Alvarez,frayed,ok,ok,withdrawn
H-021,2025-09-16,K. Osei,ok,ok,ok,pass
H-022,2025-09-16,K. Osei,ok,corroded,ok,withdrawn
";

const FIRST_WEEK: &str = "# Your first week as a field technician

Welcome to Acme Field Services. This guide tells you what happens in your first five days and who to ask when you are stuck.

## Day 1: accounts and equipment
Collect your badge, safety boots and your HoloLens 2 from the tool crib. Your team lead pairs the headset with your TrainAR account; bring your phone for the pairing code. Complete the fit check so the display sits level and the hand tracking works with gloves.

## Day 2: safety induction
Complete the lockout/tagout and working at height modules in TrainAR. You may not touch powered equipment until both show as completed in your profile.

## Days 3 and 4: shadowing
Shadow a senior technician on planned maintenance. Ask them to walk you through the hydraulic pump and compressor SOPs on the real machines, and record one guided session yourself.

## Day 5: first supervised job
Carry out a filter replacement under supervision, log it in the work order system and review the session recording with your lead. After that you are cleared for simple jobs on your own.
";

/// A scanned document: a PDF whose pages are images, with no text layer.
const CONVEYOR_PDF: &str = "%PDF-1.4
1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj
2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj
3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj
trailer << /Root 1 0 R >>
%%EOF
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workers_poll_reads_only_the_waiting_items() {
        let db = Db::open_in_memory().unwrap();
        db.transaction_blocking(|tx| {
            let mut explain = tx.prepare(&format!("EXPLAIN QUERY PLAN {DUE_SQL}"))?;
            let plan = explain
                .query_map([BATCH], |row| row.get::<_, String>(3))?
                .collect::<Result<Vec<_>, _>>()?;
            assert!(
                plan.iter().any(|step| step.contains("objects_processing")),
                "{plan:?}"
            );
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn queries_become_quoted_terms_without_fts_syntax() {
        assert_eq!(to_fts_query("\""), None);
        assert_eq!(to_fts_query("* ( ) ^"), None);
        assert_eq!(to_fts_query("AND").as_deref(), Some("\"and\""));
        assert_eq!(
            to_fts_query("How do I replace the pump-seal? pump").as_deref(),
            Some("\"replace\" OR \"pump\" OR \"seal\"")
        );
        assert_eq!(
            to_fts_query("title:NEAR(x)").as_deref(),
            Some("\"title\" OR \"near\" OR \"x\"")
        );
    }

    #[test]
    fn chunks_keep_every_word_and_stay_near_the_size() {
        let long = "word ".repeat(CHUNK_WORDS * 2 + 7);
        let text = format!("short paragraph\n\n{long}\r\n\r\nlast one");
        let chunks = split_into_chunks(&text);
        let words: usize = chunks.iter().map(|c| c.split_whitespace().count()).sum();
        assert_eq!(words, text.split_whitespace().count());
        assert!(
            chunks
                .iter()
                .all(|c| c.split_whitespace().count() <= CHUNK_WORDS)
        );
        assert!(split_into_chunks("  \n\n ").is_empty());
    }

    #[test]
    fn scores_are_relative_to_the_best_hit() {
        let hits = vec![(json!({}), 4.0), (json!({}), 1.0), (json!({}), 0.0)];
        let scores: Vec<f64> = with_scores(hits)
            .iter()
            .map(|h| h["score"].as_f64().unwrap())
            .collect();
        assert_eq!(scores, [1.0, 0.25, 0.0]);
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
