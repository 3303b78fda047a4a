//! The header read timeout, kept per connection: a connection with no request in progress for
//! `server.header_read_timeout` is closed. That covers a client that never finishes its headers
//! (slowloris) and a keep-alive connection left idle, on HTTP/1.1 and HTTP/2 alike.
//!
//! hyper's own header read timeout registers a timer and removes it again for every request (what
//! that cost: BENCHMARKS.md). Here a request only counts itself in and out, and each connection
//! has one timer that is moved on when it fires.
//!
//! The same wrapper carries the worker's `Stop` to the connection at shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::sync::Notify;
// tokio's clock, so that tests can move it on.
use tokio::time::Instant;

use crate::http::body::{BoxError, Outbound};

/// Whether a connection has requests in progress, and since when it has had none.
pub(crate) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `opened` to the end of the last request.
    idle_since: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
        })
    }

    /// When the connection will have been idle for `limit`: `None` while a request is in
    /// progress.
    fn idle_deadline(&self, limit: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since.load(Ordering::Acquire));
        Some(self.opened + since + limit)
    }
}

/// One request in progress: from the moment hyper hands it over until its answer's body has been
/// written (or dropped), since a long answer is activity too.
pub(crate) struct InFlight(Arc<Activity>);

impl InFlight {
    pub(crate) fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.opened.elapsed().as_millis();
        activity
            .idle_since
            .fetch_max(u64::try_from(now).unwrap_or(u64::MAX), Ordering::AcqRel);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The worker's signal to its connections that it is stopping: each finishes what is in progress
/// and closes. (hyper-util's `GracefulShutdown` polls a watch channel, taking its lock, every
/// time a connection wakes; this is a flag read only when the worker has rung.)
#[derive(Default)]
pub(crate) struct Stop {
    stopped: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Ready once `stop` has been called. The task's waker is registered on the first poll only:
    /// a connection runs as one spawned task, whose waker never changes, so later polls need only
    /// read the flag.
    pub(crate) fn stopped(&self) -> impl Future<Output = ()> + '_ {
        // Made before the flag is read, so a `stop` after that read still wakes it.
        let mut notified = Box::pin(self.notify.notified());
        let mut registered = false;
        std::future::poll_fn(move |cx| {
            if self.stopped.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            if !registered {
                registered = true;
                return notified.as_mut().poll(cx);
            }
            Poll::Pending
        })
    }
}

/// Runs `connection` until it ends (`Some` of what it returned), or until it has had no request
/// in progress for `limit` (`None`); then it is dropped, which closes it. When `stop` comes,
/// `finish` is called on it once (hyper's graceful shutdown: no new requests, those in progress
/// complete) and it runs on to its end.
pub(crate) async fn serve<F, T>(
    connection: F,
    activity: Arc<Activity>,
    limit: Duration,
    stop: Arc<Stop>,
    finish: impl FnOnce(Pin<&mut F>),
) -> Option<T>
where
    F: Future<Output = T>,
{
    let mut connection = std::pin::pin!(connection);
    let mut finish = Some(finish);
    let mut stopped = std::pin::pin!(stop.stopped());
    let mut timer = IdleTimer::new(limit);
    loop {
        tokio::select! {
            biased;
            output = connection.as_mut() => return Some(output),
            () = stopped.as_mut(), if finish.is_some() => {
                if let Some(finish) = finish.take() {
                    finish(connection.as_mut());
                }
            }
            () = std::future::poll_fn(|cx| timer.poll_idle(&activity, limit, cx)) => return None,
        }
    }
}

/// A connection's idle timer, polled only when it has fired. tokio's `Sleep` registers the waker
/// it is given again on every poll, and a connection's task wakes twice a request. So the timer
/// gets a waker of its own, which notes that it fired before it wakes the task.
struct IdleTimer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    fired: Arc<Fired>,
    /// Wakes through `fired`.
    waker: Waker,
}

/// Set by the timer's waker; `task` is the waker of the task that polls the timer.
struct Fired {
    flag: AtomicBool,
    task: Waker,
}

impl Wake for Fired {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.flag.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl IdleTimer {
    fn new(limit: Duration) -> IdleTimer {
        // No task yet: the first poll sets up the waker for the one polling.
        let fired = Arc::new(Fired {
            flag: AtomicBool::new(true),
            task: Waker::noop().clone(),
        });
        IdleTimer {
            sleep: Box::pin(tokio::time::sleep(limit)),
            waker: Waker::from(fired.clone()),
            fired,
        }
    }

    /// Ready once the connection has had no request in progress for `limit`.
    fn poll_idle(
        &mut self,
        activity: &Activity,
        limit: Duration,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if !self.fired.task.will_wake(cx.waker()) {
            // Another task polls now (or the first): the timer must learn to wake it.
            self.fired = Arc::new(Fired {
                flag: AtomicBool::new(true),
                task: cx.waker().clone(),
            });
            self.waker = Waker::from(self.fired.clone());
        }
        // Read before it is cleared: a plain load where the swap is a locked instruction, and
        // the flag is nearly always clear.
        while self.fired.flag.load(Ordering::Acquire)
            && self.fired.flag.swap(false, Ordering::AcqRel)
        {
            let mut timer_cx = Context::from_waker(&self.waker);
            if self.sleep.as_mut().poll(&mut timer_cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            let next = match activity.idle_deadline(limit) {
                Some(idle_until) if idle_until <= now => return Poll::Ready(()),
                Some(idle_until) => idle_until,
                None => now + limit,
            };
            self.sleep.as_mut().reset(next);
            // Polled again, so that the reset timer holds the waker.
            self.fired.flag.store(true, Ordering::Release);
        }
        Poll::Pending
    }
}

/// An answer's body, with its request counted in progress until the body is dropped.
pub(crate) struct Tracked {
    body: Outbound,
    /// Held for its `Drop`.
    _in_flight: InFlight,
}

impl Tracked {
    pub(crate) fn new(body: Outbound, in_flight: InFlight) -> Tracked {
        Tracked {
            body,
            _in_flight: in_flight,
        }
    }
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_closed_only_after_the_limit_with_nothing_in_flight() {
        let limit = Duration::from_secs(10);
        let activity = Activity::new();
        let watched = tokio::spawn(serve(
            std::future::pending::<()>(),
            activity.clone(),
            limit,
            Arc::default(),
            |_| {},
        ));
        // A request runs for 25 s: three limits pass without closing.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let request = InFlight::start(&activity);
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(!watched.is_finished(), "closed with a request in progress");
        drop(request);
        // Idle from 26 s: still open at 35 s, closed by 37 s.
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!watched.is_finished(), "closed before the limit");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(watched.is_finished(), "still open past the limit");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_carries_a_request_is_closed_after_the_limit() {
        let activity = Activity::new();
        let watched = tokio::spawn(serve(
            std::future::pending::<()>(),
            activity,
            Duration::from_secs(10),
            Arc::default(),
            |_| {},
        ));
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!watched.is_finished());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(watched.is_finished());
    }

    /// A connection that ends once it has been asked to finish, what asks it, and how often
    /// it was asked.
    fn finishing_connection() -> (impl Future<Output = ()>, impl FnOnce(), Arc<AtomicUsize>) {
        let (asked, asked_rx) = tokio::sync::oneshot::channel::<()>();
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        let connection = async move {
            let _ = asked_rx.await;
        };
        let finish = move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = asked.send(());
        };
        (connection, finish, count)
    }

    #[tokio::test(start_paused = true)]
    async fn stop_asks_each_connection_to_finish_once_and_lets_it_run_to_its_end() {
        let stop = Arc::new(Stop::default());
        let (connection, finish, asked) = finishing_connection();
        let limit = Duration::from_secs(60);
        let watched = tokio::spawn(serve(
            connection,
            Activity::new(),
            limit,
            stop.clone(),
            move |_| finish(),
        ));
        // One that is never done: asked to finish, it is not dropped but runs on.
        let stubborn = tokio::spawn(serve(
            std::future::pending::<()>(),
            Activity::new(),
            limit,
            stop.clone(),
            |_| {},
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!watched.is_finished() && !stubborn.is_finished());
        assert_eq!(asked.load(Ordering::SeqCst), 0);

        stop.stop();
        watched.await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!stubborn.is_finished(), "dropped instead of left to finish");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_starts_after_stop_is_asked_to_finish_at_once() {
        let stop = Arc::new(Stop::default());
        stop.stop();
        let (connection, finish, asked) = finishing_connection();
        let limit = Duration::from_secs(60);
        serve(connection, Activity::new(), limit, stop, move |_| finish()).await;
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }
}
