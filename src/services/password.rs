//! Password hashing with argon2id. Hashing is slow on purpose, so it runs on a few threads of its
//! own at the lowest CPU priority, behind a bounded line: proxied requests always run first, and a
//! burst of logins waits its turn, then is turned away, instead of taking the CPU from the app.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::oneshot;

use crate::config::PasswordConfig;

/// Work for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub(crate) struct Passwords {
    argon2: Argon2<'static>,
    /// The line to the hashing threads: `max_waiting_hashes` places. When it is full, callers are
    /// turned away at once rather than queueing without bound. The threads end with the last sender.
    line: SyncSender<Job>,
    /// How long a request waits for its turn before it is turned away; its job is then skipped.
    max_wait: std::time::Duration,
    /// A hash of a random password, verified against when the user does not exist, so an unknown
    /// user costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

impl Passwords {
    pub(crate) fn new(config: &PasswordConfig) -> Passwords {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .expect("argon2 parameters are validated with the config");
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let random: [u8; 32] = rand::random();
        let dummy_hash = hash_with(&argon2, &random);
        let (line, jobs) = sync_channel::<Job>(config.max_waiting_hashes);
        let jobs = Arc::new(Mutex::new(jobs));
        for index in 0..config.max_concurrent_hashes.max(1) {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("authgate-hash-{index}"))
                .spawn(move || hashing_thread(&jobs))
                .expect("a hashing thread starts");
        }
        Passwords {
            argon2,
            line,
            max_wait: config.max_wait,
            dummy_hash: dummy_hash.into(),
        }
    }

    /// Hashes `password` into a PHC string (algorithm, parameters and salt included); `Err(Busy)`
    /// when too many hashes are in line already.
    pub(crate) async fn hash(&self, password: String) -> Result<String, Busy> {
        let argon2 = self.argon2.clone();
        self.run_blocking(move || hash_with(&argon2, password.as_bytes()))
            .await
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no user, so both
    /// cases take the same time. Returns false for the dummy; `Err(Busy)` as for `hash`.
    pub(crate) async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, Busy> {
        let argon2 = self.argon2.clone();
        let is_real = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = self
            .run_blocking(move || match PasswordHash::new(&hash) {
                Ok(parsed) => argon2.verify_password(password.as_bytes(), &parsed).is_ok(),
                Err(_) => false,
            })
            .await?;
        Ok(ok && is_real)
    }

    /// Runs `work` on a hashing thread, or answers `Busy` at once when the line is full, or when
    /// the work has not finished within `max_wait`: hashing runs at idle priority, so under a
    /// saturating proxied load a login is told to come back rather than left hanging.
    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let answered = self.enqueue(work)?;
        match tokio::time::timeout(self.max_wait, answered).await {
            Ok(result) => Ok(result.expect("password hashing does not panic")),
            // Dropping `answered` closes the channel, so the job is skipped when its turn comes.
            Err(_) => Err(Busy),
        }
    }

    /// Puts `work` in line for a hashing thread; its result arrives on the returned channel.
    fn enqueue<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<T>, Busy> {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The client may have gone while this waited in line: then there is nothing to do.
            if !answer.is_closed() {
                let _ = answer.send(work());
            }
        });
        match self.line.try_send(job) {
            Ok(()) => Ok(answered),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

/// Too many password hashes in line.
#[derive(Debug)]
pub(crate) struct Busy;

/// One hashing thread: at the lowest priority, it takes jobs from the line until the line closes.
fn hashing_thread(jobs: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Puts the calling thread in `SCHED_IDLE`: it runs when no other thread of the machine wants the
/// CPU, so a login flood cannot take CPU time from proxied requests (measured in BENCHMARKS.md).
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid, initialised param.
    let failed = unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0
    };
    if failed {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not lower the priority of a password hashing thread; logins may slow proxied requests"
        );
    }
}

/// Elsewhere there is no per-thread equivalent (`setpriority` would lower the whole process), so
/// hashing runs at normal priority and only `max_concurrent_hashes` keeps it in bounds.
#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

fn hash_with(argon2: &Argon2<'_>, password: &[u8]) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2
        .hash_password(password, &salt)
        .expect("argon2 hashing with valid parameters cannot fail")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap argon2 parameters, with the given hashing threads, waiting places and wait.
    fn cheap_with(threads: usize, waiting: usize, max_wait: std::time::Duration) -> Passwords {
        Passwords::new(&PasswordConfig {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            max_concurrent_hashes: threads,
            max_waiting_hashes: waiting,
            max_wait,
        })
    }

    fn cheap() -> Passwords {
        cheap_with(2, 4, std::time::Duration::from_secs(10))
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let p = cheap();
        let hash = p.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(
            p.verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!p.verify("wrong horse".into(), Some(hash)).await.unwrap());
        assert!(
            !p.verify("anything".into(), None).await.unwrap(),
            "the dummy never matches"
        );
    }

    /// An unknown user costs one full argon2id verification with the configured parameters, the
    /// same work as a wrong password, so response time does not tell the two apart.
    #[tokio::test]
    async fn the_dummy_hash_costs_what_a_real_one_costs() {
        let p = cheap();
        let real = p.hash("any password".into()).await.unwrap();
        let params = |h: &str| h.split('$').nth(3).unwrap().to_string();
        assert_eq!(params(&p.dummy_hash), params(&real));
        assert_eq!(params(&real), "m=1024,t=1,p=1");
    }

    /// With one hashing thread and one waiting place, a third hash at the same moment is turned
    /// away; once the line has moved, hashing works again.
    #[tokio::test]
    async fn the_line_has_a_length() {
        // A long wait: this is about the line's length, and a busy machine must not fail it.
        let p = cheap_with(1, 1, std::time::Duration::from_secs(30));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, has_started) = oneshot::channel();
        let running = p
            .enqueue(move || {
                let _ = started.send(());
                held.recv().is_ok()
            })
            .unwrap();
        has_started.await.unwrap();
        let waiting = p.enqueue(|| true).expect("the one waiting place is free");
        assert!(
            p.enqueue(|| true).is_err(),
            "a full line turns callers away"
        );
        release.send(()).unwrap();
        assert!(running.await.unwrap());
        assert!(waiting.await.unwrap());
        assert!(p.hash("after the rush".into()).await.is_ok());
    }

    /// A hash that cannot start within `max_wait` is answered `Busy`, and its job is skipped
    /// rather than run for a client that has been told to come back.
    #[tokio::test]
    async fn waiting_too_long_is_busy_and_the_job_is_skipped() {
        let p = cheap_with(1, 4, std::time::Duration::from_millis(200));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, has_started) = oneshot::channel();
        let blocker = p
            .enqueue(move || {
                let _ = started.send(());
                held.recv().is_ok()
            })
            .unwrap();
        has_started.await.unwrap();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let waited = p
            .run_blocking(move || flag.store(true, std::sync::atomic::Ordering::SeqCst))
            .await;
        assert!(waited.is_err(), "turned away after max_wait");
        release.send(()).unwrap();
        assert!(blocker.await.unwrap());
        // The line has moved past the abandoned job without running it.
        p.run_blocking(|| ()).await.unwrap();
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// The hashing threads run in SCHED_IDLE, so proxied requests always come first.
    #[cfg(target_os = "linux")]
    #[test]
    fn hashing_threads_run_at_idle_priority() {
        let _p = cheap();
        // (policy of each hashing thread alive now); a thread lowers itself right after it starts.
        let policies = || -> Vec<i32> {
            let mut found = Vec::new();
            for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                let Ok(tid) = task.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                // SAFETY: sched_getscheduler only reads the policy of the given thread.
                let policy = unsafe { libc::sched_getscheduler(tid) };
                if comm.starts_with("authgate-hash") && policy >= 0 {
                    found.push(policy);
                }
            }
            found
        };
        let mut seen = policies();
        for _ in 0..100 {
            if seen.len() >= 2 && seen.iter().all(|&p| p == libc::SCHED_IDLE) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            seen = policies();
        }
        assert!(seen.iter().all(|&p| p == libc::SCHED_IDLE), "{seen:?}");
        assert!(
            seen.len() >= 2,
            "the two hashing threads of cheap() exist: {seen:?}"
        );
    }
}
