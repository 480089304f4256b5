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
pub(crate) const SAMPLER: &str = "OTEL_TRACES_SAMPLER";
pub(crate) const SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// The share of new traces (no caller's decision) sampled when `OTEL_TRACES_SAMPLER` is unset:
/// exporting every heartbeat cost 1.75x the CPU per request at 20k/s (scripts/bench-otlp.sh),
/// a tenth of them 1.16-1.26x.
pub const DEFAULT_TRACE_RATIO: f64 = 0.1;
/// The one protocol this build exports with.
const HTTP_PROTOBUF: &str = "http/protobuf";
/// Where OTLP/HTTP takes spans under a base endpoint (OTLP exporter specification).
const TRACES_PATH: &str = "/v1/traces";

/// Where and as whom spans are exported.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExport {
    /// The URL spans are POSTed to: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended (the standard rule).
    pub traces_url: String,
    /// `OTEL_SERVICE_NAME`; `None`: the binary's name.
    pub service_name: Option<String>,
    pub sampling: Sampling,
}

/// Which traces are recorded (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, as the
/// OpenTelemetry SDK environment specification names them). Unset:
/// `parentbased_traceidratio` at [`DEFAULT_TRACE_RATIO`] — not the SDK's
/// `parentbased_always_on`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// A caller's `traceparent` decides for its trace (`parentbased_*`).
    pub parent_based: bool,
    /// The share of the traces this service starts (or of all, without `parent_based`):
    /// 1 = `always_on`, 0 = `always_off`.
    pub ratio: f64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            parent_based: true,
            ratio: DEFAULT_TRACE_RATIO,
        }
    }
}

impl Sampling {
    fn from_vars(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let Some(sampler) = lookup(SAMPLER) else {
            return Ok(Self::default());
        };
        let (parent_based, kind) = match sampler.strip_prefix("parentbased_") {
            Some(kind) => (true, kind),
            None => (false, sampler.as_str()),
        };
        let ratio = match kind {
            "always_on" => 1.0,
            "always_off" => 0.0,
            "traceidratio" => match lookup(SAMPLER_ARG) {
                None => 1.0,
                Some(arg) => arg
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        error(SAMPLER_ARG, format!("must be a ratio from 0 to 1: {arg:?}"))
                    })?,
            },
            _ => {
                return Err(error(
                    SAMPLER,
                    format!(
                        "{sampler:?} is not supported: always_on, always_off, traceidratio, \
                         parentbased_always_on, parentbased_always_off or \
                         parentbased_traceidratio"
                    ),
                ))
            }
        };
        Ok(Self {
            parent_based,
            ratio,
        })
    }
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
            sampling: Sampling::from_vars(&lookup)?,
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
    fn sampling_is_a_tenth_of_new_traces_unless_told_otherwise() {
        let sampling = |vars: &[(&str, &str)]| {
            let mut all = vec![(ENDPOINT, "http://localhost:4318")];
            all.extend_from_slice(vars);
            export(&all)
                .unwrap_or_else(|e| panic!("{e}"))
                .map(|e| e.sampling)
        };
        let check = |vars: &[(&str, &str)], parent_based, ratio| {
            assert_eq!(
                sampling(vars),
                Some(Sampling {
                    parent_based,
                    ratio
                }),
                "{vars:?}"
            );
        };
        check(&[], true, DEFAULT_TRACE_RATIO);
        check(&[(SAMPLER, "parentbased_always_on")], true, 1.0);
        check(&[(SAMPLER, "always_off")], false, 0.0);
        check(&[(SAMPLER, "traceidratio")], false, 1.0);
        check(
            &[(SAMPLER, "parentbased_traceidratio"), (SAMPLER_ARG, "0.25")],
            true,
            0.25,
        );
        // The argument belongs to the ratio samplers only.
        check(&[(SAMPLER, "always_on"), (SAMPLER_ARG, "x")], false, 1.0);
        for arg in ["1.5", "-0.1", "half"] {
            let vars = [
                (ENDPOINT, "http://localhost:4318"),
                (SAMPLER, "parentbased_traceidratio"),
                (SAMPLER_ARG, arg),
            ];
            let refused = export(&vars).expect_err(arg);
            assert_eq!(refused.variable, SAMPLER_ARG);
        }
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
            (SAMPLER, "xray", "not supported"),
            (SAMPLER, "parentbased_jaeger_remote", "not supported"),
        ] {
            let with_endpoint = [(ENDPOINT, "http://localhost:4318"), (name, value)];
            let refused = export(&with_endpoint).expect_err(value);
            assert_eq!(refused.variable, name, "{value}");
            assert!(refused.problem.contains(part), "{value}: {refused}");
        }
    }
}
