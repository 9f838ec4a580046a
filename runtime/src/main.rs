//! The `dwell` command: `serve` runs the server; the other commands are clients of a
//! running server's HTTP API.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use dwell::client::{Client, parse_duration};
use dwell::domain::{Limits, TenantId};
use dwell::engine::{Engine, EngineConfig};
use dwell::http::{HttpConfig, serve};

#[derive(Parser)]
#[command(
    name = "dwell",
    version,
    about = "A WebAssembly-hosted actor runtime for long-running processes"
)]
struct Cli {
    /// Server to talk to (client commands).
    #[arg(
        long,
        env = "DWELL_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Tenant API key (client commands). Default: `<data>/default-tenant.key`, written
    /// by `dwell serve` at first start.
    #[arg(long, env = "DWELL_KEY", global = true, hide_env_values = true)]
    key: Option<String>,
    /// Admin key. For `serve`: use this admin key (never printed) instead of generating
    /// one at first start into `<data>/admin.key`. For `tenant`/`key`: the key to send
    /// (default: `<data>/admin.key`).
    #[arg(long, env = "DWELL_ADMIN_KEY", global = true, hide_env_values = true)]
    admin_key: Option<String>,
    /// A PEM file of CA certificates to trust besides the public roots: for client
    /// commands talking to an `https://` server, and for `serve`'s outbound calls and
    /// callbacks.
    #[arg(long, env = "DWELL_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Upload a module (a Wasm component) under a name.
    Deploy {
        file: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Call an actor and wait for its reply: `dwell call counter/a '{"add":1}'`.
    Call {
        target: String,
        json: String,
        /// How long to wait for the reply before getting a request id (e.g. 5s, 500ms).
        #[arg(long, value_parser = parse_duration)]
        wait: Option<Duration>,
    },
    /// Send an event (no reply): `dwell send counter/a '{"add":1}'`.
    Send { target: String, json: String },
    /// Show an actor: status, state, mailbox, dead letters.
    Inspect { target: String },
    /// Show a request (optionally waiting for it to settle).
    Request {
        id: String,
        #[arg(long, value_parser = parse_duration)]
        wait: Option<Duration>,
    },
    /// Manage tenants (admin key).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Issue and revoke tenant API keys (admin key).
    #[command(subcommand)]
    Key(KeyCmd),
}

#[derive(Subcommand)]
enum TenantCmd {
    Create { name: String },
    List,
    Delete { name: String },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Issue a key for a tenant (shown once).
    Issue {
        tenant: String,
    },
    Revoke {
        tenant: String,
        id: String,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the address is printed).
    #[arg(long, env = "DWELL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Serve HTTPS with this PEM certificate chain (needs `--tls-key`).
    #[arg(long, env = "DWELL_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "DWELL_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Data directory (holds dwell.redb and the compiled-module cache).
    #[arg(long, env = "DWELL_DATA", default_value = "./data")]
    data: PathBuf,
    /// Deploy modules at start: `--deploy counter=path/to/counter.wasm` (repeatable).
    #[arg(long, value_name = "NAME=FILE")]
    deploy: Vec<String>,
    /// Largest message body in bytes.
    #[arg(long, env = "DWELL_MAX_BODY", default_value_t = 1 << 20)]
    max_body: usize,
    /// Largest module in bytes.
    #[arg(long, env = "DWELL_MAX_MODULE", default_value_t = 64 << 20)]
    max_module: usize,
    /// CPU-time budget of one turn, in milliseconds (a turn is also stopped after ten
    /// times this in wall-clock time).
    #[arg(long, env = "DWELL_TURN_TIME_MS", default_value_t = 1000)]
    turn_time_ms: u64,
    /// Memory limit of one instance, in MiB.
    #[arg(long, env = "DWELL_MEMORY_MB", default_value_t = 64)]
    memory_mb: usize,
    /// Largest state snapshot, in bytes.
    #[arg(long, env = "DWELL_MAX_STATE", default_value_t = 4 << 20)]
    max_state: usize,
    /// Wait for a reply when a call has no `Prefer: wait`.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    default_wait: Duration,
    /// Longest `Prefer: wait` honoured.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    max_wait: Duration,
    /// HTTP worker threads.
    #[arg(long, env = "DWELL_HTTP_WORKERS", default_value_t = 2)]
    http_workers: usize,
    /// Attempts for a turn that traps, before its message is dead-lettered.
    #[arg(long, default_value_t = 3)]
    turn_attempts: u32,
    /// Pending timers one actor may have.
    #[arg(long, default_value_t = 1000)]
    max_timers: usize,
    /// Outbound destinations guests and callbacks may reach: `host` or `host:port`
    /// (repeatable; comma-separated in DWELL_ALLOW_HTTP). Nothing else is reachable.
    #[arg(long = "allow-http", env = "DWELL_ALLOW_HTTP", value_delimiter = ',')]
    allow_http: Vec<String>,
    /// Callback signing secret, `whsec_` + base64 (default: generated and kept in
    /// `<data>/webhook-secret`).
    #[arg(long, env = "DWELL_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Let guests and callbacks reach loopback, private and link-local addresses
    /// (development and tests only).
    #[arg(long)]
    allow_private_net: bool,
    /// Default quota: module names per tenant.
    #[arg(long, default_value_t = 100)]
    max_modules: u64,
    /// Default quota: actors per tenant.
    #[arg(long, default_value_t = 10_000_000)]
    max_actors: u64,
    /// Default quota: requests per second per tenant (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    rate_limit: u64,
    /// Default quota: request burst per tenant (default: the rate).
    #[arg(long, default_value_t = 0)]
    rate_burst: u64,
    /// Default quota: turns of one tenant executing at once (default: half the cores,
    /// so one tenant's expensive turns always leave room for the others; a node with a
    /// single tenant wants the number of cores).
    #[arg(long, env = "DWELL_CONCURRENT_TURNS")]
    concurrent_turns: Option<u64>,
    /// Calls and events held in memory before they are durable, at most; past it (or
    /// past `--ingress-mb` of their bodies) they get 503 with Retry-After.
    #[arg(long, default_value_t = 65_536)]
    ingress_messages: usize,
    /// Message bytes held in memory before they are durable, at most, in MiB.
    #[arg(long, default_value_t = 256)]
    ingress_mb: usize,
    /// Allocate instances on demand instead of from wasmtime's pooling allocator.
    #[arg(long)]
    no_pooling: bool,
    /// Attempts to deliver a callback before giving up.
    #[arg(long, default_value_t = 8)]
    callback_attempts: u32,
    /// How long an Idempotency-Key is remembered.
    #[arg(long, value_parser = parse_duration, default_value = "24h")]
    idempotency_retention: Duration,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DWELL_LOG")
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let client = |key: Option<String>| {
        Client::with_tls(&cli.server, key, cli.ca_cert.as_deref())
            .unwrap_or_else(|e| fail(&format!("--ca-cert: {e}")))
    };
    let tenant = || client(cli.key.clone().or_else(|| key_file("default-tenant.key")));
    let admin = || client(cli.admin_key.clone().or_else(|| key_file("admin.key")));
    match &cli.cmd {
        Cmd::Serve(_) => {}
        Cmd::Deploy { file, name } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            return show(tenant().deploy(name, bytes)?);
        }
        Cmd::Call { target, json, wait } => return show(tenant().call(target, json, *wait)?),
        Cmd::Send { target, json } => return show(tenant().send(target, json)?),
        Cmd::Inspect { target } => {
            return show(tenant().get(&format!("/v1/actors/{target}"), None)?);
        }
        Cmd::Request { id, wait } => {
            return show(tenant().get(&format!("/v1/requests/{id}"), *wait)?);
        }
        Cmd::Tenant(TenantCmd::Create { name }) => {
            let body = serde_json::json!({ "name": name }).to_string();
            return show(admin().post_json("/v1/tenants", &body)?);
        }
        Cmd::Tenant(TenantCmd::List) => return show(admin().get("/v1/tenants", None)?),
        Cmd::Tenant(TenantCmd::Delete { name }) => {
            return show(admin().delete(&format!("/v1/tenants/{name}"))?);
        }
        Cmd::Key(KeyCmd::Issue { tenant }) => {
            return show(admin().post_json(&format!("/v1/tenants/{tenant}/keys"), "{}")?);
        }
        Cmd::Key(KeyCmd::Revoke { tenant, id }) => {
            return show(admin().delete(&format!("/v1/tenants/{tenant}/keys/{id}"))?);
        }
    }
    match cli.cmd {
        Cmd::Serve(args) => run_server(*args, cli.admin_key, cli.ca_cert),
        _ => Ok(()),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("dwell: {msg}");
    std::process::exit(2)
}

/// A key file written by `dwell serve` at first start, in `$DWELL_DATA` or `./data`.
fn key_file(name: &str) -> Option<String> {
    let dir = std::env::var_os("DWELL_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("./data"));
    std::fs::read_to_string(dir.join(name))
        .ok()
        .map(|s| s.trim().to_owned())
}

fn show(reply: dwell::client::Reply) -> anyhow::Result<()> {
    if let Some(loc) = &reply.location {
        eprintln!("{} (poll {loc})", reply.status);
    }
    println!("{}", reply.body);
    if reply.status >= 400 {
        // The problem document above says why; the exit code says that it failed.
        std::process::exit(1);
    }
    Ok(())
}

fn run_server(
    args: ServeArgs,
    admin_key: Option<String>,
    ca_cert: Option<PathBuf>,
) -> anyhow::Result<()> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(dwell::tls::server_config(cert, key)?),
        _ => None,
    };
    let limits = Limits {
        turn_time: Duration::from_millis(args.turn_time_ms),
        memory_bytes: args.memory_mb << 20,
        state_bytes: args.max_state,
        message_bytes: args.max_body,
        module_bytes: args.max_module,
        timers_per_actor: args.max_timers,
        ..Limits::default()
    };
    let config = EngineConfig {
        data_dir: args.data.clone(),
        limits,
        retry: dwell::domain::RetryPolicy {
            max_attempts: args.turn_attempts.max(1),
            ..Default::default()
        },
        outbound: dwell::engine::OutboundConfig {
            allow: args.allow_http.clone(),
            callback_attempts: args.callback_attempts.max(1),
            ca_cert,
            ..Default::default()
        },
        webhook_secret: args.webhook_secret.clone(),
        idempotency_retention: args.idempotency_retention,
        allow_private_net: args.allow_private_net,
        pooling: !args.no_pooling,
        ingress_messages: args.ingress_messages,
        ingress_bytes: args.ingress_mb << 20,
        ..EngineConfig::default()
    };
    let mut config = config;
    config.quotas = dwell::domain::Quotas {
        max_modules: args.max_modules,
        max_actors: args.max_actors,
        requests_per_second: args.rate_limit,
        burst: args.rate_burst,
        concurrent_turns: args
            .concurrent_turns
            .unwrap_or_else(|| dwell::domain::Quotas::defaults(&config.limits).concurrent_turns)
            .max(1),
        ..dwell::domain::Quotas::defaults(&config.limits)
    };
    // Turns run on this runtime. Long turns yield at every epoch tick; checking the
    // shared queue (where newly woken actors land) and the timer/IO driver often keeps a
    // busy tenant's turns from delaying everyone else's (tokio's default is every 61
    // polls, which with 2 ms slices is ~120 ms).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dwell-engine")
        .global_queue_interval(2)
        .event_interval(4)
        .build()?;
    let engine = {
        let _guard = rt.enter();
        Engine::start(config)?
    };
    if let Some(first) = rt.block_on(engine.bootstrap(admin_key.as_deref()))? {
        // The one time these keys are shown; they are also in the data directory (0600).
        println!(
            "dwell: first start on {}: created tenant \"default\"",
            args.data.display()
        );
        println!(
            "  tenant key (default): {}  (saved in default-tenant.key)",
            first.tenant_key
        );
        if let Some(admin) = &first.admin_key {
            println!("  admin key:            {admin}  (saved in admin.key)");
        }
    }
    for spec in &args.deploy {
        let (name, file) = spec
            .split_once('=')
            .with_context(|| format!("--deploy {spec:?}: expected NAME=FILE"))?;
        let bytes = std::fs::read(file).with_context(|| format!("reading {file}"))?;
        let deployed = rt
            .block_on(engine.deploy(&TenantId::default_tenant(), name, bytes))
            .with_context(|| format!("deploying {name} from {file}"))?;
        tracing::info!(
            module = name,
            version = deployed.version.version,
            "deployed"
        );
    }
    let listener =
        TcpListener::bind(&args.listen).with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("dwell listening on {scheme}://{addr}");
    let http = HttpConfig {
        default_wait: args.default_wait,
        max_wait: args.max_wait,
        workers: args.http_workers,
        tls,
    };
    let closed = engine.closed();
    actix_web::rt::System::new().block_on(serve(engine, listener, http))?;
    // Stopped (SIGTERM/SIGINT): end the engine's tasks, then let the writer finish its
    // last batch and close the database, so the next start needs no repair.
    rt.shutdown_timeout(Duration::from_secs(5));
    if !closed.wait(Duration::from_secs(10)) {
        tracing::warn!("the store did not close in time; the next start will repair it");
    }
    Ok(())
}
