//! Reading the big replies (one record per online mitra) without intermediate strings: the
//! fields are parsed straight from the reply's byte buffers. At 100k online mitras the reply has
//! 300k fields, so a copy or a general-purpose parser per field shows in the profile.

use halo_domain::{IdleRank, MitraId};
use redis::Value;
use std::collections::HashSet;
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};
use uuid::Uuid;

/// The bytes of a string reply; `None` for nil or anything that is not a string.
fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// An integer or boolean reply that says yes (`SISMEMBER`, `EXISTS`; RESP2 or RESP3).
pub(crate) fn truthy(value: &Value) -> bool {
    matches!(value, Value::Int(1) | Value::Boolean(true))
}

pub(crate) fn mitra_id(value: &Value) -> Option<MitraId> {
    bytes(value)
        .and_then(|b| Uuid::try_parse_ascii(b).ok())
        .map(MitraId::new)
}

/// Unreadable or missing counts as 0.
pub(crate) fn count(value: &Value) -> u32 {
    match value {
        Value::Int(n) => u32::try_from(*n).unwrap_or(0),
        other => bytes(other)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0),
    }
}

/// An unreadable timestamp counts as no heartbeat (the mitra goes stale, the sweep heals it).
pub(crate) fn time(value: &Value) -> Option<OffsetDateTime> {
    parse_time_bytes(bytes(value)?)
}

/// RFC 3339. The form this crate writes (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`) is read by hand,
/// anything else by the `time` crate's parser; both give the same instant.
pub(crate) fn parse_time_bytes(raw: &[u8]) -> Option<OffsetDateTime> {
    fast_utc(raw).or_else(|| {
        std::str::from_utf8(raw)
            .ok()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
    })
}

fn digits(raw: &[u8]) -> Option<u32> {
    raw.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

fn fast_utc(raw: &[u8]) -> Option<OffsetDateTime> {
    if raw.len() < 20 || raw.len() > 30 || raw[raw.len() - 1] != b'Z' {
        return None;
    }
    let sep = |i: usize, c: u8| raw[i] == c;
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let year = i32::try_from(digits(&raw[0..4])?).ok()?;
    let month = Month::try_from(u8::try_from(digits(&raw[5..7])?).ok()?).ok()?;
    let day = u8::try_from(digits(&raw[8..10])?).ok()?;
    let hour = u8::try_from(digits(&raw[11..13])?).ok()?;
    let minute = u8::try_from(digits(&raw[14..16])?).ok()?;
    let second = u8::try_from(digits(&raw[17..19])?).ok()?;
    let rest = &raw[19..raw.len() - 1];
    let nanos = match rest {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            digits(fraction)? * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    // Leap seconds and the like go to the full parser.
    let time = Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// `(id, heartbeat, open sessions)` from a flat reply `id, heartbeat, capacity, id, ...`,
/// skipping the ids in `excluded` and members that are not ids (they cannot be available;
/// drift reports them).
pub(crate) fn candidates(
    flat: &[Value],
    excluded: &HashSet<MitraId>,
) -> Vec<(MitraId, Option<OffsetDateTime>, u32)> {
    flat.chunks_exact(3)
        .filter_map(|record| {
            let id = mitra_id(&record[0])?;
            if excluded.contains(&id) {
                return None;
            }
            Some((id, time(&record[1]), count(&record[2])))
        })
        .collect()
}

/// A sorted-set score as an idle rank (RESP2 sends it as a string, RESP3 as a double).
pub(crate) fn idle_rank(value: &Value) -> Option<IdleRank> {
    let score = match value {
        Value::Double(score) => *score,
        other => std::str::from_utf8(bytes(other)?).ok()?.parse().ok()?,
    };
    IdleRank::from_value(score)
}

/// The `(member, score)` pairs of `ZRANGE … WITHSCORES`: flat in RESP2, nested in RESP3.
pub(crate) fn scored_members(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let Some(item) = items.next() {
        match item {
            Value::Array(pair) => {
                let mut pair = pair.into_iter();
                if let (Some(member), Some(score)) = (pair.next(), pair.next()) {
                    pairs.push((member, score));
                }
            }
            member => {
                if let Some(score) = items.next() {
                    pairs.push((member, score));
                }
            }
        }
    }
    pairs
}

/// A string reply as text (lossy), for the drift report's garbage.
pub(crate) fn text(value: &Value) -> String {
    bytes(value).map_or_else(String::new, |b| String::from_utf8_lossy(b).into_owned())
}

/// `(id, heartbeat)` from a flat reply `id, heartbeat, id, ...`, non-ids skipped.
pub(crate) fn heartbeats(flat: &[Value]) -> Vec<(MitraId, Option<OffsetDateTime>)> {
    flat.chunks_exact(2)
        .filter_map(|record| Some((mitra_id(&record[0])?, time(&record[1]))))
        .collect()
}

/// The elements of an array reply (nil = empty).
pub(crate) fn array(value: Value) -> Result<Vec<Value>, String> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(format!("expected an array reply, got {other:?}")),
    }
}

/// The value of `name` in an `INFO` reply (`name:value` lines).
pub(crate) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .filter_map(|line| line.trim_end().split_once(':'))
        .find(|(field, _)| *field == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_field_reads_one_line() {
        let info = "# Server\r\nredis_version:7.2.4\r\nrun_id:abc123\r\ntcp_port:6379\r\n";
        assert_eq!(info_field(info, "run_id"), Some("abc123"));
        assert_eq!(info_field(info, "tcp_port"), Some("6379"));
        assert_eq!(info_field(info, "run"), None);
        assert_eq!(info_field("", "run_id"), None);
    }

    fn full(s: &str) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(s, &Rfc3339).ok()
    }

    #[test]
    fn the_fast_path_agrees_with_the_full_parser() {
        let samples = [
            "2026-11-23T11:36:49.140571Z",
            "2026-11-23T11:36:49Z",
            "2026-11-23T11:36:49.1Z",
            "2026-11-23T11:36:49.123456789Z",
            "2024-02-29T23:59:59.999999Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.000001Z",
        ];
        for s in samples {
            assert!(fast_utc(s.as_bytes()).is_some(), "{s}");
            assert_eq!(parse_time_bytes(s.as_bytes()), full(s), "{s}");
        }
        // Written by this crate: microseconds, UTC.
        let mut at = OffsetDateTime::from_unix_timestamp(1_700_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        for step in 0..2_000i64 {
            at += time::Duration::microseconds(step * 7_919_993 + 13);
            let s = crate::mirror::format_time(at);
            assert_eq!(parse_time_bytes(s.as_bytes()), full(&s), "{s}");
        }
    }

    #[test]
    fn other_forms_go_to_the_full_parser_and_garbage_is_none() {
        for s in [
            "2026-11-23T11:36:49+07:00",
            "2026-11-23t11:36:49z",
            "2026-11-23T11:36:49.140571+00:00",
        ] {
            assert_eq!(parse_time_bytes(s.as_bytes()), full(s), "{s}");
            assert!(full(s).is_some(), "{s}");
        }
        for s in [
            "",
            "yesterday",
            "2026-02-30T00:00:00Z",
            "2026-11-23T25:00:00Z",
            "2026-11-23T11:36:49.Z",
            "+026-11-23T11:36:49Z",
        ] {
            assert_eq!(parse_time_bytes(s.as_bytes()), None, "{s}");
            assert_eq!(full(s), None, "{s}");
        }
    }

    #[test]
    fn scores_read_back_as_the_rank_written() {
        let rank = IdleRank::new(
            OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
            0.3,
        );
        let written = Value::BulkString(rank.value().to_string().into_bytes());
        assert_eq!(idle_rank(&written), Some(rank));
        assert_eq!(idle_rank(&Value::Double(rank.value())), Some(rank));
        assert_eq!(idle_rank(&Value::BulkString(b"inf".to_vec())), None);
        assert_eq!(idle_rank(&Value::Nil), None);
    }

    #[test]
    fn scored_members_read_both_protocols() {
        let s = |v: &str| Value::BulkString(v.as_bytes().to_vec());
        let resp2 = vec![s("a"), s("1.5"), s("b"), s("2")];
        let resp3 = vec![
            Value::Array(vec![s("a"), Value::Double(1.5)]),
            Value::Array(vec![s("b"), Value::Double(2.0)]),
        ];
        let read = |items| -> Vec<(String, Option<f64>)> {
            scored_members(items)
                .iter()
                .map(|(m, r)| (text(m), idle_rank(r).map(IdleRank::value)))
                .collect()
        };
        let want = vec![("a".to_owned(), Some(1.5)), ("b".to_owned(), Some(2.0))];
        assert_eq!(read(resp2), want);
        assert_eq!(read(resp3), want);
    }

    #[test]
    fn records_skip_non_ids_and_excluded_ids() {
        let (a, b) = (
            MitraId::new(Uuid::from_u128(1)),
            MitraId::new(Uuid::from_u128(2)),
        );
        let s = |v: &str| Value::BulkString(v.as_bytes().to_vec());
        let flat = vec![
            s(&a.to_string()),
            s("2026-11-23T11:36:49Z"),
            s("2"),
            s("not-a-uuid"),
            s("2026-11-23T11:36:49Z"),
            s("0"),
            s(&b.to_string()),
            Value::Nil,
            Value::Nil,
        ];
        let got = candidates(&flat, &HashSet::new());
        assert_eq!(
            got,
            vec![(a, full("2026-11-23T11:36:49Z"), 2), (b, None, 0)]
        );
        let got = candidates(&flat, &HashSet::from([a]));
        assert_eq!(got, vec![(b, None, 0)]);
        assert_eq!(
            heartbeats(&flat[..4]),
            vec![(a, full("2026-11-23T11:36:49Z"))]
        );
    }
}
