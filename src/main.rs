//! The `trainar-mcp` command: parses the command line and wires the library together.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use trainar_mcp::catalogue::Catalogue;
use trainar_mcp::diff;

#[derive(Parser)]
#[command(
    name = "trainar-mcp",
    version,
    about = "The Tenant MCP server for TrainAR"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and compare tool catalogues.
    #[command(subcommand)]
    Tools(ToolsCommand),
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// List the tools this build serves: name, category, required scopes, read-only.
    List {
        /// Print the catalogue exactly as MCP `tools/list` shows it (all tools), as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Classify every change between two catalogues as breaking or compatible.
    ///
    /// Exit status: 0 when every change is compatible, 1 when any is breaking, 2 on error.
    Diff(DiffArgs),
}

#[derive(Args)]
struct DiffArgs {
    /// The catalogue before (`tools list --json` output, or a `tools/list` result).
    old: PathBuf,
    /// The catalogue after.
    new: PathBuf,
    /// Print the report as JSON, for machines.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Tools(ToolsCommand::List { json }) => {
            print!("{}", if json { tools_json() } else { tools_table() });
            ExitCode::SUCCESS
        }
        Command::Tools(ToolsCommand::Diff(args)) => tools_diff(&args),
    }
}

fn tools_json() -> String {
    // Re-serialised from the parsed catalogue so the output is exactly what tools/list carries.
    let tools: Vec<&serde_json::Value> = Catalogue::get()
        .tools()
        .iter()
        .map(|t| &t.definition)
        .collect();
    let mut text = serde_json::to_string_pretty(&tools).expect("JSON values always serialise");
    text.push('\n');
    text
}

fn tools_table() -> String {
    let tools = Catalogue::get().tools();
    let rows: Vec<[String; 4]> = tools
        .iter()
        .map(|tool| {
            let scopes: Vec<&str> = tool
                .operation
                .required_scopes()
                .iter()
                .map(|s| s.as_str())
                .collect();
            let read_only = if tool.is_read_only() { "yes" } else { "no" };
            [
                tool.name().to_string(),
                tool.category().to_string(),
                scopes.join(" "),
                read_only.to_string(),
            ]
        })
        .collect();
    let header = ["NAME", "CATEGORY", "SCOPES", "READ-ONLY"].map(String::from);
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text.push_str(&format!(
        "{} tools in {} categories\n",
        tools.len(),
        Catalogue::get().categories().len()
    ));
    text
}

fn tools_diff(args: &DiffArgs) -> ExitCode {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|text| {
                diff::parse_catalogue(&text).map_err(|e| format!("{}: {e}", path.display()))
            })
    };
    let (old, new) = match (read(&args.old), read(&args.new)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = diff::diff(&old, &new);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        );
    } else {
        print!("{}", report.to_text());
    }
    ExitCode::from(if report.is_breaking() { 1 } else { 0 })
}
