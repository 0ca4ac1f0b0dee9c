//! The token cache: one fresh ID token per audience, read without a lock on every RPC.
//!
//! - The current token sits behind an atomic pointer (`arc-swap`): a read is a load and a
//!   reference-count increment, no lock and no allocation.
//! - A read past the token's refresh time starts one background fetch (an atomic flag makes it
//!   single flight) and still returns the valid token: a refresh never adds latency to an RPC.
//! - Only when no valid token exists does a caller wait, for at most its own deadline.
//! - Failures back off exponentially with jitter; while a valid token remains nobody notices.
//!
//! This file is the cache and its fetch state machine; `policy.rs` is the [`RefreshPolicy`]:
//! when to refresh, when a token stops being sent, and how long to back off.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::sync::Notify;

use super::{Clock, IdToken, IdTokenSource, JwtError, SystemClock, TokenError, humantime};

mod policy;

pub use policy::RefreshPolicy;
use policy::Schedule;

/// A token ready to be put on requests, with the times the cache acts on.
pub(crate) struct Entry {
    /// Tells this token from the next, so that a late rejection cannot drop a newer one.
    pub(crate) id: u64,
    pub(crate) token: IdToken,
    /// `Bearer <token>`, marked sensitive so HPACK never indexes it.
    pub(crate) header: HeaderValue,
    usable_until: SystemTime,
    refresh_at: SystemTime,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("token", &self.token)
            .field("refresh_at", &humantime(self.refresh_at))
            .finish_non_exhaustive()
    }
}

/// Why a caller got no token.
#[derive(Debug, Clone)]
pub(crate) enum WaitError {
    /// The last fetch failed and no valid token exists.
    Fetch(Arc<TokenError>),
    /// The caller's deadline passed while a fetch was still under way.
    Deadline,
}

#[derive(Default)]
struct FetchState {
    /// Completed fetches, so a waiter can tell that "its" fetch is over.
    generation: u64,
    failures: u32,
    last_error: Option<Arc<TokenError>>,
}

struct Inner {
    source: Box<dyn IdTokenSource>,
    source_name: String,
    audience: String,
    policy: RefreshPolicy,
    clock: Arc<dyn Clock>,
    current: ArcSwapOption<Entry>,
    fetching: AtomicBool,
    /// Where [`Inner::ticks`] count from.
    epoch: tokio::time::Instant,
    /// The tick ([`Inner::ticks`]) before which no fetch starts (backoff); 0 for none.
    next_attempt: AtomicU64,
    fetches: AtomicU64,
    state: Mutex<FetchState>,
    done: Notify,
}

/// Keeps a fresh ID token for one audience, refreshing it in the background.
///
/// Cheap to clone: clones share the token. Build one per audience and share it between every
/// channel that calls that audience ([`crate::ChannelBuilder::token_cache`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use cloud_run_grpc::token::{IdToken, StaticToken, TokenCache};
/// # let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln";
/// let cache = TokenCache::new(StaticToken::new(IdToken::from_jwt(jwt).unwrap()), "https://svc.a.run.app");
/// let token = cache.token().await.unwrap();
/// assert_eq!(cache.fetches(), 1);
/// assert_eq!(cache.token().await.unwrap(), token); // cached: no second fetch
/// assert_eq!(cache.fetches(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

impl TokenCache {
    /// A cache that fetches tokens for `audience` from `source`, with the default policy and
    /// the system clock. Does no I/O.
    pub fn new(source: impl IdTokenSource, audience: impl Into<String>) -> Self {
        Self::builder(source, audience).build()
    }

    /// A cache with a chosen [`RefreshPolicy`] or [`Clock`].
    ///
    /// ```
    /// # use std::{sync::Arc, time::Duration};
    /// use cloud_run_grpc::token::{ManualClock, MetadataServer, RefreshPolicy, TokenCache};
    /// let clock = Arc::new(ManualClock::new());
    /// let cache = TokenCache::builder(MetadataServer::new(), "https://svc.a.run.app")
    ///     .policy(RefreshPolicy::default().margin(Duration::from_secs(300)))
    ///     .clock(clock.clone())
    ///     .build();
    /// assert_eq!(cache.fetches(), 0); // building does no I/O
    /// ```
    pub fn builder(source: impl IdTokenSource, audience: impl Into<String>) -> TokenCacheBuilder {
        TokenCacheBuilder {
            source: Box::new(source),
            audience: audience.into(),
            policy: RefreshPolicy::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Whether `other` is a clone of this cache.
    pub fn same_as(&self, other: &TokenCache) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The audience tokens are fetched for.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// The source's name, as errors and logs show it.
    pub fn source_name(&self) -> &str {
        &self.inner.source_name
    }

    /// How many fetches this cache has started.
    pub fn fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// The cached token if it is valid now, starting a background refresh when it is due.
    pub fn current(&self) -> Option<IdToken> {
        self.with_valid(|entry| entry.token.clone())
    }

    /// A valid token, fetching one if there is none. Fails with the fetch's error.
    pub async fn token(&self) -> Result<IdToken, Arc<TokenError>> {
        match self.wait(None).await {
            Ok(entry) => Ok(entry.token.clone()),
            Err(WaitError::Fetch(e)) => Err(e),
            // Without a deadline this does not happen; the fetch's own timeout is the bound.
            Err(WaitError::Deadline) => Err(Arc::new(TokenError::Timeout {
                source_name: self.inner.source_name.clone(),
                after: self.inner.policy.fetch_timeout,
            })),
        }
    }

    /// Forgets the cached token, so the next request fetches a new one (e.g. after the server
    /// rejected it).
    pub fn invalidate(&self) {
        self.inner.next_attempt.store(0, Ordering::Release);
        self.inner.current.store(None);
        tracing::debug!(audience = %self.inner.audience, source = %self.inner.source_name, "ID token invalidated");
    }

    /// Forgets the token with this id if it is still the cached one (the server rejected it);
    /// a token refreshed meanwhile is kept.
    pub(crate) fn invalidate_entry(&self, id: u64) {
        let current = self.inner.current.load();
        let Some(entry) = current.as_ref().filter(|e| e.id == id) else {
            return;
        };
        let expires_at = entry.token.expires_at();
        let previous = self.inner.current.compare_and_swap(&*current, None);
        if previous.as_ref().is_some_and(|p| p.id == id) {
            self.inner.next_attempt.store(0, Ordering::Release);
            tracing::info!(
                audience = %self.inner.audience,
                source = %self.inner.source_name,
                expires_at = %humantime(expires_at),
                "server rejected the ID token; fetching a new one"
            );
        }
    }

    /// The front end refused the token of this entry (HTTP 401, not a gRPC answer).
    pub(crate) fn refused(&self, entry_id: u64, _message: Arc<str>) {
        self.invalidate_entry(entry_id);
    }

    /// A response with this entry's token got past the front end.
    pub(crate) fn passed(&self, _entry_id: u64) {}

    /// The hot path: reads the valid token, if any, starting a background refresh when one is
    /// due. No lock, no allocation, no reference count touched but what `read` clones.
    pub(crate) fn with_valid<R>(&self, read: impl FnOnce(&Entry) -> R) -> Option<R> {
        let guard = self.inner.current.load();
        let entry = guard.as_ref()?;
        self.usable(entry).then(|| read(entry))
    }

    /// The valid token as a shared pointer, for the slow path.
    fn lookup(&self) -> Option<Arc<Entry>> {
        let entry = self.inner.current.load_full()?;
        self.usable(&entry).then_some(entry)
    }

    fn usable(&self, entry: &Entry) -> bool {
        let inner = &*self.inner;
        let now = inner.clock.now();
        if now >= entry.usable_until {
            return false;
        }
        if now >= entry.refresh_at && !inner.fetching.load(Ordering::Relaxed) && inner.may_attempt()
        {
            inner.start_fetch(&self.inner, "refresh");
        }
        true
    }

    /// Waits for a valid token, for at most `deadline`.
    pub(crate) async fn wait(
        &self,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Arc<Entry>, WaitError> {
        let inner = &*self.inner;
        // Each round either returns or waits for one fetch to finish; a few rounds cover a fetch
        // already under way when we arrived, plus our own.
        for _ in 0..4 {
            let notified = inner.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(entry) = self.lookup() {
                return Ok(entry);
            }
            let generation = {
                let state = inner.lock_state();
                if let Some(error) = &state.last_error
                    && !inner.may_attempt()
                {
                    // Backing off with no valid token: fail fast with what went wrong.
                    return Err(WaitError::Fetch(Arc::clone(error)));
                }
                state.generation
            };
            if !inner.fetching.load(Ordering::Acquire) {
                inner.start_fetch(&self.inner, "fetch");
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(WaitError::Deadline);
                    }
                }
                None => notified.await,
            }
            if let Some(entry) = self.lookup() {
                return Ok(entry);
            }
            let state = inner.lock_state();
            if state.generation != generation
                && let Some(error) = &state.last_error
            {
                return Err(WaitError::Fetch(Arc::clone(error)));
            }
        }
        let state = inner.lock_state();
        Err(WaitError::Fetch(state.last_error.clone().unwrap_or_else(
            || {
                Arc::new(TokenError::BadResponse {
                    source_name: inner.source_name.clone(),
                    reason: "no usable token after several fetches (is the clock right?)".into(),
                })
            },
        )))
    }
}

/// Builds a [`TokenCache`]; see [`TokenCache::builder`].
#[derive(Debug)]
pub struct TokenCacheBuilder {
    source: Box<dyn IdTokenSource>,
    audience: String,
    policy: RefreshPolicy,
    clock: Arc<dyn Clock>,
}

impl TokenCacheBuilder {
    /// When to refresh and how to retry.
    pub fn policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Where the cache reads the time (tests inject a [`crate::token::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The cache. Does no I/O.
    pub fn build(self) -> TokenCache {
        let source_name = self.source.name();
        TokenCache {
            inner: Arc::new(Inner {
                source: self.source,
                source_name,
                audience: self.audience,
                policy: self.policy,
                clock: self.clock,
                current: ArcSwapOption::empty(),
                fetching: AtomicBool::new(false),
                epoch: tokio::time::Instant::now(),
                next_attempt: AtomicU64::new(0),
                fetches: AtomicU64::new(0),
                state: Mutex::new(FetchState::default()),
                done: Notify::new(),
            }),
        }
    }
}

impl Inner {
    fn lock_state(&self) -> MutexGuard<'_, FetchState> {
        crate::sync::lock(&self.state)
    }

    /// Nanoseconds of Tokio time since the cache was built, plus one, so that 0 can mean
    /// "none" where a tick is stored.
    fn ticks(&self) -> u64 {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// The tick `delay` from now.
    fn ticks_after(&self, delay: Duration) -> u64 {
        self.ticks()
            .saturating_add(u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX))
    }

    fn may_attempt(&self) -> bool {
        let next = self.next_attempt.load(Ordering::Acquire);
        next == 0 || self.ticks() >= next
    }

    /// Starts the one fetch, on the caller's runtime, unless one is already running.
    fn start_fetch(&self, this: &Arc<Inner>, why: &'static str) {
        if self
            .fetching
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let this = Arc::clone(this);
                runtime.spawn(async move { this.fetch(why).await });
            }
            Err(_) => self.fetching.store(false, Ordering::Release),
        }
    }

    async fn fetch(self: Arc<Self>, why: &'static str) {
        // Reset the flag and wake waiters even if this task is dropped mid-fetch (its runtime
        // shut down): the next caller then starts a new fetch instead of waiting forever.
        let _done = FetchDone(&self);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(audience = %self.audience, source = %self.source_name, why, "fetching ID token");
        let started = tokio::time::Instant::now();
        let result = match tokio::time::timeout(
            self.policy.fetch_timeout,
            self.source.fetch(&self.audience),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(TokenError::Timeout {
                source_name: self.source_name.clone(),
                after: self.policy.fetch_timeout,
            }),
        };
        let took = started.elapsed();
        let now = self.clock.now();
        let mut state = self.lock_state();
        state.generation += 1;
        let token = match result {
            Ok(token) => token,
            Err(error) => return self.failed(&mut state, now, error),
        };
        let previous = self.current.load_full();
        if previous
            .as_ref()
            .is_some_and(|p| p.token == token && now < p.usable_until)
        {
            // The source still hands out its cached token: ask again later, without spinning.
            state.failures += 1;
            let delay = self.policy.backoff(state.failures);
            self.next_attempt
                .store(self.ticks_after(delay), Ordering::Release);
            tracing::debug!(audience = %self.audience, source = %self.source_name, retry_in = ?delay, "source returned the same token; retrying later");
            return;
        }
        match Entry::new(token, now, took, &self.policy) {
            Ok(entry) => {
                tracing::info!(
                    audience = %self.audience,
                    source = %self.source_name,
                    expires_at = %humantime(entry.token.expires_at()),
                    refresh_at = %humantime(entry.refresh_at),
                    why,
                    "fetched ID token"
                );
                self.current.store(Some(Arc::new(entry)));
                state.failures = 0;
                state.last_error = None;
                self.next_attempt.store(0, Ordering::Release);
            }
            Err(error) => {
                let error = TokenError::BadToken {
                    source_name: self.source_name.clone(),
                    reason: error,
                };
                self.failed(&mut state, now, error)
            }
        }
    }

    fn failed(&self, state: &mut FetchState, now: SystemTime, error: TokenError) {
        state.failures += 1;
        let delay = if error.is_transient() {
            self.policy.backoff(state.failures)
        } else {
            self.policy.max_backoff
        };
        self.next_attempt
            .store(self.ticks_after(delay), Ordering::Release);
        let still_valid = self
            .current
            .load()
            .as_ref()
            .is_some_and(|e| now < e.usable_until);
        if still_valid {
            tracing::warn!(audience = %self.audience, source = %self.source_name, %error, retry_in = ?delay, "ID token refresh failed; the cached token is still valid");
        } else {
            tracing::error!(audience = %self.audience, source = %self.source_name, %error, retry_in = ?delay, "ID token fetch failed and no valid token is cached");
        }
        state.last_error = Some(Arc::new(error));
    }
}

struct FetchDone<'a>(&'a Inner);

impl Drop for FetchDone<'_> {
    fn drop(&mut self) {
        self.0.fetching.store(false, Ordering::Release);
        self.0.done.notify_waiters();
    }
}

static NEXT_ENTRY_ID: AtomicU64 = AtomicU64::new(1);

impl Entry {
    /// `fetch_took`: how long the fetch of `token` took, so that the next one starts early enough
    /// to end before this token stops being sent.
    fn new(
        token: IdToken,
        now: SystemTime,
        fetch_took: Duration,
        policy: &RefreshPolicy,
    ) -> Result<Self, JwtError> {
        let Schedule {
            usable_until,
            refresh_at,
        } = policy.schedule(token.expires_at(), now, fetch_took)?;
        let mut header = HeaderValue::try_from(format!("Bearer {}", token.secret()))
            .map_err(|_| JwtError::NotAJwt)?;
        header.set_sensitive(true);
        Ok(Self {
            id: NEXT_ENTRY_ID.fetch_add(1, Ordering::Relaxed),
            header,
            usable_until,
            refresh_at,
            token,
        })
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.inner.current.load();
        f.debug_struct("TokenCache")
            .field("audience", &self.inner.audience)
            .field("source", &self.inner.source_name)
            .field("token", &current.as_ref().map(|e| &e.token))
            .field("fetches", &self.fetches())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::time::UNIX_EPOCH;

    use serde_json::json;

    use super::*;
    use crate::token::ManualClock;

    /// Mints unsigned JWT-shaped tokens living `lifetime` on the injected clock.
    #[derive(Debug)]
    struct Minter {
        clock: Arc<ManualClock>,
        lifetime: Mutex<Duration>,
        delay: Mutex<Duration>,
        failing: AtomicBool,
        minted: AtomicU32,
    }

    impl Minter {
        fn new(clock: &Arc<ManualClock>, lifetime: Duration) -> Arc<Self> {
            Arc::new(Self {
                clock: Arc::clone(clock),
                lifetime: Mutex::new(lifetime),
                delay: Mutex::new(Duration::ZERO),
                failing: AtomicBool::new(false),
                minted: AtomicU32::new(0),
            })
        }

        fn jwt(&self) -> String {
            let n = self.minted.fetch_add(1, Ordering::SeqCst);
            let exp = self.clock.now() + *self.lifetime.lock().unwrap();
            let exp = exp.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
            crate::token::jwt::unsigned(&json!({"exp": exp, "aud": "https://svc", "n": n}))
        }
    }

    impl IdTokenSource for Minter {
        fn fetch<'a>(&'a self, _audience: &'a str) -> crate::token::TokenFuture<'a> {
            Box::pin(async move {
                let delay = *self.delay.lock().unwrap();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if self.failing.load(Ordering::SeqCst) {
                    return Err(TokenError::Unreachable {
                        source_name: self.name(),
                        cause: "connection refused".into(),
                        source: None,
                    });
                }
                Ok(IdToken::from_jwt(self.jwt()).unwrap())
            })
        }

        fn name(&self) -> String {
            "minter".into()
        }
    }

    fn cache(minter: &Arc<Minter>, clock: &Arc<ManualClock>, policy: RefreshPolicy) -> TokenCache {
        TokenCache::builder(Arc::clone(minter), "https://svc")
            .policy(policy)
            .clock(clock.clone())
            .build()
    }

    /// Waits until the fetch under way, if any, has finished (bounded, on the test's clock).
    async fn settle(cache: &TokenCache) {
        let done = cache.inner.done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        if !cache.inner.fetching.load(Ordering::SeqCst) {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_cold_callers_cause_one_fetch() {
        let clock = Arc::new(ManualClock::new());
        let minter = Minter::new(&clock, Duration::from_secs(3600));
        *minter.delay.lock().unwrap() = Duration::from_millis(50);
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
        let clock = Arc::new(ManualClock::new());
        let minter = Minter::new(&clock, Duration::from_secs(3600));
        let cache = cache(&minter, &clock, RefreshPolicy::default());
        let first = cache.token().await.unwrap();

        // Before the margin: no refresh.
        clock.advance(Duration::from_secs(3600 - 226));
        assert_eq!(cache.current(), Some(first.clone()));
        settle(&cache).await;
        assert_eq!(cache.fetches(), 1);

        // Inside the margin (3m45s, jitter at most 15s later): the read returns the old token at
        // once and one background fetch starts, however many reads there are.
        *minter.delay.lock().unwrap() = Duration::from_millis(100);
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
        let clock = Arc::new(ManualClock::new());
        // A 60s token against a 225s margin: refresh at a third of the lifetime left, i.e. 40s
        // after the fetch. No jitter, so the count is exact.
        let minter = Minter::new(&clock, Duration::from_secs(60));
        let cache = cache(
            &minter,
            &clock,
            RefreshPolicy::default().jitter(Duration::ZERO),
        );
        cache.token().await.unwrap();
        for _ in 0..10 {
            for _ in 0..10 {
                clock.advance(Duration::from_secs(6));
                assert!(cache.current().is_some(), "a token must always be valid");
                settle(&cache).await;
            }
        }
        // Reads every 6s see the refresh due at the first read past 40s, at 42s: fetches at
        // 0, 42, 84, … 588 — 15 in 600 seconds, one per token, never a loop.
        assert_eq!(cache.fetches(), 15);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_refresh_keeps_the_valid_token_and_backs_off() {
        let clock = Arc::new(ManualClock::new());
        let minter = Minter::new(&clock, Duration::from_secs(3600));
        let policy = RefreshPolicy::default()
            .min_backoff(Duration::from_secs(1))
            .max_backoff(Duration::from_secs(8));
        let cache = cache(&minter, &clock, policy);
        let first = cache.token().await.unwrap();
        minter.failing.store(true, Ordering::SeqCst);
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
        minter.failing.store(false, Ordering::SeqCst);
        pass(&clock, Duration::from_secs(9)).await;
        assert_eq!(cache.current(), Some(first.clone()));
        settle(&cache).await;
        assert_ne!(cache.current(), Some(first));
        assert_eq!(cache.fetches(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_valid_token_callers_fail_fast_then_recover() {
        let clock = Arc::new(ManualClock::new());
        let minter = Minter::new(&clock, Duration::from_secs(3600));
        let cache = cache(
            &minter,
            &clock,
            RefreshPolicy::default().max_backoff(Duration::from_secs(4)),
        );
        minter.failing.store(true, Ordering::SeqCst);
        let error = cache.token().await.unwrap_err();
        assert!(
            matches!(*error, TokenError::Unreachable { .. }),
            "{error:?}"
        );
        // In backoff: the next callers get the same error without another fetch.
        for _ in 0..20 {
            assert!(cache.token().await.is_err());
        }
        assert_eq!(cache.fetches(), 1);
        minter.failing.store(false, Ordering::SeqCst);
        pass(&clock, Duration::from_secs(5)).await;
        assert!(cache.token().await.is_ok());
        assert_eq!(cache.fetches(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_respects_the_callers_deadline() {
        let clock = Arc::new(ManualClock::new());
        let minter = Minter::new(&clock, Duration::from_secs(3600));
        *minter.delay.lock().unwrap() = Duration::from_secs(5);
        let cache = cache(&minter, &clock, RefreshPolicy::default());
        let started = tokio::time::Instant::now();
        let result = cache.wait(Some(started + Duration::from_millis(100))).await;
        assert!(matches!(result, Err(WaitError::Deadline)));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_token_again_is_retried_later_not_spun_on() {
        let clock = Arc::new(ManualClock::new());
        let minter = Minter::new(&clock, Duration::from_secs(3600));
        let cache = cache(
            &minter,
            &clock,
            RefreshPolicy::default().min_backoff(Duration::from_secs(1)),
        );
        let token = cache.token().await.unwrap();
        let jwt = token.secret().to_owned();
        let same = TokenCache::builder(StaticSame(jwt), "https://svc")
            .clock(clock.clone())
            .build();
        same.token().await.unwrap();
        clock.advance(Duration::from_secs(3600 - 200));
        for _ in 0..50 {
            assert!(same.current().is_some());
            settle(&same).await;
        }
        assert_eq!(
            same.fetches(),
            2,
            "one refresh that returned the same token, then a pause"
        );
    }

    #[derive(Debug)]
    struct StaticSame(String);

    impl IdTokenSource for StaticSame {
        fn fetch<'a>(&'a self, _: &'a str) -> crate::token::TokenFuture<'a> {
            Box::pin(async move { Ok(IdToken::from_jwt(self.0.clone()).unwrap()) })
        }
        fn name(&self) -> String {
            "same".into()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn invalidating_a_rejected_token_keeps_a_newer_one() {
        let clock = Arc::new(ManualClock::new());
        let minter = Minter::new(&clock, Duration::from_secs(3600));
        let cache = cache(&minter, &clock, RefreshPolicy::default());
        let old = cache.wait(None).await.unwrap();
        cache.invalidate_entry(old.id);
        assert!(cache.current().is_none());
        let new = cache.wait(None).await.unwrap();
        assert_ne!(new.token, old.token);
        cache.invalidate_entry(old.id); // a late rejection of the old token
        assert_eq!(cache.current(), Some(new.token.clone()));
    }

    #[test]
    fn a_slow_source_gets_its_refresh_started_early_enough() {
        let clock = Arc::new(ManualClock::new());
        let now = clock.now();
        let policy = RefreshPolicy::default().jitter(Duration::ZERO);
        let minter = Minter::new(&clock, Duration::from_secs(3));
        let token = IdToken::from_jwt(minter.jwt()).unwrap();
        let exp = token.expires_at();
        // `exp` went through a float: compare to the microsecond.
        let close = |a: SystemTime, b: SystemTime| {
            let gap = a
                .duration_since(b)
                .or_else(|e| Ok::<_, ()>(e.duration()))
                .unwrap();
            assert!(gap < Duration::from_micros(1), "{a:?} is not {b:?}");
        };
        // A fast fetch: the usual third of the lifetime before `exp`.
        let fast = Entry::new(token.clone(), now, Duration::from_millis(10), &policy).unwrap();
        close(fast.refresh_at, exp - Duration::from_secs(1));
        close(fast.usable_until, exp - Duration::from_millis(300));
        // A 400ms fetch: start 0.8s before the token stops being sent (0.3s before `exp`).
        let slow = Entry::new(token.clone(), now, Duration::from_millis(400), &policy).unwrap();
        close(slow.refresh_at, exp - Duration::from_millis(1100));
        // A fetch as slow as the token is long: still not before half its life.
        let hopeless = Entry::new(token, now, Duration::from_secs(3), &policy).unwrap();
        close(hopeless.refresh_at, now + Duration::from_millis(1500));
    }

    #[test]
    fn headers_are_sensitive_and_debug_hides_the_token() {
        let clock = Arc::new(ManualClock::new());
        let minter = Minter::new(&clock, Duration::from_secs(3600));
        let token = IdToken::from_jwt(minter.jwt()).unwrap();
        let entry = Entry::new(
            token.clone(),
            clock.now(),
            Duration::ZERO,
            &RefreshPolicy::default(),
        )
        .unwrap();
        assert!(entry.header.is_sensitive());
        assert_eq!(
            entry.header.to_str().unwrap(),
            format!("Bearer {}", token.secret())
        );
        assert!(!format!("{entry:?}").contains(token.secret()));
        let cache = cache(&minter, &clock, RefreshPolicy::default());
        cache.inner.current.store(Some(Arc::new(entry)));
        assert!(!format!("{cache:?}").contains(token.secret()));
    }
}
