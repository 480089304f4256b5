use super::*;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn load(overrides: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut vars: HashMap<String, String> = [
        ("DATABASE_URL", "postgres://localhost/halo"),
        ("VALKEY_URL", "redis://127.0.0.1/"),
        ("AUTH_JWT_SECRET", SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    Config::from_lookup(|name| vars.get(name).cloned())
}

fn check_fails(overrides: &[(&str, &str)], variable: &str, problem_part: &str) {
    let err = load(overrides).expect_err("config should be refused");
    assert_eq!(err.variable, variable, "{overrides:?}");
    assert!(err.problem.contains(problem_part), "{err}");
    assert!(err.to_string().contains(variable));
    assert!(!err.to_string().contains('\n'), "one line: {err}");
}

#[test]
fn defaults_follow_the_spec() {
    let c = load(&[]).expect("valid");
    assert_eq!(c.public_port, 3000);
    assert_eq!(c.internal_port, 3001);
    assert_eq!(c.bind_addr.to_string(), "127.0.0.1");
    assert_eq!(c.app_env, AppEnv::Development);
    assert_eq!(c.access_token_ttl, Duration::from_secs(3600));
    assert_eq!(c.refresh_token_ttl, Duration::from_secs(30 * 86_400));
    assert_eq!(c.valkey_key_prefix, "");
    assert_eq!(c.auto_offline_sweep, Duration::from_secs(30));
    assert_eq!(c.heartbeat_mirror_interval, Duration::from_secs(60));
    assert_eq!(c.reconciliation_sweep, Some(Duration::from_secs(300)));
    assert_eq!(c.log_format, LogFormat::Pretty);
    assert_eq!(c.valkey_timeout, Duration::from_millis(250));
    assert_eq!(c.cc_origin, None);
    assert_eq!(c.otp_dev_code, None);
    assert_eq!(c.trace_export, None);
}

#[test]
fn trace_export_is_on_with_an_endpoint_and_refuses_a_bad_one() {
    let c = load(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " http://localhost:4318 ")]).expect("valid");
    let export = c.trace_export.expect("exporting");
    assert_eq!(export.traces_url, "http://localhost:4318/v1/traces");
    assert_eq!(export.service_name, None);
    check_fails(
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "not a usable OTLP endpoint",
    );
}

#[test]
fn every_variable_is_read() {
    let c = load(&[
        ("PUBLIC_PORT", "4000"),
        ("INTERNAL_PORT", "4001"),
        ("BIND_ADDR", "::1"),
        ("APP_ENV", "test"),
        ("ACCESS_TOKEN_TTL_SECONDS", "60"),
        ("REFRESH_TOKEN_TTL_DAYS", "2"),
        ("CC_ORIGIN", "http://localhost:5173"),
        ("OTP_DEV_CODE", "123456"),
        ("VALKEY_KEY_PREFIX", "t1:"),
        ("MITRA_AUTO_OFFLINE_SWEEP_SECONDS", "10"),
        ("HEARTBEAT_MIRROR_INTERVAL_SECONDS", "15"),
        ("VALKEY_ONLINE_MIRROR_SWEEP_SECONDS", "0"),
        ("LOG_FORMAT", "json"),
    ])
    .expect("valid");
    assert_eq!((c.public_port, c.internal_port), (4000, 4001));
    assert_eq!(c.bind_addr.to_string(), "::1");
    assert_eq!(c.app_env, AppEnv::Test);
    assert_eq!(c.access_token_ttl, Duration::from_secs(60));
    assert_eq!(c.refresh_token_ttl, Duration::from_secs(2 * 86_400));
    assert_eq!(c.cc_origin.as_deref(), Some("http://localhost:5173"));
    assert_eq!(c.otp_dev_code.as_deref(), Some("123456"));
    assert_eq!(c.valkey_key_prefix, "t1:");
    assert_eq!(c.auto_offline_sweep, Duration::from_secs(10));
    assert_eq!(c.heartbeat_mirror_interval, Duration::from_secs(15));
    assert_eq!(
        c.reconciliation_sweep, None,
        "0 disables the reconciliation sweep"
    );
    assert_eq!(c.log_format, LogFormat::Json);
}

#[test]
fn each_bad_value_names_its_variable() {
    check_fails(&[("DATABASE_URL", "")], "DATABASE_URL", "required");
    check_fails(&[("VALKEY_URL", " ")], "VALKEY_URL", "required");
    check_fails(&[("AUTH_JWT_SECRET", "")], "AUTH_JWT_SECRET", "required");
    check_fails(
        &[("AUTH_JWT_SECRET", "short")],
        "AUTH_JWT_SECRET",
        "at least 32 bytes",
    );
    check_fails(
        &[("AUTH_JWT_SECRET", &SECRET[1..])],
        "AUTH_JWT_SECRET",
        "got 31",
    );
    check_fails(&[("PUBLIC_PORT", "70000")], "PUBLIC_PORT", "not valid");
    check_fails(&[("PORT", "http")], "PORT", "not valid");
    check_fails(&[("INTERNAL_PORT", "x")], "INTERNAL_PORT", "not valid");
    check_fails(&[("BIND_ADDR", "localhost")], "BIND_ADDR", "not valid");
    check_fails(&[("APP_ENV", "staging")], "APP_ENV", "unknown value");
    check_fails(
        &[("ACCESS_TOKEN_TTL_SECONDS", "0")],
        "ACCESS_TOKEN_TTL_SECONDS",
        "greater than 0",
    );
    check_fails(
        &[("REFRESH_TOKEN_TTL_DAYS", "-1")],
        "REFRESH_TOKEN_TTL_DAYS",
        "not valid",
    );
    check_fails(
        &[("MITRA_AUTO_OFFLINE_SWEEP_SECONDS", "0")],
        "MITRA_AUTO_OFFLINE_SWEEP_SECONDS",
        "greater than 0",
    );
    check_fails(
        &[("HEARTBEAT_MIRROR_INTERVAL_SECONDS", "abc")],
        "HEARTBEAT_MIRROR_INTERVAL_SECONDS",
        "not valid",
    );
    check_fails(
        &[("VALKEY_ONLINE_MIRROR_SWEEP_SECONDS", "-5")],
        "VALKEY_ONLINE_MIRROR_SWEEP_SECONDS",
        "not valid",
    );
    check_fails(&[("LOG_FORMAT", "xml")], "LOG_FORMAT", "unknown value");
    check_fails(
        &[("VALKEY_TIMEOUT_MS", "0")],
        "VALKEY_TIMEOUT_MS",
        "greater than 0",
    );
    check_fails(&[("PG_POOL_SIZE", "0")], "PG_POOL_SIZE", "greater than 0");
}

#[test]
fn otp_dev_code_is_refused_in_production() {
    check_fails(
        &[("APP_ENV", "production"), ("OTP_DEV_CODE", "000000")],
        "OTP_DEV_CODE",
        "production",
    );
    assert!(load(&[("APP_ENV", "production")]).is_ok());
}

#[test]
fn secrets_never_print() {
    let c = load(&[]).expect("valid");
    let printed = format!("{c:?}");
    assert!(!printed.contains(SECRET));
    assert!(!printed.contains("postgres://"));
}

#[test]
fn a_skewed_clock_is_for_tests_only() {
    check_fails(
        &[
            ("APP_ENV", "development"),
            ("HALO_TEST_CLOCK_OFFSET_SECONDS", "3600"),
        ],
        "HALO_TEST_CLOCK_OFFSET_SECONDS",
        "APP_ENV=test",
    );
    let c = load(&[
        ("APP_ENV", "test"),
        ("HALO_TEST_CLOCK_OFFSET_SECONDS", "-30"),
    ])
    .expect("valid in test");
    assert_eq!(c.clock_offset_seconds, -30);
    assert_eq!(load(&[]).expect("valid").clock_offset_seconds, 0);
}

#[test]
fn rate_limits_come_from_their_variables() {
    for (action, name) in halo_domain::LimitedAction::ALL
        .into_iter()
        .zip(crate::RATE_LIMIT_VARIABLES)
    {
        assert_eq!(
            name,
            format!("RATE_LIMIT_{}", action.as_str().to_uppercase())
        );
    }
    let c = load(&[("RATE_LIMIT_OTP_REQUEST_PER_PHONE", "3/2")]).expect("valid");
    let limit = c
        .rate_limits
        .get(halo_domain::LimitedAction::OtpRequestPerPhone);
    assert_eq!((limit.max(), limit.window()), (3, Duration::from_secs(2)));
    check_fails(
        &[("RATE_LIMIT_CHAT_REQUEST_PER_CUSTOMER", "0/10")],
        "RATE_LIMIT_CHAT_REQUEST_PER_CUSTOMER",
        "count",
    );
    assert_eq!(load(&[]).expect("valid").client_address_header, None);
}

#[test]
fn cluster_mode_needs_a_hash_tag_in_the_prefix() {
    let c = load(&[]).expect("valid");
    assert!(!c.valkey_cluster);
    assert_eq!(c.valkey_ca_cert, None);
    for prefix in ["", "halo:", "{}halo:", "{halo", "halo}:"] {
        check_fails(
            &[("VALKEY_CLUSTER", "true"), ("VALKEY_KEY_PREFIX", prefix)],
            "VALKEY_KEY_PREFIX",
            "hash tag",
        );
    }
    let c = load(&[
        ("VALKEY_CLUSTER", "true"),
        ("VALKEY_KEY_PREFIX", "{halo}:"),
        ("VALKEY_CA_CERT", "/etc/halo/valkey-ca.pem"),
    ])
    .expect("valid");
    assert!(c.valkey_cluster);
    assert_eq!(
        c.valkey_ca_cert.as_deref(),
        Some(std::path::Path::new("/etc/halo/valkey-ca.pem"))
    );
    check_fails(
        &[("VALKEY_CLUSTER", "maybe")],
        "VALKEY_CLUSTER",
        "unknown value",
    );
}

#[test]
fn migrate_on_start_defaults_to_true_and_refuses_other_words() {
    assert!(load(&[]).expect("valid").migrate_on_start);
    assert!(
        !load(&[("MIGRATE_ON_START", "false")])
            .expect("valid")
            .migrate_on_start
    );
    assert!(
        load(&[("MIGRATE_ON_START", "true")])
            .expect("valid")
            .migrate_on_start
    );
    check_fails(
        &[("MIGRATE_ON_START", "maybe")],
        "MIGRATE_ON_START",
        "unknown value",
    );
}

#[test]
fn hash_tag_follows_the_cluster_rule() {
    fn check(prefix: &str, expected: Option<&str>) {
        assert_eq!(hash_tag(prefix), expected, "{prefix:?}");
    }
    check("{halo}:", Some("halo"));
    check("app:{halo}:", Some("halo"));
    check("{a}{b}", Some("a"));
    check("{}{b}", None);
    check("{halo", None);
    check("halo}", None);
    check("}{x}", Some("x"));
    check("", None);
}

#[test]
fn port_is_the_port_of_the_service_started() {
    let c = load(&[("PORT", "8080")]).expect("valid");
    assert_eq!((c.public_port, c.internal_port), (8080, 8080));
    let c = load(&[
        ("PORT", "8080"),
        ("PUBLIC_PORT", "4000"),
        ("INTERNAL_PORT", "4001"),
    ])
    .expect("valid");
    assert_eq!(
        (c.public_port, c.internal_port),
        (8080, 8080),
        "PORT wins over both"
    );
    let c = load(&[("PORT", " "), ("PUBLIC_PORT", "4000")]).expect("valid");
    assert_eq!(
        (c.public_port, c.internal_port),
        (4000, 3001),
        "empty is unset"
    );
    check_fails(
        &[("PORT", "8080"), ("INTERNAL_PORT", "x")],
        "INTERNAL_PORT",
        "not valid",
    );
}

/// Variables in `variables()` that `from_lookup` does not read: the OpenTelemetry SDK and
/// exporter read these themselves when exporting.
const READ_ELSEWHERE: &[&str] = &[
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_RESOURCE_ATTRIBUTES",
];

#[test]
fn variables_lists_exactly_what_from_lookup_reads() {
    let base: HashMap<&str, &str> = [
        ("DATABASE_URL", "postgres://localhost/halo"),
        ("VALKEY_URL", "redis://127.0.0.1/"),
        ("AUTH_JWT_SECRET", SECRET),
        // the other OTEL_* variables are read only once exporting
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
    ]
    .into_iter()
    .collect();
    let asked = RefCell::new(BTreeSet::new());
    Config::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        base.get(name).map(|v| (*v).to_owned())
    })
    .expect("valid");
    let asked = asked.into_inner();
    let listed: BTreeSet<String> = variables().map(str::to_owned).collect();
    assert_eq!(listed.len(), variables().count(), "no duplicates");
    let unlisted: Vec<&String> = asked.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "read but not in variables(): {unlisted:?}"
    );
    let unread: Vec<&String> = listed
        .difference(&asked)
        .filter(|v| !READ_ELSEWHERE.contains(&v.as_str()))
        .collect();
    assert!(
        unread.is_empty(),
        "in variables() but never read: {unread:?}"
    );
    for name in RATE_LIMIT_VARIABLES {
        assert!(listed.contains(name), "{name}");
    }
}

#[test]
fn the_migrate_subcommand_needs_only_the_database() {
    let only_db = |name: &str| (name == "DATABASE_URL").then(|| "postgres://h/db".to_owned());
    let c = MigrationConfig::from_lookup(only_db).expect("valid");
    assert_eq!(c.connect_timeout, Duration::from_millis(5000));
    assert!(!format!("{c:?}").contains("postgres://"));
    let err = MigrationConfig::from_lookup(|_| None).expect_err("no DATABASE_URL");
    assert_eq!(err.variable, "DATABASE_URL");
}
