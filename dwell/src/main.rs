//! The `dwell` command: `serve` runs the server (configured from defaults, a config
//! file, `DWELL_*` variables and flags; see `dwell::config`); the other commands are
//! clients of a running server's HTTP API, printing tables or, with `-o json`, the JSON.
//! Long because every client command is here, each a few lines from arguments to a
//! request to a table.

use std::io::IsTerminal as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use dwell::client::{Client, Reply};
use dwell::config::{LogFormat, ServeConfig, ServeFlags, Size, parse_duration};
use dwell::domain::{Limits, QuotaOverrides, TenantId};
use dwell::engine::{Engine, EngineConfig};
use dwell::http::{HttpConfig, serve, serve_metrics};
use dwell::output::{self, Format, View};

#[derive(Parser)]
#[command(
    name = "dwell",
    version,
    about = "A WebAssembly-hosted actor runtime for long-running processes",
    after_help = "Client commands find the default tenant's key and the admin key in \
                  $DWELL_DATA (default ./data), where `dwell serve` writes them at first start."
)]
struct Cli {
    /// Server to talk to (client commands).
    #[arg(
        long,
        env = "DWELL_URL",
        default_value = "http://127.0.0.1:8080",
        global = true,
        value_name = "URL",
        help_heading = "Global options"
    )]
    server: String,
    /// Tenant API key (client commands) [default: <data>/default-tenant.key].
    #[arg(
        long,
        env = "DWELL_KEY",
        global = true,
        hide_env_values = true,
        value_name = "KEY",
        help_heading = "Global options"
    )]
    key: Option<String>,
    /// Admin key. For `serve`: use this admin key (never printed) instead of generating
    /// one at first start into `<data>/admin.key`. For `tenant`/`key`: the key to send
    /// [default: <data>/admin.key].
    #[arg(
        long,
        env = "DWELL_ADMIN_KEY",
        global = true,
        hide_env_values = true,
        value_name = "KEY",
        help_heading = "Global options"
    )]
    admin_key: Option<String>,
    /// An extra CA certificate (PEM) to trust: for client commands, the server's; for
    /// `serve`, the destinations of outbound calls and callbacks.
    #[arg(
        long,
        env = "DWELL_CA_CERT",
        global = true,
        value_name = "FILE",
        help_heading = "Global options"
    )]
    ca_cert: Option<PathBuf>,
    /// Output: `text` (tables and fields) or `json` (the API's JSON as it came, for
    /// scripts; errors as problem documents on stdout).
    #[arg(
        short,
        long,
        env = "DWELL_OUTPUT",
        global = true,
        value_enum,
        default_value_t,
        value_name = "FORMAT",
        help_heading = "Global options"
    )]
    output: Format,
    /// The same as `--output json`.
    #[arg(long = "json", global = true, help_heading = "Global options")]
    json_output: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// `?a=1&b=2` of the parameters that are set, URL-encoded (empty if none is).
fn query(params: &[(&str, Option<String>)]) -> String {
    let set: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref().map(|v| {
                let v =
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC);
                format!("{k}={v}")
            })
        })
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("?{}", set.join("&"))
    }
}

/// `MODULE/KEY`, as in `counter/a`.
fn target(s: &str) -> Result<String, String> {
    match s.split_once('/') {
        Some((m, k)) if !m.is_empty() && !k.is_empty() && !k.contains('/') => Ok(s.to_owned()),
        _ => Err(format!("{s:?} is not MODULE/KEY, e.g. counter/a")),
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Serve(Box<ServeFlags>),
    /// Upload a module (a Wasm component) under a name; a changed module is a new version.
    Deploy {
        /// The component (`.wasm`) to upload.
        file: PathBuf,
        /// The module's name (actors are addressed as NAME/KEY).
        #[arg(long)]
        name: String,
    },
    /// Call an actor and wait for its reply: `dwell call counter/a '{"add":1}'`.
    Call {
        /// The actor, MODULE/KEY.
        #[arg(value_name = "MODULE/KEY", value_parser = target)]
        target: String,
        /// The message, as JSON.
        json: String,
        /// How long to wait for the reply before getting a request id instead (e.g. 5s,
        /// 500ms; a bare number is seconds) [default: the server's default wait].
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        wait: Option<Duration>,
    },
    /// Send an event (no reply): `dwell send counter/a '{"add":1}'`.
    Send {
        /// The actor, MODULE/KEY.
        #[arg(value_name = "MODULE/KEY", value_parser = target)]
        target: String,
        /// The event, as JSON.
        json: String,
    },
    /// Show an actor: status, state, timers, outbound calls, dead letters.
    Inspect {
        /// The actor, MODULE/KEY.
        #[arg(value_name = "MODULE/KEY", value_parser = target)]
        target: String,
    },
    /// Show a request (optionally waiting for it to settle).
    Request {
        /// The request id (from a `202` or a retried dead letter).
        id: String,
        /// How long to wait for the request to settle (e.g. 5s; a bare number is seconds).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        wait: Option<Duration>,
    },
    /// List, show and delete modules (`deploy` uploads them).
    #[command(subcommand)]
    Module(ModuleCmd),
    /// List modules (same as `module list`).
    Modules,
    /// List the tenant's actors: `dwell actors --module checkin --step "awaiting boarding pass"`.
    Actors {
        /// Only this module's actors.
        #[arg(long)]
        module: Option<String>,
        /// Only `active` or `completed` actors.
        #[arg(long)]
        status: Option<String>,
        /// Only actors on this module version.
        #[arg(long)]
        version: Option<u32>,
        /// Only actors in this step.
        #[arg(long)]
        step: Option<String>,
        /// At most this many [default: 50].
        #[arg(long)]
        limit: Option<u32>,
        /// Go on from this cursor (the `next` a page printed).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// An actor's turn history, newest first; with `--seq`, one turn with the state as
    /// of it and the diff to the one before.
    History {
        /// The actor, MODULE/KEY.
        #[arg(value_name = "MODULE/KEY", value_parser = target)]
        target: String,
        /// Show this turn in full.
        #[arg(long)]
        seq: Option<u64>,
        /// At most this many turns [default: 50].
        #[arg(long)]
        limit: Option<u32>,
        /// Go on from this cursor (the `next` a page printed).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// A module's process map: its steps, how actors moved between them, who waits where.
    Map {
        /// The module's name.
        module: String,
    },
    /// List the tenant's requests (`--status pending|completed|failed`).
    Requests {
        /// Only `pending`, `completed` or `failed` requests.
        #[arg(long)]
        status: Option<String>,
        /// At most this many [default: 50].
        #[arg(long)]
        limit: Option<u32>,
        /// Go on from this cursor (the `next` a page printed).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show or delete an actor.
    #[command(subcommand)]
    Actor(ActorCmd),
    /// List an actor's dead letters or put one back into its mailbox.
    #[command(subcommand)]
    DeadLetter(DeadLetterCmd),
    /// Manage tenants (admin key).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// The cluster: nodes, leases, partitions per node (admin key).
    Cluster,
    /// Issue and revoke tenant API keys (admin key).
    #[command(subcommand)]
    Key(KeyCmd),
    /// A module's versions and how many of its actors are on each.
    Versions {
        /// The module's name.
        module: String,
    },
    /// Move running actors to another version of their module: `plan` (a dry run),
    /// `apply` (or a canary), `rollback`; `list` and `show` the runs.
    #[command(subcommand)]
    Upgrade(UpgradeCmd),
    /// Print the web console's address (sign in there with a tenant key or the admin key).
    Ui {
        /// Also open it in the desktop's browser (`xdg-open`, or `open` on macOS).
        #[arg(long)]
        open: bool,
    },
}

/// Which actors a run takes and where they go.
#[derive(clap::Args)]
struct UpgradeArgs {
    /// The module's name.
    module: String,
    /// The version the actors are on.
    #[arg(long)]
    from: u32,
    /// The version to move them to.
    #[arg(long)]
    to: u32,
    /// Only these actors (keys, comma-separated) [default: all on `--from`].
    #[arg(long, value_delimiter = ',', conflicts_with = "percent")]
    keys: Vec<String>,
    /// Only this share of them (a stable choice by key).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    percent: Option<u8>,
    /// Recorded turns replayed per actor in the dry run [default: 10].
    #[arg(long)]
    replay_turns: Option<u32>,
}

impl UpgradeArgs {
    fn plan(&self, mode: &str) -> serde_json::Value {
        let select = match (&self.keys, self.percent) {
            (keys, _) if !keys.is_empty() => serde_json::json!({ "keys": keys }),
            (_, Some(p)) => serde_json::json!({ "percent": p }),
            _ => serde_json::json!("all"),
        };
        let mut plan = serde_json::json!({
            "from": self.from, "to": self.to, "select": select, "mode": mode,
        });
        if let Some(n) = self.replay_turns {
            plan["replay_turns"] = n.into();
        }
        plan
    }
}

#[derive(Subcommand)]
enum UpgradeCmd {
    /// A dry run: replay each actor's recent turns on the new version in a sandbox and
    /// report what would differ; nothing moves.
    Plan(UpgradeArgs),
    /// Move the actors (refused if the dry run finds problems, unless `--force`).
    Apply {
        #[command(flatten)]
        args: UpgradeArgs,
        /// Move this share first and watch their next turns: roll them back by
        /// themselves if too many fail, else move the rest.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        canary: Option<u8>,
        /// Turns watched per canary actor [default: 3].
        #[arg(long, requires = "canary")]
        canary_turns: Option<u32>,
        /// Apply although the dry run found problems.
        #[arg(long)]
        force: bool,
        /// Wait until the run has finished (completed or rolled back).
        #[arg(long)]
        wait: bool,
    },
    /// Roll back the actors a run moved (each unless a turn changed its new state).
    Rollback {
        /// The module's name.
        module: String,
        /// The run's id (`up_…`).
        id: String,
    },
    /// A module's runs, newest first.
    List {
        /// The module's name.
        module: String,
    },
    /// One run and its report.
    Show {
        /// The module's name.
        module: String,
        /// The run's id (`up_…`).
        id: String,
    },
}

#[derive(Subcommand)]
enum ModuleCmd {
    /// List the tenant's modules with their latest version.
    List,
    /// Show a module's versions.
    Show {
        /// The module's name.
        name: String,
    },
    /// Delete a module and its versions (actors using it stop being callable).
    Delete {
        /// The module's name.
        name: String,
    },
}

#[derive(Subcommand)]
enum ActorCmd {
    /// Show an actor (same as `inspect`).
    Show {
        /// The actor, MODULE/KEY.
        #[arg(value_name = "MODULE/KEY", value_parser = target)]
        target: String,
    },
    /// Delete an actor: its state, mailbox, timers and dead letters.
    Delete {
        /// The actor, MODULE/KEY.
        #[arg(value_name = "MODULE/KEY", value_parser = target)]
        target: String,
    },
}

#[derive(Subcommand)]
enum DeadLetterCmd {
    /// List an actor's dead letters.
    List {
        /// The actor, MODULE/KEY.
        #[arg(value_name = "MODULE/KEY", value_parser = target)]
        target: String,
    },
    /// Put a dead letter back into the mailbox (a request gets a new request id).
    Retry {
        /// The actor, MODULE/KEY.
        #[arg(value_name = "MODULE/KEY", value_parser = target)]
        target: String,
        /// The dead letter's sequence number (see `dead-letter list`).
        seq: u64,
        /// Run it on this version of the module instead (the actor moves there, its
        /// state migrated): a hotfix.
        #[arg(long)]
        version: Option<u32>,
        /// With `--version`: only show what it would do there; nothing is performed.
        #[arg(long, requires = "version")]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum TenantCmd {
    /// Create a tenant (its callback signing secret is shown once).
    Create {
        /// The tenant's name.
        name: String,
    },
    /// List tenants.
    List,
    /// Show a tenant: quotas in force, allowlist, key ids, actor count.
    Show {
        /// The tenant's name.
        name: String,
    },
    /// Change a tenant's quotas or outbound allowlist, or rotate its callback secret.
    Update(Box<TenantUpdate>),
    /// Delete a tenant, its keys and its modules.
    Delete {
        /// The tenant's name.
        name: String,
    },
}

/// What to change: quota flags override the server's defaults for this tenant (quotas
/// not named keep their value), the allowlist is replaced, the secret rotated.
#[derive(clap::Args)]
struct TenantUpdate {
    /// The tenant's name.
    name: String,
    /// Quota: module names.
    #[arg(long, value_name = "N")]
    max_modules: Option<u64>,
    /// Quota: size of one module.
    #[arg(long, value_name = "SIZE", value_parser = Size::from_str)]
    max_module_bytes: Option<Size>,
    /// Quota: actors.
    #[arg(long, value_name = "N")]
    max_actors: Option<u64>,
    /// Quota: size of one actor's state.
    #[arg(long, value_name = "SIZE", value_parser = Size::from_str)]
    max_state_bytes: Option<Size>,
    /// Quota: size of one message.
    #[arg(long, value_name = "SIZE", value_parser = Size::from_str)]
    max_message_bytes: Option<Size>,
    /// Quota: CPU time of one turn (whole milliseconds).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    turn_time: Option<Duration>,
    /// Quota: memory of one instance (whole MiB).
    #[arg(long, value_name = "SIZE", value_parser = Size::from_str)]
    memory: Option<Size>,
    /// Quota: pending timers per actor.
    #[arg(long, value_name = "N")]
    timers_per_actor: Option<u64>,
    /// Quota: requests per second (0 = unlimited).
    #[arg(long, value_name = "N")]
    requests_per_second: Option<u64>,
    /// Quota: request burst (0 = the rate).
    #[arg(long, value_name = "N")]
    burst: Option<u64>,
    /// Quota: turns of the tenant executing at once.
    #[arg(long, value_name = "N")]
    concurrent_turns: Option<u64>,
    /// Quota: turn records kept per actor (0: no history).
    #[arg(long, value_name = "N")]
    history_turns: Option<u64>,
    /// Quota: how long turn records are kept (whole seconds).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    history_age: Option<Duration>,
    /// Replace the tenant's outbound allowlist: `host` or `host:port` (repeatable or
    /// comma-separated).
    #[arg(long, value_name = "HOST", value_delimiter = ',')]
    allow_http: Vec<String>,
    /// Empty the tenant's outbound allowlist.
    #[arg(long, conflicts_with = "allow_http")]
    deny_all_http: bool,
    /// Replace the tenant's callback signing secret (the new one is shown once).
    #[arg(long)]
    rotate_webhook_secret: bool,
}

impl TenantUpdate {
    /// The `PATCH /v1/tenants/{name}` body.
    fn patch(&self) -> anyhow::Result<serde_json::Value> {
        let memory_mb = match self.memory {
            Some(m) if !m.bytes().is_multiple_of(1 << 20) || m.bytes() == 0 => {
                anyhow::bail!("--memory {m}: must be a whole number of MiB")
            }
            m => m.map(|m| m.bytes() >> 20),
        };
        let quotas = QuotaOverrides {
            max_modules: self.max_modules,
            max_module_bytes: self.max_module_bytes.map(Size::bytes),
            max_actors: self.max_actors,
            max_state_bytes: self.max_state_bytes.map(Size::bytes),
            max_message_bytes: self.max_message_bytes.map(Size::bytes),
            turn_time_ms: self.turn_time.map(|d| d.as_millis() as u64),
            memory_mb,
            timers_per_actor: self.timers_per_actor,
            requests_per_second: self.requests_per_second,
            burst: self.burst,
            concurrent_turns: self.concurrent_turns,
            history_turns: self.history_turns,
            history_age_s: self.history_age.map(|d| d.as_secs()),
        };
        let mut body = serde_json::json!({});
        if quotas != QuotaOverrides::default() {
            body["quotas"] = serde_json::to_value(quotas)?;
        }
        if !self.allow_http.is_empty() || self.deny_all_http {
            body["allow_http"] = serde_json::json!(self.allow_http);
        }
        if self.rotate_webhook_secret {
            body["rotate_webhook_secret"] = true.into();
        }
        if body == serde_json::json!({}) {
            anyhow::bail!(
                "nothing to change: give a quota, --allow-http, --deny-all-http or \
                 --rotate-webhook-secret (see `dwell tenant update --help`)"
            );
        }
        Ok(body)
    }
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Issue a key for a tenant (shown once).
    Issue {
        /// The tenant's name.
        tenant: String,
    },
    /// Revoke a key (it stops working at once).
    Revoke {
        /// The tenant's name.
        tenant: String,
        /// The key's id (see `tenant show`).
        id: String,
    },
}

/// Colours only for a terminal, and never with `NO_COLOR` set (https://no-color.org).
fn color(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Log to stderr, filtered by `DWELL_LOG`, as text or as one JSON object per line.
fn init_logging(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DWELL_LOG")
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(color(std::io::stderr().is_terminal()))
            .init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}

fn main() {
    // clap decides per stream whether it writes to a terminal; NO_COLOR turns it off.
    let choice = if color(true) {
        clap::ColorChoice::Auto
    } else {
        clap::ColorChoice::Never
    };
    let matches = Cli::command().color(choice).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let from_flag = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let result = match cli.cmd {
        Cmd::Serve(ref flags) => {
            let mut flags = (**flags).clone();
            // Global options given as flags are the flag layer; from the environment
            // they are read with every other `DWELL_*` variable.
            if from_flag("admin_key") {
                flags.admin_key = cli.admin_key.clone();
            }
            if from_flag("ca_cert") {
                flags.ca_cert = cli.ca_cert.clone();
            }
            start(&flags, cli.output)
        }
        _ => {
            init_logging(LogFormat::Text);
            client_command(&cli)
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn client_command(cli: &Cli) -> anyhow::Result<()> {
    let tenant = || {
        let key = cli.key.clone().or_else(|| key_file("default-tenant.key"));
        Client::with_key(&cli.server, key).with_ca_cert(cli.ca_cert.as_deref())
    };
    let admin = || {
        let key = cli.admin_key.clone().or_else(|| key_file("admin.key"));
        Client::with_key(&cli.server, key).with_ca_cert(cli.ca_cert.as_deref())
    };
    let out = if cli.json_output {
        Format::Json
    } else {
        cli.output
    };
    match &cli.cmd {
        Cmd::Serve(_) => unreachable!("handled by main"),
        Cmd::Deploy { file, name } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            show(out, View::Deployed, tenant()?.deploy(name, bytes)?)
        }
        Cmd::Call { target, json, wait } => {
            show(out, View::CallReply, tenant()?.call(target, json, *wait)?)
        }
        Cmd::Send { target, json } => show(out, View::Event, tenant()?.send(target, json)?),
        Cmd::Inspect { target } | Cmd::Actor(ActorCmd::Show { target }) => show(
            out,
            View::Actor,
            tenant()?.get(&format!("/v1/actors/{target}"), None)?,
        ),
        Cmd::Request { id, wait } => show(
            out,
            View::Request,
            tenant()?.get(&format!("/v1/requests/{id}"), *wait)?,
        ),
        Cmd::Actors {
            module,
            status,
            version,
            step,
            limit,
            cursor,
        } => {
            let q = query(&[
                ("module", module.clone()),
                ("status", status.clone()),
                ("version", version.map(|v| v.to_string())),
                ("step", step.clone()),
                ("limit", limit.map(|v| v.to_string())),
                ("cursor", cursor.clone()),
            ]);
            show(
                out,
                View::Actors,
                tenant()?.get(&format!("/v1/actors{q}"), None)?,
            )
        }
        Cmd::History {
            target,
            seq: Some(seq),
            ..
        } => show(
            out,
            View::Turn,
            tenant()?.get(&format!("/v1/actors/{target}/history/{seq}"), None)?,
        ),
        Cmd::History {
            target,
            seq: None,
            limit,
            cursor,
        } => {
            let q = query(&[
                ("limit", limit.map(|v| v.to_string())),
                ("cursor", cursor.clone()),
            ]);
            show(
                out,
                View::History,
                tenant()?.get(&format!("/v1/actors/{target}/history{q}"), None)?,
            )
        }
        Cmd::Map { module } => show(
            out,
            View::Map,
            tenant()?.get(&format!("/v1/modules/{module}/map"), None)?,
        ),
        Cmd::Requests {
            status,
            limit,
            cursor,
        } => {
            let q = query(&[
                ("status", status.clone()),
                ("limit", limit.map(|v| v.to_string())),
                ("cursor", cursor.clone()),
            ]);
            show(
                out,
                View::Requests,
                tenant()?.get(&format!("/v1/requests{q}"), None)?,
            )
        }
        Cmd::Modules | Cmd::Module(ModuleCmd::List) => {
            show(out, View::Modules, tenant()?.get("/v1/modules", None)?)
        }
        Cmd::Module(ModuleCmd::Show { name }) => show(
            out,
            View::Module,
            tenant()?.get(&format!("/v1/modules/{name}"), None)?,
        ),
        Cmd::Module(ModuleCmd::Delete { name }) => show(
            out,
            View::Done(&format!("deleted module {name}")),
            tenant()?.delete(&format!("/v1/modules/{name}"))?,
        ),
        Cmd::Actor(ActorCmd::Delete { target }) => show(
            out,
            View::Done(&format!("deleted actor {target}")),
            tenant()?.delete(&format!("/v1/actors/{target}"))?,
        ),
        Cmd::DeadLetter(DeadLetterCmd::List { target }) => show(
            out,
            View::DeadLetters,
            tenant()?.get(&format!("/v1/actors/{target}"), None)?,
        ),
        Cmd::DeadLetter(DeadLetterCmd::Retry {
            target,
            seq,
            version,
            dry_run,
        }) => {
            let body = match version {
                Some(v) => serde_json::json!({ "version": v, "dry_run": dry_run }),
                None => serde_json::json!({}),
            };
            let view = if *dry_run {
                View::Hotfix
            } else {
                View::Retried
            };
            show(
                out,
                view,
                tenant()?.post_json(
                    &format!("/v1/actors/{target}/dead-letters/{seq}/retry"),
                    &body.to_string(),
                )?,
            )
        }
        Cmd::Versions { module } => show(out, View::Versions, versions(&tenant()?, module)?),
        Cmd::Upgrade(cmd) => upgrade(out, &tenant()?, cmd),
        Cmd::Tenant(TenantCmd::Create { name }) => {
            let body = serde_json::json!({ "name": name }).to_string();
            show(out, View::Tenant, admin()?.post_json("/v1/tenants", &body)?)
        }
        Cmd::Cluster => show(out, View::Cluster, admin()?.get("/v1/cluster", None)?),
        Cmd::Tenant(TenantCmd::List) => {
            show(out, View::Tenants, admin()?.get("/v1/tenants", None)?)
        }
        Cmd::Tenant(TenantCmd::Show { name }) => show(
            out,
            View::Tenant,
            admin()?.get(&format!("/v1/tenants/{name}"), None)?,
        ),
        Cmd::Tenant(TenantCmd::Update(update)) => {
            let body = update.patch()?.to_string();
            let path = format!("/v1/tenants/{}", update.name);
            show(out, View::Tenant, admin()?.patch_json(&path, &body)?)
        }
        Cmd::Tenant(TenantCmd::Delete { name }) => show(
            out,
            View::Done(&format!("deleted tenant {name}")),
            admin()?.delete(&format!("/v1/tenants/{name}"))?,
        ),
        Cmd::Key(KeyCmd::Issue { tenant }) => show(
            out,
            View::Key,
            admin()?.post_json(&format!("/v1/tenants/{tenant}/keys"), "{}")?,
        ),
        Cmd::Ui { open } => console(&cli.server, *open),
        Cmd::Key(KeyCmd::Revoke { tenant, id }) => show(
            out,
            View::Done(&format!("revoked key {id} of tenant {tenant}")),
            admin()?.delete(&format!("/v1/tenants/{tenant}/keys/{id}"))?,
        ),
    }
}

/// `dwell versions`: the module with, per version, how many of its actors are on it
/// (counted through the actor list, page by page).
fn versions(client: &Client, module: &str) -> anyhow::Result<Reply> {
    let mut reply = client.get(&format!("/v1/modules/{module}"), None)?;
    let Some(mut v) = reply.json().filter(|_| reply.status == 200) else {
        return Ok(reply);
    };
    let mut counts = std::collections::BTreeMap::<u64, u64>::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = query(&[
            ("module", Some(module.to_owned())),
            ("limit", Some("1000".into())),
            ("cursor", cursor.clone()),
        ]);
        let page = client.get(&format!("/v1/actors{q}"), None)?;
        let Some(page) = page.json().filter(|_| page.status == 200) else {
            return Ok(page);
        };
        for a in page["items"].as_array().into_iter().flatten() {
            *counts
                .entry(a["version"].as_u64().unwrap_or(0))
                .or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    for version in v["versions"].as_array_mut().into_iter().flatten() {
        let n = version["version"].as_u64().unwrap_or(0);
        version["actors"] = counts.get(&n).copied().unwrap_or(0).into();
    }
    reply.body = v.to_string();
    Ok(reply)
}

/// `dwell upgrade …`.
fn upgrade(out: Format, client: &Client, cmd: &UpgradeCmd) -> anyhow::Result<()> {
    let runs = |m: &str| format!("/v1/modules/{m}/upgrades");
    match cmd {
        UpgradeCmd::Plan(args) => {
            let reply = client.post_json(&runs(&args.module), &args.plan("dry-run").to_string())?;
            show(
                out,
                View::Upgrade,
                follow(client, &args.module, reply, &["planning"])?,
            )
        }
        UpgradeCmd::Apply {
            args,
            canary,
            canary_turns,
            force,
            wait,
        } => {
            let mut plan = args.plan(if canary.is_some() { "canary" } else { "apply" });
            plan["force"] = (*force).into();
            if let Some(p) = canary {
                plan["canary"] = serde_json::json!({ "percent": p });
                if let Some(t) = canary_turns {
                    plan["canary"]["turns"] = (*t).into();
                }
            }
            let reply = client.post_json(&runs(&args.module), &plan.to_string())?;
            let until: &[&str] = if *wait {
                &["planning", "applying", "watching", "rolling_back"]
            } else {
                &["planning"]
            };
            show(
                out,
                View::Upgrade,
                follow(client, &args.module, reply, until)?,
            )
        }
        UpgradeCmd::Rollback { module, id } => show(
            out,
            View::Upgrade,
            client.post_json(&format!("{}/{id}/rollback", runs(module)), "{}")?,
        ),
        UpgradeCmd::List { module } => show(out, View::Upgrades, client.get(&runs(module), None)?),
        UpgradeCmd::Show { module, id } => show(
            out,
            View::Upgrade,
            client.get(&format!("{}/{id}", runs(module)), None)?,
        ),
    }
}

/// Poll a run while its status is one of `while_in`; its last answer.
fn follow(
    client: &Client,
    module: &str,
    mut reply: Reply,
    while_in: &[&str],
) -> anyhow::Result<Reply> {
    while matches!(reply.status, 200 | 201) {
        let Some(run) = reply.json() else { break };
        if !while_in.iter().any(|s| run["status"] == *s) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        let id = run["id"].as_str().unwrap_or_default();
        reply = client.get(&format!("/v1/modules/{module}/upgrades/{id}"), None)?;
    }
    Ok(reply)
}

/// The data directory the client reads keys from: `$DWELL_DATA` or `./data`.
fn data_dir() -> PathBuf {
    std::env::var_os("DWELL_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("data"))
}

/// A key file written by `dwell serve` at first start, in `$DWELL_DATA` or `./data`.
fn key_file(name: &str) -> Option<String> {
    std::fs::read_to_string(data_dir().join(name))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// `dwell ui`: the console's address, and where the key to sign in with is. The key is
/// never put in the address (it would land in the browser's history).
fn console(server: &str, open: bool) -> anyhow::Result<()> {
    let url = format!("{}/ui/", server.trim_end_matches('/'));
    println!("{url}");
    let key = data_dir().join("default-tenant.key");
    if key.is_file() {
        eprintln!("sign in with the tenant key in {}", key.display());
    } else {
        eprintln!("sign in with a tenant's API key (or the admin key, to see the tenants)");
    }
    if open {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        let status = std::process::Command::new(opener)
            .arg(&url)
            .status()
            .with_context(|| format!("running {opener} (open {url} yourself)"))?;
        anyhow::ensure!(
            status.success(),
            "{opener} failed ({status}); open {url} yourself"
        );
    }
    Ok(())
}

/// Print a reply; an error reply exits with status 1 after saying what went wrong.
fn show(out: Format, view: View<'_>, reply: Reply) -> anyhow::Result<()> {
    if reply.status >= 400 {
        match out {
            Format::Json => println!("{}", reply.body),
            Format::Text => eprintln!("{}", output::problem_text(reply.status, &reply.body)),
        }
        std::process::exit(1);
    }
    match (out, reply.json()) {
        (Format::Text, Some(v)) => print!("{}", output::text(view, reply.status, &v)),
        _ => {
            if let Some(loc) = &reply.location {
                eprintln!("{} (poll {loc})", reply.status);
            }
            if !reply.body.trim().is_empty() {
                println!("{}", reply.body);
            }
        }
    }
    Ok(())
}

/// `dwell serve`: load the configuration, then print it or run the server.
fn start(flags: &ServeFlags, out: Format) -> anyhow::Result<()> {
    let loaded = dwell::config::load(flags)?;
    if flags.dump_config {
        if out == Format::Json {
            println!("{:#}", loaded.config.to_json());
        } else {
            let file = loaded
                .file
                .map_or("no config file".to_owned(), |f| f.display().to_string());
            println!(
                "# dwell serve: the effective configuration (defaults < {file} < DWELL_* \
                 environment < flags)"
            );
            print!("{}", loaded.config.to_toml());
        }
        return Ok(());
    }
    // The log format is configured: logging starts once the configuration is known.
    init_logging(loaded.config.log_format);
    run_server(loaded.config)
}

fn run_server(cfg: ServeConfig) -> anyhow::Result<()> {
    // HTTPS when both a certificate and its key are configured (never half of it).
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(dwell::tls::server_config(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("tls_cert and tls_key go together: set both for HTTPS, or neither"),
    };
    if let Some(endpoint) = &cfg.otlp_endpoint {
        dwell::engine::trace::install(endpoint, "dwell", cfg.otlp_sample_ratio)
            .map_err(anyhow::Error::msg)?;
        tracing::info!(%endpoint, "exporting spans over OTLP/HTTP");
    }
    let limits = Limits {
        turn_time: cfg.turn_time,
        memory_bytes: cfg.memory.as_usize(),
        state_bytes: cfg.max_state.as_usize(),
        message_bytes: cfg.max_body.as_usize(),
        module_bytes: cfg.max_module.as_usize(),
        timers_per_actor: cfg.max_timers,
        ..Limits::default()
    };
    let config = EngineConfig {
        data_dir: cfg.data.clone(),
        limits,
        retry: dwell::domain::RetryPolicy {
            max_attempts: cfg.turn_attempts.max(1),
            ..Default::default()
        },
        outbound: dwell::engine::OutboundConfig {
            allow: cfg.allow_http.clone(),
            callback_attempts: cfg.callback_attempts.max(1),
            ca_cert: cfg.ca_cert.clone(),
            ..Default::default()
        },
        webhook_secret: cfg.webhook_secret.clone(),
        secrets_key: cfg.secrets_key.clone(),
        idempotency_retention: cfg.idempotency_retention,
        history_states: cfg.history_states,
        allow_private_net: cfg.allow_private_net,
        pooling: !cfg.no_pooling,
        ingress_messages: cfg.ingress_messages,
        ingress_bytes: cfg.ingress_bytes.as_usize(),
        ..EngineConfig::default()
    };
    let mut config = config;
    config.quotas = dwell::domain::Quotas {
        max_modules: cfg.max_modules,
        max_actors: cfg.max_actors,
        requests_per_second: cfg.rate_limit,
        burst: cfg.rate_burst,
        concurrent_turns: cfg
            .concurrent_turns
            .unwrap_or_else(|| dwell::domain::Quotas::defaults(&config.limits).concurrent_turns)
            .clamp(1, dwell::domain::MAX_CONCURRENT_TURNS),
        history_turns: cfg.history_turns.min(dwell::domain::MAX_HISTORY_TURNS),
        history_age_s: cfg.history_age.as_secs(),
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
    // Bound before the engine starts (served only later): a cluster node advertises
    // the port it really got (`--advertise HOST:0`).
    let listener =
        TcpListener::bind(&cfg.listen).with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let advertise = cfg.advertise.as_deref().map(|a| match a.rsplit_once(':') {
        Some((host, "0")) => format!("{host}:{}", addr.port()),
        _ => a.to_owned(),
    });
    let mut cluster = None;
    let engine = {
        let _guard = rt.enter();
        let storage = match (&cfg.node_id, &cfg.store, &advertise) {
            (Some(node), Some(url), Some(advertise)) => {
                let (storage, member) =
                    dwell::storage::join(url, node, advertise, cfg.partitions, cfg.lease)?;
                config.placement = Some(member.placement.clone());
                cluster = Some(member);
                storage
            }
            _ => dwell::storage::open(&cfg.data, cfg.store.as_deref())?,
        };
        Engine::start(config, storage)?
    };
    // A cluster node told to stop hands its partitions over at once, while its HTTP
    // server drains (calls it still gets are forwarded to the new owners).
    let cluster = cluster.map(std::sync::Arc::new);
    if let Some(member) = &cluster {
        let member = member.clone();
        rt.spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = tokio::task::spawn_blocking(move || member.leave()).await;
        });
    }
    if let Some(first) = rt.block_on(engine.bootstrap(cfg.admin_key.as_deref()))? {
        // The one time these keys are shown; they are also in the data directory (0600).
        println!(
            "dwell: first start on {}: created tenant \"default\"",
            cfg.data.display()
        );
        println!(
            "  tenant key (default): {}  (saved in default-tenant.key)",
            first.tenant_key
        );
        if let Some(admin) = &first.admin_key {
            println!("  admin key:            {admin}  (saved in admin.key)");
        }
    }
    for spec in &cfg.deploy {
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
    // The metrics listener, without a key (the API's listener serves /metrics for the
    // admin key). Printed before the API's address line, which
    // tells that the server is up.
    let metrics = match &cfg.metrics_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
            println!("dwell metrics on http://{}/metrics", l.local_addr()?);
            Some(l)
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("dwell listening on {scheme}://{addr}");
    let http = HttpConfig {
        default_wait: cfg.default_wait,
        max_wait: cfg.max_wait,
        workers: cfg.http_workers,
        body_timeout: cfg.body_timeout,
        max_body_reads: cfg.max_body_reads.max(1),
        tls,
    };
    let closed = engine.closed();
    actix_web::rt::System::new().block_on(async {
        // Both stop on SIGTERM/SIGINT.
        match metrics {
            Some(l) => {
                let (api, metrics) = tokio::join!(
                    serve(engine.clone(), listener, http),
                    serve_metrics(engine, l)
                );
                api.and(metrics)
            }
            None => serve(engine, listener, http).await,
        }
    })?;
    // A cluster node hands its partitions over first, so the others take them at once.
    if let Some(member) = cluster {
        member.leave();
    }
    // Stopped (SIGTERM/SIGINT): end the engine's tasks, then let the writer finish its
    // last batch and close the database, so the next start needs no repair.
    rt.shutdown_timeout(Duration::from_secs(5));
    if !closed.wait(Duration::from_secs(10)) {
        tracing::warn!("the store did not close in time; the next start will repair it");
    }
    // The spans still batched go out before the process ends.
    dwell::engine::trace::shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand and every argument says what it is for in `--help`.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "dwell", &mut missing);
        assert!(missing.is_empty(), "no help: {missing:?}");
    }
}
