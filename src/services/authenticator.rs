//! Which tokens admit their holder: a valid signature and claims, of the kind asked for, not
//! revoked, and only once every revocation is loaded. It runs on every guarded request, so it
//! reads memory only and never asks the store.

use std::sync::Arc;
use std::time::Duration;

use crate::core::revocation::RevocationCache;
use crate::core::token::{Claims, TokenError, TokenKind, TokenService, unix_now};
use crate::services::sessions::AuthError;

pub(crate) struct Authenticator {
    tokens: Arc<TokenService>,
    revocations: RevocationCache,
    /// How long past `exp` a token is still accepted (`tokens.leeway`).
    leeway: Duration,
}

impl Authenticator {
    pub(crate) fn new(
        tokens: Arc<TokenService>,
        revocations: RevocationCache,
        leeway: Duration,
    ) -> Authenticator {
        Authenticator {
            tokens,
            revocations,
            leeway,
        }
    }

    /// Whether every revocation is loaded: until then no token can be trusted.
    pub(crate) fn is_ready(&self) -> bool {
        self.revocations.is_loaded()
    }

    /// The claims of `token` if it is valid, of `kind` (`None`: either kind) and not revoked.
    /// Not being ready is said before anything about the token.
    pub(crate) fn admit(
        &self,
        token: &str,
        kind: Option<TokenKind>,
    ) -> Result<Arc<Claims>, AuthError> {
        if !self.is_ready() {
            return Err(AuthError::NotReady);
        }
        let now = unix_now();
        let claims = match kind {
            Some(kind) => self.tokens.verify_kind(token, kind, now),
            None => self.tokens.verify(token, now),
        }
        .map_err(AuthError::Token)?;
        if self.revocations.is_revoked(&claims, now) {
            return Err(AuthError::Token(TokenError::Revoked));
        }
        Ok(claims)
    }

    /// Resolves once `claims` no longer admit their holder: when they expire, or within a second
    /// of their revocation reaching this replica. A WebSocket tunnel lasts no longer than its
    /// token, as a request would not be let through on it: logout really ends it.
    pub(crate) async fn until_invalid(&self, claims: Arc<Claims>) {
        let valid_until = claims.exp.saturating_add(self.leeway.as_secs());
        loop {
            let now = unix_now();
            if now >= valid_until || self.revocations.is_revoked(&claims, now) {
                return;
            }
            tokio::time::sleep(Duration::from_secs((valid_until - now).min(1))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::core::revocation::{Revocation, RevocationKind};
    use crate::core::token::Subject;

    struct Fixture {
        tokens: Arc<TokenService>,
        revocations: RevocationCache,
        authenticator: Authenticator,
    }

    fn fixture(loaded: bool) -> Fixture {
        let config = Config::parse(
            r#"
[upstream]
url = "http://127.0.0.1:9"
[tokens]
secret = "authenticator-unit-test-secret-0123456789-abcdef"
"#,
        )
        .expect("test config is valid");
        let tokens = Arc::new(TokenService::new(&config.tokens));
        let revocations = RevocationCache::default();
        if loaded {
            revocations.mark_loaded();
        }
        let authenticator =
            Authenticator::new(tokens.clone(), revocations.clone(), config.tokens.leeway);
        Fixture {
            tokens,
            revocations,
            authenticator,
        }
    }

    fn issue(f: &Fixture, kind: TokenKind) -> (String, Claims) {
        let subject = Subject {
            user_id: "7",
            username: "ada",
            sid: "session-1",
            roles: &[],
        };
        f.tokens.issue(&subject, kind, false, unix_now())
    }

    fn refused(result: Result<Arc<Claims>, AuthError>) -> String {
        match result {
            Err(e) => format!("{e:?}"),
            Ok(_) => "admitted".into(),
        }
    }

    #[test]
    fn no_token_is_admitted_until_revocations_are_loaded() {
        let f = fixture(false);
        let (access, _) = issue(&f, TokenKind::Access);
        assert!(!f.authenticator.is_ready());
        assert_eq!(
            refused(f.authenticator.admit(&access, None)),
            "NotReady",
            "an unloaded replica cannot know the token is not revoked"
        );
        assert_eq!(refused(f.authenticator.admit("garbage", None)), "NotReady");
        f.revocations.mark_loaded();
        assert!(f.authenticator.admit(&access, None).is_ok());
    }

    #[test]
    fn a_token_is_admitted_only_as_the_kind_asked_for() {
        let f = fixture(true);
        let (access, _) = issue(&f, TokenKind::Access);
        let (refresh, _) = issue(&f, TokenKind::Refresh);
        let claims = f
            .authenticator
            .admit(&access, Some(TokenKind::Access))
            .unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.sid.as_str()),
            ("7", "session-1")
        );
        assert!(f.authenticator.admit(&refresh, None).is_ok());
        assert_eq!(
            refused(f.authenticator.admit(&refresh, Some(TokenKind::Access))),
            format!("{:?}", AuthError::Token(TokenError::AccessRequired))
        );
        assert!(matches!(
            f.authenticator.admit("not.a.token", None),
            Err(AuthError::Token(_))
        ));
    }

    #[test]
    fn a_revoked_session_admits_none_of_its_tokens() {
        let f = fixture(true);
        let (access, claims) = issue(&f, TokenKind::Access);
        f.revocations.insert(Revocation {
            kind: RevocationKind::Session,
            key: claims.sid.clone(),
            expires_at: unix_now() + 3600,
        });
        assert_eq!(
            refused(f.authenticator.admit(&access, None)),
            "Token(Revoked)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_tunnel_ends_within_a_second_of_its_revocation() {
        let f = Arc::new(fixture(true));
        let (_, claims) = issue(&f, TokenKind::Access);
        let claims = Arc::new(claims);
        let watcher = {
            let f = f.clone();
            let claims = claims.clone();
            tokio::spawn(async move { f.authenticator.until_invalid(claims).await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!watcher.is_finished(), "a valid token keeps its tunnel");
        f.revocations.insert(Revocation {
            kind: RevocationKind::Session,
            key: claims.sid.clone(),
            expires_at: unix_now() + 3600,
        });
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(watcher.is_finished(), "logout ends the tunnel");
    }
}
