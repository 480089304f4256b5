//! Criterion benchmarks of the pure rules on the hot paths: the availability filter that
//! `find_available_mitras` and the beacon run over every online mitra, and the mirror image a
//! seed and a drift report build. Run with `cargo bench -p halo-domain`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark's setup may panic

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use halo_domain::{AppSettings, IdleRank, MirrorImage, MitraId, MitraState, MitraTruth};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// `n` online mitras: a tenth stale, a tenth at capacity, a few deactivated.
fn states(n: usize, now: OffsetDateTime) -> Vec<MitraState> {
    (0..n)
        .map(|i| MitraState {
            online: true,
            active: i % 97 != 0,
            last_heartbeat: Some(now - Duration::seconds(if i % 10 == 0 { 600 } else { 5 })),
            open_sessions: if i % 10 == 1 { 3 } else { 1 },
        })
        .collect()
}

fn truth(n: usize) -> Vec<MitraTruth> {
    (0..n)
        .map(|i| MitraTruth {
            last_heartbeat: None,
            capacity_seq: 0,
            id: MitraId::new(Uuid::from_u128(i as u128 + 1)),
            active: i % 97 != 0,
            online: i % 3 != 0,
            open_sessions: (i % 4) as u32,
            idle_rank: IdleRank::new(
                OffsetDateTime::UNIX_EPOCH + Duration::seconds(i as i64),
                0.5,
            ),
        })
        .collect()
}

fn availability_filter(c: &mut Criterion) {
    let settings = AppSettings::default();
    let now = OffsetDateTime::now_utc();
    let mut group = c.benchmark_group("is_available over online mitras");
    for n in SIZES {
        let all = states(n, now);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &all, |b, all| {
            b.iter(|| {
                all.iter()
                    .filter(|s| s.is_available(black_box(now), settings.availability_rules()))
                    .count()
            });
        });
    }
    group.finish();
}

fn mirror_image(c: &mut Criterion) {
    let mut group = c.benchmark_group("mirror image");
    group.sample_size(20);
    for n in SIZES {
        let rows = truth(n);
        let expected = MirrorImage::expected_from(&rows);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("expected_from", n), &rows, |b, rows| {
            b.iter(|| MirrorImage::expected_from(black_box(rows)));
        });
        group.bench_with_input(
            BenchmarkId::new("drift_against itself", n),
            &expected,
            |b, e| {
                b.iter(|| e.drift_against(black_box(e)));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, availability_filter, mirror_image);
criterion_main!(benches);
