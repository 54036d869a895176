//! The page at `GET /` in a real headless browser (Debian's chromium): it renders, the scope
//! filter runs in the page (`?scopes=` preselects it), and a screenshot is saved
//! (`target/front-page.png`, which CI keeps).

use crate::common::repo_root;
use crate::gateway_fixture::TestGateway;
use std::path::PathBuf;
use std::process::Command;

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("chromium is installed (apt-get install chromium; scripts/test does this as root)")
}

/// Headless, with nothing reaching out of the machine (the page needs nothing from outside).
fn headless(profile: &std::path::Path) -> Command {
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_page_renders_and_filters_by_scope_in_a_real_browser() {
    let gateway = TestGateway::demo(|_| {}).await;
    let profile = crate::sandbox_fixture::fresh_dir("chromium");
    let url = format!("{}/?scopes=read:tasks", gateway.url);
    let dump = {
        let mut command = headless(&profile);
        command.args(["--virtual-time-budget=3000", "--dump-dom", &url]);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    };
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dom = String::from_utf8_lossy(&dump.stdout);
    let article = |name: &str| {
        let start = dom
            .find(&format!("id=\"{name}\""))
            .unwrap_or_else(|| panic!("{name} is on the page"));
        let open = dom[..start].rfind("<article").unwrap();
        dom[open..start].to_string() + &dom[start..start + 200]
    };
    // The script ran: read:tasks can call list_tasks and get_task, nothing that writes.
    assert!(
        !article("list_tasks").contains("hidden"),
        "{}",
        article("list_tasks")
    );
    assert!(!article("get_task").contains("hidden"));
    assert!(
        article("create_task").contains("hidden"),
        "{}",
        article("create_task")
    );
    assert!(article("list_users").contains("hidden"));
    assert!(
        dom.contains("2 tools callable with read:tasks"),
        "the filter says what it shows"
    );
    assert!(
        dom.contains(&format!("{}/mcp", gateway.url)),
        "the connection details name this server"
    );

    let screenshot = repo_root().join("target/front-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut command = headless(&profile);
    command
        .args(["--window-size=1280,1600", "--virtual-time-budget=3000"])
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(&gateway.url);
    let shot = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}
