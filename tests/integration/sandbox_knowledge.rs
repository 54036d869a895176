//! The sandbox's knowledge category over HTTP: items and files (strict base64, content
//! addressing, the per-item limits), processing by the background worker (text → `ready` and
//! searchable, PDF → `failed` with a reason), full-text search (snippets, scores, tenant and
//! status isolation, hostile queries) and collections (unique names, item counts, forced delete).

use crate::sandbox_fixture::{ADMIN_KEY, KeyHolder, TestSandbox};
use base64::Engine;
use serde_json::{Value, json};
use sha2::Digest;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn file(name: &str, content_type: &str, bytes: &[u8]) -> Value {
    json!({"filename": name, "content_type": content_type, "content_base64": b64(bytes)})
}

/// An item with one plain-text file: enough to process and search, without a test spelling out
/// the upload's shape.
fn text_item(title: &str, filename: &str, bytes: &[u8]) -> Value {
    json!({"title": title, "files": [file(filename, "text/plain", bytes)]})
}

fn id(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_string()
}

fn fields(reply: &Value) -> Vec<String> {
    reply["error"]["details"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d["field"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn upload(caller: KeyHolder<'_>, body: Value) -> Value {
    caller.post(201, "/v1/knowledge", body).await
}

async fn process(caller: KeyHolder<'_>, knowledge_id: &str) -> Value {
    let path = format!("/v1/knowledge/{knowledge_id}/process");
    caller.post(202, &path, json!({})).await
}

/// Polls `get_knowledge` until the item leaves `processing` (at most ~5 s).
async fn settled(caller: KeyHolder<'_>, knowledge_id: &str) -> Value {
    let path = format!("/v1/knowledge/{knowledge_id}");
    for _ in 0..50 {
        let item = caller.get(200, &path).await;
        if item["status"] != "processing" {
            return item;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{knowledge_id} is still processing after 5 s");
}

async fn search(caller: KeyHolder<'_>, query: &str) -> Value {
    let path = format!("/v1/search/knowledge?query={}", urlencode(query));
    caller.get(200, &path).await
}

async fn create_collection(caller: KeyHolder<'_>, name: &str) -> Value {
    let body = json!({"name": name});
    caller.post(201, "/v1/knowledge-collections", body).await
}

fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("q", text)]).unwrap()[2..].to_string()
}

fn hit_ids(results: &Value) -> Vec<String> {
    results["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["knowledge_id"].as_str().unwrap().to_string())
        .collect()
}

const SOP: &str = "# Gearbox G-7 overhaul\n\nDrain the quixotronic lubricant before opening the casing.\n\nReplace the bearings and torque the cover bolts to 40 Nm.";

#[tokio::test]
async fn upload_process_and_search_round_trip() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let collection = create_collection(admin, "Gearboxes").await;
    let body = json!({
        "title": "Gearbox overhaul", "description": "Yearly overhaul", "collection_id": collection["id"],
        "tags": ["gearbox"], "files": [file("g7.md", "text/markdown", SOP.as_bytes())],
    });
    let item = upload(admin, body).await;
    let kn = id(&item);
    assert!(kn.starts_with("kn_"));
    assert_eq!(item["status"], "pending");
    assert_eq!(item["status_detail"], Value::Null);
    assert_eq!(item["processed_at"], Value::Null);
    assert_eq!(item["files"][0]["sha256"], sha256_hex(SOP.as_bytes()));
    assert_eq!(item["files"][0]["size"], SOP.len());
    assert_eq!(item["total_size"], SOP.len());
    assert!(item["files"][0]["id"].as_str().unwrap().starts_with("kf_"));
    assert_eq!(item["files"][0]["knowledge_id"], kn.as_str());
    let fetched = admin.get(200, &format!("/v1/knowledge/{kn}")).await;
    assert_eq!(fetched, item);
    let counted = admin
        .get(
            200,
            &format!("/v1/knowledge-collections/{}", id(&collection)),
        )
        .await;
    assert_eq!(counted["item_count"], 1);

    assert_eq!(
        hit_ids(&search(admin, "quixotronic").await),
        Vec::<String>::new(),
        "pending items are not searchable"
    );
    let started = process(admin, &kn).await;
    assert_eq!(started["status"], "processing");
    // Whether the worker has finished yet or not, a second start is refused.
    let path = format!("/v1/knowledge/{kn}/process");
    admin.post(409, &path, json!({})).await;

    let ready = settled(admin, &kn).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["files"][0]["status"], "ready");
    assert_eq!(ready["word_count"], SOP.split_whitespace().count());
    assert!(ready["chunk_count"].as_u64().unwrap() >= 1);
    assert!(ready["processed_at"].is_string());

    let results = search(admin, "how do I drain quixotronic lubricant?").await;
    assert_eq!(results["query"], "how do I drain quixotronic lubricant?");
    let hit = &results["data"][0];
    assert_eq!(hit["knowledge_id"], kn.as_str());
    assert_eq!(hit["file_id"], item["files"][0]["id"]);
    assert_eq!(hit["title"], "Gearbox overhaul");
    assert_eq!(hit["collection_id"], collection["id"]);
    assert!(
        hit["snippet"].as_str().unwrap().contains("quixotronic"),
        "{hit}"
    );
    let score = hit["score"].as_f64().unwrap();
    assert!(score > 0.0 && score <= 1.0, "{score}");

    // A title match is the item's own row: no file.
    let results = search(admin, "overhaul").await;
    assert!(
        results["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["file_id"].is_null() && h["snippet"].as_str().unwrap().contains("overhaul"))
    );
    // Restricted to a collection: only its items.
    let scoped = format!(
        "/v1/search/knowledge?query=quixotronic&collection_id={}",
        id(&collection)
    );
    assert_eq!(hit_ids(&admin.get(200, &scoped).await), vec![kn.clone()]);
    let elsewhere = "/v1/search/knowledge?query=quixotronic&collection_id=col_0000000000000000";
    assert_eq!(admin.get(200, elsewhere).await["data"], json!([]));

    // Ready: reprocessing needs force.
    admin.post(409, &path, json!({})).await;
    let again = admin.post(202, &path, json!({"force": true})).await;
    assert_eq!(again["status"], "processing");
    assert_eq!(settled(admin, &kn).await["status"], "ready");
    assert_eq!(
        hit_ids(&search(admin, "quixotronic").await),
        vec![kn.clone()],
        "reindexing replaces, never duplicates"
    );
}

#[tokio::test]
async fn process_failures_are_404_409_and_422() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    admin
        .post(404, "/v1/knowledge/kn_0000000000000000/process", json!({}))
        .await;
    let empty = upload(admin, json!({"title": "No files yet"})).await;
    assert_eq!(empty["files"], json!([]));
    assert_eq!(empty["collection_id"], Value::Null);
    assert_eq!(empty["tags"], json!([]));
    assert_eq!(empty["description"], "");
    let reply = admin
        .post(
            422,
            &format!("/v1/knowledge/{}/process", id(&empty)),
            json!({}),
        )
        .await;
    assert_eq!(reply["error"]["code"], "unprocessable");
}

#[tokio::test]
async fn uploads_are_decoded_strictly_and_content_addressed() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let good = file("a.txt", "text/plain", b"alpha");
    let mut bad = file("c.txt", "text/plain", b"");
    bad["content_base64"] = json!("abc"); // valid characters, impossible length
    let body = json!({"title": "Broken", "files": [good.clone(), good.clone(), bad.clone()]});
    let reply = admin.post(400, "/v1/knowledge", body).await;
    assert_eq!(reply["error"]["code"], "validation_failed");
    assert_eq!(fields(&reply), ["files[2].content_base64"]);
    let listed = admin.get(200, "/v1/knowledge").await;
    assert_eq!(
        listed["data"],
        json!([]),
        "a rejected upload stores nothing"
    );

    let unknown = json!({"title": "Lost", "collection_id": "col_0000000000000000"});
    admin.post(422, "/v1/knowledge", unknown).await;

    let item = upload(admin, json!({"title": "Binary", "files": [good]})).await;
    let kn = id(&item);
    let one = format!("/v1/knowledge/{kn}/files");
    let mut single = bad.clone();
    single["description"] = json!("note");
    let reply = admin.post(400, &one, single).await;
    assert_eq!(fields(&reply), ["content_base64"]);
    admin
        .post(
            404,
            "/v1/knowledge/kn_0000000000000000/files",
            file("x.txt", "text/plain", b"x"),
        )
        .await;

    // Every byte value survives the round trip; the digest is of the exact bytes sent.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let mut body = file("all-bytes.bin", "application/octet-stream", &bytes);
    body["description"] = json!("every byte");
    let added = admin.post(201, &one, body).await;
    assert_eq!(added["sha256"], sha256_hex(&bytes));
    assert_eq!(added["size"], 3000);
    assert_eq!(added["description"], "every byte");
    assert_eq!(added["status"], "pending");

    // The same bytes in another item (or tenant) share the blob but are separate file records.
    let other = sandbox.other_tenant("Globex");
    let copy = upload(
        sandbox.as_key(&other),
        json!({"title": "Copy", "files": [file("same.bin", "application/octet-stream", &bytes)]}),
    )
    .await;
    assert_eq!(copy["files"][0]["sha256"], added["sha256"]);
    assert_ne!(copy["files"][0]["id"], added["id"]);
}

#[tokio::test]
async fn bulk_upload_adds_all_or_nothing_and_enforces_100_files() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let item = upload(admin, json!({"title": "Many files"})).await;
    let bulk = format!("/v1/knowledge/{}/files/bulk", id(&item));
    let files: Vec<Value> = (0..3)
        .map(|n| {
            file(
                &format!("f{n}.txt"),
                "text/plain",
                format!("file {n}").as_bytes(),
            )
        })
        .collect();
    let added = admin.post(201, &bulk, json!({"files": files})).await;
    let data = added["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (n, f) in data.iter().enumerate() {
        assert_eq!(f["filename"], format!("f{n}.txt"), "in the order sent");
        assert_eq!(f["sha256"], sha256_hex(format!("file {n}").as_bytes()));
    }

    let mut broken: Vec<Value> = (0..2)
        .map(|n| file(&format!("g{n}.txt"), "text/plain", b"g"))
        .collect();
    broken[1]["content_base64"] = json!("Zg=");
    let reply = admin.post(400, &bulk, json!({"files": broken})).await;
    assert_eq!(fields(&reply), ["files[1].content_base64"]);
    let now = admin
        .get(200, &format!("/v1/knowledge/{}", id(&item)))
        .await;
    assert_eq!(
        now["files"].as_array().unwrap().len(),
        3,
        "none of a rejected batch is added"
    );
    assert_eq!(now["total_size"], 18);

    for batch in 0..4 {
        let files: Vec<Value> = (0..20)
            .map(|n| file(&format!("b{batch}-{n}.txt"), "text/plain", b"x"))
            .collect();
        admin.post(201, &bulk, json!({"files": files})).await;
    }
    let files: Vec<Value> = (0..18)
        .map(|n| file(&format!("last-{n}.txt"), "text/plain", b"x"))
        .collect();
    let reply = admin.post(422, &bulk, json!({"files": files})).await;
    assert_eq!(reply["error"]["code"], "unprocessable");
    let files: Vec<Value> = (0..17)
        .map(|n| file(&format!("last-{n}.txt"), "text/plain", b"x"))
        .collect();
    admin.post(201, &bulk, json!({"files": files})).await;
    let one = format!("/v1/knowledge/{}/files", id(&item));
    admin
        .post(422, &one, file("101.txt", "text/plain", b"x"))
        .await;
    admin
        .post(
            404,
            "/v1/knowledge/kn_0000000000000000/files/bulk",
            json!({"files": [file("a.txt", "text/plain", b"a")]}),
        )
        .await;
}

#[tokio::test]
async fn new_files_send_a_processed_item_back_to_pending_and_processing_refuses_uploads() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let item = upload(admin, text_item("Living doc", "v1.txt", b"first version")).await;
    let kn = id(&item);
    process(admin, &kn).await;
    assert_eq!(settled(admin, &kn).await["status"], "ready");
    let files = format!("/v1/knowledge/{kn}/files");
    admin
        .post(201, &files, file("v2.txt", "text/plain", b"second version"))
        .await;
    let item = admin.get(200, &format!("/v1/knowledge/{kn}")).await;
    assert_eq!(item["status"], "pending");
    assert_eq!(item["files"][0]["status"], "ready");
    assert_eq!(item["files"][1]["status"], "pending");

    // The worker polls every ~100 ms: an upload sent right after starting nearly always meets
    // the item still processing.
    let mut refused = false;
    for attempt in 0..20 {
        process(admin, &kn).await;
        let (status, reply) = sandbox
            .call(
                ADMIN_KEY,
                "POST",
                &files,
                Some(file(&format!("r{attempt}.txt"), "text/plain", b"r")),
            )
            .await;
        assert!(status == 409 || status == 201, "{status} {reply}");
        settled(admin, &kn).await;
        if status == 409 {
            assert_eq!(reply["error"]["code"], "conflict");
            refused = true;
            break;
        }
    }
    assert!(refused, "an upload during processing was never refused");
}

#[tokio::test]
async fn a_pdf_fails_processing_with_a_reason_and_is_never_searchable() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let body = json!({"title": "Mixed manual", "files": [
        file("notes.txt", "text/plain", b"the zanzibarite valve notes"),
        file("scan.pdf", "application/pdf", b"%PDF-1.4\n%%EOF\n"),
    ]});
    let item = upload(admin, body).await;
    let kn = id(&item);
    process(admin, &kn).await;
    let failed = settled(admin, &kn).await;
    assert_eq!(failed["status"], "failed");
    let detail = failed["status_detail"].as_str().unwrap();
    assert!(
        detail.contains("scan.pdf") && detail.contains("application/pdf"),
        "{detail}"
    );
    assert_eq!(failed["files"][0]["status"], "ready");
    assert_eq!(failed["files"][1]["status"], "failed");
    assert!(failed["processed_at"].is_string());
    assert_eq!(search(admin, "zanzibarite").await["data"], json!([]));
    let listed = admin.get(200, "/v1/knowledge?status=failed").await;
    assert_eq!(hit_ids_of_items(&listed), vec![kn.clone()]);

    // Invalid UTF-8 in a text file fails too; a failed item may be processed again.
    let bad = upload(admin, text_item("Latin-1", "l1.txt", b"caf\xe9")).await;
    process(admin, &id(&bad)).await;
    let failed = settled(admin, &id(&bad)).await;
    assert!(
        failed["status_detail"].as_str().unwrap().contains("UTF-8"),
        "{failed}"
    );
    process(admin, &id(&bad)).await;
}

fn hit_ids_of_items(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(id).collect()
}

#[tokio::test]
async fn search_sees_only_ready_items_of_the_callers_tenant() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let other_key = sandbox.other_tenant("Globex");
    let other = sandbox.as_key(&other_key);
    let mine = upload(
        admin,
        text_item("Acme secret", "s.txt", b"the plutonic widget"),
    )
    .await;
    process(admin, &id(&mine)).await;
    settled(admin, &id(&mine)).await;
    let theirs = upload(
        other,
        text_item("Globex notes", "g.txt", b"another plutonic widget"),
    )
    .await;
    process(other, &id(&theirs)).await;
    settled(other, &id(&theirs)).await;
    upload(admin, text_item("Draft", "d.txt", b"plutonic draft")).await;

    assert_eq!(hit_ids(&search(admin, "plutonic").await), vec![id(&mine)]);
    assert_eq!(hit_ids(&search(other, "plutonic").await), vec![id(&theirs)]);
    other
        .get(404, &format!("/v1/knowledge/{}", id(&mine)))
        .await;
    other
        .delete(404, &format!("/v1/knowledge/{}", id(&mine)))
        .await;
    let reader = sandbox.key_with(&["read:knowledge"]).await;
    assert_eq!(
        hit_ids(&search(sandbox.as_key(&reader), "widget").await),
        vec![id(&mine)]
    );
}

#[tokio::test]
async fn odd_search_queries_never_fail_the_server() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let long = "pump ".repeat(100);
    let queries = [
        "\"",
        "AND",
        "OR",
        "NOT",
        "*",
        "pump*",
        "NEAR(a b)",
        "title:pump",
        "a:b",
        "-",
        "^",
        "(",
        "')",
        "\"unterminated",
        "{col}",
        "lock OR",
        "AND AND",
        "ünïcödé 検索",
        "\u{0301}",
        "😀",
        "x\u{0}y",
        "' OR 1=1 --",
        long.as_str(),
    ];
    for query in queries {
        let path = format!("/v1/search/knowledge?query={}", urlencode(query));
        let (status, reply) = sandbox.call(ADMIN_KEY, "GET", &path, None).await;
        assert!(
            status == 200 || status == 400,
            "{query:?}: {status} {reply}"
        );
        if status == 200 {
            assert_eq!(reply["query"], query);
        }
    }
    let results = search(admin, "lockout").await;
    assert!(!results["data"].as_array().unwrap().is_empty());
    let limited = admin
        .get(
            200,
            "/v1/search/knowledge?query=the%20pump%20safety&limit=2",
        )
        .await;
    assert!(limited["data"].as_array().unwrap().len() <= 2);
    admin
        .get(400, "/v1/search/knowledge?query=pump&limit=51")
        .await;
    admin.get(400, "/v1/search/knowledge").await;
}

#[tokio::test]
async fn the_demo_knowledge_base_is_processed_and_searchable() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let collections = admin.get(200, "/v1/knowledge-collections").await;
    let collections = collections["data"].as_array().unwrap();
    assert!(collections.len() >= 2);
    let names: Vec<&str> = collections
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(names, sorted, "sorted by name");
    let items = admin.get(200, "/v1/knowledge?limit=100").await;
    let items = items["data"].as_array().unwrap();
    assert!(items.len() >= 5);
    let total: u64 = collections
        .iter()
        .map(|c| c["item_count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        total as usize,
        items
            .iter()
            .filter(|i| i["collection_id"].is_string())
            .count()
    );
    assert!(
        items
            .iter()
            .filter(|i| i["status"] == "ready")
            .all(|i| i["word_count"].as_u64().unwrap() > 50)
    );
    assert!(
        items
            .iter()
            .any(|i| i["status"] == "failed" && i["status_detail"].is_string())
    );

    let results = search(admin, "who removes the lock after lockout?").await;
    let best = &results["data"][0];
    assert!(
        best["title"].as_str().unwrap().contains("Lockout"),
        "{results}"
    );
    assert!(best["file_id"].as_str().unwrap().starts_with("kf_"));
    let scores: Vec<f64> = results["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );
}

#[tokio::test]
async fn listing_filters_by_collection_status_and_title() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let col = create_collection(admin, "Pumps").await;
    let in_col = upload(
        admin,
        json!({"title": "Pump Seal Guide", "collection_id": col["id"]}),
    )
    .await;
    let loose = upload(admin, json!({"title": "Valve guide"})).await;
    let newest = upload(admin, json!({"title": "ÉCLAIRAGE notes"})).await;
    let list = |query: &'static str| admin.get(200, query);
    assert_eq!(
        hit_ids_of_items(&list("/v1/knowledge").await),
        vec![id(&newest), id(&loose), id(&in_col)]
    );
    let by_col = format!("/v1/knowledge?collection_id={}", id(&col));
    assert_eq!(
        hit_ids_of_items(&admin.get(200, &by_col).await),
        vec![id(&in_col)]
    );
    assert_eq!(
        hit_ids_of_items(&list("/v1/knowledge?q=GUIDE").await),
        vec![id(&loose), id(&in_col)]
    );
    assert_eq!(
        hit_ids_of_items(&list("/v1/knowledge?q=%C3%A9clairage").await),
        vec![id(&newest)]
    );
    assert_eq!(list("/v1/knowledge?status=ready").await["data"], json!([]));

    let first = list("/v1/knowledge?limit=2").await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = admin
        .get(200, &format!("/v1/knowledge?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(hit_ids_of_items(&second), vec![id(&in_col)]);
    assert_eq!(second["next_cursor"], Value::Null);
    admin.get(400, "/v1/knowledge?status=done").await;
    admin.get(404, "/v1/knowledge/kn_0000000000000000").await;
}

#[tokio::test]
async fn file_metadata_updates_keep_the_content() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let item = upload(admin, text_item("Doc", "old.txt", b"body")).await;
    let other = upload(admin, text_item("Other", "o.txt", b"o")).await;
    let file_id = item["files"][0]["id"].as_str().unwrap();
    let path = format!("/v1/knowledge/{}/files/{file_id}", id(&item));
    let updated = admin
        .patch(
            200,
            &path,
            json!({"filename": "new.txt", "description": "renamed"}),
        )
        .await;
    assert_eq!(updated["filename"], "new.txt");
    assert_eq!(updated["description"], "renamed");
    assert_eq!(updated["sha256"], item["files"][0]["sha256"]);
    assert_eq!(updated["status"], "pending");
    let fetched = admin
        .get(200, &format!("/v1/knowledge/{}", id(&item)))
        .await;
    assert_eq!(fetched["files"][0], updated);
    let cleared = admin.patch(200, &path, json!({"description": ""})).await;
    assert_eq!(
        (
            cleared["filename"].as_str(),
            cleared["description"].as_str()
        ),
        (Some("new.txt"), Some(""))
    );

    let foreign = format!("/v1/knowledge/{}/files/{file_id}", id(&other));
    admin
        .patch(404, &foreign, json!({"filename": "x.txt"}))
        .await;
    let missing = format!("/v1/knowledge/{}/files/kf_0000000000000000", id(&item));
    admin
        .patch(404, &missing, json!({"filename": "x.txt"}))
        .await;
    admin
        .patch(400, &path, json!({"filename": "a/b.txt"}))
        .await;
}

#[tokio::test]
async fn deleting_an_item_removes_it_from_search_and_its_collection() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let col = create_collection(admin, "Temp").await;
    let col_path = format!("/v1/knowledge-collections/{}", id(&col));
    let item = upload(admin, json!({"title": "Ephemeral", "collection_id": col["id"], "files": [file("e.txt", "text/plain", b"the vanishing gizmo")]})).await;
    let kn = id(&item);
    process(admin, &kn).await;
    settled(admin, &kn).await;
    assert_eq!(hit_ids(&search(admin, "gizmo").await), vec![kn.clone()]);
    assert_eq!(admin.get(200, &col_path).await["item_count"], 1);

    let path = format!("/v1/knowledge/{kn}");
    assert_eq!(
        admin.delete(200, &path).await,
        json!({"id": kn, "deleted": true})
    );
    admin.get(404, &path).await;
    admin.delete(404, &path).await;
    assert_eq!(search(admin, "gizmo").await["data"], json!([]));
    assert_eq!(admin.get(200, &col_path).await["item_count"], 0);
}

#[tokio::test]
async fn collections_have_unique_names_and_page_by_name() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let post =
        |body: Value| sandbox.call(ADMIN_KEY, "POST", "/v1/knowledge-collections", Some(body));
    let (status, pumps) = post(json!({"name": "Pumps", "description": "All pumps"})).await;
    assert_eq!(status, 201);
    assert!(id(&pumps).starts_with("col_"));
    assert_eq!(
        (pumps["item_count"].as_u64(), pumps["description"].as_str()),
        (Some(0), Some("All pumps"))
    );
    let (status, reply) = post(json!({"name": "pUMPS"})).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    let (_, alpha) = post(json!({"name": "alpha"})).await;
    let (_, zulu) = post(json!({"name": "Zulu"})).await;
    assert_eq!(post(json!({"name": ""})).await.0, 400);

    let path = format!("/v1/knowledge-collections/{}", id(&pumps));
    assert_eq!(admin.get(200, &path).await, pumps);
    admin
        .get(404, "/v1/knowledge-collections/col_0000000000000000")
        .await;

    let mut seen = Vec::new();
    let mut next = "/v1/knowledge-collections?limit=1".to_string();
    loop {
        let page = admin.get(200, &next).await;
        seen.extend(hit_ids_of_items(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => next = format!("/v1/knowledge-collections?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, vec![id(&alpha), id(&pumps), id(&zulu)]);
    admin
        .get(400, "/v1/knowledge-collections?cursor=bm9wZQ")
        .await;

    let renamed = admin
        .patch(200, &path, json!({"name": "Pumps & valves"}))
        .await;
    assert_eq!(
        (renamed["name"].as_str(), renamed["description"].as_str()),
        (Some("Pumps & valves"), Some("All pumps"))
    );
    admin
        .patch(200, &path, json!({"name": "PUMPS & VALVES"}))
        .await;
    let reply = admin.patch(409, &path, json!({"name": "ZULU"})).await;
    assert_eq!(reply["error"]["code"], "conflict");
    admin
        .patch(
            404,
            "/v1/knowledge-collections/col_0000000000000000",
            json!({"name": "x"}),
        )
        .await;
    let reader = sandbox.key_with(&["read:knowledge"]).await;
    sandbox
        .as_key(&reader)
        .patch(403, &path, json!({"name": "x"}))
        .await;
}

#[tokio::test]
async fn a_collection_with_items_is_deleted_only_with_force() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let col = create_collection(admin, "Busy").await;
    let path = format!("/v1/knowledge-collections/{}", id(&col));
    let item = upload(
        admin,
        json!({"title": "Member", "collection_id": col["id"]}),
    )
    .await;
    let reply = admin.delete(409, &path).await;
    assert_eq!(reply["error"]["code"], "conflict");
    admin.delete(409, &format!("{path}?force=false")).await;
    let gone = admin.delete(200, &format!("{path}?force=true")).await;
    assert_eq!(gone, json!({"id": id(&col), "deleted": true}));
    admin.get(404, &path).await;
    admin.delete(404, &path).await;
    let kept = admin
        .get(200, &format!("/v1/knowledge/{}", id(&item)))
        .await;
    assert_eq!(
        kept["collection_id"],
        Value::Null,
        "items are moved out, never deleted"
    );

    let empty = create_collection(admin, "Empty").await;
    admin
        .delete(200, &format!("/v1/knowledge-collections/{}", id(&empty)))
        .await;
}

#[tokio::test]
async fn an_item_the_worker_keeps_failing_on_is_marked_failed_without_holding_back_others() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let stuck = upload(admin, text_item("Stuck", "a.txt", b"alpha bravo charlie")).await;
    let fine = upload(admin, text_item("Fine", "b.txt", SOP.as_bytes())).await;
    // A fault of the sandbox, not of the file: every write making `stuck` ready fails.
    sandbox.sql(
        &format!(
            "CREATE TRIGGER poison BEFORE UPDATE ON objects
             WHEN NEW.id = '{}' AND json_extract(NEW.body, '$.status') = 'ready'
             BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END",
            id(&stuck)
        ),
        [],
    );
    // The older item first, so that it is ahead of the other in the worker's queue.
    process(admin, &id(&stuck)).await;
    process(admin, &id(&fine)).await;

    let ready = settled(admin, &id(&fine)).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(hit_ids(&search(admin, "quixotronic").await), [id(&fine)]);
    let failed = settled(admin, &id(&stuck)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["status_detail"]
            .as_str()
            .unwrap()
            .contains("failed to process"),
        "{failed}"
    );
    assert_eq!(failed["files"][0]["status"], "failed");
    assert_eq!(failed["chunk_count"], 0);
}
