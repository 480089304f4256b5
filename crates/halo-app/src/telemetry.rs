//! Structured logs: pretty for people, JSON for machines (the default in production);
//! `RUST_LOG` filters (default info). With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also
//! exported over OTLP/HTTP (see [`init_tracing_and_export`]).
//!
//! The JSON form is one object per line in the shape Cloud Logging reads: `severity` (its
//! names: WARNING, not WARN), `time`, `message`, the event's fields and those of the spans it
//! happened in (the request's `request_id` and `trace_id`) at the top level, and, when
//! `GOOGLE_CLOUD_PROJECT` is set, `logging.googleapis.com/trace` so the console groups a
//! request's lines. Phone numbers are masked in every line, whatever field holds them.

use halo_config::{LogFormat, Sampling, TraceExport};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::fmt;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Span fields meant for the exporter (`otel.name`, `otel.kind`), kept out of log lines.
const OTEL_FIELD_PREFIX: &str = "otel.";

/// Logs only (no exporter): the one-shot commands, and `serve` without an OTLP endpoint.
pub fn init_tracing(format: LogFormat) {
    let builder = tracing_subscriber::fmt().with_env_filter(env_filter());
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(cloud_json())
            .try_init(),
    };
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot set up the OTLP trace exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot install the log and trace subscriber")]
    Subscriber(#[source] tracing_subscriber::util::TryInitError),
}

/// The exporter of a serving process; [`Telemetry::shutdown`] sends what is still queued.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued (the last requests before SIGTERM) and stops the
    /// exporter. A failed export is logged, not fatal.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                tracing::warn!(%error, "trace export: the last spans may be lost");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Logs as [`init_tracing`] does, and exports spans to `export.traces_url` with a batch
/// processor (its own thread; `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS` and `…_TIMEOUT` are
/// read by the SDK), sampled as `export.sampling` says. `RUST_LOG` keeps filtering the logs
/// only; what is exported is [`exported`]. An export that fails (collector down) is logged by
/// the SDK and dropped: it never fails a request.
pub fn init_tracing_and_export(
    format: LogFormat,
    export: &TraceExport,
    binary: &'static str,
) -> Result<Telemetry, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(export.traces_url.as_str())
        .build()
        .map_err(TelemetryError::Exporter)?;
    let service_name = export.service_name.clone().unwrap_or_else(|| binary.into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler(export.sampling))
        .with_resource(
            Resource::builder()
                .with_service_name(service_name)
                .with_attributes([
                    KeyValue::new("service.version", halo_build_info::VERSION),
                    KeyValue::new("vcs.ref.head.revision", halo_build_info::GIT_REVISION),
                ])
                .build(),
        )
        .build();
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(binary))
        // Per-span costs nobody reads: thread names, busy/idle timings, source locations, and
        // an OpenTelemetry context made current on every poll of the request's future.
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_context_activation(false)
        .with_filter(dynamic_filter_fn(exported));
    Registry::default()
        .with(log_layer(format).with_filter(env_filter()))
        .with(spans)
        .try_init()
        .map_err(TelemetryError::Subscriber)?;
    Ok(Telemetry {
        provider: Some(provider),
    })
}

fn sampler(sampling: Sampling) -> Sampler {
    let own = match sampling.ratio {
        r if r >= 1.0 => Sampler::AlwaysOn,
        r if r <= 0.0 => Sampler::AlwaysOff,
        r => Sampler::TraceIdRatioBased(r),
    };
    if sampling.parent_based {
        Sampler::ParentBased(Box::new(own))
    } else {
        own
    }
}

/// What the exporter gets: the request spans, the store calls made inside a *sampled* one
/// (DEBUG spans; those of the background sweeps and timers would be a trace per tick, those of
/// a request the sampler dropped would cost as much as exported ones), and the warnings and
/// errors inside those spans as span events — not every log line, which the logs already carry
/// with the same trace id.
fn exported<S>(meta: &Metadata<'_>, cx: &tracing_subscriber::layer::Context<'_, S>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let level = *meta.level();
    if !meta.is_span() {
        return level <= Level::WARN;
    }
    if !meta.target().starts_with("halo_") || level > Level::DEBUG {
        return false;
    }
    level <= Level::INFO
        || cx.lookup_current().is_some_and(|parent| {
            tracing::dispatcher::get_default(|dispatch| {
                tracing_opentelemetry::get_otel_context(&parent.id(), dispatch)
                    .is_some_and(|otel| otel.span().span_context().is_sampled())
            })
        })
}

fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

fn log_layer(format: LogFormat) -> Box<dyn Layer<Registry> + Send + Sync> {
    match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(cloud_json())
            .boxed(),
    }
}

fn cloud_json() -> CloudJson {
    CloudJson {
        project: std::env::var("GOOGLE_CLOUD_PROJECT")
            .ok()
            .filter(|p| !p.is_empty()),
    }
}

/// The JSON line format (see the module's doc).
pub struct CloudJson {
    pub project: Option<String>,
}

impl<S, N> FormatEvent<S, N> for CloudJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = serde_json::Map::new();
        let now = time::OffsetDateTime::now_utc();
        if let Ok(at) = now.format(&time::format_description::well_known::Rfc3339) {
            line.insert("time".into(), at.into());
        }
        line.insert(
            "severity".into(),
            severity(*event.metadata().level()).into(),
        );
        line.insert("target".into(), event.metadata().target().into());
        // Outermost span first, so an inner span's field of the same name wins.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(serde_json::Value::Object(fields)) =
                    serde_json::from_str::<serde_json::Value>(fields)
                {
                    line.extend(
                        fields
                            .into_iter()
                            .filter(|(name, _)| !name.starts_with(OTEL_FIELD_PREFIX)),
                    );
                }
            }
        }
        event.record(&mut FieldsInto(&mut line));
        if let (Some(project), Some(trace)) =
            (&self.project, line.get("trace_id").and_then(|t| t.as_str()))
        {
            let resource = format!("projects/{project}/traces/{trace}");
            line.insert("logging.googleapis.com/trace".into(), resource.into());
        }
        let text = serde_json::Value::Object(line).to_string();
        writeln!(writer, "{}", halo_domain::mask_phone_numbers(&text))
    }
}

/// Cloud Logging's `LogSeverity` names.
fn severity(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// Records an event's fields as JSON values.
struct FieldsInto<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for FieldsInto<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .fmt_fields(JsonFields::new())
            .event_format(CloudJson {
                project: Some("demo".into()),
            })
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = captured
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
            .collect()
    }

    #[test]
    fn lines_carry_severity_the_request_and_no_phone_number() {
        let lines = lines(|| {
            let span = tracing::info_span!(
                "request",
                request_id = "r-1",
                trace_id = "abc123",
                otel.kind = "server"
            );
            let _inside = span.enter();
            tracing::warn!(
                phone = "+6281234567890",
                event = "otp.sent",
                "sent to +6281234567890"
            );
        });
        let line = &lines[0];
        assert_eq!(line["severity"], "WARNING");
        assert_eq!(line["event"], "otp.sent");
        assert_eq!(line["request_id"], "r-1");
        assert!(line.get("otel.kind").is_none(), "{line}");
        assert_eq!(
            line["logging.googleapis.com/trace"],
            "projects/demo/traces/abc123"
        );
        assert_eq!(line["phone"], "+628********90");
        assert_eq!(line["message"], "sent to +628********90");
        assert!(
            line["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
    }

    #[test]
    fn a_line_outside_a_request_has_no_trace() {
        let lines = lines(|| tracing::info!(count = 3_u64, "listening"));
        assert_eq!(lines[0]["severity"], "INFO");
        assert_eq!(lines[0]["message"], "listening");
        assert_eq!(lines[0]["count"], 3);
        assert!(lines[0].get("logging.googleapis.com/trace").is_none());
    }
}
