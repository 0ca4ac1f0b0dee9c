//! The load generator behind `BENCHMARKS.md`: `CloudRunChannel` measured side by side with a
//! bare tonic channel (the floor) in the same run, over TLS on loopback, against the testkit's
//! emulators. Speed is only ever reported as a ratio between runs on the same machine.
//!
//! ```text
//! cargo run --release -p cloud-run-grpc-examples --example loadgen -- MODE [--flag value]...
//!
//! overhead      CloudRunChannel vs tonic Channel + fixed bearer header, same server
//!               --concurrency 1,64  --duration 10  --warmup 2  --rounds 3
//!               --server plain|front|cleartext  --floor-sensitive false
//!               --request-bytes 0  --keep-alive true  --floor-header authorization
//! cold-start    first answered call: warm_up() vs the same steps one after the other
//!               --iterations 20  --latency-ms 100  --connect-delay-ms 100
//! refresh       callers through token rotations with a slow metadata server
//!               --concurrency 64  --lifetime 4  --lifetimes 6  --latency-ms 300
//! connections   connections(n) at high concurrency
//!               --concurrency 256  --connections 1,4  --duration 10  --warmup 2  --rounds 3
//!               --max-streams 100  --server-delay-ms 5  --max-connections 8
//! calls         a fixed number of calls by one client, to count instructions under callgrind
//!               --client ours|floor  --calls 1000  --concurrency 1  --server plain  --request-bytes 0
//! frames        frames and bytes per unary call on the wire, ours vs the floor (cleartext)
//!               --calls 1000  --request-bytes 0  --floor-header authorization
//! every mode    --server-threads 1  --client-threads 1
//! ```
//!
//! The servers (metadata emulator, front end or plain tonic server) run on one Tokio runtime
//! and the clients on another, each with its own worker threads, so that on a two-core machine
//! each side has a core.

mod measure;
mod modes;
mod setup;

use std::collections::BTreeMap;
use std::error::Error;
use std::process::ExitCode;
use std::str::FromStr;

const USAGE: &str = "usage: loadgen overhead|cold-start|refresh|connections|frames|calls [--flag value]... (see the doc comment of examples/loadgen/main.rs)";

fn main() -> ExitCode {
    let mut args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("{error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&mut args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadgen: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &mut Args) -> Result<(), Box<dyn Error>> {
    let runtimes = setup::Runtimes::new(
        args.get("server-threads", 1)?,
        args.get("client-threads", 1)?,
    )?;
    match args.mode.as_str() {
        "overhead" => modes::overhead(&runtimes, args),
        "cold-start" => modes::cold_start(&runtimes, args),
        "refresh" => modes::refresh(&runtimes, args),
        "connections" => modes::connections(&runtimes, args),
        "frames" => modes::frames(&runtimes, args),
        "calls" => modes::calls(&runtimes, args),
        other => Err(format!("unknown mode `{other}`\n{USAGE}").into()),
    }
}

/// `MODE --key value ...`; each mode takes the flags it knows, and any left over is an error.
pub struct Args {
    mode: String,
    flags: BTreeMap<String, String>,
}

impl Args {
    fn parse(mut raw: impl Iterator<Item = String>) -> Result<Self, String> {
        let mode = raw.next().ok_or("no mode given")?;
        let mut flags = BTreeMap::new();
        while let Some(flag) = raw.next() {
            let key = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("expected a `--flag`, found `{flag}`"))?;
            let value = raw
                .next()
                .ok_or_else(|| format!("`--{key}` needs a value"))?;
            flags.insert(key.to_owned(), value);
        }
        Ok(Self { mode, flags })
    }

    /// The flag's value, or `default` when it was not given.
    pub fn get<T: FromStr>(&mut self, key: &str, default: T) -> Result<T, String> {
        match self.flags.remove(key) {
            None => Ok(default),
            Some(value) => value
                .parse()
                .map_err(|_| format!("`--{key} {value}` is not a valid value")),
        }
    }

    /// A comma-separated list, e.g. `--concurrency 1,64`.
    pub fn list<T: FromStr + Clone>(&mut self, key: &str, default: &[T]) -> Result<Vec<T>, String> {
        match self.flags.remove(key) {
            None => Ok(default.to_vec()),
            Some(value) => value
                .split(',')
                .map(|item| {
                    item.trim()
                        .parse()
                        .map_err(|_| format!("`--{key} {value}`: `{item}` is not a valid value"))
                })
                .collect(),
        }
    }

    /// Fails on flags the mode did not read.
    pub fn finish(&self) -> Result<(), String> {
        match self.flags.keys().next() {
            None => Ok(()),
            Some(key) => Err(format!("unknown flag `--{key}` for mode `{}`", self.mode)),
        }
    }
}
