//! The cache on virtual time: Tokio's clock is paused (backoff, timeouts, deadlines) and the
//! wall clock is a `ManualClock` (token expiry), so an hour passes in microseconds and no test
//! sleeps. Fetches are counted at the source.

use std::sync::atomic::AtomicU32;
use std::time::UNIX_EPOCH;

use serde_json::json;

use super::*;
use crate::token::{ManualClock, TokenFuture};

const AUDIENCE: &str = "https://svc";

/// What the [`Minter`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A new token each time.
    Fresh,
    /// The same token each time (as the metadata server hands out its cached one).
    Same,
    /// A transient failure (a refused connection).
    Unreachable,
    /// A transient failure every other fetch, a fresh token otherwise.
    EveryOtherUnreachable,
    /// A permanent failure (a 403).
    Forbidden,
    /// A token for another audience.
    OtherAudience,
}

/// Mints unsigned JWT-shaped tokens living `lifetime` on the injected clock, and counts.
#[derive(Debug)]
struct Minter {
    clock: Arc<ManualClock>,
    lifetime: Mutex<Duration>,
    delay: Mutex<Duration>,
    answer: Mutex<Answer>,
    /// The token [`Answer::Same`] hands out, minted on first use.
    same: Mutex<Option<IdToken>>,
    /// The server time tokens carry: the local clock shifted by this (`None`: no time).
    server_offset: Mutex<Option<(bool, Duration)>>,
    calls: AtomicU32,
    completed: AtomicU32,
    minted: AtomicU32,
}

impl Minter {
    fn new(clock: &Arc<ManualClock>, lifetime: Duration) -> Arc<Self> {
        Arc::new(Self {
            clock: Arc::clone(clock),
            lifetime: Mutex::new(lifetime),
            delay: Mutex::new(Duration::ZERO),
            answer: Mutex::new(Answer::Fresh),
            same: Mutex::new(None),
            server_offset: Mutex::new(None),
            calls: AtomicU32::new(0),
            completed: AtomicU32::new(0),
            minted: AtomicU32::new(0),
        })
    }

    fn answer(&self, answer: Answer) {
        *lock(&self.answer) = answer;
    }

    /// The endpoint's clock: the local one shifted by the configured offset.
    fn server_now(&self) -> SystemTime {
        let now = self.clock.now();
        let offset = *lock(&self.server_offset);
        match offset {
            Some((true, ahead)) => now + ahead,
            Some((false, behind)) => now - behind,
            None => now,
        }
    }

    fn jwt(&self, audience: &str) -> String {
        let n = self.minted.fetch_add(1, Ordering::SeqCst);
        let exp = self.server_now() + *lock(&self.lifetime);
        let exp = exp.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        crate::token::jwt::unsigned(&json!({"exp": exp, "aud": audience, "n": n}))
    }

    fn token(&self, audience: &str) -> IdToken {
        let token = IdToken::from_jwt(self.jwt(audience)).unwrap();
        let recorded = lock(&self.server_offset).is_some();
        if recorded {
            token.with_server_time(self.server_now())
        } else {
            token
        }
    }
}

impl IdTokenSource for Minter {
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let delay = *lock(&self.delay);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            self.completed.fetch_add(1, Ordering::SeqCst);
            let unreachable = TokenError::Unreachable {
                source_name: self.name(),
                cause: "connection refused".into(),
                source: None,
            };
            match *lock(&self.answer) {
                Answer::Fresh => Ok(self.token(audience)),
                Answer::Same => Ok(lock(&self.same)
                    .get_or_insert_with(|| self.token(audience))
                    .clone()),
                Answer::Unreachable => Err(unreachable),
                Answer::EveryOtherUnreachable if call.is_multiple_of(2) => Err(unreachable),
                Answer::EveryOtherUnreachable => Ok(self.token(audience)),
                Answer::Forbidden => Err(TokenError::Status {
                    source_name: self.name(),
                    status: 403,
                    body: "forbidden".into(),
                }),
                Answer::OtherAudience => Ok(self.token("https://elsewhere")),
            }
        })
    }

    fn name(&self) -> String {
        "minter".into()
    }
}

fn cache(minter: &Arc<Minter>, clock: &Arc<ManualClock>, policy: RefreshPolicy) -> TokenCache {
    TokenCache::builder(Arc::clone(minter), AUDIENCE)
        .policy(policy)
        .clock(clock.clone())
        .build()
}

fn setup(policy: RefreshPolicy) -> (Arc<ManualClock>, Arc<Minter>, TokenCache) {
    let clock = Arc::new(ManualClock::new());
    let minter = Minter::new(&clock, Duration::from_secs(3600));
    let cache = cache(&minter, &clock, policy);
    (clock, minter, cache)
}

/// Waits until the fetch under way, if any, has finished (bounded, on the test's clock).
async fn settle(cache: &TokenCache) {
    let done = cache.inner.done.notified();
    tokio::pin!(done);
    done.as_mut().enable();
    if cache.inner.fetching.load(Ordering::SeqCst) == 0 {
        return;
    }
    tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("the fetch finishes within a minute");
}

/// Moves both clocks: the wall clock tokens expire by, and Tokio's, which backoff uses.
async fn pass(clock: &ManualClock, by: Duration) {
    clock.advance(by);
    tokio::time::advance(by).await;
}

fn in_a_second() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(1))
}

// ---- single flight, refresh, schedule -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_cold_callers_cause_one_fetch() {
    let clock = Arc::new(ManualClock::new());
    let minter = Minter::new(&clock, Duration::from_secs(3600));
    // A real (short) fetch, so that the callers pile up behind it on two threads.
    *lock(&minter.delay) = Duration::from_millis(50);
    let cache = cache(&minter, &clock, RefreshPolicy::default());
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.token().await.map(|t| t.expires_at()) })
        })
        .collect();
    let mut expiries = Vec::new();
    for task in tasks {
        expiries.push(task.await.unwrap().unwrap());
    }
    assert_eq!(cache.fetches(), 1);
    assert_eq!(minter.minted.load(Ordering::SeqCst), 1);
    assert!(expiries.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test(start_paused = true)]
async fn refresh_happens_in_the_background_before_expiry() {
    let (clock, minter, cache) = setup(RefreshPolicy::default());
    let first = cache.token().await.unwrap();

    // Before the margin: no refresh.
    clock.advance(Duration::from_secs(3600 - 226));
    assert_eq!(cache.current(), Some(first.clone()));
    settle(&cache).await;
    assert_eq!(cache.fetches(), 1);

    // Inside the margin (3m45s, jitter at most 15s later): the read returns the old token at
    // once and one background fetch starts, however many reads there are.
    *lock(&minter.delay) = Duration::from_millis(100);
    clock.advance(Duration::from_secs(16));
    for _ in 0..100 {
        assert_eq!(
            cache.current(),
            Some(first.clone()),
            "a refresh must not make readers wait"
        );
    }
    settle(&cache).await;
    assert_eq!(cache.fetches(), 2);
    let second = cache.current().unwrap();
    assert_ne!(second, first);
    assert!(second.expires_at() > first.expires_at());
}

#[tokio::test(start_paused = true)]
async fn short_lived_tokens_are_fetched_once_per_lifetime() {
    // A 60s token against a 225s margin: refresh at a third of the lifetime left, i.e. 40s
    // after the fetch. No jitter, so the count is exact.
    let (clock, minter, cache) = setup(RefreshPolicy::default().jitter(Duration::ZERO));
    *lock(&minter.lifetime) = Duration::from_secs(60);
    cache.token().await.unwrap();
    for _ in 0..100 {
        clock.advance(Duration::from_secs(6));
        assert!(cache.current().is_some(), "a token must always be valid");
        settle(&cache).await;
    }
    // Reads every 6s see the refresh due at the first read past 40s, at 42s: fetches at
    // 0, 42, 84, … 588 — 15 in 600 seconds, one per token, never a loop.
    assert_eq!(cache.fetches(), 15);
}

#[tokio::test(start_paused = true)]
async fn failed_refresh_keeps_the_valid_token_and_backs_off() {
    let policy = RefreshPolicy::default()
        .min_backoff(Duration::from_secs(1))
        .max_backoff(Duration::from_secs(8));
    let (clock, minter, cache) = setup(policy);
    let first = cache.token().await.unwrap();
    minter.answer(Answer::Unreachable);
    clock.advance(Duration::from_secs(3600 - 200));
    for _ in 0..50 {
        assert_eq!(cache.current(), Some(first.clone()));
        settle(&cache).await;
    }
    // Fifty reads in the same instant: one failed fetch, then backoff holds the rest.
    assert_eq!(cache.fetches(), 2);
    pass(&clock, Duration::from_secs(9)).await;
    assert_eq!(cache.current(), Some(first.clone()));
    settle(&cache).await;
    assert_eq!(cache.fetches(), 3);
    minter.answer(Answer::Fresh);
    pass(&clock, Duration::from_secs(9)).await;
    assert_eq!(cache.current(), Some(first.clone()));
    settle(&cache).await;
    assert_ne!(cache.current(), Some(first));
    assert_eq!(cache.fetches(), 4);
}

#[tokio::test(start_paused = true)]
async fn waiting_respects_the_callers_deadline() {
    let (_clock, minter, cache) = setup(RefreshPolicy::default());
    *lock(&minter.delay) = Duration::from_secs(5);
    let started = Instant::now();
    let result = cache.wait(Some(started + Duration::from_millis(100))).await;
    assert!(matches!(result, Err(WaitError::Deadline)), "{result:?}");
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    // The fetch goes on in the background and serves the next caller.
    assert!(cache.wait(None).await.is_ok());
    assert_eq!(cache.fetches(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_same_token_again_is_retried_later_not_spun_on() {
    let (clock, minter, cache) =
        setup(RefreshPolicy::default().min_backoff(Duration::from_secs(1)));
    minter.answer(Answer::Same);
    cache.token().await.unwrap();
    clock.advance(Duration::from_secs(3600 - 200));
    for _ in 0..50 {
        assert!(cache.current().is_some());
        settle(&cache).await;
    }
    assert_eq!(
        cache.fetches(),
        2,
        "one refresh that returned the same token, then a pause"
    );
}

#[test]
fn a_slow_source_gets_its_refresh_started_early_enough() {
    let now = SystemTime::now();
    let exp = now + Duration::from_secs(3);
    let policy = RefreshPolicy::default().jitter(Duration::ZERO);
    // A fast fetch: the usual third of the lifetime before `exp`, sent until a tenth before.
    let fast = policy
        .schedule(exp, now, Duration::from_millis(10))
        .unwrap();
    assert_eq!(fast.refresh_at, exp - Duration::from_secs(1));
    assert_eq!(fast.usable_until, exp - Duration::from_millis(300));
    // A 400ms fetch: start 0.8s before the token stops being sent (0.3s before `exp`).
    let slow = policy
        .schedule(exp, now, Duration::from_millis(400))
        .unwrap();
    assert_eq!(slow.refresh_at, exp - Duration::from_millis(1100));
    // A fetch as slow as the token is long: still not before half its life.
    let hopeless = policy.schedule(exp, now, Duration::from_secs(3)).unwrap();
    assert_eq!(hopeless.refresh_at, now + Duration::from_millis(1500));
    // An expired token has no schedule.
    assert!(matches!(
        policy.schedule(now, now, Duration::ZERO),
        Err(JwtError::Expired)
    ));
}

#[tokio::test(start_paused = true)]
async fn headers_are_sensitive_and_debug_hides_the_token() {
    let (_clock, _minter, cache) = setup(RefreshPolicy::default());
    let entry = cache.wait(None).await.unwrap();
    assert!(entry.header.is_sensitive());
    assert_eq!(
        entry.header.to_str().unwrap(),
        format!("Bearer {}", entry.token.secret())
    );
    assert!(!format!("{entry:?}").contains(entry.token.secret()));
    assert!(!format!("{cache:?}").contains(entry.token.secret()));
}

// ---- issue 10 point 4: refusals back off ----------------------------------------------------

fn message() -> Arc<str> {
    Arc::from("HTTP 401")
}

#[tokio::test(start_paused = true)]
async fn a_one_off_refusal_is_healed_by_one_new_token_at_once() {
    let (_clock, minter, cache) = setup(RefreshPolicy::default());
    let first = cache.wait(None).await.unwrap();
    // Every call in flight with that token is refused: one refusal counts.
    for _ in 0..20 {
        cache.refused(first.id, message());
    }
    assert!(
        cache.current().is_none(),
        "a refused token is not sent again"
    );
    let second = cache.wait(in_a_second()).await.unwrap();
    assert_ne!(second.token, first.token);
    assert_eq!(cache.fetches(), 2, "exactly one new token");
    assert_eq!(minter.minted.load(Ordering::SeqCst), 2);
    cache.passed(second.id);
    assert_eq!(cache.inner.refusals.load(Ordering::SeqCst), 0);
    // A late refusal of the old token does not drop the new one.
    cache.refused(first.id, message());
    assert_eq!(cache.current(), Some(second.token.clone()));
}

#[tokio::test(start_paused = true)]
async fn the_refused_token_handed_back_waits_out_the_backoff() {
    let policy = RefreshPolicy::default()
        .min_refusal_backoff(Duration::from_secs(2))
        .max_refusal_backoff(Duration::from_secs(2));
    let (clock, minter, cache) = setup(policy);
    minter.answer(Answer::Same);
    let first = cache.wait(None).await.unwrap();
    cache.refused(first.id, message());
    // A new fetch at once, which hands back the refused token: it is held back, and callers
    // fail fast meanwhile, saying why.
    let refused = cache.wait(in_a_second()).await.unwrap_err();
    let WaitError::Refused { message, retry_in } = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(&*message, "HTTP 401");
    assert!(retry_in <= Duration::from_secs(2) && retry_in >= Duration::from_secs(1));
    assert_eq!(cache.fetches(), 2);
    for _ in 0..10 {
        assert!(matches!(
            cache.wait(in_a_second()).await,
            Err(WaitError::Refused { .. })
        ));
    }
    assert_eq!(cache.fetches(), 2, "no fetch during the backoff");
    // One backoff step later the token is sent again: a one-off refusal costs one step.
    pass(&clock, retry_in).await;
    let again = cache.wait(in_a_second()).await.unwrap();
    assert_eq!(again.token, first.token);
    assert_eq!(cache.fetches(), 3);
}

#[tokio::test(start_paused = true)]
async fn consecutive_refusals_double_the_backoff_until_a_pass() {
    let policy = RefreshPolicy::default()
        .min_refusal_backoff(Duration::from_secs(1))
        .max_refusal_backoff(Duration::from_secs(60));
    let (_clock, _minter, cache) = setup(policy);
    let mut entry = cache.wait(None).await.unwrap();
    cache.refused(entry.id, message());
    // The first refusal: a new token at once.
    entry = cache.wait(in_a_second()).await.unwrap();
    let mut pauses = Vec::new();
    for _ in 0..8 {
        cache.refused(entry.id, message());
        let started = Instant::now();
        let retry_in = match cache.wait(in_a_second()).await {
            Err(WaitError::Refused { retry_in, .. }) => retry_in,
            other => panic!("{other:?}"),
        };
        tokio::time::advance(retry_in).await;
        entry = cache
            .wait(Some(Instant::now() + Duration::from_secs(1)))
            .await
            .unwrap();
        pauses.push(started.elapsed());
    }
    // Equal jitter: between half and all of 2s, 4s, … 60s.
    for (i, pause) in pauses.iter().enumerate() {
        let full = Duration::from_secs(2u64.pow(i as u32 + 1).min(60));
        assert!(
            *pause >= full / 2 && *pause <= full,
            "pause {i}: {pause:?}, expected up to {full:?} ({pauses:?})"
        );
    }
    // A pass ends the streak: the next refusal is a first one again, healed at once.
    cache.passed(entry.id);
    cache.refused(entry.id, message());
    assert!(cache.wait(in_a_second()).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_pass_of_the_refused_token_itself_does_not_end_the_streak() {
    let (_clock, _minter, cache) = setup(RefreshPolicy::default());
    let first = cache.wait(None).await.unwrap();
    cache.refused(first.id, message());
    let second = cache.wait(in_a_second()).await.unwrap();
    cache.refused(second.id, message());
    // A call with the refused token that got through before the refusal arrived.
    cache.passed(second.id);
    assert_eq!(cache.inner.refusals.load(Ordering::SeqCst), 2);
    assert!(matches!(
        cache.wait(in_a_second()).await,
        Err(WaitError::Refused { .. })
    ));
}

/// Every token refused, 100 calls a second for a minute: how many fetches.
async fn refused_calls_for_a_minute(answer: Answer) -> u64 {
    let (clock, minter, cache) = setup(RefreshPolicy::default());
    minter.answer(answer);
    let started = Instant::now();
    let mut refused_fast = 0;
    while started.elapsed() < Duration::from_secs(60) {
        let sent = match cache.with_valid(|entry| entry.id) {
            Some(id) => Some(id),
            None => match cache
                .wait(Some(Instant::now() + Duration::from_millis(10)))
                .await
            {
                Ok(entry) => Some(entry.id),
                Err(WaitError::Refused { .. }) => None,
                Err(other) => panic!("{other:?}"),
            },
        };
        match sent {
            Some(id) => cache.refused(id, message()),
            None => refused_fast += 1,
        }
        pass(&clock, Duration::from_millis(10)).await;
    }
    assert!(refused_fast > 5000, "{refused_fast} calls failed fast");
    cache.fetches()
}

#[tokio::test(start_paused = true)]
async fn no_reject_storm_when_every_new_token_is_refused() {
    let fetches = refused_calls_for_a_minute(Answer::Fresh).await;
    assert!((5..=10).contains(&fetches), "{fetches} fetches in a minute");
}

#[tokio::test(start_paused = true)]
async fn no_reject_storm_when_the_source_hands_back_the_refused_token() {
    let fetches = refused_calls_for_a_minute(Answer::Same).await;
    assert!((5..=10).contains(&fetches), "{fetches} fetches in a minute");
}

#[tokio::test(start_paused = true)]
async fn invalidate_forgets_without_a_backoff() {
    let (_clock, _minter, cache) = setup(RefreshPolicy::default());
    let first = cache.wait(None).await.unwrap();
    for _ in 0..3 {
        cache.invalidate();
        assert!(cache.current().is_none());
        assert!(cache.wait(in_a_second()).await.is_ok());
    }
    assert_eq!(cache.fetches(), 4);
    assert_eq!(cache.inner.refusals.load(Ordering::SeqCst), 0);
    assert_ne!(cache.current(), Some(first.token.clone()));
}

// ---- issue 10 point 5: tokens are checked before use -----------------------------------------

#[tokio::test(start_paused = true)]
async fn a_token_for_another_audience_is_refused_naming_both() {
    let (_clock, minter, cache) = setup(RefreshPolicy::default());
    minter.answer(Answer::OtherAudience);
    let error = match cache.wait(None).await {
        Err(WaitError::Permanent(error)) => error,
        other => panic!("{other:?}"),
    };
    let TokenError::WrongAudience { requested, got, .. } = &*error else {
        panic!("{error:?}");
    };
    assert_eq!(requested, AUDIENCE);
    assert_eq!(got, &["https://elsewhere"]);
    let shown = error.to_string();
    assert!(
        shown.contains("`https://elsewhere` instead of `https://svc`"),
        "{shown}"
    );
    assert!(cache.current().is_none());
}

#[derive(Debug)]
struct AnyAudience(Arc<Minter>);

impl IdTokenSource for AnyAudience {
    fn fetch<'a>(&'a self, _: &'a str) -> TokenFuture<'a> {
        Box::pin(async move { Ok(self.0.token("gcloud-client-id").for_any_audience()) })
    }
    fn name(&self) -> String {
        "gcloud".into()
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_marked_for_any_audience_is_taken() {
    let (clock, minter, _) = setup(RefreshPolicy::default());
    let cache = TokenCache::builder(AnyAudience(minter), AUDIENCE)
        .clock(clock)
        .build();
    let token = cache.token().await.unwrap();
    assert_eq!(token.audience(), Some("gcloud-client-id"));
}

/// A cache whose local clock is `skew` ahead (or behind) of its source's: tokens carry the
/// source's time. Returns how long a fresh one-hour token stays usable on the local clock.
async fn usable_for_with_skew(ahead: bool, skew: Duration) -> Duration {
    let (clock, minter, cache) = setup(RefreshPolicy::default());
    *lock(&minter.server_offset) = Some((!ahead, skew));
    let token = cache.token().await.expect("a fresh token is taken");
    let start = clock.now();
    let mut usable = Duration::ZERO;
    // Minute by minute, then second by second near the end: bounded to two hours.
    for step in (0..120).map(|_| Duration::from_secs(60)) {
        clock.advance(step);
        if cache
            .inner
            .current
            .load()
            .as_ref()
            .is_none_or(|e| !cache.usable(e))
        {
            clock.set(start + usable);
            for _ in 0..60 {
                clock.advance(Duration::from_secs(1));
                if cache
                    .inner
                    .current
                    .load()
                    .as_ref()
                    .is_none_or(|e| !cache.usable(e))
                {
                    return clock.now().duration_since(start).unwrap();
                }
            }
            panic!("usable for more than a minute past the last good read");
        }
        usable += step;
    }
    drop(token);
    panic!("still usable after two hours")
}

#[tokio::test(start_paused = true)]
async fn a_local_clock_hours_off_neither_refuses_fresh_tokens_nor_sends_expired_ones() {
    for ahead in [true, false] {
        let usable = usable_for_with_skew(ahead, Duration::from_secs(2 * 3600)).await;
        // An hour, less the 10s expiry skew (and the token's sub-second `exp`).
        assert!(
            usable > Duration::from_secs(3580) && usable <= Duration::from_secs(3591),
            "clock {} by 2h: usable for {usable:?}",
            if ahead { "ahead" } else { "behind" }
        );
    }
}

#[test]
fn small_offsets_and_whole_seconds_never_make_a_token_live_longer() {
    let now = SystemTime::now();
    let exp = now + Duration::from_secs(3600);
    // A `Date` rounded down to the second, a few milliseconds of network: no shift.
    for server in [
        now - Duration::from_millis(900),
        now,
        now + Duration::from_secs(20),
    ] {
        assert_eq!(on_local_clock(exp, Some(server), now), exp);
    }
    assert_eq!(on_local_clock(exp, None, now), exp);
    // Hours apart: shifted by the offset, less the second `Date` may have lost.
    let two_hours = Duration::from_secs(7200);
    assert_eq!(
        on_local_clock(exp, Some(now - two_hours), now),
        exp + two_hours - Duration::from_secs(1)
    );
    assert_eq!(
        on_local_clock(exp, Some(now + two_hours), now),
        exp - two_hours - Duration::from_secs(1)
    );
    // Extreme times neither panic nor move the expiry.
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 40);
    assert_eq!(
        on_local_clock(exp, Some(SystemTime::UNIX_EPOCH), far),
        exp + (far
            .duration_since(SystemTime::UNIX_EPOCH + Duration::from_secs(1))
            .unwrap())
    );
    assert!(on_local_clock(SystemTime::UNIX_EPOCH, Some(far), now) <= SystemTime::UNIX_EPOCH);
}

// ---- issue 10 point 6: a transient failure is not the caller's -------------------------------

#[tokio::test(start_paused = true)]
async fn a_cold_caller_rides_out_transient_failures() {
    let (_clock, minter, cache) = setup(RefreshPolicy::default());
    minter.answer(Answer::EveryOtherUnreachable);
    let started = Instant::now();
    let entry = cache.wait(Some(started + Duration::from_secs(10))).await;
    assert!(entry.is_ok(), "{entry:?}");
    assert_eq!(cache.fetches(), 2, "one failure, one retry");
    assert!(
        started.elapsed() <= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn transient_failures_until_the_deadline_are_unavailable() {
    let (_clock, minter, cache) = setup(RefreshPolicy::default());
    minter.answer(Answer::Unreachable);
    let started = Instant::now();
    let result = cache.wait(Some(started + Duration::from_secs(10))).await;
    let Err(WaitError::Unavailable(error)) = &result else {
        panic!("{result:?}");
    };
    assert!(
        matches!(**error, TokenError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(started.elapsed() <= Duration::from_secs(10));
    // Retried with backoff (100ms doubling to 5s, jittered), not once and not in a loop.
    let fetches = cache.fetches();
    assert!((4..=12).contains(&fetches), "{fetches} fetches in 10s");
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_the_wait_is_bounded_by_max_wait() {
    let (_clock, minter, cache) = setup(RefreshPolicy::default().max_wait(Duration::from_secs(3)));
    minter.answer(Answer::Unreachable);
    let started = Instant::now();
    let error = cache.token().await.unwrap_err();
    assert!(
        matches!(*error, TokenError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(started.elapsed() <= Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_fail_fast_then_recover() {
    let (_clock, minter, cache) =
        setup(RefreshPolicy::default().max_backoff(Duration::from_secs(4)));
    minter.answer(Answer::Forbidden);
    let started = Instant::now();
    let result = cache.wait(Some(started + Duration::from_secs(10))).await;
    assert!(matches!(result, Err(WaitError::Permanent(_))), "{result:?}");
    // In backoff: the next callers get the same error at once, without another fetch.
    for _ in 0..20 {
        assert!(matches!(
            cache.wait(in_a_second()).await,
            Err(WaitError::Permanent(_))
        ));
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(cache.fetches(), 1);
    minter.answer(Answer::Fresh);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(cache.token().await.is_ok());
    assert_eq!(cache.fetches(), 2);
}

// ---- issue 11 point 3: the cache cannot be wedged --------------------------------------------

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Starts a fetch on `runtime` and stops driving it at once.
fn start_a_fetch_on(runtime: &tokio::runtime::Runtime, cache: &TokenCache) {
    runtime.block_on(async {
        let _ = tokio::time::timeout(Duration::ZERO, cache.wait(None)).await;
    });
    assert_ne!(cache.inner.fetching.load(Ordering::SeqCst), 0);
}

#[test]
fn a_fetch_on_a_runtime_no_longer_driven_is_abandoned_after_its_timeout() {
    let idle = paused_runtime();
    let callers = paused_runtime();
    let policy = RefreshPolicy::default().fetch_timeout(Duration::from_secs(5));
    let (_clock, minter, cache) = setup(policy);
    *lock(&minter.delay) = Duration::from_secs(1);
    start_a_fetch_on(&idle, &cache);

    let (results, waited) = callers.block_on(async {
        let started = Instant::now();
        let waiters: Vec<_> = (0..10)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.wait(None).await.map(|e| e.token.clone()) })
            })
            .collect();
        let mut results = Vec::new();
        for waiter in waiters {
            results.push(waiter.await.unwrap());
        }
        (results, started.elapsed())
    });
    let token = results[0]
        .as_ref()
        .expect("a token after the abandoned fetch")
        .clone();
    assert!(results.iter().all(|r| r.as_ref().ok() == Some(&token)));
    // The fetch timeout, then one new fetch (1s): never forever.
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    assert_eq!(
        cache.fetches(),
        2,
        "one abandoned fetch, one new one: no stampede"
    );
    assert_eq!(minter.completed.load(Ordering::SeqCst), 1);

    // The idle runtime is driven again: its fetch ends, and its result is dropped.
    idle.block_on(async { tokio::time::sleep(Duration::from_secs(2)).await });
    assert_eq!(minter.completed.load(Ordering::SeqCst), 2);
    assert_eq!(cache.current(), Some(token));
}

#[test]
fn a_fetch_on_a_runtime_shut_down_mid_fetch_does_not_block_others() {
    let doomed = paused_runtime();
    let callers = paused_runtime();
    // A fetch timeout far longer than the callers' deadline: only the shutdown can free them.
    let policy = RefreshPolicy::default().fetch_timeout(Duration::from_secs(3600));
    let (_clock, minter, cache) = setup(policy);
    *lock(&minter.delay) = Duration::from_secs(1);
    start_a_fetch_on(&doomed, &cache);
    drop(doomed);
    assert_eq!(cache.inner.fetching.load(Ordering::SeqCst), 0);

    let result = callers.block_on(async {
        cache
            .wait(Some(Instant::now() + Duration::from_secs(10)))
            .await
            .map(|e| e.token.clone())
    });
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(cache.fetches(), 2);
}

/// A source that runs a program: it takes `minter`'s delay and says it may take `needs`, from
/// the start or, as Application Default Credentials do, only once its first fetch has begun.
#[derive(Debug)]
struct Program {
    minter: Arc<Minter>,
    needs: Duration,
    known_from_start: bool,
    started: AtomicU32,
}

impl IdTokenSource for Program {
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.minter.fetch(audience)
    }
    fn name(&self) -> String {
        "program".into()
    }
    fn fetch_timeout(&self) -> Option<Duration> {
        let known = self.known_from_start || self.started.load(Ordering::SeqCst) > 0;
        known.then_some(self.needs)
    }
}

/// Ten callers on a cache whose source takes 40 s, has a 15 s fetch timeout and says it needs
/// `needs`: what the first caller got, and how many fetches were started.
async fn callers_of_a_40_second_program(
    needs: Duration,
    known_from_start: bool,
) -> (Result<IdToken, String>, u64) {
    let clock = Arc::new(ManualClock::new());
    let minter = Minter::new(&clock, Duration::from_secs(3600));
    *lock(&minter.delay) = Duration::from_secs(40);
    let program = Program {
        minter,
        needs,
        known_from_start,
        started: AtomicU32::new(0),
    };
    let cache = TokenCache::builder(program, AUDIENCE)
        .policy(RefreshPolicy::default().fetch_timeout(Duration::from_secs(15)))
        .clock(clock)
        .build();
    let deadline = Some(Instant::now() + Duration::from_secs(45));
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let waited = cache.wait(deadline).await;
                waited
                    .map(|e| e.token.clone())
                    .map_err(|e| format!("{e:?}"))
            })
        })
        .collect();
    let mut results = Vec::new();
    for caller in callers {
        results.push(caller.await.unwrap());
    }
    assert!(results.iter().all(|r| *r == results[0]), "{results:?}");
    (results.swap_remove(0), cache.fetches())
}

#[tokio::test(start_paused = true)]
async fn a_source_that_needs_longer_than_the_fetch_timeout_is_given_it() {
    for known_from_start in [true, false] {
        let (token, fetches) =
            callers_of_a_40_second_program(Duration::from_secs(60), known_from_start).await;
        assert!(
            token.is_ok(),
            "known from the start: {known_from_start}: {token:?}"
        );
        assert_eq!(fetches, 1, "known from the start: {known_from_start}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_source_slower_than_it_said_times_out_at_what_it_said() {
    let (token, fetches) = callers_of_a_40_second_program(Duration::from_secs(20), false).await;
    let error = token.unwrap_err();
    assert!(
        error.contains("Timeout") && error.contains("20s"),
        "{error}"
    );
    assert!(fetches >= 2, "after the timeout, fetches go on: {fetches}");
}

// ---- issue 11 point 5: extreme settings ------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn extreme_settings_neither_panic_nor_loop() {
    let huge = RefreshPolicy::default()
        .margin(Duration::MAX)
        .jitter(Duration::MAX)
        .expiry_skew(Duration::MAX)
        .min_backoff(Duration::MAX)
        .max_backoff(Duration::MAX)
        .fetch_timeout(Duration::MAX)
        .max_wait(Duration::MAX)
        .min_refusal_backoff(Duration::MAX)
        .max_refusal_backoff(Duration::MAX);
    // Saturated, not wrapped around to a short pause: at least half of the cap (jitter).
    for failures in [0, 1, 2, 31, 64, u32::MAX] {
        assert!(huge.backoff(failures) >= Duration::MAX / 2);
        assert!(huge.refusal_backoff(failures) >= Duration::MAX / 2);
    }
    let (clock, minter, cache) = setup(huge);
    let first = cache.wait(None).await.unwrap();
    assert!(cache.current().is_some());
    // A refresh is due at once (the margin is everything), but only one fetch runs.
    settle(&cache).await;
    cache.refused(first.id, message());
    let second = cache.wait(in_a_second()).await.unwrap();
    cache.refused(second.id, message());
    // A refusal backoff of `Duration::MAX`: fail fast, no panic, no fetch.
    let fetches = cache.fetches();
    assert!(matches!(
        cache.wait(in_a_second()).await,
        Err(WaitError::Refused { .. })
    ));
    assert_eq!(cache.fetches(), fetches);
    minter.answer(Answer::Unreachable);
    clock.advance(Duration::MAX);
    assert!(cache.current().is_none());

    let zero = RefreshPolicy::default()
        .min_backoff(Duration::ZERO)
        .max_backoff(Duration::ZERO)
        .max_wait(Duration::ZERO)
        .fetch_timeout(Duration::ZERO);
    let (_clock, _minter, cache) = setup(zero);
    assert!(cache.wait(None).await.is_err());
}
