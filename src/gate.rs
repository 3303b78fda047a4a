//! Everything a request may need, built once at start-up and shared by all connections.

use crate::config::Config;
use crate::password::Passwords;
use crate::proxy::Forwarder;
use crate::revocation::RevocationCache;
use crate::store::Store;
use crate::token::TokenService;

pub struct Gate {
    pub config: Config,
    pub tokens: TokenService,
    pub revocations: RevocationCache,
    pub store: Store,
    pub passwords: Passwords,
    pub forwarder: Forwarder,
}
