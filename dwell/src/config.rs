//! The server's configuration: every `dwell serve` option, its flag, its config-file key
//! and its environment variable, layered with figment as built-in defaults < config file
//! (TOML) < `DWELL_*` environment variables < flags; sizes (`1 MiB`) and durations
//! (`5s`) with units; and the effective configuration as TOML for `--dump-config`, with
//! secrets redacted.
//! Long because every option is declared once here, with its flag, key, variable, default
//! and docs, and the layering is tested here.
//!
//! Naming rule: the config key is the flag's name with `_` (`--max-body` → `max_body`),
//! the environment variable is `DWELL_` + the key in capitals (`DWELL_MAX_BODY`). Older
//! names that carried their unit (`--turn-time-ms`, `--memory-mb`, `--ingress-mb`,
//! `DWELL_TURN_TIME_MS`, `DWELL_MEMORY_MB`) still work.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::providers::{Format as _, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The config file read when neither `--config` nor `DWELL_CONFIG` names one, if it
/// exists (in the working directory).
pub const DEFAULT_FILE: &str = "dwell.toml";

/// Why the configuration could not be loaded. Every message names the key and where
/// its value came from.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

// ---------------------------------------------------------------------------------------
// Sizes and durations with units.

/// A number of bytes: `1 MiB`, `512KiB`, `64 MB` (decimal) or a bare number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    pub const fn kib(n: u64) -> Size {
        Size(n << 10)
    }

    pub const fn mib(n: u64) -> Size {
        Size(n << 20)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// The size as a `usize` (saturating on 32-bit targets).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Size, String> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| Size(b.as_u64()))
            .map_err(|_| format!("{s:?} is not a size like 1 MiB, 512KiB or 1048576 (bytes)"))
    }
}

impl fmt::Display for Size {
    /// Exact: the largest binary unit that divides the size, else bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if self.0 != 0 && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{} {unit}", self.0 >> shift);
            }
        }
        write!(f, "{} B", self.0)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like \"1 MiB\" or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("{v} is not a size (negative)")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parse a duration: `500ms`, `5s`, `2m`, `1h 30m`, `1day` (humantime), or a bare
/// number of seconds (`2`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{s:?} is not a duration (negative or too large)"));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{s:?} is not a duration like 500ms, 5s or 2m ({e})"))
}

/// A duration as `parse_duration` reads it back: `5s`, `1m 30s`, `1day`.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Serde for durations in the config: a string with units or a number of seconds in,
/// a string with units out.
mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like \"5s\" or a number of seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom(format!("{v} is not a duration (negative)")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
                Duration::try_from_secs_f64(v)
                    .map_err(|_| E::custom(format!("{v} is not a duration")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                parse_duration(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }

    /// For flags: only set durations are written.
    pub fn serialize_some<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

/// A list: a TOML array, or one string of comma-separated items (environment).
fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        One(String),
        Many(Vec<String>),
    }
    Ok(match List::deserialize(d)? {
        List::One(s) => split_list(&s),
        List::Many(v) => v,
    })
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------
// The configuration.

/// The effective configuration of `dwell serve` (see the flags in [`ServeFlags`] for what
/// each option means).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    pub listen: String,
    pub data: PathBuf,
    pub store: Option<String>,
    pub node_id: Option<String>,
    pub advertise: Option<String>,
    pub partitions: u32,
    #[serde(with = "duration")]
    pub lease: Duration,
    #[serde(deserialize_with = "list")]
    pub deploy: Vec<String>,
    pub max_body: Size,
    pub max_module: Size,
    pub max_state: Size,
    #[serde(with = "duration")]
    pub turn_time: Duration,
    pub memory: Size,
    #[serde(with = "duration")]
    pub default_wait: Duration,
    #[serde(with = "duration")]
    pub max_wait: Duration,
    pub http_workers: usize,
    #[serde(with = "duration")]
    pub body_timeout: Duration,
    pub max_body_reads: usize,
    pub turn_attempts: u32,
    pub max_timers: usize,
    #[serde(deserialize_with = "list")]
    pub allow_http: Vec<String>,
    pub allow_private_net: bool,
    pub webhook_secret: Option<String>,
    pub secrets_key: Option<String>,
    pub admin_key: Option<String>,
    pub max_modules: u64,
    pub max_actors: u64,
    pub rate_limit: u64,
    pub rate_burst: u64,
    pub concurrent_turns: Option<u64>,
    pub ingress_messages: usize,
    pub ingress_bytes: Size,
    pub no_pooling: bool,
    pub callback_attempts: u32,
    #[serde(with = "duration")]
    pub idempotency_retention: Duration,
    pub history_turns: u64,
    #[serde(with = "duration")]
    pub history_age: Duration,
    pub history_states: u64,
    /// Server certificate chain (PEM) for HTTPS. // wired by the TLS change
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM). // wired by the TLS change
    pub tls_key: Option<PathBuf>,
    /// An extra CA (PEM) trusted for outbound calls and callbacks. // wired by the TLS change
    pub ca_cert: Option<PathBuf>,
    /// A second listener serving `GET /metrics` without a key.
    pub metrics_listen: Option<String>,
    /// Export spans over OTLP/HTTP to this collector (e.g. `http://127.0.0.1:4318`).
    pub otlp_endpoint: Option<String>,
    /// The share of new traces (calls that bring no `traceparent`) that are sampled.
    pub otlp_sample_ratio: f64,
    pub log_format: LogFormat,
}

/// How the server writes its log lines (to stderr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, `span`).
    Json,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8080".into(),
            data: PathBuf::from("./data"),
            store: None,
            node_id: None,
            advertise: None,
            partitions: 256,
            lease: Duration::from_secs(5),
            deploy: Vec::new(),
            max_body: Size::mib(1),
            max_module: Size::mib(64),
            max_state: Size::mib(4),
            turn_time: Duration::from_secs(1),
            memory: Size::mib(64),
            default_wait: Duration::from_secs(5),
            max_wait: Duration::from_secs(60),
            http_workers: 2,
            body_timeout: Duration::from_secs(30),
            max_body_reads: 64,
            turn_attempts: 3,
            max_timers: 1000,
            allow_http: Vec::new(),
            allow_private_net: false,
            webhook_secret: None,
            secrets_key: None,
            admin_key: None,
            max_modules: 100,
            max_actors: 10_000_000,
            rate_limit: 0,
            rate_burst: 0,
            concurrent_turns: None,
            ingress_messages: 65_536,
            ingress_bytes: Size::mib(256),
            no_pooling: false,
            callback_attempts: 8,
            idempotency_retention: Duration::from_secs(24 * 3600),
            history_turns: crate::domain::HISTORY_TURNS,
            history_age: Duration::from_secs(crate::domain::HISTORY_AGE_S),
            history_states: 10,
            tls_cert: None,
            tls_key: None,
            ca_cert: None,
            metrics_listen: None,
            otlp_endpoint: None,
            otlp_sample_ratio: 1.0,
            log_format: LogFormat::Text,
        }
    }
}

/// Every key of [`ServeConfig`], in its order (a unit test keeps this true).
pub const KEYS: &[&str] = &[
    "listen",
    "data",
    "store",
    "node_id",
    "advertise",
    "partitions",
    "lease",
    "deploy",
    "max_body",
    "max_module",
    "max_state",
    "turn_time",
    "memory",
    "default_wait",
    "max_wait",
    "http_workers",
    "body_timeout",
    "max_body_reads",
    "turn_attempts",
    "max_timers",
    "allow_http",
    "allow_private_net",
    "webhook_secret",
    "secrets_key",
    "admin_key",
    "max_modules",
    "max_actors",
    "rate_limit",
    "rate_burst",
    "concurrent_turns",
    "ingress_messages",
    "ingress_bytes",
    "no_pooling",
    "callback_attempts",
    "idempotency_retention",
    "history_turns",
    "history_age",
    "history_states",
    "tls_cert",
    "tls_key",
    "ca_cert",
    "metrics_listen",
    "otlp_endpoint",
    "otlp_sample_ratio",
    "log_format",
];

/// Keys whose environment value is taken as it is (never as a number or a boolean).
const STRINGS: &[&str] = &[
    "listen",
    "data",
    "store",
    "node_id",
    "advertise",
    "webhook_secret",
    "secrets_key",
    "admin_key",
    "tls_cert",
    "tls_key",
    "ca_cert",
    "metrics_listen",
    "otlp_endpoint",
];
/// Keys whose environment value is a comma-separated list.
const LISTS: &[&str] = &["deploy", "allow_http"];
/// Environment variables from before units: (variable, key, unit appended to its number).
const LEGACY_ENV: &[(&str, &str, &str)] = &[
    ("DWELL_TURN_TIME_MS", "turn_time", "ms"),
    ("DWELL_MEMORY_MB", "memory", "MiB"),
];

/// The environment variable of a config key.
pub fn env_name(key: &str) -> String {
    format!("DWELL_{}", key.to_ascii_uppercase())
}

impl ServeConfig {
    /// Checks that serde cannot express; the error names the key and its source.
    fn validate(&self, figment: &Figment) -> Result<(), Error> {
        let bad = |key: &str, why: String| {
            Err(Error::Invalid(format!(
                "{key}: {why} (from {})",
                source_of(figment, key)
            )))
        };
        if self.node_id.is_some() {
            if self.store.as_deref().is_none_or(str::is_empty) {
                return bad(
                    "node_id",
                    "a cluster node needs --store postgres://…".into(),
                );
            }
            if self.advertise.is_none() {
                return bad(
                    "node_id",
                    "a cluster node needs --advertise HOST:PORT (where other nodes reach it)"
                        .into(),
                );
            }
            if self.secrets_key.is_none() || self.webhook_secret.is_none() {
                return bad(
                    "node_id",
                    "cluster nodes share tenants' sealed secrets and sign callbacks alike: give every node the same --secrets-key and --webhook-secret".into(),
                );
            }
            if self.tls_cert.is_some() {
                return bad(
                    "tls_cert",
                    "cluster nodes forward calls to each other over plain HTTP for now: terminate TLS in front of the nodes (a load balancer or proxy), or serve HTTPS from a single node".into(),
                );
            }
        }
        if self.partitions == 0 || self.partitions > 65_536 {
            return bad("partitions", "between 1 and 65536".into());
        }
        if self.lease < Duration::from_secs(1) || self.lease > Duration::from_secs(600) {
            return bad("lease", "between 1s and 10m".into());
        }
        if self.memory.0 == 0
            || !self.memory.0.is_multiple_of(1 << 20)
            || self.memory > Size::mib(4096)
        {
            return bad(
                "memory",
                format!(
                    "{} is not a whole number of MiB between 1 MiB and 4 GiB",
                    self.memory
                ),
            );
        }
        if self.turn_time < Duration::from_millis(1) {
            return bad("turn_time", "must be at least 1ms".into());
        }
        if self.http_workers == 0 {
            return bad("http_workers", "must be at least 1".into());
        }
        if self.listen.trim().is_empty() {
            return bad("listen", "is empty".into());
        }
        if self
            .metrics_listen
            .as_ref()
            .is_some_and(|l| l.trim().is_empty())
        {
            return bad("metrics_listen", "is empty".into());
        }
        if !(0.0..=1.0).contains(&self.otlp_sample_ratio) {
            return bad(
                "otlp_sample_ratio",
                format!("{} is not between 0 and 1", self.otlp_sample_ratio),
            );
        }
        if let Some(url) = &self.otlp_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return bad(
                "otlp_endpoint",
                format!("{url:?} is not an http:// or https:// URL"),
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            let key = if self.tls_cert.is_some() {
                "tls_key"
            } else {
                "tls_cert"
            };
            return Err(Error::Invalid(format!(
                "{key}: tls_cert and tls_key go together; set both or neither"
            )));
        }
        for spec in &self.deploy {
            if !spec.contains('=') {
                return bad("deploy", format!("{spec:?} is not NAME=FILE"));
            }
        }
        Ok(())
    }

    /// The configuration as TOML, secrets redacted; options without a value are listed
    /// in a closing comment.
    pub fn to_toml(&self) -> String {
        let redacted = self.redacted();
        let mut out = toml::to_string(&redacted).unwrap_or_else(|e| format!("# {e}\n"));
        let unset: Vec<&str> = [
            ("node_id", self.node_id.is_none()),
            ("advertise", self.advertise.is_none()),
            ("webhook_secret", self.webhook_secret.is_none()),
            ("secrets_key", self.secrets_key.is_none()),
            ("admin_key", self.admin_key.is_none()),
            ("concurrent_turns", self.concurrent_turns.is_none()),
            ("tls_cert", self.tls_cert.is_none()),
            ("tls_key", self.tls_key.is_none()),
            ("ca_cert", self.ca_cert.is_none()),
            ("metrics_listen", self.metrics_listen.is_none()),
            ("otlp_endpoint", self.otlp_endpoint.is_none()),
        ]
        .into_iter()
        .filter_map(|(k, unset)| unset.then_some(k))
        .collect();
        if !unset.is_empty() {
            out.push_str(&format!("# not set: {}\n", unset.join(", ")));
        }
        out
    }

    /// The configuration as JSON, secrets redacted.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.redacted()).unwrap_or_default()
    }

    fn redacted(&self) -> ServeConfig {
        let hide = |s: &Option<String>| s.as_ref().map(|_| "<redacted>".to_owned());
        ServeConfig {
            webhook_secret: hide(&self.webhook_secret),
            secrets_key: hide(&self.secrets_key),
            admin_key: hide(&self.admin_key),
            store: self.store.as_deref().map(redact_password),
            ..self.clone()
        }
    }
}

/// A PostgreSQL connection string with its password hidden (URL or `key=value` form).
fn redact_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.split_once('@')
        && let Some((user, _)) = auth.split_once(':')
    {
        return format!("{scheme}://{user}:<redacted>@{host}");
    }
    url.split(' ')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=<redacted>"),
            _ => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------
// Flags.

/// `dwell serve`'s flags. Each one is optional here: a flag that is not given leaves the
/// value from the environment, the config file or the default.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
#[command(after_long_help = "\
Configuration, from lowest to highest precedence: built-in defaults; the config file \
(--config, DWELL_CONFIG, or ./dwell.toml if it exists) whose keys are the flag names \
with `_` (max_body = \"1 MiB\"); environment variables DWELL_ + the key in capitals \
(DWELL_MAX_BODY=1MiB; lists comma-separated); flags. Sizes take units (KiB, MiB, GiB; \
KB, MB decimal; a bare number is bytes), durations too (500ms, 5s, 2m, 1h; a bare number \
is seconds). `dwell serve --dump-config` prints the result.")]
pub struct ServeFlags {
    /// Config file (TOML) [env: DWELL_CONFIG] [default: ./dwell.toml if it exists].
    #[arg(long, value_name = "FILE", help_heading = "Configuration")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML (secrets redacted) and exit.
    #[arg(long, help_heading = "Configuration")]
    #[serde(skip)]
    pub dump_config: bool,

    /// Address to listen on; port 0 picks a free port (the address is printed)
    /// [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR", help_heading = "Server")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Data directory: dwell.redb, the compiled-module cache and the generated keys
    /// [default: ./data].
    #[arg(long, value_name = "DIR", help_heading = "Server")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// Where the durable state lives: PostgreSQL (`postgres://user:pass@host/db`; the
    /// schema is applied at start) instead of `<data>/dwell.redb` [default: the redb
    /// file]. The data directory still holds the generated keys and compiled modules.
    #[arg(long, value_name = "URL", help_heading = "Server")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Join a cluster on the --store PostgreSQL as this node (unique in the cluster);
    /// needs --advertise, and every node the same --secrets-key and --webhook-secret
    /// [default: a single node].
    #[arg(long, value_name = "ID", help_heading = "Cluster")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Where the other nodes reach this one (`host:port` of its API listener; port 0:
    /// the port --listen got).
    #[arg(long, value_name = "HOST:PORT", help_heading = "Cluster")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// Partitions of a new cluster (fixed once the first node made it) [default: 256].
    #[arg(long, value_name = "N", help_heading = "Cluster")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    /// A node's lease: a node that stops renewing it loses its partitions this long
    /// after its last renewal [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Cluster")]
    #[serde(
        serialize_with = "duration::serialize_some",
        skip_serializing_if = "Option::is_none"
    )]
    pub lease: Option<Duration>,
    /// Deploy a module at start into the default tenant (repeatable).
    #[arg(long, value_name = "NAME=FILE", help_heading = "Server")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deploy: Vec<String>,
    /// Largest message body [default: 1 MiB].
    #[arg(long, value_name = "SIZE", value_parser = Size::from_str, help_heading = "Limits")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body: Option<Size>,
    /// Largest module [default: 64 MiB].
    #[arg(long, value_name = "SIZE", value_parser = Size::from_str, help_heading = "Limits")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_module: Option<Size>,
    /// Largest state snapshot of an actor [default: 4 MiB].
    #[arg(long, value_name = "SIZE", value_parser = Size::from_str, help_heading = "Limits")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_state: Option<Size>,
    /// CPU-time budget of one turn, in whole milliseconds (a turn is also stopped after
    /// ten times this in wall-clock time) [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Limits")]
    #[serde(
        serialize_with = "duration::serialize_some",
        skip_serializing_if = "Option::is_none"
    )]
    pub turn_time: Option<Duration>,
    /// The same in milliseconds (older name of --turn-time).
    #[arg(
        long,
        value_name = "MS",
        hide = true,
        conflicts_with = "turn_time",
        help_heading = "Limits"
    )]
    #[serde(skip)]
    pub turn_time_ms: Option<u64>,
    /// Memory limit of one instance, a whole number of MiB up to 4 GiB [default: 64 MiB].
    #[arg(long, value_name = "SIZE", value_parser = Size::from_str, help_heading = "Limits")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// The same in MiB (older name of --memory).
    #[arg(
        long,
        value_name = "MIB",
        hide = true,
        conflicts_with = "memory",
        help_heading = "Limits"
    )]
    #[serde(skip)]
    pub memory_mb: Option<u64>,
    /// How long a call waits for its reply when it has no `Prefer: wait` [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Server")]
    #[serde(
        serialize_with = "duration::serialize_some",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_wait: Option<Duration>,
    /// Longest `Prefer: wait` honoured [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Server")]
    #[serde(
        serialize_with = "duration::serialize_some",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_wait: Option<Duration>,
    /// HTTP worker threads [default: 2].
    #[arg(long, value_name = "N", help_heading = "Server")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_workers: Option<usize>,
    /// How long a request body may take to arrive, once its headers have; a slower one
    /// is answered 408 [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Server")]
    #[serde(
        serialize_with = "duration::serialize_some",
        skip_serializing_if = "Option::is_none"
    )]
    pub body_timeout: Option<Duration>,
    /// Request bodies of one tenant being received at once; more are answered 429
    /// [default: 64].
    #[arg(long, value_name = "N", help_heading = "Server")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_reads: Option<usize>,
    /// Attempts for a turn that traps before its message is dead-lettered [default: 3].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn_attempts: Option<u32>,
    /// Pending timers one actor may have [default: 1000].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_timers: Option<usize>,
    /// Outbound destinations guests and callbacks may reach: `host` or `host:port`
    /// (repeatable or comma-separated). Nothing else is reachable.
    #[arg(
        long = "allow-http",
        value_name = "HOST",
        value_delimiter = ',',
        help_heading = "Outbound calls and callbacks"
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_http: Vec<String>,
    /// Let guests and callbacks reach loopback, private and link-local addresses
    /// (development and tests only).
    #[arg(long, help_heading = "Outbound calls and callbacks")]
    #[serde(skip_serializing_if = "is_false")]
    pub allow_private_net: bool,
    /// Callback signing secret, `whsec_` + base64 [default: generated and kept in
    /// `<data>/webhook-secret`].
    #[arg(
        long,
        value_name = "SECRET",
        help_heading = "Outbound calls and callbacks"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// The key that seals tenants' webhook secrets at rest, base64 of 32 bytes; keep it
    /// outside the data directory's backups [default: generated and kept in
    /// `<data>/secrets.key`].
    #[arg(
        long,
        value_name = "KEY",
        help_heading = "Outbound calls and callbacks"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_key: Option<String>,
    /// The admin key (from the global `--admin-key`, when given on the command line).
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_key: Option<String>,
    /// Default quota: module names per tenant [default: 100].
    #[arg(long, value_name = "N", help_heading = "Default quotas")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_modules: Option<u64>,
    /// Default quota: actors per tenant [default: 10000000].
    #[arg(long, value_name = "N", help_heading = "Default quotas")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_actors: Option<u64>,
    /// Default quota: requests per second per tenant, 0 = unlimited [default: 0].
    #[arg(long, value_name = "N", help_heading = "Default quotas")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u64>,
    /// Default quota: request burst per tenant, 0 = the rate [default: 0].
    #[arg(long, value_name = "N", help_heading = "Default quotas")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_burst: Option<u64>,
    /// Default quota: turns of one tenant executing at once [default: half the cores,
    /// so one tenant's expensive turns leave room for the others; a node with a single
    /// tenant wants the number of cores].
    #[arg(long, value_name = "N", help_heading = "Default quotas")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent_turns: Option<u64>,
    /// Calls and events held in memory before they are durable, at most; past it (or
    /// past --ingress-bytes of their bodies) they get 503 with Retry-After
    /// [default: 65536].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress_messages: Option<usize>,
    /// Message bytes held in memory before they are durable, at most [default: 256 MiB].
    #[arg(long, value_name = "SIZE", value_parser = Size::from_str, help_heading = "Limits")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress_bytes: Option<Size>,
    /// The same in MiB (older name of --ingress-bytes).
    #[arg(
        long,
        value_name = "MIB",
        hide = true,
        conflicts_with = "ingress_bytes",
        help_heading = "Limits"
    )]
    #[serde(skip)]
    pub ingress_mb: Option<u64>,
    /// Allocate instances on demand instead of from wasmtime's pooling allocator.
    #[arg(long, help_heading = "Limits")]
    #[serde(skip_serializing_if = "is_false")]
    pub no_pooling: bool,
    /// Attempts to deliver a callback before giving up [default: 8].
    #[arg(long, value_name = "N", help_heading = "Outbound calls and callbacks")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_attempts: Option<u32>,
    /// How long an Idempotency-Key is remembered [default: 24h].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Limits")]
    #[serde(
        serialize_with = "duration::serialize_some",
        skip_serializing_if = "Option::is_none"
    )]
    pub idempotency_retention: Option<Duration>,
    /// Default quota: turn records kept per actor, 0 = no history [default: 100].
    #[arg(long, value_name = "N", help_heading = "History")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_turns: Option<u64>,
    /// Default quota: how long turn records are kept [default: 7d].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "History")]
    #[serde(
        serialize_with = "duration::serialize_some",
        skip_serializing_if = "Option::is_none"
    )]
    pub history_age: Option<Duration>,
    /// Of the turns kept, the states after this many of the latest are kept too, 0 =
    /// none [default: 10].
    #[arg(long, value_name = "N", help_heading = "History")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_states: Option<u64>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// The extra CA (from the global `--ca-cert`, when given on the command line).
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// Also serve `GET /metrics` (Prometheus text) on this address, without a key; the
    /// API's listener serves it for the admin key [default: not served].
    #[arg(long, value_name = "ADDR", help_heading = "Server")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Export OpenTelemetry spans (calls, turns, outbound HTTP, callbacks) over OTLP/HTTP
    /// to this collector, e.g. `http://127.0.0.1:4318` [default: not exported; a caller's
    /// `traceparent` is still carried through].
    #[arg(long, value_name = "URL", help_heading = "Server")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// The share of new traces (calls and events that bring no `traceparent`) whose spans
    /// are exported, 0 to 1; a caller's own sampling decision is always kept [default: 1].
    #[arg(long, value_name = "RATIO", help_heading = "Server")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_sample_ratio: Option<f64>,
    /// Log lines as text or as JSON objects, one per line [default: text].
    #[arg(long, value_name = "FORMAT", help_heading = "Server")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ServeFlags {
    /// The flags with the older unit-in-the-name forms folded into the new ones.
    fn normalized(&self) -> ServeFlags {
        let mut f = self.clone();
        if let Some(ms) = f.turn_time_ms.take() {
            f.turn_time = Some(Duration::from_millis(ms));
        }
        if let Some(mb) = f.memory_mb.take() {
            f.memory = Some(Size(mb.saturating_mul(1 << 20)));
        }
        if let Some(mb) = f.ingress_mb.take() {
            f.ingress_bytes = Some(Size(mb.saturating_mul(1 << 20)));
        }
        f
    }
}

// ---------------------------------------------------------------------------------------
// Layers.

/// The flags as a figment provider, so that errors name the flag.
struct FlagLayer(ServeFlags);

impl Provider for FlagLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("command-line flag")
            .interpolater(|_: &Profile, k: &[&str]| format!("--{}", k.join(".").replace('_', "-")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::defaults(&self.0).data()
    }
}

/// The `DWELL_*` variables of the known keys as a figment provider. Empty variables are
/// unset; lists are comma-separated; other values are read as TOML-like scalars, so
/// `DWELL_HTTP_WORKERS=4` is a number and `DWELL_MAX_BODY=1MiB` a string.
struct EnvLayer {
    vars: HashMap<String, String>,
}

impl EnvLayer {
    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_: &Profile, k: &[&str]| env_name(&k.join("_")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (var, key, unit) in LEGACY_ENV {
            if let Some(v) = self.get(var) {
                let n: u64 = v.parse().map_err(|_| {
                    figment::Error::from(format!("{var}: {v:?} is not a whole number"))
                })?;
                dict.insert((*key).into(), Value::from(format!("{n}{unit}")));
            }
        }
        for key in KEYS {
            let Some(v) = self.get(&env_name(key)) else {
                continue;
            };
            let value = if LISTS.contains(key) {
                Value::from(split_list(v))
            } else if STRINGS.contains(key) {
                Value::from(v.to_owned())
            } else {
                v.parse::<Value>()
                    .unwrap_or_else(|_| Value::from(v.to_owned()))
            };
            dict.insert((*key).into(), value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// The config file to read: `--config`, else `DWELL_CONFIG` (either must exist), else
/// `./dwell.toml` if it exists.
fn config_file(flags: &ServeFlags, env: &EnvLayer) -> Option<PathBuf> {
    if let Some(p) = &flags.config {
        return Some(p.clone());
    }
    if let Some(p) = env.get("DWELL_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let default = PathBuf::from(DEFAULT_FILE);
    default.is_file().then_some(default)
}

/// Read and check a config file: it must parse as TOML and hold only known keys.
fn check_file(path: &Path) -> Result<(), Error> {
    let file_error = |message: String| Error::File {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_error(e.to_string().trim_end().to_owned()))?;
    for key in table.keys() {
        if !KEYS.contains(&key.as_str()) {
            return Err(file_error(format!(
                "unknown key `{key}` (known keys: {})",
                KEYS.join(", ")
            )));
        }
    }
    Ok(())
}

/// Where the value of `key` came from, for error messages.
fn source_of(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(md) => describe_source(md, &[key]),
        None => "defaults".into(),
    }
}

fn describe_source(md: &Metadata, path: &[&str]) -> String {
    match &md.source {
        Some(figment::Source::File(p)) => format!("config file {}", p.display()),
        Some(figment::Source::Code(_)) => "defaults".into(),
        _ => format!("{} {}", md.name, md.interpolate(&Profile::Default, path)),
    }
}

/// Turn figment's errors into one message per problem: `key: what (from where)`.
fn render(errors: figment::Error) -> Error {
    let lines: Vec<String> = errors
        .into_iter()
        .map(|e| {
            let path: Vec<&str> = e.path.iter().map(String::as_str).collect();
            match &e.metadata {
                Some(md) if !path.is_empty() => format!(
                    "{}: {} (from {})",
                    path.join("."),
                    e.kind,
                    describe_source(md, &path)
                ),
                Some(md) => match &md.source {
                    Some(figment::Source::File(p)) => {
                        format!("config file {}: {}", p.display(), e.kind)
                    }
                    _ => e.kind.to_string(),
                },
                None => e.kind.to_string(),
            }
        })
        .collect();
    Error::Invalid(lines.join("\n"))
}

/// The loaded configuration and the file it came from, if any.
#[derive(Debug)]
pub struct Loaded {
    pub config: ServeConfig,
    pub file: Option<PathBuf>,
}

/// Load the configuration from the process environment: defaults < config file <
/// `DWELL_*` variables < `flags`.
pub fn load(flags: &ServeFlags) -> Result<Loaded, Error> {
    let vars = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("DWELL_"))
        .collect();
    load_from(flags, vars)
}

/// [`load`] with the environment given (tests).
pub fn load_from(flags: &ServeFlags, vars: HashMap<String, String>) -> Result<Loaded, Error> {
    let env = EnvLayer { vars };
    let mut figment = Figment::from(Serialized::defaults(ServeConfig::default()));
    let file = config_file(flags, &env);
    if let Some(path) = &file {
        check_file(path)?;
        figment = figment.merge(Toml::file_exact(path));
    }
    let figment = figment.merge(env).merge(FlagLayer(flags.normalized()));
    let config: ServeConfig = figment.extract().map_err(render)?;
    config.validate(&figment)?;
    Ok(Loaded { config, file })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dwell.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn with_file(path: &Path) -> ServeFlags {
        ServeFlags {
            config: Some(path.to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn sizes_parse_with_units_and_print_exactly() {
        assert_eq!("1 MiB".parse(), Ok(Size::mib(1)));
        assert_eq!("1MiB".parse(), Ok(Size::mib(1)));
        assert_eq!("2 KiB".parse(), Ok(Size::kib(2)));
        assert_eq!("64 MB".parse(), Ok(Size(64_000_000)));
        assert_eq!("1024".parse(), Ok(Size(1024)));
        assert!("lots".parse::<Size>().is_err());
        assert!("-1".parse::<Size>().is_err());
        assert_eq!(Size::mib(256).to_string(), "256 MiB");
        assert_eq!(Size(1000).to_string(), "1000 B");
        assert_eq!(Size(1536).to_string(), "1536 B");
        for s in [
            Size(0),
            Size(1000),
            Size::kib(3),
            Size::mib(64),
            Size(1 << 40),
        ] {
            assert_eq!(s.to_string().parse(), Ok(s), "{s} round-trips");
        }
    }

    #[test]
    fn durations_parse_with_units_or_as_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
        let d = Duration::from_secs(24 * 3600);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn keys_lists_every_field_in_order() {
        let all = ServeConfig {
            webhook_secret: Some("s".into()),
            secrets_key: Some("k".into()),
            admin_key: Some("a".into()),
            concurrent_turns: Some(1),
            tls_cert: Some("c".into()),
            tls_key: Some("k".into()),
            ca_cert: Some("ca".into()),
            ..Default::default()
        };
        let v = serde_json::to_value(&all).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected, "serde_json sorts keys");
    }

    #[test]
    fn defaults_alone_give_the_documented_defaults() {
        let loaded = load_from(&ServeFlags::default(), env(&[])).unwrap();
        assert_eq!(loaded.config, ServeConfig::default());
    }

    #[test]
    fn file_then_env_then_flags() {
        let (_d, path) = file(
            "max_body = \"2 KiB\"\ndefault_wait = \"7s\"\nhttp_workers = 3\n\
             allow_http = [\"a.example\"]\nmemory = \"32 MiB\"\n",
        );
        let flags = with_file(&path);
        let c = load_from(&flags, env(&[])).unwrap().config;
        assert_eq!(c.max_body, Size::kib(2));
        assert_eq!(c.default_wait, Duration::from_secs(7));
        assert_eq!(c.http_workers, 3);
        assert_eq!(c.allow_http, vec!["a.example"]);
        assert_eq!(c.memory, Size::mib(32));

        let vars = env(&[
            ("DWELL_MAX_BODY", "4KiB"),
            ("DWELL_HTTP_WORKERS", "4"),
            ("DWELL_ALLOW_HTTP", "b.example, c.example:8443"),
            ("DWELL_MEMORY_MB", "16"),
            ("DWELL_DEFAULT_WAIT", ""),
        ]);
        let c = load_from(&flags, vars.clone()).unwrap().config;
        assert_eq!(c.max_body, Size::kib(4));
        assert_eq!(c.http_workers, 4);
        assert_eq!(c.allow_http, vec!["b.example", "c.example:8443"]);
        assert_eq!(c.memory, Size::mib(16), "legacy DWELL_MEMORY_MB");
        assert_eq!(c.default_wait, Duration::from_secs(7), "empty = unset");

        let flags = ServeFlags {
            max_body: Some(Size::kib(8)),
            memory_mb: Some(8),
            allow_http: vec!["d.example".into()],
            ..with_file(&path)
        };
        let c = load_from(&flags, vars).unwrap().config;
        assert_eq!(c.max_body, Size::kib(8));
        assert_eq!(c.memory, Size::mib(8), "legacy --memory-mb");
        assert_eq!(c.allow_http, vec!["d.example"]);
        assert_eq!(c.http_workers, 4);
    }

    #[test]
    fn new_env_names_win_over_legacy_ones() {
        let vars = env(&[("DWELL_TURN_TIME_MS", "300"), ("DWELL_TURN_TIME", "2s")]);
        let c = load_from(&ServeFlags::default(), vars).unwrap().config;
        assert_eq!(c.turn_time, Duration::from_secs(2));
        let vars = env(&[("DWELL_TURN_TIME_MS", "300")]);
        let c = load_from(&ServeFlags::default(), vars).unwrap().config;
        assert_eq!(c.turn_time, Duration::from_millis(300));
    }

    #[test]
    fn errors_name_the_key_and_the_source() {
        let (_d, path) = file("max_bodyy = 1\n");
        let e = load_from(&with_file(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key `max_bodyy`"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");

        let (_d, path) = file("max_body = \"lots\"\n");
        let e = load_from(&with_file(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("max_body: "), "{e}");
        assert!(
            e.contains(&format!("config file {}", path.display())),
            "{e}"
        );

        let e = load_from(
            &ServeFlags::default(),
            env(&[("DWELL_HTTP_WORKERS", "many")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("http_workers: "), "{e}");
        assert!(e.contains("environment variable DWELL_HTTP_WORKERS"), "{e}");

        let e = load_from(
            &ServeFlags::default(),
            env(&[("DWELL_TURN_TIME_MS", "abc")]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "DWELL_TURN_TIME_MS: \"abc\" is not a whole number");

        let e = load_from(&ServeFlags::default(), env(&[("DWELL_MEMORY", "3000000")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("memory: "), "{e}");
        assert!(e.contains("environment variable DWELL_MEMORY"), "{e}");

        let (_d, path) = file("max_body = [\n");
        let e = load_from(&with_file(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("config file"), "{e}");

        let missing = PathBuf::from("/nonexistent/dwell.toml");
        assert!(load_from(&with_file(&missing), env(&[])).is_err());
    }

    #[test]
    fn a_cluster_node_refuses_what_it_cannot_do() {
        let (_d, path) = file(
            "store = \"postgres://u@127.0.0.1/d\"\nnode_id = \"n1\"\nadvertise = \"127.0.0.1:0\"\n\
             secrets_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n\
             webhook_secret = \"whsec_ZmlsZXNlY3JldGZpbGVzZWNyZXRmaWxlc2VjcmV0\"\n",
        );
        load_from(&with_file(&path), env(&[])).expect("a cluster node");
        let e = load_from(
            &with_file(&path),
            env(&[("DWELL_TLS_CERT", "/c.pem"), ("DWELL_TLS_KEY", "/k.pem")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("tls_cert: cluster nodes forward"), "{e}");
    }

    #[test]
    fn the_dump_is_toml_that_loads_back_without_secrets() {
        let c = ServeConfig {
            webhook_secret: Some("whsec_c2VjcmV0".into()),
            admin_key: Some("adm_123".into()),
            max_body: Size::kib(2),
            ..Default::default()
        };
        let text = c.to_toml();
        assert!(
            !text.contains("whsec_c2VjcmV0") && !text.contains("adm_123"),
            "{text}"
        );
        assert!(text.contains("webhook_secret = \"<redacted>\""), "{text}");
        assert!(text.contains("max_body = \"2 KiB\""), "{text}");
        assert!(
            text.contains("# not set: node_id, advertise, secrets_key, concurrent_turns, tls_cert"),
            "{text}"
        );
        let (_d, path) = file(&text);
        let back = load_from(&with_file(&path), env(&[])).unwrap().config;
        assert_eq!(back, c.redacted());
    }

    #[test]
    fn a_store_url_is_dumped_without_its_password() {
        for (url, shown) in [
            (
                "postgres://dwell:s3cret@db.internal:5432/dwell",
                "postgres://dwell:<redacted>@db.internal:5432/dwell",
            ),
            (
                "host=db user=dwell password=s3cret dbname=dwell",
                "host=db user=dwell password=<redacted> dbname=dwell",
            ),
            ("postgres://dwell@db/dwell", "postgres://dwell@db/dwell"),
        ] {
            let c = ServeConfig {
                store: Some(url.into()),
                ..Default::default()
            };
            let text = c.to_toml();
            assert!(!text.contains("s3cret"), "{text}");
            assert!(text.contains(&format!("store = \"{shown}\"")), "{text}");
        }
        let from_env = load_from(
            &ServeFlags::default(),
            env(&[("DWELL_STORE", "postgres://a@b/c")]),
        )
        .unwrap()
        .config;
        assert_eq!(from_env.store.as_deref(), Some("postgres://a@b/c"));
    }
}
