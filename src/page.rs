//! The page a person sees at `GET /`: how to connect (the configuration the banner prints, with
//! copy buttons) and the catalogue as the spec describes it: categories, each tool's description,
//! arguments with types and constraints, required scopes, read-only or destructive. A filter by
//! scope shows what a key holding those scopes can call (`/?scopes=read:tasks` preselects).
//!
//! Invariant: everything comes from the generated catalogue and scope table, and the page loads
//! nothing from elsewhere (it works offline).

use crate::catalogue::{Catalogue, Tool};
use crate::generated::api::Scope;
use serde_json::{Value, json};
use std::fmt::Write;
use std::sync::LazyLock;

/// The catalogue part of the page, built once.
static CATALOGUE_HTML: LazyLock<String> = LazyLock::new(catalogue_html);

/// The whole page for a server reached at `base` (e.g. `http://127.0.0.1:8080`).
pub fn index(base: &str) -> String {
    let key = "tak_your_key_here";
    let configurations = [
        (
            "Claude Code",
            format!(
                "claude mcp add --transport http trainar {base}/mcp --header \"Authorization: Bearer {key}\""
            ),
        ),
        (
            "Claude Desktop, Cursor, n8n (SSE)",
            format!(
                "{{\"mcpServers\": {{\"trainar\": {{\"url\": \"{base}/sse\", \"headers\": {{\"Authorization\": \"Bearer {key}\"}}}}}}}}"
            ),
        ),
        (
            "MCP Inspector CLI",
            format!(
                "npx -y -p node@22 -p @modelcontextprotocol/inspector@2.12.0 mcp-inspector --cli {base}/mcp --header \"Authorization: Bearer {key}\" --method tools/list"
            ),
        ),
        (
            "A client that launches a command (after cargo install --path .)",
            format!(
                "{{\"command\": \"trainar-mcp\", \"args\": [\"stdio\"], \"env\": {{\"TRAINAR_API_KEY\": \"{key}\"}}}}"
            ),
        ),
    ];
    let mut connect = String::new();
    for (client, configuration) in configurations {
        let _ = write!(
            connect,
            "<div class=\"config\"><h3>{}</h3><pre><code>{}</code></pre>\
             <button type=\"button\" class=\"copy\" data-copy=\"{}\">Copy</button></div>",
            escape(client),
            escape(&configuration),
            escape(&configuration)
        );
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>TrainAR MCP server</title><style>{STYLE}</style></head><body>\
         <header><h1>TrainAR MCP server</h1><p>The TrainAR Tenant API as {count} MCP tools. \
         Streamable HTTP at <code>{base}/mcp</code>, legacy SSE at <code>{base}/sse</code>; \
         every request needs <code>Authorization: Bearer tak_…</code>, and a key's scopes decide \
         what it may call.</p></header>\
         <section id=\"connect\"><h2>Connect</h2>{connect}</section>{catalogue}\
         <script>{SCRIPT}</script></body></html>",
        count = Catalogue::get().tools().len(),
        base = escape(base),
        catalogue = *CATALOGUE_HTML,
    )
}

fn catalogue_html() -> String {
    let catalogue = Catalogue::get();
    let implied: serde_json::Map<String, Value> = Scope::ALL
        .iter()
        .map(|scope| {
            let implies: Vec<&str> = scope.implies().iter().map(|s| s.as_str()).collect();
            (scope.as_str().to_string(), json!(implies))
        })
        .collect();
    let mut html = String::from("<section id=\"catalogue\"><h2>Tools</h2>");
    let _ = write!(
        html,
        "<fieldset id=\"filter\"><legend>Show what a key holding these scopes can call \
         (none ticked: every tool)</legend>"
    );
    for scope in Scope::ALL {
        let name = scope.as_str();
        let _ = write!(
            html,
            "<label><input type=\"checkbox\" name=\"scope\" value=\"{name}\"> {name}</label>"
        );
    }
    let _ = write!(
        html,
        "<p id=\"shown\"></p></fieldset><script type=\"application/json\" id=\"implies\">{}</script>",
        serde_json::to_string(&implied).unwrap_or_default()
    );
    for category in catalogue.categories() {
        let _ = write!(
            html,
            "<section class=\"category\" data-category=\"{c}\"><h3>{words}</h3>",
            c = escape(category),
            words = escape(&category.replace('_', " "))
        );
        for tool in catalogue
            .tools()
            .iter()
            .filter(|tool| tool.category() == category)
        {
            html.push_str(&tool_html(tool));
        }
        html.push_str("</section>");
    }
    html.push_str("</section>");
    html
}

fn tool_html(tool: &Tool) -> String {
    let definition = &tool.definition;
    let scopes = tool.scope_names();
    let annotations = &definition["annotations"];
    let mut badges = String::new();
    if annotations["readOnlyHint"] == true {
        badges.push_str("<span class=\"badge read\">read-only</span>");
    }
    if annotations["destructiveHint"] == true {
        badges.push_str("<span class=\"badge destructive\">destructive</span>");
    }
    let title = definition["title"]
        .as_str()
        .or_else(|| annotations["title"].as_str())
        .unwrap_or_default();
    let mut html = format!(
        "<article class=\"tool\" id=\"{name}\" data-scopes=\"{scopes}\"><h4><code>{name}</code> \
         {title} {badges}</h4><p class=\"scopes\">Requires: {scope_list}</p><p>{description}</p>",
        name = escape(tool.name()),
        scopes = escape(&scopes.join(" ")),
        title = escape(title),
        scope_list = scopes
            .iter()
            .map(|s| format!("<code>{}</code>", escape(s)))
            .collect::<Vec<_>>()
            .join(", "),
        description = escape(definition["description"].as_str().unwrap_or_default())
            .replace("\n\n", "</p><p>"),
    );
    let schema = &definition["inputSchema"];
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let properties = schema["properties"].as_object();
    match properties {
        Some(properties) if !properties.is_empty() => {
            html.push_str(
                "<table><thead><tr><th>argument</th><th>type</th><th>constraints</th>\
                 <th>description</th></tr></thead><tbody>",
            );
            for (name, property) in properties {
                let _ = write!(
                    html,
                    "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(name),
                    if required.contains(&name.as_str()) {
                        " <span class=\"required\">required</span>"
                    } else {
                        ""
                    },
                    escape(&type_of(property)),
                    escape(&constraints(property)),
                    escape(property["description"].as_str().unwrap_or_default())
                );
            }
            html.push_str("</tbody></table>");
        }
        _ => html.push_str("<p class=\"none\">No arguments.</p>"),
    }
    html.push_str("</article>");
    html
}

fn type_of(property: &Value) -> String {
    let base = match &property["type"] {
        Value::String(one) => one.clone(),
        Value::Array(many) => many
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_string(),
    };
    match property["items"]["type"].as_str() {
        Some(item) if base == "array" => format!("array of {item}"),
        _ => base,
    }
}

/// A property's constraints in words: allowed values, bounds, pattern, format, default.
fn constraints(property: &Value) -> String {
    let mut said = Vec::new();
    if let Some(values) = property["enum"].as_array() {
        let values: Vec<String> = values.iter().map(Value::to_string).collect();
        said.push(format!("one of {}", values.join(", ")));
    }
    for (keyword, words) in [
        ("minimum", "at least"),
        ("maximum", "at most"),
        ("minLength", "at least … characters"),
        ("maxLength", "at most … characters"),
        ("minItems", "at least … items"),
        ("maxItems", "at most … items"),
    ] {
        if let Some(bound) = property.get(keyword) {
            said.push(if words.contains('…') {
                words.replace('…', &bound.to_string())
            } else {
                format!("{words} {bound}")
            });
        }
    }
    if property["uniqueItems"] == true {
        said.push("no duplicates".into());
    }
    if let Some(format) = property["format"].as_str() {
        said.push(format!("format {format}"));
    }
    if let Some(pattern) = property["pattern"].as_str() {
        said.push(format!("matches {pattern}"));
    }
    if let Some(default) = property.get("default") {
        said.push(format!("default {default}"));
    }
    said.join("; ")
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem 2rem;\
color:#1b1f24;line-height:1.45}h1{margin-bottom:.2rem}.category>h3{text-transform:capitalize}\
code{background:#f1f3f5;padding:0 .25rem;border-radius:3px}pre{background:#f1f3f5;padding:.6rem;\
overflow-x:auto;white-space:pre-wrap;word-break:break-all}.config{margin-bottom:1rem}\
.copy{cursor:pointer}#filter{display:flex;flex-wrap:wrap;gap:.3rem 1rem;border:1px solid #ccd;\
padding:.6rem;position:sticky;top:0;background:#fff}#filter legend{font-weight:600}\
#shown{width:100%;margin:.3rem 0 0;color:#555}.tool{border-top:1px solid #dde;padding:.5rem 0}\
.tool[hidden]{display:none}.badge{font-size:.75rem;padding:.1rem .4rem;border-radius:9px;margin-left:.3rem}\
.read{background:#e3f2e1}.destructive{background:#fbe3e1}.required{color:#b42318;font-size:.8rem}\
.scopes{color:#555;margin:.2rem 0}table{border-collapse:collapse;width:100%;font-size:.9rem}\
th,td{text-align:left;border-bottom:1px solid #eef;padding:.25rem .4rem;vertical-align:top}";

/// The scope filter and the copy buttons. The filter applies `?scopes=a,b` on load.
const SCRIPT: &str = r#"
const implies = JSON.parse(document.getElementById('implies').textContent);
const boxes = [...document.querySelectorAll('#filter input[name=scope]')];
function effective(held) {
  const all = new Set(held), pending = [...held];
  while (pending.length) {
    for (const next of implies[pending.pop()] || []) {
      if (!all.has(next)) { all.add(next); pending.push(next); }
    }
  }
  return all;
}
function apply() {
  const held = boxes.filter(b => b.checked).map(b => b.value);
  const have = effective(held);
  let shown = 0;
  for (const tool of document.querySelectorAll('.tool')) {
    const needs = tool.dataset.scopes.split(' ').filter(Boolean);
    const ok = held.length === 0 || needs.every(s => have.has(s));
    tool.hidden = !ok;
    if (ok) shown++;
  }
  for (const category of document.querySelectorAll('.category')) {
    category.hidden = !category.querySelector('.tool:not([hidden])');
  }
  document.getElementById('shown').textContent =
    held.length ? `${shown} tools callable with ${held.join(', ')}` : `all ${shown} tools`;
}
const preset = new URLSearchParams(location.search).get('scopes');
if (preset) {
  const wanted = preset.split(',').map(s => s.trim());
  for (const box of boxes) box.checked = wanted.includes(box.value);
}
boxes.forEach(b => b.addEventListener('change', apply));
apply();
for (const button of document.querySelectorAll('.copy')) {
  button.addEventListener('click', () => {
    navigator.clipboard.writeText(button.dataset.copy).then(
      () => { button.textContent = 'Copied'; },
      () => { button.textContent = 'Select and copy'; });
  });
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_lists_every_tool_with_its_scopes_and_escapes_what_it_shows() {
        let page = index("http://127.0.0.1:8080");
        for tool in Catalogue::get().tools() {
            assert!(
                page.contains(&format!("id=\"{}\"", tool.name())),
                "{}",
                tool.name()
            );
        }
        assert!(page.contains("data-scopes=\"read:tasks\""));
        assert!(page.contains("http://127.0.0.1:8080/mcp"));
        assert!(!page.contains("<script src"), "no external assets");
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
