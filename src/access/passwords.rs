//! The htpasswd users and the check of their passwords, made safe to expose on a LAN: an
//! unknown user costs what a wrong password costs (no finding out who exists by timing), a
//! few bcrypt checks run at a time, an address that keeps failing is told to wait, and
//! remembered successes are never pushed out by a flood of failures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use super::{Error, Identity, Refusal};

/// A bcrypt check costs tens of milliseconds and clients send their password with every
/// request, so a right password is remembered for a while (a wrong one never is).
const VERIFIED_FOR: Duration = Duration::from_secs(300);
/// bcrypt checks at a time, so a stream of guesses takes a bounded share of the CPU.
const CHECKS_AT_ONCE: usize = 2;
/// Wrong passwords one address may send within `FAILURE_WINDOW` before it must wait.
const FAILURES_ALLOWED: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

pub struct Passwords {
    users: HashMap<String, String>,
    /// Checked against when the user is unknown, at the cost of the file's own hashes.
    decoy: String,
    verified: moka::sync::Cache<[u8; 32], ()>,
    failures: moka::sync::Cache<IpAddr, Arc<AtomicU32>>,
    checks: Semaphore,
}

impl Passwords {
    pub fn read(path: Option<&Path>) -> Result<Passwords, Error> {
        let users = match path {
            Some(path) => read_htpasswd(path)?,
            None => HashMap::new(),
        };
        Ok(Passwords::new(users))
    }

    fn new(users: HashMap<String, String>) -> Passwords {
        // The decoy shares the cost of a real entry; no user can ever match it. Without users
        // there is nothing to find out, and no startup time to spend on it.
        let cost = (users.values())
            .filter_map(|hash| hash.get(4..6)?.parse::<u32>().ok())
            .max();
        let decoy = cost.map_or(String::new(), |cost| {
            bcrypt::hash("regmirror: no such user", cost).unwrap_or_default()
        });
        Passwords {
            users,
            decoy,
            verified: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(VERIFIED_FOR)
                .build(),
            failures: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(FAILURE_WINDOW)
                .build(),
            checks: Semaphore::new(CHECKS_AT_ONCE),
        }
    }

    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// `user`'s `password`, asked from `peer`.
    /// A password remembered as right passes even while its address is told to wait.
    pub async fn check(&self, peer: IpAddr, user: &str, password: &str) -> Result<Identity, Refusal> {
        let hash = self.users.get(user).unwrap_or(&self.decoy);
        let key: [u8; 32] = Sha256::new()
            .chain_update(user)
            .chain_update([0])
            .chain_update(hash)
            .chain_update([0])
            .chain_update(password)
            .finalize()
            .into();
        if self.verified.contains_key(&key) {
            return Ok(Identity::User(user.to_owned()));
        }
        let failures = self.failures.get_with(peer, Arc::default);
        if failures.load(Ordering::Relaxed) >= FAILURES_ALLOWED {
            return Err(Refusal::TooManyFailures {
                retry_after: FAILURE_WINDOW,
            });
        }
        if self.verify(password, hash).await && self.users.contains_key(user) {
            self.verified.insert(key, ());
            return Ok(Identity::User(user.to_owned()));
        }
        failures.fetch_add(1, Ordering::Relaxed);
        Err(Refusal::Unauthenticated("wrong user name or password".into()))
    }

    async fn verify(&self, password: &str, hash: &str) -> bool {
        let Ok(_permit) = self.checks.acquire().await else {
            return false;
        };
        // On the blocking pool, so that checks cannot stall the runtime's workers.
        let (password, hash) = (password.to_owned(), hash.to_owned());
        tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false)
    }
}

fn read_htpasswd(path: &Path) -> Result<HashMap<String, String>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_htpasswd(&text).map_err(|line| Error::NotBcrypt {
        path: path.to_owned(),
        line,
    })
}

/// `user:hash` lines, bcrypt only; blank lines and `#` comments skipped. The error is the
/// number (from 1) of the first line that is none of these.
pub(crate) fn parse_htpasswd(text: &str) -> Result<HashMap<String, String>, usize> {
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, hash)) if hash.starts_with("$2") => {
                users.insert(user.to_owned(), hash.to_owned());
            }
            _ => return Err(n + 1),
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passwords() -> Passwords {
        let hash = bcrypt::hash("wonderland", 4).expect("hash");
        Passwords::new(HashMap::from([("alice".to_owned(), hash)]))
    }

    #[test]
    fn the_decoy_costs_what_the_users_hashes_cost() {
        assert!(passwords().decoy.starts_with("$2b$04$"), "{}", passwords().decoy);
    }

    #[tokio::test]
    async fn unknown_users_and_wrong_passwords_are_refused_alike() {
        let passwords = passwords();
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(
            passwords.check(peer, "alice", "wonderland").await,
            Ok(Identity::User("alice".into()))
        );
        let wrong = passwords.check(peer, "alice", "looking-glass").await;
        let unknown = passwords.check(peer, "mallory", "wonderland").await;
        assert_eq!(wrong, unknown);
        assert!(matches!(wrong, Err(Refusal::Unauthenticated(_))));
    }

    /// Measured, not assumed: without the decoy an unknown user is answered in microseconds
    /// and a wrong password in milliseconds, a ratio far outside the bounds below.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_user_takes_as_long_as_a_wrong_password() {
        let hash = bcrypt::hash("wonderland", 8).expect("hash");
        let passwords = Passwords::new(HashMap::from([("alice".to_owned(), hash)]));
        let median = async |user: &str| {
            let mut times = Vec::new();
            for n in 0..7u8 {
                let peer = IpAddr::from([10, 0, 1, n]);
                let started = std::time::Instant::now();
                assert!(passwords.check(peer, user, "not it").await.is_err());
                times.push(started.elapsed());
            }
            times.sort();
            times[times.len() / 2]
        };
        let (wrong, unknown) = (median("alice").await, median("mallory").await);
        let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
        assert!((0.5..2.0).contains(&ratio), "unknown {unknown:?} vs wrong {wrong:?}");
    }

    #[tokio::test]
    async fn an_address_that_keeps_failing_waits_and_others_do_not() {
        let passwords = passwords();
        let guesser: IpAddr = "10.0.0.66".parse().expect("ip");
        for n in 0..FAILURES_ALLOWED {
            let refused = passwords.check(guesser, "alice", &format!("guess {n}")).await;
            assert!(matches!(refused, Err(Refusal::Unauthenticated(_))));
        }
        let waiting = passwords.check(guesser, "alice", "wonderland").await;
        assert!(matches!(waiting, Err(Refusal::TooManyFailures { .. })), "{waiting:?}");
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!(passwords.check(other, "alice", "wonderland").await.is_ok());
    }
}
