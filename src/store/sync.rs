//! Keeps the revocation cache in step with the store: the first full load (until which the gate is
//! not ready), then every revocation other replicas announce, plus a periodic catch-up for
//! announcements missed while disconnected. Also purges what has expired from the store.

use std::time::{Duration, Instant};

use crate::core::revocation::RevocationCache;
use crate::core::token::unix_now;
use crate::store::{ListenerEvent, Store};

/// How far back each catch-up looks before the previous one, so a revocation whose transaction
/// committed a little after it was stamped is still seen.
const CATCH_UP_OVERLAP_MS: i64 = 30_000;
/// How often revocations whose tokens have all expired are dropped from memory.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often expired revocations and sessions are deleted from the store: revocations expire a
/// few minutes after they are written, and the table stays as small as memory.
const PURGE_INTERVAL: Duration = Duration::from_secs(300);

/// Runs until aborted: loads `revocations` from `store`, marks them loaded, then follows the store
/// (announcements, and a catch-up every `catch_up_interval`). Only revocations written within
/// `window` (`TokenConfig::revocation_window`) can still cover an access token.
pub(crate) async fn run(
    store: Store,
    revocations: RevocationCache,
    catch_up_interval: Duration,
    window: Duration,
) {
    let mut since_ms = initial_load(&store, &revocations, window).await;
    let mut listener = store.listener();
    let mut catch_up = tokio::time::interval(catch_up_interval);
    catch_up.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge = Instant::now();
    let mut last_sweep = Instant::now();
    loop {
        let event = match listener.as_mut() {
            Some(listener) => tokio::select! {
                event = listener.next() => Some(event),
                _ = catch_up.tick() => None,
            },
            None => {
                catch_up.tick().await;
                None
            }
        };
        match &event {
            Some(ListenerEvent::Revoked(revocation)) => revocations.insert(revocation.clone()),
            // Connected (again), or the periodic tick: read what changed since the last look.
            Some(ListenerEvent::Connected) | None => {
                if event.is_some() {
                    tracing::info!("revocation feed connected");
                }
                if let Some(as_of_ms) = apply(&store, &revocations, since_ms, window).await {
                    since_ms = as_of_ms - CATCH_UP_OVERLAP_MS;
                }
            }
        }
        if last_sweep.elapsed() >= SWEEP_INTERVAL {
            last_sweep = Instant::now();
            revocations.sweep();
        }
        if last_purge.elapsed() >= PURGE_INTERVAL {
            last_purge = Instant::now();
            if let Err(e) = store.purge_expired(unix_now()).await {
                tracing::warn!(error = %e, "purging expired revocations failed");
            }
        }
    }
}

/// Migrates and loads every unexpired revocation, retrying until the store answers; then marks the
/// revocations loaded (the gate is ready). Returns where the first catch-up starts.
async fn initial_load(store: &Store, revocations: &RevocationCache, window: Duration) -> i64 {
    let mut delay = Duration::from_millis(200);
    loop {
        let mut count = 0usize;
        let loaded = match store.migrate().await {
            Ok(()) => {
                let mut sink = |revocation| {
                    revocations.insert(revocation);
                    count += 1;
                };
                store
                    .revocations_since(0, window, unix_now(), &mut sink)
                    .await
            }
            Err(e) => Err(e),
        };
        match loaded {
            Ok(as_of_ms) => {
                revocations.mark_loaded();
                tracing::info!(revocations = count, "revocations loaded; ready");
                return as_of_ms - CATCH_UP_OVERLAP_MS;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot load revocations yet; not ready");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One catch-up; `None` when the store did not answer (the next tick tries again).
async fn apply(
    store: &Store,
    revocations: &RevocationCache,
    since_ms: i64,
    window: Duration,
) -> Option<i64> {
    let mut sink = |revocation| revocations.insert(revocation);
    match store
        .revocations_since(since_ms, window, unix_now(), &mut sink)
        .await
    {
        Ok(as_of_ms) => Some(as_of_ms),
        Err(e) => {
            tracing::warn!(error = %e, "revocation catch-up failed; will retry");
            None
        }
    }
}
