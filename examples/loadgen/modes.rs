//! The four measurements. Each prints what it ran on, every run, and the ratios.

use std::time::{Duration, Instant};

use cloud_run_grpc::token::MetadataServer;
use cloud_run_grpc_testkit::FrontEnd;

use crate::Args;
use crate::measure::{Sample, closed_loop, micros, percentile, threads_cpu};
use crate::setup::{
    Backend, Client, Failure, HOST, MetadataServerOptions, Recorded, Runtimes, ServerKind,
    ServerOptions, frame_counter,
};

fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// The machine and its load right now: figures mean little without it.
fn print_conditions() {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!(
        "# {cores} cores, load average {} (1, 5, 15 min)",
        load.join(" ")
    );
}

/// Per-RPC overhead: `CloudRunChannel` against a bare tonic channel with a fixed bearer
/// header, same server, same call, alternating runs.
pub fn overhead(runtimes: &Runtimes, args: &mut Args) -> Result<(), Failure> {
    let concurrencies = args.list("concurrency", &[1usize, 64])?;
    let window = seconds(args.get("duration", 10.0)?);
    let warmup = seconds(args.get("warmup", 2.0)?);
    let rounds = args.get("rounds", 3usize)?;
    let kind = args.get("server", ServerKind::Plain)?;
    let sensitive = args.get("floor-sensitive", false)?;
    let header = floor_header(args)?;
    let request_bytes = args.get("request-bytes", 0usize)?;
    let keep_alive = args.get("keep-alive", true)?;
    args.finish()?;

    let options = ServerOptions {
        kind,
        ..ServerOptions::default()
    };
    let backend = Backend::start(runtimes, &options)?;
    let (ours, floor, token_len) = runtimes.client.block_on(async {
        let mut builder = backend.channel();
        if !keep_alive {
            builder = builder.without_keep_alive();
        }
        let channel = builder.build()?;
        channel.warm_up().await?;
        let token = channel
            .token_cache()
            .current()
            .ok_or("no token after warm_up")?;
        let floor = backend.floor(token.secret(), header, sensitive).await?;
        let (mut ours, mut floor) = (Client::ours(channel), floor);
        if request_bytes > 0 {
            // The id is the request; the book that carries it back, the response.
            let id = "x".repeat(request_bytes);
            backend.add_book(&id).await?;
            (ours, floor) = (ours.reading(&id), floor.reading(&id));
        }
        Ok::<_, Failure>((ours, floor, token.secret().len()))
    })?;
    print_conditions();
    println!(
        "# overhead: GetBook to a {kind:?} server; floor = tonic Channel + interceptor \
         (`{header}`, sensitive: {sensitive}); ours with HTTP/2 keep-alive {keep_alive}; request and \
         response of {request_bytes} extra bytes; {rounds} rounds of {window:?} (after {warmup:?} \
         warm-up) each; the token is {token_len} bytes"
    );
    for &concurrency in &concurrencies {
        let mut floor_total = Sample::default();
        let mut ours_total = Sample::default();
        let mut ratios = Vec::new();
        for round in 1..=rounds {
            // Alternate who goes first, so that drift in the machine's load favours neither.
            let ours_first = round % 2 == 0;
            let run = |client: &Client| {
                runtimes
                    .client
                    .block_on(closed_loop(client, concurrency, warmup, window))
            };
            let (f, o) = if ours_first {
                let o = run(&ours);
                (run(&floor), o)
            } else {
                let f = run(&floor);
                (f, run(&ours))
            };
            println!("concurrency {concurrency:>3} round {round} floor: {f}");
            println!("concurrency {concurrency:>3} round {round} ours:  {o}");
            let round_ratios = [
                o.throughput() / f.throughput(),
                ratio(o.percentile(50.0), f.percentile(50.0)),
                ratio(o.percentile(99.0), f.percentile(99.0)),
                ratio(o.cpu_per_call(), f.cpu_per_call()),
            ];
            println!(
                "concurrency {concurrency:>3} round {round} ratio: throughput {:.3}  p50 {:.3}  p99 {:.3}  cpu/call {:.3}",
                round_ratios[0], round_ratios[1], round_ratios[2], round_ratios[3]
            );
            ratios.push(round_ratios);
            floor_total.merge(f);
            ours_total.merge(o);
        }
        println!("concurrency {concurrency:>3} ALL floor: {floor_total}");
        println!("concurrency {concurrency:>3} ALL ours:  {ours_total}");
        println!(
            "concurrency {concurrency:>3} ALL ratio ours/floor: throughput {:.3}  p50 {:.3}  p99 {:.3}  cpu/call {:.3}",
            ours_total.throughput() / floor_total.throughput(),
            ratio(ours_total.percentile(50.0), floor_total.percentile(50.0)),
            ratio(ours_total.percentile(99.0), floor_total.percentile(99.0)),
            ratio(ours_total.cpu_per_call(), floor_total.cpu_per_call()),
        );
        // Robust to a burst of load from elsewhere hitting one run of a pair.
        let median = |k: usize| {
            let mut column: Vec<f64> = ratios.iter().map(|r| r[k]).collect();
            column.sort_unstable_by(f64::total_cmp);
            column.get(column.len() / 2).copied().unwrap_or(f64::NAN)
        };
        println!(
            "concurrency {concurrency:>3} MEDIAN of round ratios: throughput {:.3}  p50 {:.3}  p99 {:.3}  cpu/call {:.3}",
            median(0),
            median(1),
            median(2),
            median(3)
        );
    }
    Ok(())
}

/// `--floor-header authorization|x-serverless-authorization`: where the floor puts its token.
fn floor_header(args: &mut Args) -> Result<&'static str, Failure> {
    match args
        .get("floor-header", "authorization".to_owned())?
        .as_str()
    {
        "authorization" => Ok("authorization"),
        "x-serverless-authorization" => Ok("x-serverless-authorization"),
        other => Err(format!(
            "`--floor-header {other}`: authorization or x-serverless-authorization"
        )
        .into()),
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// Cold start: from nothing to the first answered call, with a slow metadata server and slow
/// connection setup, `warm_up()` against the same steps one after the other.
pub fn cold_start(runtimes: &Runtimes, args: &mut Args) -> Result<(), Failure> {
    let iterations = args.get("iterations", 20usize)?;
    let latency = Duration::from_millis(args.get("latency-ms", 100)?);
    let connect_delay = Duration::from_millis(args.get("connect-delay-ms", 100)?);
    args.finish()?;

    let options = ServerOptions {
        metadata: MetadataServerOptions {
            lifetime: Duration::from_secs(3600),
            latency,
        },
        connect_delay,
        ..ServerOptions::default()
    };
    let backend = Backend::start(runtimes, &options)?;
    print_conditions();
    println!(
        "# cold start: metadata latency {latency:?}, connection delay {connect_delay:?}, \
         {iterations} iterations; every run on a new channel (new connection, new token cache)"
    );
    const STEPS: [&str; 5] = [
        "token fetch alone",
        "connect alone",
        "sequential: token, then connect, then call",
        "warm_up(), then call",
        "first call, no warm_up",
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); STEPS.len()];
    runtimes.client.block_on(async {
        // A cache that already holds a token: with it, `warm_up` only connects.
        let warm = backend.channel().build()?.token_cache().clone();
        warm.token().await?;
        for iteration in 0..iterations {
            for k in 0..STEPS.len() {
                let step = (k + iteration) % STEPS.len();
                let channel = match step {
                    1 => backend.channel().token_cache(warm.clone()).build()?,
                    _ => backend.channel().build()?,
                };
                let mut client = Client::ours(channel.clone());
                let started = Instant::now();
                match step {
                    0 => drop(channel.token_cache().token().await?),
                    1 => channel.warm_up().await?,
                    2 => {
                        channel.token_cache().token().await?;
                        channel.warm_up().await?;
                        client.call().await?;
                    }
                    3 => {
                        channel.warm_up().await?;
                        client.call().await?;
                    }
                    _ => client.call().await?,
                }
                times[step].push(started.elapsed());
            }
        }
        Ok::<_, Failure>(())
    })?;
    for (step, times) in STEPS.iter().zip(&mut times) {
        times.sort_unstable();
        println!(
            "{step:<45} median {:>7.1}ms  min {:>7.1}ms  max {:>7.1}ms",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Refresh under load: callers through several token rotations with a slow metadata server;
/// calls made while a fetch ran against the others.
pub fn refresh(runtimes: &Runtimes, args: &mut Args) -> Result<(), Failure> {
    let concurrency = args.get("concurrency", 64usize)?;
    let lifetime = Duration::from_secs(args.get("lifetime", 4)?);
    let lifetimes = args.get("lifetimes", 6u32)?;
    let latency = Duration::from_millis(args.get("latency-ms", 300)?);
    args.finish()?;

    let options = ServerOptions {
        kind: ServerKind::Front,
        metadata: MetadataServerOptions { lifetime, latency },
        ..ServerOptions::default()
    };
    let backend = Backend::start(runtimes, &options)?;
    let source = Recorded::new(MetadataServer::with_host(backend.metadata.host()));
    let channel = backend.channel_with(source.clone()).build()?;
    runtimes.client.block_on(channel.warm_up())?;
    let cold_fetches = source.fetches().len();
    let minted_before = backend.metadata.tokens_minted();
    // `warm_up` connects with a request without a token, which the front end rejects.
    let rejected_before = backend.front.as_ref().map_or(0, FrontEnd::rejected);
    let window = lifetime * lifetimes;
    print_conditions();
    println!(
        "# refresh: {concurrency} callers for {window:?} ({lifetimes} lifetimes of {lifetime:?} \
         tokens), metadata latency {latency:?}, front end verifying every token"
    );
    let metadata_cpu = threads_cpu("metadata");
    let sample = runtimes.client.block_on(closed_loop(
        &Client::ours(channel.clone()),
        concurrency,
        Duration::ZERO,
        window,
    ));
    let started = channel.token_cache().fetches();
    let fetches: Vec<_> = source.fetches().split_off(cold_fetches);
    let minted = backend.metadata.tokens_minted() - minted_before;
    let metadata_cpu = threads_cpu("metadata").saturating_sub(metadata_cpu);
    // Where each call ran: overlapping a fetch, and if so whether near its end, when the
    // emulator signs the new token (RS256, a millisecond or two of CPU on a busy machine) and
    // the cache installs it.
    let edge = Duration::from_millis(10);
    let mut classes: [(&str, Vec<(Instant, Duration)>); 4] = [
        ("during a refresh (all)", Vec::new()),
        ("  waiting on metadata", Vec::new()),
        ("  at the fetch's end", Vec::new()),
        ("outside a refresh", Vec::new()),
    ];
    for &(began, latency) in &sample.latencies {
        let ended = began + latency;
        let overlapping = fetches
            .iter()
            .find(|&&(start, end)| began < end && ended > start);
        match overlapping {
            None => classes[3].1.push((began, latency)),
            Some(&(_, end)) => {
                classes[0].1.push((began, latency));
                let near_end = ended + edge > end && began < end + edge;
                classes[if near_end { 2 } else { 1 }]
                    .1
                    .push((began, latency));
            }
        }
    }
    println!("all calls: {sample}");
    println!(
        "fetches {} (background refreshes), new tokens {minted}, fetches that got an old token {}",
        fetches.len(),
        fetches.len().saturating_sub(minted)
    );
    println!(
        "metadata emulator CPU per fetch: {:.1}ms (mostly RS256 signing)",
        metadata_cpu.as_secs_f64() * 1e3 / fetches.len().max(1) as f64
    );
    for (what, calls) in &mut classes {
        calls.sort_unstable_by_key(|&(_, latency)| latency);
        println!(
            "calls {what:<24} {:>8}  p50 {:>8}  p99 {:>8}  max {:>8}",
            calls.len(),
            micros(percentile(calls, 50.0)),
            micros(percentile(calls, 99.0)),
            micros(calls.last().map_or(Duration::ZERO, |c| c.1)),
        );
    }
    if let Some(front) = &backend.front {
        println!(
            "front end: accepted {}, rejected {} (after warm-up)",
            front.accepted(),
            front.rejected() - rejected_before
        );
    }
    println!(
        "fetches the cache started in all: {started} (the cold one, the refreshes above, and \
         any still under way when the callers stopped); audience https://{HOST}"
    );
    Ok(())
}

/// `connections(n)`: throughput at high concurrency for different `n`, against a server that
/// limits concurrent streams per connection as Cloud Run's front end does.
pub fn connections(runtimes: &Runtimes, args: &mut Args) -> Result<(), Failure> {
    let concurrency = args.get("concurrency", 256usize)?;
    let counts = args.list("connections", &[1usize, 4])?;
    let window = seconds(args.get("duration", 10.0)?);
    let warmup = seconds(args.get("warmup", 2.0)?);
    let rounds = args.get("rounds", 3usize)?;
    let max_streams = args.get("max-streams", 100u32)?;
    let delay = Duration::from_millis(args.get("server-delay-ms", 5)?);
    let caps = args.list("max-connections", &[8usize])?;
    args.finish()?;
    // Each `connections` entry pairs with the `max-connections` entry at its place (the last
    // one repeats): `--connections 1,1 --max-connections 1,8` compares one connection with a
    // pool that may grow to eight.
    let cap_of = |k: usize| caps.get(k).or(caps.last()).copied().unwrap_or(8);

    let options = ServerOptions {
        max_streams: (max_streams > 0).then_some(max_streams),
        delay,
        ..ServerOptions::default()
    };
    let backend = Backend::start(runtimes, &options)?;
    let clients = runtimes.client.block_on(async {
        let mut clients = Vec::new();
        for (k, &n) in counts.iter().enumerate() {
            let channel = backend
                .channel()
                .connections(n)
                .max_connections(cap_of(k).max(n))
                .build()?;
            channel.warm_up().await?;
            clients.push(Client::ours(channel));
        }
        Ok::<_, Failure>(clients)
    })?;
    print_conditions();
    println!(
        "# connections: {concurrency} callers, server max concurrent streams {max_streams} \
         (0: unlimited), GetBook takes {delay:?} on the server; connections(n) is a floor, \
         max_connections the cap; {rounds} rounds of {window:?}"
    );
    let mut totals: Vec<Sample> = counts.iter().map(|_| Sample::default()).collect();
    for round in 1..=rounds {
        for k in 0..counts.len() {
            let i = (k + round) % counts.len();
            let sample =
                runtimes
                    .client
                    .block_on(closed_loop(&clients[i], concurrency, warmup, window));
            println!(
                "round {round} connections({}) max_connections({}): {sample}",
                counts[i],
                cap_of(i)
            );
            totals[i].merge(sample);
        }
    }
    let first = totals[0].throughput();
    for (k, (n, total)) in counts.iter().zip(&totals).enumerate() {
        println!(
            "ALL connections({n}) max_connections({}): {total}  throughput vs the first: {:.2}",
            cap_of(k),
            total.throughput() / first
        );
    }
    Ok(())
}

/// Frames and bytes per unary call, ours against the floor, read off the wire by a proxy in
/// front of a cleartext server: what each client makes the server parse.
pub fn frames(runtimes: &Runtimes, args: &mut Args) -> Result<(), Failure> {
    let calls = args.get("calls", 1000u64)?;
    let request_bytes = args.get("request-bytes", 0usize)?;
    let header = floor_header(args)?;
    args.finish()?;

    let options = ServerOptions {
        kind: ServerKind::Cleartext,
        ..ServerOptions::default()
    };
    let mut backend = Backend::start(runtimes, &options)?;
    let (proxy, counts) = runtimes.server.block_on(frame_counter(backend.addr))?;
    backend.dial(proxy);
    let id = "x".repeat(request_bytes);
    let (ours, floor) = runtimes.client.block_on(async {
        let channel = backend.channel().build()?;
        channel.warm_up().await?;
        let token = channel.token_cache().current().ok_or("no token")?;
        let floor = backend.floor(token.secret(), header, false).await?;
        let (mut ours, mut floor) = (Client::ours(channel), floor);
        if request_bytes > 0 {
            backend.add_book(&id).await?;
            (ours, floor) = (ours.reading(&id), floor.reading(&id));
        }
        Ok::<_, Failure>((ours, floor))
    })?;
    println!(
        "# frames: {calls} sequential GetBook calls each (request of {request_bytes} extra \
         bytes), cleartext HTTP/2, counted client to server after a warm-up call"
    );
    const NAMES: [&str; 10] = [
        "DATA",
        "HEADERS",
        "PRIORITY",
        "RST_STREAM",
        "SETTINGS",
        "PUSH_PROMISE",
        "PING",
        "GOAWAY",
        "WINDOW_UPDATE",
        "CONTINUATION",
    ];
    for (who, client) in [("floor", floor), ("ours", ours)] {
        let mut client = client;
        runtimes.client.block_on(async {
            client.call().await?;
            counts.reset();
            for _ in 0..calls {
                client.call().await?;
            }
            Ok::<_, tonic::Status>(())
        })?;
        // Counting happens as bytes pass: give the proxy a moment to read the last ones.
        std::thread::sleep(Duration::from_millis(100));
        let per_call = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::SeqCst) as f64 / calls as f64
        };
        let mut line = format!(
            "{who:<5} per call: {:.0} bytes on the wire",
            per_call(&counts.wire_bytes)
        );
        for (k, name) in NAMES.iter().enumerate() {
            let frames = per_call(&counts.frames[k]);
            if frames > 0.0 {
                line.push_str(&format!(
                    "; {name} {frames:.2} ({:.0} bytes)",
                    per_call(&counts.bytes[k])
                ));
            }
        }
        line.push_str(&format!(
            "; DATA with END_STREAM {:.2}, empty DATA {:.2}",
            per_call(&counts.data_end_stream),
            per_call(&counts.empty_data)
        ));
        println!("{line}");
    }
    Ok(())
}

/// A fixed number of calls by one client, for an instruction count under callgrind (which
/// counts the same for the same run, whatever else the machine does):
/// `valgrind --tool=callgrind loadgen calls --client ours --calls 2000` against `--calls 200`
/// gives the instructions of 1800 calls, server side included.
pub fn calls(runtimes: &Runtimes, args: &mut Args) -> Result<(), Failure> {
    let which = args.get("client", "ours".to_owned())?;
    let calls = args.get("calls", 1000u64)?;
    let concurrency = args.get("concurrency", 1u64)?;
    let kind = args.get("server", ServerKind::Plain)?;
    let request_bytes = args.get("request-bytes", 0usize)?;
    args.finish()?;

    let options = ServerOptions {
        kind,
        ..ServerOptions::default()
    };
    let backend = Backend::start(runtimes, &options)?;
    runtimes.client.block_on(async {
        let channel = backend.channel().build()?;
        channel.warm_up().await?;
        let token = channel.token_cache().current().ok_or("no token")?;
        let mut client = match which.as_str() {
            "ours" => Client::ours(channel),
            "floor" => {
                backend
                    .floor(token.secret(), "authorization", false)
                    .await?
            }
            other => return Err(format!("`--client {other}`: ours or floor").into()),
        };
        if request_bytes > 0 {
            // The id is the request; the book that carries it back, the response.
            let id = "x".repeat(request_bytes);
            backend.add_book(&id).await?;
            client = client.reading(&id);
        }
        // One call first, so that both clients start with a connection.
        client.clone().call().await?;
        let per_task = calls / concurrency.max(1);
        let tasks: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                let mut client = client.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        client.call().await?;
                    }
                    Ok::<_, tonic::Status>(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        println!("{which}: {} calls", per_task * concurrency.max(1));
        Ok::<_, Failure>(())
    })
}
