//! The token cache: one fresh ID token per audience, read without a lock on every RPC.
//!
//! - The current token sits behind an atomic pointer (`arc-swap`): a read is a load and a
//!   clock read, no lock and no allocation.
//! - A read past the token's refresh time starts one background fetch (single flight: one
//!   live fetch at a time) and still returns the valid token: a refresh never adds latency to
//!   an RPC.
//! - Only when no valid token exists does a caller wait, for at most its own deadline (else
//!   [`RefreshPolicy::max_wait`]): through transient fetch failures, retried with backoff, but
//!   not through permanent ones, which fail at once.
//! - A fetched token is checked before use: its `aud` must be the audience, and its expiry is
//!   judged on the token endpoint's clock when the source recorded it.
//! - Tokens the service refused (HTTP 401) back off on their own schedule, so that a wrong
//!   audience costs a few fetches a minute, never a storm; a refused token is not sent again
//!   before its backoff has passed.
//! - A fetch that outlives its timeout (its runtime stopped being driven, or was shut down) is
//!   abandoned, and the next caller starts another: the cache cannot be wedged.
//!
//! This file is the cache and its fetch state machine; `policy.rs` is the [`RefreshPolicy`]:
//! when to refresh, when a token stops being sent, and how long to back off.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Clock, IdToken, IdTokenSource, JwtError, SystemClock, TokenError, humantime};
use crate::deadline::later;
use crate::sync::lock;

mod policy;

pub use policy::RefreshPolicy;
use policy::Schedule;

/// A token ready to be put on requests, with the times the cache acts on.
pub(crate) struct Entry {
    /// Tells this token from the next, so that a late refusal cannot drop a newer one.
    pub(crate) id: u64,
    pub(crate) token: IdToken,
    /// `Bearer <token>`, marked sensitive so HPACK never indexes it.
    pub(crate) header: HeaderValue,
    /// On the local clock, corrected for its offset from the token endpoint's.
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

/// Why a caller got no token; each case maps to the status the call fails with.
#[derive(Debug, Clone)]
pub(crate) enum WaitError {
    /// Permanent: no credentials, a 4xx refusal, a key the endpoint rejects, a token for
    /// another audience. Retrying will not help: the call fails fast (`UNAUTHENTICATED`).
    Permanent(Arc<TokenError>),
    /// Transient fetch failures (5xx, timeouts, refused or reset connections) kept failing until
    /// the caller's deadline (or [`RefreshPolicy::max_wait`]); the last one is here
    /// (`UNAVAILABLE`).
    Unavailable(Arc<TokenError>),
    /// In the refusal backoff: the service refused our tokens (`UNAUTHENTICATED` with its
    /// message). No token is sent, and none fetched, for `retry_in`.
    Refused {
        message: Arc<str>,
        retry_in: Duration,
    },
    /// The caller's deadline passed while a fetch was still under way, before any failed.
    Deadline,
}

/// The last refusal of one of our tokens by the service.
struct Refusal {
    /// The refused entry: its other refusals (calls in flight with it) do not count again.
    entry: u64,
    /// The refused token, not installed again before `until` even when the source hands it
    /// back (the metadata server caches its token for most of an hour).
    token: IdToken,
    message: Arc<str>,
    /// The tick (see [`Inner::ticks`]) the refusal backoff ends at.
    until: u64,
    /// The source handed the refused token back before `until`: callers fail fast until then.
    held: bool,
}

#[derive(Default)]
struct FetchState {
    /// Completed fetches, so a waiter can tell that a fetch ended since it looked.
    generation: u64,
    /// Consecutive failed fetches, for their backoff.
    failures: u32,
    last_error: Option<Arc<TokenError>>,
    /// The entry installed last, and its token: the only one whose refusal counts.
    installed: Option<(u64, IdToken)>,
    refusal: Option<Refusal>,
}

struct Inner {
    source: Box<dyn IdTokenSource>,
    source_name: String,
    audience: String,
    policy: RefreshPolicy,
    clock: Arc<dyn Clock>,
    current: ArcSwapOption<Entry>,
    /// Where [`Inner::ticks`] count from.
    epoch: Instant,
    /// The ticket of the one live fetch; 0 when none runs.
    fetching: AtomicU64,
    /// The tick the live fetch started at; it is abandoned once it outlives
    /// [`Inner::fetch_timeout`].
    fetch_started: AtomicU64,
    /// The tick before which no fetch starts (backoff); 0 for none.
    next_attempt: AtomicU64,
    /// Consecutive refusals of our tokens; only [`TokenCache::passed`] ends the streak.
    refusals: AtomicU32,
    /// The entry refused last (0 for none), so that its own late successes do not end it.
    refused_entry: AtomicU64,
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
/// # // {"exp":4102444800,"aud":"https://svc.a.run.app"}
/// # let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDAsImF1ZCI6Imh0dHBzOi8vc3ZjLmEucnVuLmFwcCJ9.c2ln";
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

    /// A valid token, fetching one if there is none, waiting through transient failures for at
    /// most [`RefreshPolicy::max_wait`]. Fails with the fetch's error, or
    /// [`TokenError::Refused`] while the service's refusals of our tokens back off.
    pub async fn token(&self) -> Result<IdToken, Arc<TokenError>> {
        match self.wait(None).await {
            Ok(entry) => Ok(entry.token.clone()),
            Err(WaitError::Permanent(e) | WaitError::Unavailable(e)) => Err(e),
            Err(WaitError::Refused { message, retry_in }) => Err(Arc::new(TokenError::Refused {
                source_name: self.inner.source_name.clone(),
                message: message.to_string(),
                retry_in,
            })),
            Err(WaitError::Deadline) => Err(Arc::new(TokenError::Timeout {
                source_name: self.inner.source_name.clone(),
                after: self.inner.policy.max_wait,
            })),
        }
    }

    /// Forgets the cached token, so the next request fetches a new one. Unlike a refusal by
    /// the service, this starts no backoff.
    pub fn invalidate(&self) {
        self.inner.next_attempt.store(0, Ordering::Release);
        self.inner.current.store(None);
        tracing::debug!(audience = %self.inner.audience, source = %self.inner.source_name, "ID token invalidated");
    }

    /// The service's front end refused the token of entry `entry_id` (HTTP 401, not a gRPC
    /// answer): forgets it, counts the refusal and starts the refusal backoff. `message` is the
    /// front end's (already sanitised) explanation, for the errors of calls during the backoff.
    ///
    /// Only the first refusal of an entry counts (every call in flight with it is refused),
    /// and only of the entry installed last (a late refusal of an older token is ignored).
    /// After a first refusal a new fetch may start at once, so a one-off refusal is healed by
    /// one new token; after later ones nothing is fetched before the backoff ends.
    pub(crate) fn refused(&self, entry_id: u64, message: Arc<str>) {
        let inner = &*self.inner;
        let mut state = inner.lock_state();
        let token = match &state.installed {
            Some((id, token)) if *id == entry_id => token.clone(),
            _ => return,
        };
        if state.refusal.as_ref().is_some_and(|r| r.entry == entry_id) {
            return;
        }
        let current = inner.current.load();
        if current.as_ref().is_some_and(|e| e.id == entry_id) {
            inner.current.compare_and_swap(&*current, None);
        }
        let refusals = inner.refusals.load(Ordering::Relaxed).saturating_add(1);
        inner.refusals.store(refusals, Ordering::Relaxed);
        inner.refused_entry.store(entry_id, Ordering::Relaxed);
        let delay = inner.policy.refusal_backoff(refusals);
        let until = inner.ticks_after(delay);
        if refusals > 1 {
            inner.next_attempt.fetch_max(until, Ordering::AcqRel);
        } else {
            inner.next_attempt.store(0, Ordering::Release);
        }
        tracing::warn!(
            audience = %inner.audience,
            source = %inner.source_name,
            expires_at = %humantime(token.expires_at()),
            refusals,
            backoff = ?delay,
            %message,
            "the service refused the ID token"
        );
        state.refusal = Some(Refusal {
            entry: entry_id,
            token,
            message,
            until,
            held: false,
        });
    }

    /// A response with this entry's token got past the front end (any gRPC answer): the
    /// consecutive-refusal count goes back to zero. An atomic load; a store only after refusals.
    pub(crate) fn passed(&self, entry_id: u64) {
        let inner = &*self.inner;
        if inner.refusals.load(Ordering::Relaxed) != 0
            && inner.refused_entry.load(Ordering::Relaxed) != entry_id
        {
            inner.refusals.store(0, Ordering::Relaxed);
        }
    }

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
        let now = self.inner.clock.now();
        if now >= entry.usable_until {
            return false;
        }
        if now >= entry.refresh_at {
            self.refresh_due();
        }
        true
    }

    /// A read past the refresh time: start the refresh, unless one runs or backoff holds it.
    #[cold]
    fn refresh_due(&self) {
        let inner = &self.inner;
        if inner.fetching.load(Ordering::Acquire) == 0 {
            if inner.may_attempt() {
                Inner::start_fetch(inner, "refresh");
            }
        } else if inner.fetch_overdue() {
            Inner::take_over(inner);
        }
    }

    /// Waits for a valid token until `deadline` (else [`RefreshPolicy::max_wait`] from now):
    /// through transient fetch failures, retried with backoff, but not through permanent ones
    /// or the refusal backoff, which fail at once.
    pub(crate) async fn wait(&self, deadline: Option<Instant>) -> Result<Arc<Entry>, WaitError> {
        let inner = &self.inner;
        let deadline = deadline.unwrap_or_else(|| later(Instant::now(), inner.policy.max_wait));
        // The last transient failure this caller saw, to say why if its deadline passes.
        let mut failed: Option<Arc<TokenError>> = None;
        // Each round ends in a return or waits for an event (a fetch ends, a backoff or a fetch
        // timeout passes, the deadline): bounded by time, and by count in case of a bug.
        for _ in 0..MAX_ROUNDS {
            let notified = inner.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(entry) = self.lookup() {
                return Ok(entry);
            }
            let (generation, wake_at) = {
                let state = inner.lock_state();
                let now = inner.ticks();
                if let Some(refusal) = &state.refusal
                    && now < refusal.until
                    && (refusal.held || inner.refusals.load(Ordering::Relaxed) > 1)
                {
                    return Err(WaitError::Refused {
                        message: Arc::clone(&refusal.message),
                        retry_in: inner.duration_until(refusal.until),
                    });
                }
                // A failure streak under way is what this caller waits through, too.
                if let Some(error) = &state.last_error
                    && error.is_transient()
                {
                    failed = Some(Arc::clone(error));
                }
                let wake_at = if inner.fetching.load(Ordering::Acquire) != 0 {
                    if inner.fetch_overdue() {
                        Inner::take_over(inner);
                    }
                    inner.fetch_deadline()
                } else if inner.may_attempt() {
                    Inner::start_fetch(inner, "fetch");
                    inner.fetch_deadline()
                } else {
                    // Backing off after a failure, with no valid token.
                    let next = inner.next_attempt.load(Ordering::Acquire);
                    match &state.last_error {
                        Some(error) if !error.is_transient() => {
                            return Err(WaitError::Permanent(Arc::clone(error)));
                        }
                        Some(error) if inner.instant(next) > deadline => {
                            return Err(WaitError::Unavailable(Arc::clone(error)));
                        }
                        _ => next,
                    }
                };
                (state.generation, wake_at)
            };
            let wake_at = inner.instant(wake_at).min(deadline);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
            if let Some(entry) = self.lookup() {
                return Ok(entry);
            }
            {
                let state = inner.lock_state();
                if state.generation != generation
                    && let Some(error) = &state.last_error
                {
                    if !error.is_transient() {
                        return Err(WaitError::Permanent(Arc::clone(error)));
                    }
                    failed = Some(Arc::clone(error));
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(failed.map_or(WaitError::Deadline, WaitError::Unavailable))
    }
}

/// More rounds than any wait needs: each starts or awaits a fetch, or sits out a backoff.
const MAX_ROUNDS: usize = 10_000;

/// The tick `delay` after `tick`, saturating.
fn tick_after(tick: u64, delay: Duration) -> u64 {
    tick.saturating_add(u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX))
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
                epoch: Instant::now(),
                fetching: AtomicU64::new(0),
                fetch_started: AtomicU64::new(0),
                next_attempt: AtomicU64::new(0),
                refusals: AtomicU32::new(0),
                refused_entry: AtomicU64::new(0),
                fetches: AtomicU64::new(0),
                state: Mutex::new(FetchState::default()),
                done: Notify::new(),
            }),
        }
    }
}

/// Tells fetches apart, so that an abandoned one cannot install its result.
static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

impl Inner {
    fn lock_state(&self) -> MutexGuard<'_, FetchState> {
        lock(&self.state)
    }

    /// Nanoseconds of Tokio time since the cache was built, plus one, so that 0 can mean
    /// "none" where a tick is stored.
    fn ticks(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// The tick `delay` from now.
    fn ticks_after(&self, delay: Duration) -> u64 {
        tick_after(self.ticks(), delay)
    }

    /// The instant of a tick.
    fn instant(&self, tick: u64) -> Instant {
        later(self.epoch, Duration::from_nanos(tick.saturating_sub(1)))
    }

    /// How long from now until a tick.
    fn duration_until(&self, tick: u64) -> Duration {
        Duration::from_nanos(tick.saturating_sub(self.ticks()))
    }

    fn may_attempt(&self) -> bool {
        let next = self.next_attempt.load(Ordering::Acquire);
        next == 0 || self.ticks() >= next
    }

    /// How long a fetch may take: the policy's timeout, or longer if the source needs it.
    fn fetch_timeout(&self) -> Duration {
        let policy = self.policy.fetch_timeout;
        self.source
            .fetch_timeout()
            .map_or(policy, |needed| needed.max(policy))
    }

    /// The tick past which the live fetch is abandoned.
    fn fetch_deadline(&self) -> u64 {
        tick_after(
            self.fetch_started.load(Ordering::Acquire),
            self.fetch_timeout(),
        )
    }

    /// Whether the live fetch has outlived its timeout: its runtime no longer drives it.
    fn fetch_overdue(&self) -> bool {
        self.fetch_started.load(Ordering::Acquire) != 0 && self.ticks() >= self.fetch_deadline()
    }

    /// Starts the one fetch, on the caller's runtime, unless one is already live.
    fn start_fetch(this: &Arc<Inner>, why: &'static str) {
        let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
        if this
            .fetching
            .compare_exchange(0, ticket, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            Inner::spawn_fetch(this, ticket, why);
        }
    }

    /// Abandons the live fetch if it has outlived its timeout (its runtime stopped being
    /// driven, or was shut down without dropping it) and starts a new one on the caller's
    /// runtime. The abandoned fetch's result, if it ever comes, is dropped.
    fn take_over(this: &Arc<Inner>) {
        let old = this.fetching.load(Ordering::Acquire);
        if old == 0 || !this.fetch_overdue() {
            return;
        }
        let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
        if this
            .fetching
            .compare_exchange(old, ticket, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::warn!(
                audience = %this.audience,
                source = %this.source_name,
                timeout = ?this.policy.fetch_timeout,
                "abandoning an ID token fetch that outlived its timeout (its runtime is no longer \
                 driven?); starting another"
            );
            Inner::spawn_fetch(this, ticket, "fetch after an abandoned one");
        }
    }

    /// Runs the fetch holding `ticket` on the caller's runtime; without one, gives the ticket
    /// back (there is nothing to run it on).
    fn spawn_fetch(this: &Arc<Inner>, ticket: u64, why: &'static str) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let started = this.ticks();
                this.fetch_started.store(started, Ordering::Release);
                this.fetches.fetch_add(1, Ordering::Relaxed);
                // Owned by the task from the start, so that it also runs when the task is
                // dropped before it was ever polled (its runtime shut down first).
                let done = FetchDone {
                    inner: Arc::clone(this),
                    ticket,
                };
                let this = Arc::clone(this);
                runtime.spawn(async move {
                    let _done = done;
                    this.fetch(ticket, started, why).await;
                });
            }
            Err(_) => {
                let _ =
                    this.fetching
                        .compare_exchange(ticket, 0, Ordering::AcqRel, Ordering::Acquire);
            }
        }
    }

    async fn fetch(&self, ticket: u64, started_at: u64, why: &'static str) {
        tracing::debug!(audience = %self.audience, source = %self.source_name, why, "fetching ID token");
        let started = Instant::now();
        let fetch = self.source.fetch(&self.audience);
        tokio::pin!(fetch);
        let mut allowed = Duration::ZERO;
        // The timeout is asked again when it is up: the source may have learned it needs
        // longer (Application Default Credentials found a program to run). Bounded: each
        // round waits for a longer timeout than the last, and there are few rounds.
        let mut result = None;
        for _ in 0..4 {
            let timeout = self.fetch_timeout();
            if timeout <= allowed {
                break;
            }
            allowed = timeout;
            let deadline = later(self.instant(started_at), timeout);
            if let Ok(fetched) = tokio::time::timeout_at(deadline, &mut fetch).await {
                result = Some(fetched);
                break;
            }
        }
        let result = result.unwrap_or_else(|| {
            Err(TokenError::Timeout {
                source_name: self.source_name.clone(),
                after: allowed,
            })
        });
        let took = started.elapsed();
        let now = self.clock.now();
        let result = result.and_then(|token| self.checked(token));
        let mut state = self.lock_state();
        if self.fetching.load(Ordering::Acquire) != ticket {
            tracing::debug!(audience = %self.audience, source = %self.source_name, "an abandoned fetch ended; its result is dropped");
            return;
        }
        state.generation += 1;
        match result {
            Ok(token) => self.fetched(&mut state, token, now, took, why),
            Err(error) => self.failed(&mut state, error),
        }
    }

    /// The token, if it is for our audience.
    fn checked(&self, token: IdToken) -> Result<IdToken, TokenError> {
        if token.is_for(&self.audience) {
            return Ok(token);
        }
        Err(TokenError::WrongAudience {
            source_name: self.source_name.clone(),
            requested: self.audience.clone(),
            got: token.audiences().to_vec(),
        })
    }

    fn fetched(
        &self,
        state: &mut FetchState,
        token: IdToken,
        now: SystemTime,
        took: Duration,
        why: &'static str,
    ) {
        let previous = self.current.load_full();
        if previous
            .as_ref()
            .is_some_and(|p| p.token == token && now < p.usable_until)
        {
            // The source still hands out its cached token: ask again later, without spinning.
            state.failures = state.failures.saturating_add(1);
            let delay = self.policy.backoff(state.failures);
            self.next_attempt
                .store(self.ticks_after(delay), Ordering::Release);
            tracing::debug!(audience = %self.audience, source = %self.source_name, retry_in = ?delay, "source returned the same token; retrying later");
            return;
        }
        if let Some(refusal) = &mut state.refusal
            && refusal.token == token
            && self.ticks() < refusal.until
        {
            // The token just refused, handed back (the metadata server's cache): not before
            // its backoff has passed, then fetched again.
            refusal.held = true;
            self.next_attempt.fetch_max(refusal.until, Ordering::AcqRel);
            tracing::debug!(audience = %self.audience, source = %self.source_name, retry_in = ?self.duration_until(refusal.until), "source returned the refused token; holding it back");
            return;
        }
        // Expiry is judged on the local clock shifted by its offset from the endpoint's.
        let exp = on_local_clock(token.expires_at(), token.server_time(), now);
        let entry = self
            .policy
            .schedule(exp, now, took)
            .and_then(|schedule| Entry::new(token, schedule));
        match entry {
            Ok(entry) => {
                tracing::info!(
                    audience = %self.audience,
                    source = %self.source_name,
                    expires_at = %humantime(entry.token.expires_at()),
                    refresh_at = %humantime(entry.refresh_at),
                    why,
                    "fetched ID token"
                );
                state.installed = Some((entry.id, entry.token.clone()));
                if let Some(refusal) = &mut state.refusal {
                    refusal.held = false;
                }
                self.current.store(Some(Arc::new(entry)));
                state.failures = 0;
                state.last_error = None;
                self.next_attempt.store(0, Ordering::Release);
            }
            Err(reason) => {
                let error = TokenError::BadToken {
                    source_name: self.source_name.clone(),
                    reason,
                };
                self.failed(state, error)
            }
        }
    }

    fn failed(&self, state: &mut FetchState, error: TokenError) {
        state.failures = state.failures.saturating_add(1);
        let delay = if error.is_transient() {
            self.policy.backoff(state.failures)
        } else {
            self.policy.max_backoff
        };
        self.next_attempt
            .store(self.ticks_after(delay), Ordering::Release);
        let now = self.clock.now();
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

/// Offsets up to this are the endpoint's one-second time resolution and the network's delay,
/// not a skewed clock: the expiry skew already covers them, and correcting for them would only
/// add their error.
const NEGLIGIBLE_OFFSET: Duration = Duration::from_secs(30);

/// `exp`, read on the token endpoint's clock, moved to the local clock: the local clock was
/// `now` when the endpoint's said `server_time`. Unchanged when the source recorded no time or
/// the clocks agree to within [`NEGLIGIBLE_OFFSET`].
fn on_local_clock(exp: SystemTime, server_time: Option<SystemTime>, now: SystemTime) -> SystemTime {
    let Some(server) = server_time else {
        return exp;
    };
    // `Date` and `iat` count whole seconds, rounded down: the endpoint's clock may have been up
    // to a second later. Assuming it was errs towards an earlier expiry, never a later one.
    let server = server.checked_add(Duration::from_secs(1)).unwrap_or(server);
    let shifted = match now.duration_since(server) {
        Ok(local_ahead) if local_ahead > NEGLIGIBLE_OFFSET => exp.checked_add(local_ahead),
        Err(behind) if behind.duration() > NEGLIGIBLE_OFFSET => exp.checked_sub(behind.duration()),
        _ => None,
    };
    shifted.unwrap_or(exp)
}

/// Gives the fetch's ticket back and wakes the waiters however the fetch ends, even when its
/// task is dropped mid-fetch (its runtime shut down): the next caller then starts a new fetch.
struct FetchDone {
    inner: Arc<Inner>,
    ticket: u64,
}

impl Drop for FetchDone {
    fn drop(&mut self) {
        // An abandoned fetch no longer holds the ticket: it leaves the live one alone.
        let _ = self.inner.fetching.compare_exchange(
            self.ticket,
            0,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.inner.done.notify_waiters();
    }
}

static NEXT_ENTRY_ID: AtomicU64 = AtomicU64::new(1);

impl Entry {
    fn new(token: IdToken, schedule: Schedule) -> Result<Self, JwtError> {
        let mut header = HeaderValue::try_from(format!("Bearer {}", token.secret()))
            .map_err(|_| JwtError::NotAJwt)?;
        header.set_sensitive(true);
        Ok(Self {
            id: NEXT_ENTRY_ID.fetch_add(1, Ordering::Relaxed),
            header,
            usable_until: schedule.usable_until,
            refresh_at: schedule.refresh_at,
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
mod tests;
