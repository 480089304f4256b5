//! Structured logs: pretty for people, JSON for machines (the default in production);
//! `RUST_LOG` filters (default info).
//!
//! The JSON form is one object per line in the shape Cloud Logging reads: `severity` (its
//! names: WARNING, not WARN), `time`, `message`, the event's fields and those of the spans it
//! happened in (the request's `request_id` and `trace_id`) at the top level, and, when
//! `GOOGLE_CLOUD_PROJECT` is set, `logging.googleapis.com/trace` so the console groups a
//! request's lines. Phone numbers are masked in every line, whatever field holds them.

use halo_config::LogFormat;
use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(CloudJson {
                project: std::env::var("GOOGLE_CLOUD_PROJECT")
                    .ok()
                    .filter(|p| !p.is_empty()),
            })
            .try_init(),
    };
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
                    line.extend(fields);
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
            let span = tracing::info_span!("request", request_id = "r-1", trace_id = "abc123");
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
