//! OpenTelemetry trace export, switched by the standard `OTEL_*` variables: on only when an
//! OTLP endpoint is set. This build speaks OTLP over HTTP/protobuf without TLS, to a collector
//! next to the service (a sidecar on `http://localhost:4318`); anything else is refused here,
//! at start-up, rather than failing every export later.

use crate::{error, ConfigError};

pub(crate) const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub(crate) const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub(crate) const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
pub(crate) const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
pub(crate) const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// The one protocol this build exports with.
const HTTP_PROTOBUF: &str = "http/protobuf";
/// Where OTLP/HTTP takes spans under a base endpoint (OTLP exporter specification).
const TRACES_PATH: &str = "/v1/traces";

/// Where and as whom spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    /// The URL spans are POSTed to: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended (the standard rule).
    pub traces_url: String,
    /// `OTEL_SERVICE_NAME`; `None`: the binary's name.
    pub service_name: Option<String>,
}

impl TraceExport {
    /// The export settings, or `None` when no endpoint is set. `lookup` gives trimmed,
    /// non-empty values.
    pub(crate) fn from_vars(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let traces_url = match (lookup(TRACES_ENDPOINT), lookup(ENDPOINT)) {
            (Some(url), _) => checked_url(TRACES_ENDPOINT, &url)?.to_owned(),
            (None, Some(base)) => {
                let base = checked_url(ENDPOINT, &base)?;
                format!("{}{TRACES_PATH}", base.trim_end_matches('/'))
            }
            (None, None) => return Ok(None),
        };
        for name in [TRACES_PROTOCOL, PROTOCOL] {
            if let Some(protocol) = lookup(name).filter(|p| p != HTTP_PROTOBUF) {
                return Err(error(
                    name,
                    format!(
                        "{protocol:?} is not supported: this build exports traces over \
                         {HTTP_PROTOBUF} only (a collector's port 4318)"
                    ),
                ));
            }
        }
        Ok(Some(Self {
            traces_url,
            service_name: lookup(SERVICE_NAME),
        }))
    }
}

/// `url` when it is `http://host[:port][/path]`; why not otherwise.
fn checked_url<'a>(name: &'static str, url: &'a str) -> Result<&'a str, ConfigError> {
    let problem = |why: &str| {
        error(
            name,
            format!("is not a usable OTLP endpoint ({why}): {url:?}"),
        )
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(problem("expected http://host:port"));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(problem(
            "https needs TLS, which this build's exporter leaves out; export to a collector \
             on http://, e.g. a sidecar on http://localhost:4318",
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(problem("the scheme must be http"));
    }
    let (authority, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
    // `[v6]:port` or `host:port`, the port optional.
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, port)) => (host, Some(port.strip_prefix(':').unwrap_or(port))),
            None => ("", None),
        },
        None => authority
            .split_once(':')
            .map_or((authority, None), |(host, port)| (host, Some(port))),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    if !host_ok {
        return Err(problem("no valid host"));
    }
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err(problem("the port must be a number from 1 to 65535"));
    }
    if path.contains(['?', '#']) || path.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(problem(
            "the path may not hold a query, a fragment or spaces",
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn export(vars: &[(&str, &str)]) -> Result<Option<TraceExport>, ConfigError> {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        TraceExport::from_vars(|name| vars.get(name).map(|v| (*v).to_owned()))
    }

    fn url(vars: &[(&str, &str)]) -> String {
        export(vars)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| e.traces_url)
            .unwrap_or_default()
    }

    #[test]
    fn off_without_an_endpoint_whatever_else_is_set() {
        assert_eq!(export(&[]), Ok(None));
        // A protocol this build cannot speak matters only once exporting.
        assert_eq!(export(&[(SERVICE_NAME, "x"), (PROTOCOL, "grpc")]), Ok(None));
    }

    #[test]
    fn the_traces_path_is_appended_to_the_base_endpoint_only() {
        for (base, expected) in [
            ("http://localhost:4318", "http://localhost:4318/v1/traces"),
            ("http://localhost:4318/", "http://localhost:4318/v1/traces"),
            (
                "http://collector:4318/otlp",
                "http://collector:4318/otlp/v1/traces",
            ),
            ("http://127.0.0.1:9", "http://127.0.0.1:9/v1/traces"),
            ("http://[::1]:4318", "http://[::1]:4318/v1/traces"),
            ("http://[::1]", "http://[::1]/v1/traces"),
        ] {
            assert_eq!(url(&[(ENDPOINT, base)]), expected, "{base}");
        }
        let both = [
            (ENDPOINT, "http://a:4318"),
            (TRACES_ENDPOINT, "http://b:4318/custom"),
        ];
        assert_eq!(url(&both), "http://b:4318/custom");
        assert_eq!(url(&[(TRACES_ENDPOINT, "http://b")]), "http://b");
    }

    #[test]
    fn the_service_name_is_taken_when_exporting() {
        let named = export(&[
            (ENDPOINT, "http://localhost:4318"),
            (SERVICE_NAME, "halo-eu"),
        ]);
        assert_eq!(
            named.ok().flatten().and_then(|e| e.service_name).as_deref(),
            Some("halo-eu")
        );
    }

    #[test]
    fn unusable_endpoints_and_protocols_are_refused_naming_the_variable() {
        for (name, value, part) in [
            (ENDPOINT, "localhost:4318", "http://host:port"),
            (ENDPOINT, "https://collector:4318", "TLS"),
            (ENDPOINT, "grpc://collector:4317", "scheme"),
            (ENDPOINT, "http://", "host"),
            (ENDPOINT, "http://:4318", "host"),
            (ENDPOINT, "http://coll ector:4318", "host"),
            (ENDPOINT, "http://collector:65536", "port"),
            (ENDPOINT, "http://collector:0", "port"),
            (ENDPOINT, "http://collector:http", "port"),
            (
                TRACES_ENDPOINT,
                "http://collector:4318/v1/traces?x=1",
                "query",
            ),
            (PROTOCOL, "grpc", HTTP_PROTOBUF),
            (TRACES_PROTOCOL, "http/json", HTTP_PROTOBUF),
            (ENDPOINT, "http://[::1", "host"),
            (ENDPOINT, "http://[::1]x", "port"),
        ] {
            let with_endpoint = [(ENDPOINT, "http://localhost:4318"), (name, value)];
            let refused = export(&with_endpoint).expect_err(value);
            assert_eq!(refused.variable, name, "{value}");
            assert!(refused.problem.contains(part), "{value}: {refused}");
        }
    }
}
