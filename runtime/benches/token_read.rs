//! The hot path: reading the cached token, as every RPC does, against two baselines measured in
//! the same run — an `ArcSwap` load of a plain `Arc` (the floor for a lock-free read) and an
//! `RwLock` read (what a simple cache would do).
//!
//! `cargo bench -p cloud-run-grpc --bench token_read`

use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use cloud_run_grpc::token::{IdToken, StaticToken, TokenCache};
use criterion::{Criterion, criterion_group, criterion_main};

const JWT: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDAsImF1ZCI6Imh0dHBzOi8vc3ZjIn0.c2lnbmF0dXJl";

fn warm_cache() -> TokenCache {
    let cache = TokenCache::new(
        StaticToken::new(IdToken::from_jwt(JWT).unwrap()),
        "https://svc",
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(cache.token()).unwrap();
    cache
}

/// Runs `read` `iters` times on each of `threads` threads at once; time per read per thread.
fn on_threads<F: Fn() + Sync>(threads: usize, iters: u64, read: &F) -> Duration {
    let start = std::sync::Barrier::new(threads);
    let elapsed: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    let began = Instant::now();
                    for _ in 0..iters {
                        read();
                    }
                    began.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    elapsed.into_iter().max().unwrap_or_default()
}

fn token_read(c: &mut Criterion) {
    let cache = warm_cache();
    let token = cache.current().unwrap();
    let swap = ArcSwap::from_pointee(token.clone());
    let locked = RwLock::new(Arc::new(token));

    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("token_read/{threads}_thread"));
        group.bench_function("TokenCache_current", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, &|| drop(black_box(cache.current()))))
        });
        group.bench_function("baseline_ArcSwap_load_full", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, &|| drop(black_box(swap.load_full()))))
        });
        group.bench_function("baseline_RwLock_read_Arc_clone", |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, &|| {
                    drop(black_box(locked.read().unwrap().clone()))
                })
            })
        });
        group.finish();
    }
}

criterion_group!(benches, token_read);
criterion_main!(benches);
