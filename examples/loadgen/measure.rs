//! Closed-loop load: `concurrency` tasks each making one call after another, and the figures.

use std::fmt;
use std::time::{Duration, Instant};

use crate::setup::Client;

/// What one run measured.
#[derive(Default)]
pub struct Sample {
    /// Calls started inside the measured window.
    pub calls: u64,
    pub failures: u64,
    pub first_error: Option<String>,
    pub window: Duration,
    /// CPU time the whole process (clients and servers) used in the window.
    pub cpu: Duration,
    /// Start and latency of every successful call, sorted by latency once the run is over.
    pub latencies: Vec<(Instant, Duration)>,
}

impl Sample {
    pub fn throughput(&self) -> f64 {
        self.calls as f64 / self.window.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// CPU time per call, clients and servers together: unlike throughput, hardly moved by
    /// other processes competing for the cores.
    pub fn cpu_per_call(&self) -> Duration {
        self.cpu / u32::try_from(self.calls.max(1)).unwrap_or(u32::MAX)
    }

    /// The `p`th percentile latency (`p` in 0..=100), nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    /// Adds another run's figures (for totals across rounds).
    pub fn merge(&mut self, other: Sample) {
        self.calls += other.calls;
        self.failures += other.failures;
        self.first_error = self.first_error.take().or(other.first_error);
        self.window += other.window;
        self.cpu += other.cpu;
        self.latencies.extend(other.latencies);
        self.latencies.sort_unstable_by_key(|&(_, latency)| latency);
    }
}

/// Nearest-rank percentile of latencies sorted by latency.
pub fn percentile(sorted: &[(Instant, Duration)], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].1
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>9.0} calls/s  p50 {:>8}  p99 {:>8}  cpu/call {:>7}  ({} calls, {} failed)",
            self.throughput(),
            micros(self.percentile(50.0)),
            micros(self.percentile(99.0)),
            micros(self.cpu_per_call()),
            self.calls,
            self.failures
        )?;
        if let Some(error) = &self.first_error {
            write!(f, " first error: {error}")?;
        }
        Ok(())
    }
}

/// `123.4µs`.
pub fn micros(d: Duration) -> String {
    format!("{:.1}µs", d.as_secs_f64() * 1e6)
}

/// Runs `concurrency` callers for `warmup` (not measured) then `window` (measured).
pub async fn closed_loop(
    client: &Client,
    concurrency: usize,
    warmup: Duration,
    window: Duration,
) -> Sample {
    let start = Instant::now();
    let measure_from = start + warmup;
    let until = measure_from + window;
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let before = process_cpu();
        tokio::time::sleep_until(until.into()).await;
        process_cpu().saturating_sub(before)
    });
    let callers: Vec<_> = (0..concurrency)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut sample = Sample::default();
                // Bounded by time: no call starts after `until`.
                loop {
                    let began = Instant::now();
                    if began >= until {
                        break;
                    }
                    let result = client.call().await;
                    if began < measure_from {
                        continue;
                    }
                    sample.calls += 1;
                    match result {
                        Ok(()) => sample.latencies.push((began, began.elapsed())),
                        Err(status) => {
                            sample.failures += 1;
                            sample.first_error.get_or_insert_with(|| status.to_string());
                        }
                    }
                }
                sample
            })
        })
        .collect();
    let mut total = Sample {
        window,
        cpu: cpu.await.unwrap_or_default(),
        ..Sample::default()
    };
    for caller in callers {
        match caller.await {
            Ok(sample) => {
                total.calls += sample.calls;
                total.failures += sample.failures;
                total.first_error = total.first_error.or(sample.first_error);
                total.latencies.extend(sample.latencies);
            }
            Err(error) => {
                total.failures += 1;
                total.first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
    total
        .latencies
        .sort_unstable_by_key(|&(_, latency)| latency);
    total
}

/// User and system CPU time of this process so far (Linux: `/proc/self/stat`, in clock ticks
/// of 10ms; zero elsewhere).
fn process_cpu() -> Duration {
    cpu_of(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// CPU time of this process's threads named `name` (Tokio's `thread_name`), to the
/// nanosecond (Linux: `/proc/self/task/*/schedstat`; zero elsewhere).
pub fn threads_cpu(name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .filter_map(|task| {
            let path = task.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            if comm.trim() != name {
                return None;
            }
            let schedstat = std::fs::read_to_string(path.join("schedstat")).ok()?;
            let nanos = schedstat.split_whitespace().next()?.parse().ok()?;
            Some(Duration::from_nanos(nanos))
        })
        .sum()
}

/// utime + stime from a `/proc/.../stat` line.
fn cpu_of(stat: &str) -> Duration {
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime, fields 14 and 15 of the line (counting from 1), come 11th and 12th
    // (from 0) after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}
