//! The `trainar-mcp` command: parses the command line and wires the library together.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use trainar_mcp::catalogue::Catalogue;
use trainar_mcp::diff;
use trainar_mcp::gateway::{Gateway, GatewayConfig, ServerOptions};
use trainar_mcp::mcp::core::CoreOptions;
use trainar_mcp::mcp::presentation::Presentation;
use trainar_mcp::mcp::selection::Selection;
use trainar_mcp::replicas::RedisOptions;
use trainar_mcp::sandbox;
use trainar_mcp::server;
use trainar_mcp::telemetry;
use trainar_mcp::transport;
use trainar_mcp::upstream::UpstreamOptions;

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
    /// Run the MCP server (SSE on /sse, Streamable HTTP on /mcp). Without --upstream it starts
    /// the embedded sandbox on a loopback port and serves that.
    Serve(Box<ServeArgs>),
    /// Speak MCP on stdin/stdout, for clients that launch a command. The key comes from
    /// TRAINAR_API_KEY (without --upstream, the embedded sandbox's admin key may be used).
    Stdio(Box<StdioArgs>),
    /// Run the embedded sandbox: a stateful TrainAR REST API over SQLite, on its own.
    Sandbox(SandboxArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Where to listen.
    #[arg(long, env = "TRAINAR_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The URL clients reach this server at, if it differs from the listen address (behind a
    /// proxy); used in printed configuration and the SSE endpoint event.
    #[arg(long, env = "TRAINAR_PUBLIC_URL")]
    public_url: Option<String>,
    /// The OAuth authorization server that issues access tokens for this server (its issuer
    /// URL), named in the protected-resource metadata; clients that sign in (claude.ai,
    /// ChatGPT) go there. Without --upstream it is the embedded sandbox's; with --upstream and
    /// without it, only `tak_` keys are accepted.
    #[arg(long, env = "TRAINAR_AUTHORIZATION_SERVER", value_parser = parse_upstream)]
    authorization_server: Option<String>,
    #[command(flatten)]
    gateway: GatewayArgs,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "TRAINAR_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Browser origins allowed besides localhost (comma-separated, exact scheme://host[:port]).
    #[arg(long, env = "TRAINAR_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Concurrent sessions one key may hold.
    #[arg(long, env = "TRAINAR_SESSIONS_PER_KEY", default_value_t = 16)]
    sessions_per_key: usize,
    /// Requests per minute one key may make.
    #[arg(long, env = "TRAINAR_RATE_LIMIT_PER_MINUTE", default_value_t = 600)]
    rate_limit_per_minute: u32,
    /// Seconds without activity after which a session ends.
    #[arg(long, env = "TRAINAR_IDLE_TIMEOUT_SECS", default_value_t = 1800)]
    idle_timeout_secs: u64,
    /// Share sessions, SSE routing and per-key limits with other replicas through this Redis
    /// (`redis://[:password@]host:port[/db]`, or `rediss://` for TLS). Without it, everything
    /// stays in this process.
    #[arg(long = "redis", env = "TRAINAR_REDIS_URL", value_parser = parse_redis_url)]
    redis_url: Option<String>,
    /// Serve Prometheus metrics on `/metrics` at this address (a listener of its own, so that
    /// metrics are never public by accident). Off by default.
    #[arg(long, env = "TRAINAR_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Most messages one JSON-RPC batch (protocol 2025-03-26) may hold; each counts against the
    /// rate limit.
    #[arg(long, env = "TRAINAR_MAX_BATCH", default_value_t = 50)]
    max_batch: usize,
    /// Seconds a request's headers may take to arrive; also how long an idle keep-alive
    /// connection is kept.
    #[arg(long, env = "TRAINAR_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    header_timeout_secs: u64,
    /// Seconds a request's body may take to arrive.
    #[arg(long, env = "TRAINAR_BODY_TIMEOUT_SECS", default_value_t = 30)]
    body_timeout_secs: u64,
    /// Open connections one client address may hold (SSE streams included); past it, 503.
    #[arg(long, env = "TRAINAR_MAX_CONNECTIONS_PER_IP", default_value_t = 512)]
    max_connections_per_ip: usize,
    /// Open connections in all; past it, 503.
    #[arg(long, env = "TRAINAR_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Threads that serve connections, each with its own event loop and upstream pool; a
    /// connection stays on one. Default: one per CPU.
    #[arg(long, env = "TRAINAR_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Behind a proxy: the header it appends each client's address to (e.g. X-Forwarded-For),
    /// so that per-client limits apply to clients, not to the proxy. Only set it when every
    /// request comes through such a proxy.
    #[arg(long, env = "TRAINAR_CLIENT_IP_HEADER")]
    client_ip_header: Option<String>,
    /// How long one exchange with Redis may take before the request gets 503, in milliseconds.
    #[arg(long, env = "TRAINAR_REDIS_TIMEOUT_MS", default_value_t = 500)]
    redis_timeout_ms: u64,
}

/// Where the embedded sandbox keeps its data unless told: one place per user, whatever the working
/// directory, so that `serve`, `stdio` (launched by a client from anywhere) and `sandbox` share one
/// tenant and its keys. `$XDG_DATA_HOME/trainar-mcp`, else `~/.local/share/trainar-mcp`.
fn default_data_dir() -> PathBuf {
    let from = |variable: &str| std::env::var_os(variable).filter(|v| !v.is_empty());
    match (from("XDG_DATA_HOME"), from("HOME")) {
        (Some(data), _) => PathBuf::from(data).join("trainar-mcp"),
        (None, Some(home)) => PathBuf::from(home).join(".local/share/trainar-mcp"),
        (None, None) => PathBuf::from("trainar-data"),
    }
}

/// Checks `--upstream` when it is parsed: an http(s) URL with a host. The spec's paths start with
/// `/v1`, so a base URL ending in it (as the sandbox's banner prints) is taken without it.
fn parse_upstream(url: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(format!(
            "`{trimmed}` has no scheme; write the API's base URL with http:// or https://, \
             e.g. https://api.trainar.ai"
        ));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!(
            "`{trimmed}`: the upstream is reached over http:// or https://, not {scheme}://"
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("`{trimmed}` names no host"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!(
            "`{trimmed}`: give the API's base URL without a query or fragment"
        ));
    }
    Ok(trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_string())
}

/// Checks a `--redis` URL at start, so a typo is refused at once and not on the first request.
fn parse_redis_url(url: &str) -> Result<String, String> {
    redis::Client::open(url).map_err(|e| {
        format!(
            "{e} (expected redis://[:password@]host:port[/db] or rediss://…; got {})",
            trainar_mcp::replicas::redis::redacted(url)
        )
    })?;
    Ok(url.to_string())
}

/// What `serve` and `stdio` share: the upstream, tool selection, and per-call limits.
#[derive(Args)]
struct GatewayArgs {
    /// The TrainAR API to serve (e.g. https://api.trainar.ai). Without it: the embedded sandbox.
    #[arg(long, env = "TRAINAR_UPSTREAM", value_parser = parse_upstream)]
    upstream: Option<String>,
    /// A PEM file of CA certificates to trust for an HTTPS upstream, besides the system's (an
    /// internal CA, say). `SSL_CERT_FILE` works too.
    #[arg(long, env = "TRAINAR_UPSTREAM_CA_FILE")]
    upstream_ca_file: Option<PathBuf>,
    /// The embedded sandbox's data directory (ignored with --upstream).
    #[arg(long, env = "TRAINAR_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// Offer only these categories (comma-separated, e.g. tasks,knowledge).
    #[arg(long, env = "TRAINAR_TOOLSETS")]
    toolsets: Option<String>,
    /// Offer only these tools (comma-separated).
    #[arg(long, env = "TRAINAR_TOOLS")]
    tools: Option<String>,
    /// Offer only read-only tools.
    #[arg(long, env = "TRAINAR_READ_ONLY")]
    read_only: bool,
    /// tools/list shows every selected tool, with its required scopes in `_meta`, even those the
    /// key may not call (calls are still refused).
    #[arg(long, env = "TRAINAR_LIST_ALL_TOOLS")]
    list_all_tools: bool,
    /// Seconds a tool call may take upstream before it fails.
    #[arg(long, env = "TRAINAR_CALL_TIMEOUT_SECS", default_value_t = 30)]
    call_timeout_secs: u64,
    /// Seconds a resolved key is cached (max 30 recommended: revocation takes this long).
    #[arg(long, env = "TRAINAR_AUTH_CACHE_SECS", default_value_t = 30)]
    auth_cache_secs: u64,
    /// Results longer than this many bytes of text are truncated with a notice.
    #[arg(long, env = "TRAINAR_MAX_RESULT_BYTES", default_value_t = 100_000)]
    max_result_bytes: usize,
    /// tools/list page size.
    #[arg(long, env = "TRAINAR_TOOLS_PAGE_SIZE", default_value_t = 100)]
    tools_page_size: usize,
    /// Longest response body read from the API, in bytes; a longer one is a tool error, and is
    /// never held whole.
    #[arg(long, env = "TRAINAR_MAX_UPSTREAM_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    max_upstream_body_bytes: usize,
    /// Idle connections to the API kept open, about this many in all: each thread's pool keeps
    /// its share, rounded up (0: none kept, every call opens its own).
    #[arg(long, env = "TRAINAR_UPSTREAM_POOL_IDLE", default_value_t = 64)]
    upstream_pool_idle: usize,
    /// Seconds an idle connection to the API is kept (at least 1: with 0 none would be reused).
    #[arg(
        long,
        env = "TRAINAR_UPSTREAM_POOL_IDLE_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    upstream_pool_idle_secs: u64,
    /// The dialect of inputSchemas: full JSON Schema, or what OpenAI's strict mode or Gemini's
    /// function declarations accept (a connection may choose another with `?schema=`).
    #[arg(
        long = "schema",
        env = "TRAINAR_SCHEMA",
        value_name = "full|openai|gemini"
    )]
    schema_dialect: Option<String>,
    /// tools/list leaves out outputSchema (a connection may choose with `?lean=`).
    #[arg(long, env = "TRAINAR_LEAN")]
    lean: bool,
    /// `search`: tools/list offers only `search_tools` and `call_tool`, which find and call the
    /// others (a connection may choose with `?discovery=`).
    #[arg(long, env = "TRAINAR_DISCOVERY", value_name = "direct|search")]
    discovery: Option<String>,
    /// Append one JSON line per tool call to this file (who, which tool, argument names, outcome,
    /// duration, trace id; never a secret or an argument's value). Reopened on SIGHUP.
    #[arg(long, env = "TRAINAR_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
}

#[derive(Args)]
struct StdioArgs {
    #[command(flatten)]
    gateway: GatewayArgs,
}

/// The upstream a gateway talks to: the given URL, or an embedded sandbox started for it.
struct ResolvedUpstream {
    url: String,
    first_start: Option<sandbox::FirstStart>,
    embedded: Option<tokio::task::JoinHandle<()>>,
}

impl GatewayArgs {
    async fn upstream(&self) -> Result<ResolvedUpstream, String> {
        match &self.upstream {
            Some(url) => Ok(ResolvedUpstream {
                url: url.clone(),
                first_start: None,
                embedded: None,
            }),
            None => {
                let (url, first_start, task) =
                    sandbox::spawn_embedded(embedded_config(&self.data_dir)).await?;
                Ok(ResolvedUpstream {
                    url,
                    first_start,
                    embedded: Some(task),
                })
            }
        }
    }

    fn config(&self, server: ServerOptions) -> Result<GatewayConfig, String> {
        let mut selection = Selection::parse(
            self.toolsets.as_deref(),
            self.tools.as_deref(),
            self.read_only,
        )?;
        selection.presentation = Presentation::parse(|name| match name {
            "schema" => self.schema_dialect.as_deref(),
            "lean" => self.lean.then_some("true"),
            "discovery" => self.discovery.as_deref(),
            _ => None,
        })?;
        Ok(GatewayConfig {
            core: CoreOptions {
                list_all_tools: self.list_all_tools,
                selection,
                max_result_bytes: self.max_result_bytes.max(1024),
                page_size: self.tools_page_size.max(1),
            },
            server,
            upstream: UpstreamOptions {
                timeout: Duration::from_secs(self.call_timeout_secs.max(1)),
                pool_idle_per_host: self.upstream_pool_idle,
                pool_idle_timeout: Duration::from_secs(self.upstream_pool_idle_secs),
                max_body_bytes: self.max_upstream_body_bytes.max(1024),
                extra_ca_pem: match &self.upstream_ca_file {
                    Some(path) => Some(std::fs::read(path).map_err(|e| {
                        format!("cannot read --upstream-ca-file {}: {e}", path.display())
                    })?),
                    None => None,
                },
            },
            auth_cache_ttl: Duration::from_secs(self.auth_cache_secs),
            audit_log: self.audit_log.clone(),
        })
    }
}

#[derive(Args)]
struct SandboxArgs {
    #[command(subcommand)]
    command: Option<SandboxCommand>,
    /// Where to listen.
    #[arg(long, env = "TRAINAR_SANDBOX_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    #[command(flatten)]
    store: SandboxStoreArgs,
    /// First start only: `demo` seeds a realistic tenant, `none` only the tenant and its admin key.
    #[arg(long, env = "TRAINAR_SANDBOX_SEED", default_value = "demo")]
    seed: SeedMode,
    /// The largest request body accepted, in bytes (larger is 413).
    #[arg(long, env = "TRAINAR_SANDBOX_MAX_BODY_BYTES", default_value_t = 50 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Let webhooks reach loopback and private addresses, for local testing only (link-local and
    /// metadata addresses stay refused). Off: a public sandbox refuses them.
    #[arg(long, env = "TRAINAR_SANDBOX_ALLOW_PRIVATE_WEBHOOKS")]
    allow_private_webhooks: bool,
    /// Each tenant's sustained requests per second (bursts of 5 seconds' worth); then 429.
    #[arg(
        long,
        env = "TRAINAR_SANDBOX_TENANT_REQUESTS_PER_SECOND",
        default_value_t = 100.0
    )]
    tenant_requests_per_second: f64,
    /// Each tenant's sustained milliseconds of server work per second (bursts of 12 seconds'
    /// worth); then 429.
    #[arg(
        long,
        env = "TRAINAR_SANDBOX_TENANT_WORK_MS_PER_SECOND",
        default_value_t = 250.0
    )]
    tenant_work_ms_per_second: f64,
}

#[derive(Args)]
struct SandboxStoreArgs {
    /// The sandbox's data directory (SQLite database).
    #[arg(
        long,
        env = "TRAINAR_DATA_DIR",
        default_value_os_t = default_data_dir(),
        global = true
    )]
    data_dir: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SeedMode {
    Demo,
    None,
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Manage the sandbox's tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API keys (for a lost key: no other key is needed).
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Mint a key for a tenant of this data directory and print it once.
    Create {
        /// The key's scopes, comma-separated (default: every scope).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// The key's name.
        #[arg(long, default_value = "Key from the command line")]
        name: String,
        /// The tenant's id (default: the first tenant, the demo one).
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Add a tenant (with only its admin key) and print that key once.
    Create {
        /// The tenant's display name.
        name: String,
    },
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// List the tools this build serves: name, category, required scopes, read-only.
    List {
        /// Print the catalogue exactly as MCP `tools/list` shows it (all tools), as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What each way of listing the catalogue costs a model (bytes and o200k_base tokens), and
    /// how many inputSchemas meet OpenAI's strict rules and Gemini's subset in each dialect.
    Stats,
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

/// With `--features dhat-heap`, every allocation is counted; the profile is written when `main`
/// returns (after a graceful shutdown), with what was still live at the end.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// mimalloc: its fast paths cost a fraction of glibc's malloc and free, which were about a sixth
/// of the gateway's instructions per tool call (146.9k → 133.5k per get_task, callgrind); RSS per
/// idle SSE session is unchanged (14.5 KiB at 5,000 sessions).
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    let cli = Cli::parse();
    match cli.command {
        Command::Tools(ToolsCommand::List { json }) => {
            print!("{}", if json { tools_json() } else { tools_table() });
            ExitCode::SUCCESS
        }
        Command::Tools(ToolsCommand::Diff(args)) => tools_diff(&args),
        Command::Tools(ToolsCommand::Stats) => {
            let listings = trainar_mcp::stats::listings();
            let counts = trainar_mcp::stats::dialect_counts();
            print!("{}", trainar_mcp::stats::to_text(&listings, &counts));
            ExitCode::SUCCESS
        }
        Command::Serve(args) => run_serve(*args),
        Command::Stdio(args) => run_stdio(*args),
        Command::Sandbox(args) => run_sandbox(args),
    }
}

/// The admin key a script or test fixes in advance, instead of a random one.
const ADMIN_KEY_ENV: &str = "TRAINAR_SANDBOX_ADMIN_KEY";

fn run_sandbox(args: SandboxArgs) -> ExitCode {
    let _log = trainar_mcp::logging::init();
    let mut config = sandbox::Config::new(&args.store.data_dir);
    config.max_body_bytes = args.max_body_bytes;
    config.demo_seed = matches!(args.seed, SeedMode::Demo);
    config.allow_private_webhooks = args.allow_private_webhooks;
    config.limits = sandbox::limits::Limits::per_second(
        args.tenant_requests_per_second,
        args.tenant_work_ms_per_second,
    );
    config.admin_key = std::env::var(ADMIN_KEY_ENV).ok().filter(|k| !k.is_empty());
    if let Some(SandboxCommand::Key(KeyCommand::Create {
        scopes,
        name,
        tenant,
    })) = &args.command
    {
        return match sandbox::create_key(&config, tenant.as_deref(), name, scopes) {
            Ok((tenant_id, tenant_name, key)) => {
                println!("key for tenant {tenant_id} ({tenant_name}), shown once:");
                println!("{key}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    if let Some(SandboxCommand::Tenant(TenantCommand::Create { name })) = args.command {
        return match sandbox::create_tenant(&config, &name) {
            Ok((tenant_id, key)) => {
                println!("tenant {tenant_id} ({name}) created");
                println!("admin key (shown once): {key}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    let (sandbox, first) = match sandbox::Sandbox::open(config) {
        Ok(opened) => opened,
        Err(e) => return fail(&e),
    };
    if let Some(first) = &first {
        println!("created tenant {} ({})", first.tenant_id, first.tenant_name);
        println!(
            "admin key (shown once, holds every scope): {}",
            first.admin_key
        );
    }
    block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(e) => return fail(&format!("cannot listen on {}: {e}", args.listen)),
        };
        let url = format!(
            "http://{}",
            listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        println!(
            "TrainAR sandbox API listening on {url}/v1 (data: {})",
            args.store.data_dir.display()
        );
        match sandbox.serve(listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("the sandbox stopped: {e}")),
        }
    })
}

fn run_serve(args: ServeArgs) -> ExitCode {
    let _log = trainar_mcp::logging::init();
    let server_options = ServerOptions {
        allowed_origins: args
            .allowed_origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_string())
            .collect(),
        sessions_per_key: args.sessions_per_key.max(1),
        requests_per_minute: args.rate_limit_per_minute.max(1),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs.max(1)),
        max_body_bytes: args.max_body_bytes,
        public_url: args.public_url.clone(),
        redis: args.redis_url.clone().map(|url| RedisOptions {
            url,
            timeout: Duration::from_millis(args.redis_timeout_ms.max(1)),
        }),
        max_batch: args.max_batch.max(1),
        header_read_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
        body_read_timeout: Duration::from_secs(args.body_timeout_secs.max(1)),
        max_connections_per_ip: args.max_connections_per_ip.max(1),
        max_connections: args.max_connections.max(1),
        lanes: args
            .threads
            .map_or_else(trainar_mcp::gateway::default_lanes, usize::from),
        client_ip_header: args.client_ip_header.clone(),
        authorization_server: args.authorization_server.clone(),
    };
    let mut config = match args.gateway.config(server_options) {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    block_on(async move {
        // Before anything records: a recorder installed later would miss the first events.
        let metrics = match args.metrics_listen {
            Some(address) => match start_metrics(address).await {
                Ok(local) => Some(local),
                Err(e) => return fail(&e),
            },
            None => None,
        };
        let upstream = match args.gateway.upstream().await {
            Ok(upstream) => upstream,
            Err(e) => return fail(&e),
        };
        if upstream.embedded.is_some() && config.server.authorization_server.is_none() {
            // The embedded sandbox plays TrainAR's authorization server too.
            config.server.authorization_server = Some(upstream.url.clone());
        }
        let gateway = match Gateway::build(&upstream.url, config) {
            Ok(gateway) => gateway,
            Err(e) => return fail(&e),
        };
        reopen_audit_log_on_sighup(&gateway);
        if let Some(local) = metrics {
            println!("Prometheus metrics on http://{local}/metrics");
        }
        // Started anyway (the API may come up later, and /readyz says so meanwhile), but loudly.
        if let Err(problem) = gateway.upstream.probe().await {
            eprintln!("warning: {problem}; MCP requests will get 503 until it answers");
        }
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(e) => return fail(&format!("cannot listen on {}: {e}", args.listen)),
        };
        let local = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let base = args
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}"));
        print_banner(
            &base,
            &upstream.url,
            upstream.embedded.is_some(),
            upstream.first_start.as_ref(),
        );
        let audit = gateway.audit.clone();
        let result = server::serve(listener, gateway, shutdown_signal()).await;
        // Calls that ended during shutdown are in the log before the process exits.
        if let Some(audit) = audit {
            audit.flush();
        }
        if let Some(task) = upstream.embedded {
            task.abort();
        }
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("the server stopped: {e}")),
        }
    })
}

/// Installs the recorder and serves `/metrics` on `address`; returns the bound address.
async fn start_metrics(address: SocketAddr) -> Result<SocketAddr, String> {
    let listener = telemetry::bind(address).await?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let handle = telemetry::install()?;
    telemetry::spawn_upkeep(handle.clone());
    tokio::spawn(async move {
        if let Err(e) = telemetry::serve(listener, handle).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(local)
}

/// logrotate moves the audit log and sends SIGHUP: the file is then reopened at its path.
fn reopen_audit_log_on_sighup(gateway: &trainar_mcp::gateway::SharedGateway) {
    let Some(audit) = gateway.audit.clone() else {
        return;
    };
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::info!("SIGHUP: reopening the audit log");
                    audit.reopen();
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the audit log will not be reopened")
        }
    }
}

/// The environment variable that carries the key for `stdio` (never a flag: flags show in `ps`).
const API_KEY_ENV: &str = "TRAINAR_API_KEY";

fn run_stdio(args: StdioArgs) -> ExitCode {
    let _log = trainar_mcp::logging::init();
    let config = match args.gateway.config(ServerOptions::default()) {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    block_on(async move {
        let upstream = match args.gateway.upstream().await {
            Ok(upstream) => upstream,
            Err(e) => return fail(&e),
        };
        let embedded_key = upstream
            .first_start
            .as_ref()
            .map(|first| first.admin_key.clone())
            .or_else(|| {
                upstream
                    .embedded
                    .as_ref()
                    .and_then(|_| std::env::var(ADMIN_KEY_ENV).ok())
            });
        let Some(key) = std::env::var(API_KEY_ENV)
            .ok()
            .filter(|k| !k.is_empty())
            .or(embedded_key)
        else {
            return fail(&format!(
                "set {API_KEY_ENV}=tak_… (the key the MCP client acts as)"
            ));
        };
        if let Some(first) = &upstream.first_start {
            eprintln!(
                "created demo tenant {}; its admin key (shown once): {}",
                first.tenant_name, first.admin_key
            );
        }
        let gateway = match Gateway::build(&upstream.url, config) {
            Ok(gateway) => gateway,
            Err(e) => return fail(&e),
        };
        reopen_audit_log_on_sighup(&gateway);
        let audit = gateway.audit.clone();
        let result =
            transport::stdio::serve(gateway, &key, tokio::io::stdin(), tokio::io::stdout()).await;
        if let Some(audit) = audit {
            audit.flush();
        }
        let embedded = upstream.embedded.is_some();
        if let Some(task) = upstream.embedded {
            task.abort();
        }
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if embedded && e.kind() == std::io::ErrorKind::PermissionDenied => {
                fail(&format!(
                    "stdio: {e}. The embedded sandbox keeps its tenants in {}: use a key printed for \
                 that data directory (by `trainar-mcp serve` on its first start, or `trainar-mcp \
                 sandbox key create`), or pass --data-dir",
                    args.gateway.data_dir.display()
                ))
            }
            Err(e) => fail(&format!("stdio: {e}")),
        }
    })
}

fn embedded_config(data_dir: &std::path::Path) -> sandbox::Config {
    let mut config = sandbox::Config::new(data_dir);
    config.admin_key = std::env::var(ADMIN_KEY_ENV).ok().filter(|k| !k.is_empty());
    config
}

fn print_banner(base: &str, upstream: &str, embedded: bool, first: Option<&sandbox::FirstStart>) {
    println!("trainar-mcp listening on {base}");
    println!(
        "  Streamable HTTP: {base}/mcp    SSE: {base}/sse    health: {base}/healthz, {base}/readyz"
    );
    if embedded {
        println!("  upstream: the embedded sandbox at {upstream}/v1");
    } else {
        println!("  upstream: {upstream}");
    }
    let key = match first {
        Some(first) => {
            println!(
                "\nDemo tenant {} created. Its admin key (shown once, holds every scope):",
                first.tenant_name
            );
            println!("  {}", first.admin_key);
            first.admin_key.clone()
        }
        None => {
            if embedded {
                println!(
                    "\nThe demo tenant's admin key was shown on the first start. Lost it? \
                     `trainar-mcp sandbox key create` prints a new one."
                );
            }
            "tak_your_key_here".to_string()
        }
    };
    println!(
        "\nClaude Code:\n  claude mcp add --transport http trainar {base}/mcp --header \"Authorization: Bearer {key}\""
    );
    println!("\nmcpServers entry (Claude Desktop, Cursor, …):");
    println!(
        "  {{\"mcpServers\": {{\"trainar\": {{\"url\": \"{base}/sse\", \"headers\": {{\"Authorization\": \"Bearer {key}\"}}}}}}}}"
    );
    println!("\nMCP Inspector CLI:");
    println!(
        "  npx -y -p node@22 -p @modelcontextprotocol/inspector@2.12.0 mcp-inspector --cli {base}/mcp --header \"Authorization: Bearer {key}\" --method tools/list"
    );
    println!();
}

/// Runs `work` on a multi-threaded tokio runtime.
fn block_on(work: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(work),
        Err(e) => fail(&format!("cannot start the async runtime: {e}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
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
            let scopes = tool.scope_names();
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
