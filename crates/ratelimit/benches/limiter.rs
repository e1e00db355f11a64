//! What the per-caller rate limit costs a request: one `Limiter::check` with a key shaped
//! like the server's layer builds (namespace, model, budget kind, caller). Cases: a caller within its budget (the
//! usual request), a caller refused, callers spread over a large table, and a new caller
//! arriving at a full table of busy buckets (an attacker minting addresses: eviction).
//! `cargo bench -p palisade-ratelimit --bench limiter`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_ratelimit::{Limiter, Rate};

/// The server's budget kinds, as its keys carry them.
#[derive(Clone, Copy, Hash)]
enum Kind {
    Requests,
}

fn budget(per_second: f64, burst: u32) -> Rate {
    Rate::new(per_second, burst).unwrap()
}

fn limiter(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit");
    let principal = "jwt:https://palisade.local/alice".to_owned();

    // Admitted every time: the rate is far above what one thread can send.
    let open = Limiter::new(100_000);
    let generous = budget(1e9, 1000);
    group.bench_function("admitted (one caller)", |b| {
        b.iter(|| {
            let key = ("default", "iris", Kind::Requests, principal.as_str());
            black_box(open.check(black_box(&key), generous)).unwrap();
        })
    });

    // Refused every time after the first: the caller has used its burst.
    let closed = Limiter::new(100_000);
    let stingy = budget(0.001, 1);
    let _ = closed.check(&("default", "iris", Kind::Requests, principal.as_str()), stingy);
    group.bench_function("refused (one caller)", |b| {
        b.iter(|| {
            let key = ("default", "iris", Kind::Requests, principal.as_str());
            black_box(closed.check(black_box(&key), stingy)).unwrap_err();
        })
    });

    // 50,000 callers in the table, taken in turn (cache misses, as under real traffic).
    let many = Limiter::new(100_000);
    let callers: Vec<String> = (0..50_000).map(|i| format!("jwt:https://palisade.local/user{i}")).collect();
    for caller in &callers {
        many.check(&("default", "iris", Kind::Requests, caller.as_str()), generous).unwrap();
    }
    let mut i = 0;
    group.bench_function("admitted (50,000 callers in turn)", |b| {
        b.iter(|| {
            i = (i + 7919) % callers.len();
            let key = ("default", "iris", Kind::Requests, callers[i].as_str());
            black_box(many.check(&key, generous)).unwrap();
        })
    });

    // A full table of busy buckets, and a new caller at every request: eviction of the
    // buckets nearest to full, amortized.
    let full = Limiter::new(100_000);
    let busy = budget(0.001, 10);
    let mut n: u64 = 0;
    while full.tracked() < full.capacity() * 15 / 16 {
        full.check(&("default", "iris", Kind::Requests, n), busy).unwrap();
        n += 1;
    }
    group.bench_function("new caller at a full table (eviction)", |b| {
        b.iter(|| {
            n += 1;
            black_box(full.check(&("default", "iris", Kind::Requests, n), busy)).unwrap();
        })
    });
    assert!(full.tracked() <= full.capacity());
    group.finish();
}

criterion_group!(benches, limiter);
criterion_main!(benches);
