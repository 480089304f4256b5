//! Configuration of both services (SPEC §5.1), parsed once at start-up into one typed struct.
//! A missing or bad value stops start-up with one line naming the variable and the problem.

mod loopback;
mod secret;
mod trace_export;

pub use loopback::is_loopback_url;
pub use secret::Secret;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
pub use trace_export::{Sampling, TraceExport, DEFAULT_TRACE_RATIO};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Test,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Everything both binaries read from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: Secret,
    pub valkey_url: Secret,
    pub auth_jwt_secret: Secret,
    /// `PUBLIC_PORT` (3000), or `PORT` when set.
    pub public_port: u16,
    /// `INTERNAL_PORT` (3001), or `PORT` when set.
    pub internal_port: u16,
    /// `BIND_ADDR` (127.0.0.1); containers set 0.0.0.0.
    pub bind_addr: IpAddr,
    /// public-api's admin listener for `/metrics` (`METRICS_BIND_ADDR`:`METRICS_PORT`,
    /// 127.0.0.1:9464): the public port never serves metrics. internal-api serves them on its
    /// own (not exposed) port.
    pub metrics_bind_addr: IpAddr,
    pub metrics_port: u16,
    pub app_env: AppEnv,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub cc_origin: Option<String>,
    pub otp_dev_code: Option<String>,
    pub valkey_key_prefix: String,
    /// `VALKEY_CLUSTER=true`: the cluster protocol (`VALKEY_URL` may then list several seed
    /// nodes, comma-separated). Needs a hash tag in `VALKEY_KEY_PREFIX` (`{halo}:`), which
    /// puts every mirror key in one slot so the multi-key scripts stay legal.
    pub valkey_cluster: bool,
    /// `VALKEY_CA_CERT`: a PEM file with the CA of a `rediss://` server's certificate.
    pub valkey_ca_cert: Option<PathBuf>,
    pub auto_offline_sweep: Duration,
    pub heartbeat_mirror_interval: Duration,
    /// `None` when `VALKEY_ONLINE_MIRROR_SWEEP_SECONDS=0` (reconciliation disabled).
    pub reconciliation_sweep: Option<Duration>,
    pub log_format: LogFormat,
    /// `LOG_SLOW_REQUEST_MS` (500): a request slower than this is logged at WARN, hot path or
    /// not.
    pub log_slow_request: Duration,
    /// Per-call Valkey timeout, so a hung Valkey fails fast.
    pub valkey_timeout: Duration,
    /// How often each instance checks that the mirror was not flushed.
    pub mirror_watch_interval: Duration,
    /// `SSE_PING_INTERVAL_MS` (15000): the comment ping of every event stream, which is also
    /// how soon a client that went away is noticed (the write fails).
    pub sse_ping_interval: Duration,
    pub pg_pool_size: usize,
    /// Pool wait/connect timeout and `statement_timeout` for Postgres.
    pub pg_timeout: Duration,
    /// Test only (`HALO_TEST_CLOCK_OFFSET_SECONDS`, refused unless `APP_ENV=test`): this
    /// instance's clock runs this many seconds ahead (negative: behind), to prove that no
    /// deadline is judged by an instance's clock.
    pub clock_offset_seconds: i64,
    /// Abuse limits: the defaults of `halo_domain::LimitedAction`, each overridable with
    /// `RATE_LIMIT_<ACTION>=<count>/<seconds>` (e.g. `RATE_LIMIT_OTP_REQUEST_PER_PHONE=5/900`).
    pub rate_limits: halo_domain::RateLimits,
    /// `CLIENT_ADDRESS_HEADER` (e.g. `x-forwarded-for`): the header the trusted load balancer
    /// writes the caller's address into (its last entry is used). Unset: the TCP peer's address,
    /// and any such header is ignored (a caller could write anything into it).
    pub client_address_header: Option<String>,
    /// `MIGRATE_ON_START` (default `true`): apply pending migrations before serving. `false`
    /// when a separate step runs `<binary> migrate` (a deploy's migration job); the service
    /// then refuses to start while the schema is behind the build.
    pub migrate_on_start: bool,
    /// OpenTelemetry trace export (`OTEL_EXPORTER_OTLP_ENDPOINT` and friends); `None`: off.
    pub trace_export: Option<TraceExport>,
}

/// What the `migrate` subcommand reads: only the database and logging, so a migration job
/// needs no Valkey or token secrets.
#[derive(Debug, Clone)]
pub struct MigrationConfig {
    pub database_url: Secret,
    /// `PG_TIMEOUT_MS`, used here only as the connect timeout (no `statement_timeout`).
    pub connect_timeout: Duration,
    pub log_format: LogFormat,
}

impl MigrationConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        Ok(Self {
            database_url: Secret::new(vars.required("DATABASE_URL")?),
            connect_timeout: Duration::from_millis(vars.positive("PG_TIMEOUT_MS", 5000)?),
            log_format: vars.parsed("LOG_FORMAT", LogFormat::Pretty, parse_log_format)?,
        })
    }
}

/// Why start-up stopped: the variable and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {variable} {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

const MIN_JWT_SECRET_BYTES: usize = 32;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        let app_env = vars.parsed("APP_ENV", AppEnv::Development, parse_app_env)?;
        let auth_jwt_secret = vars.required("AUTH_JWT_SECRET")?;
        if auth_jwt_secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(error(
                "AUTH_JWT_SECRET",
                format!(
                    "must be at least {MIN_JWT_SECRET_BYTES} bytes, got {}",
                    auth_jwt_secret.len()
                ),
            ));
        }
        let otp_dev_code = vars.optional("OTP_DEV_CODE");
        if otp_dev_code.is_some() && app_env == AppEnv::Production {
            return Err(error(
                "OTP_DEV_CODE",
                "is refused when APP_ENV=production".into(),
            ));
        }
        let clock_offset_seconds = vars.number("HALO_TEST_CLOCK_OFFSET_SECONDS", 0i64)?;
        if clock_offset_seconds != 0 && app_env != AppEnv::Test {
            return Err(error(
                "HALO_TEST_CLOCK_OFFSET_SECONDS",
                "is accepted only when APP_ENV=test".into(),
            ));
        }
        let mut rate_limits = halo_domain::RateLimits::default();
        for action in halo_domain::LimitedAction::ALL {
            let name = RATE_LIMIT_VARIABLES[action as usize];
            if let Some(raw) = vars.optional(name) {
                let limit =
                    halo_domain::RateLimit::parse(&raw).map_err(|e| error(name, e.to_string()))?;
                rate_limits = rate_limits.with(action, limit);
            }
        }
        let valkey_key_prefix = vars.optional("VALKEY_KEY_PREFIX").unwrap_or_default();
        let valkey_cluster = vars.parsed("VALKEY_CLUSTER", false, parse_bool)?;
        if valkey_cluster && hash_tag(&valkey_key_prefix).is_none() {
            return Err(error(
                "VALKEY_KEY_PREFIX",
                format!(
                    "{valkey_key_prefix:?} has no hash tag, which VALKEY_CLUSTER=true needs: \
                     the mirror's scripts and pipelines touch several keys at once, and a \
                     cluster allows that only within one slot; use e.g. \"{{halo}}:\""
                ),
            ));
        }
        // `PORT` (set by Cloud Run and most container platforms) is the port of the one service
        // this process starts: it overrides both PUBLIC_PORT and INTERNAL_PORT, which are still
        // checked. Run both services from one environment without it.
        let port = vars.optional_number::<u16>("PORT")?;
        let public_port = vars.number("PUBLIC_PORT", 3000)?;
        let internal_port = vars.number("INTERNAL_PORT", 3001)?;
        let client_address_header = vars
            .optional("CLIENT_ADDRESS_HEADER")
            .map(|h| h.trim().to_ascii_lowercase());
        Ok(Self {
            rate_limits,
            client_address_header,
            clock_offset_seconds,
            database_url: Secret::new(vars.required("DATABASE_URL")?),
            valkey_url: Secret::new(vars.required("VALKEY_URL")?),
            auth_jwt_secret: Secret::new(auth_jwt_secret),
            public_port: port.unwrap_or(public_port),
            internal_port: port.unwrap_or(internal_port),
            bind_addr: vars.number("BIND_ADDR", IpAddr::from([127, 0, 0, 1]))?,
            metrics_bind_addr: vars.number("METRICS_BIND_ADDR", IpAddr::from([127, 0, 0, 1]))?,
            metrics_port: vars.number("METRICS_PORT", 9464)?,
            app_env,
            access_token_ttl: secs(vars.positive("ACCESS_TOKEN_TTL_SECONDS", 3600)?),
            refresh_token_ttl: secs(vars.positive("REFRESH_TOKEN_TTL_DAYS", 30)? * 86_400),
            cc_origin: vars.optional("CC_ORIGIN"),
            otp_dev_code,
            valkey_key_prefix,
            valkey_cluster,
            valkey_ca_cert: vars.optional("VALKEY_CA_CERT").map(PathBuf::from),
            auto_offline_sweep: secs(vars.positive("MITRA_AUTO_OFFLINE_SWEEP_SECONDS", 30)?),
            heartbeat_mirror_interval: secs(
                vars.positive("HEARTBEAT_MIRROR_INTERVAL_SECONDS", 60)?,
            ),
            reconciliation_sweep: match vars
                .number::<u64>("VALKEY_ONLINE_MIRROR_SWEEP_SECONDS", 300)?
            {
                0 => None,
                n => Some(secs(n)),
            },
            // Production logs are for a log pipeline (Cloud Logging reads `severity`); local
            // runs are for people.
            log_format: vars.parsed(
                "LOG_FORMAT",
                if app_env == AppEnv::Production {
                    LogFormat::Json
                } else {
                    LogFormat::Pretty
                },
                parse_log_format,
            )?,
            log_slow_request: Duration::from_millis(vars.positive("LOG_SLOW_REQUEST_MS", 500)?),
            valkey_timeout: Duration::from_millis(vars.positive("VALKEY_TIMEOUT_MS", 250)?),
            mirror_watch_interval: Duration::from_millis(
                vars.positive("MIRROR_WATCH_INTERVAL_MS", 1000)?,
            ),
            sse_ping_interval: Duration::from_millis(
                vars.positive("SSE_PING_INTERVAL_MS", 15_000)?,
            ),
            pg_pool_size: vars.positive("PG_POOL_SIZE", 16)?,
            pg_timeout: Duration::from_millis(vars.positive("PG_TIMEOUT_MS", 5000)?),
            migrate_on_start: vars.parsed("MIGRATE_ON_START", true, parse_bool)?,
            trace_export: TraceExport::from_vars(|name| {
                vars.optional(name).map(|v| v.trim().to_owned())
            })?,
        })
    }
}

/// Every variable `Config::from_lookup` reads (a test records its lookups and compares), so that
/// deploy files can be checked for names the services would ignore. `MIGRATE_ON_START` belongs
/// to the start-up migration switch (`<binary> migrate` runs them on their own). The `OTEL_*`
/// variables after `OTEL_TRACES_SAMPLER_ARG` are read by the OpenTelemetry SDK and exporter
/// themselves, and only while exporting.
pub fn variables() -> impl Iterator<Item = &'static str> {
    SERVICE_VARIABLES
        .iter()
        .chain(&RATE_LIMIT_VARIABLES)
        .chain(TRACE_EXPORT_VARIABLES)
        .copied()
}

/// The service's own variables (`variables` lists them with the others).
const SERVICE_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "VALKEY_URL",
    "AUTH_JWT_SECRET",
    "PORT",
    "PUBLIC_PORT",
    "INTERNAL_PORT",
    "BIND_ADDR",
    "METRICS_BIND_ADDR",
    "METRICS_PORT",
    "APP_ENV",
    "ACCESS_TOKEN_TTL_SECONDS",
    "REFRESH_TOKEN_TTL_DAYS",
    "CC_ORIGIN",
    "OTP_DEV_CODE",
    "VALKEY_KEY_PREFIX",
    "VALKEY_CLUSTER",
    "VALKEY_CA_CERT",
    "MITRA_AUTO_OFFLINE_SWEEP_SECONDS",
    "HEARTBEAT_MIRROR_INTERVAL_SECONDS",
    "VALKEY_ONLINE_MIRROR_SWEEP_SECONDS",
    "LOG_FORMAT",
    "LOG_SLOW_REQUEST_MS",
    "VALKEY_TIMEOUT_MS",
    "MIRROR_WATCH_INTERVAL_MS",
    "SSE_PING_INTERVAL_MS",
    "PG_POOL_SIZE",
    "PG_TIMEOUT_MS",
    "HALO_TEST_CLOCK_OFFSET_SECONDS",
    "CLIENT_ADDRESS_HEADER",
    "MIGRATE_ON_START",
];

/// OpenTelemetry's standard variables: ours up to `OTEL_TRACES_SAMPLER_ARG`, the rest read by
/// the SDK and exporter themselves.
const TRACE_EXPORT_VARIABLES: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_RESOURCE_ATTRIBUTES",
];

/// `RATE_LIMIT_<ACTION>`, in the order of `LimitedAction::ALL` (a test checks the order).
pub const RATE_LIMIT_VARIABLES: [&str; 7] = [
    "RATE_LIMIT_OTP_REQUEST_PER_PHONE",
    "RATE_LIMIT_OTP_REQUEST_PER_ADDRESS",
    "RATE_LIMIT_OTP_VERIFY_PER_PHONE",
    "RATE_LIMIT_OTP_VERIFY_PER_ADDRESS",
    "RATE_LIMIT_OPERATOR_LOGIN_PER_EMAIL",
    "RATE_LIMIT_OPERATOR_LOGIN_PER_ADDRESS",
    "RATE_LIMIT_CHAT_REQUEST_PER_CUSTOMER",
];

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn error(variable: &'static str, problem: String) -> ConfigError {
    ConfigError { variable, problem }
}

fn parse_app_env(s: &str) -> Option<AppEnv> {
    match s {
        "development" => Some(AppEnv::Development),
        "test" => Some(AppEnv::Test),
        "production" => Some(AppEnv::Production),
        _ => None,
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The hash tag of keys that start with `prefix`, as a cluster computes slots: the text between
/// the first `{` and the first `}` after it, if not empty (otherwise the whole key is hashed).
pub fn hash_tag(prefix: &str) -> Option<&str> {
    let open = prefix.find('{')?;
    let rest = &prefix[open + 1..];
    let close = rest.find('}')?;
    (close > 0).then(|| &rest[..close])
}

fn parse_log_format(s: &str) -> Option<LogFormat> {
    match s {
        "pretty" => Some(LogFormat::Pretty),
        "json" => Some(LogFormat::Json),
        _ => None,
    }
}

/// Typed access to variables; an empty value counts as unset.
struct Vars<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Vars<'_, F> {
    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name)
            .ok_or_else(|| error(name, "is required but not set".into()))
    }

    fn parsed<T>(
        &self,
        name: &'static str,
        default: T,
        parse: fn(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => parse(raw.trim())
                .ok_or_else(|| error(name, format!("has an unknown value {raw:?}"))),
        }
    }

    fn number<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        Ok(self.optional_number(name)?.unwrap_or(default))
    }

    fn optional_number<T: FromStr>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.optional(name)
            .map(|raw| {
                raw.trim()
                    .parse()
                    .map_err(|e| error(name, format!("is not valid ({e}): {raw:?}")))
            })
            .transpose()
    }

    fn positive<T: FromStr + Default + PartialEq>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let value = self.number(name, default)?;
        if value == T::default() {
            return Err(error(name, "must be greater than 0".into()));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests;
