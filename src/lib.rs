//! authgate: an authentication sidecar. It stands in front of an HTTP app, answers
//! `/register`, `/login`, `/refresh` and `/logout` itself, and forwards every other request to the
//! app only when the route's rule allows it, telling the app who the user is in identity headers.
//!
//! The code is in layers, and each imports only from the layers before it (`tests/layers.rs`
//! checks this):
//! - `core`: pure rules with no I/O: path normalisation and route matching, tokens, the
//!   revocation set, username and password rules, throttle buckets, header rules, the WebSocket
//!   handshake;
//! - `config`: the TOML file turned into a validated [`Config`];
//! - `store` (users, sessions and revocations in SQLite or PostgreSQL, and keeping the
//!   revocation set in step) and `upstream` (HTTP/1.1 to the app);
//! - `services`: the sessions' rules (register, login, refresh, logout, password change), the
//!   authenticator (which tokens admit their holder) and password hashing, with errors of their
//!   own and no HTTP;
//! - `http`: the edge. `server` accepts connections and hands each request to `dispatch`, which
//!   classifies it, checks its token (`authn`) and either forwards it (`proxy`) or answers it
//!   (`endpoints`); `error` decides every refusal's status and message in one place;
//! - `start`: `run`, which wires the store, the revocation sync, the metrics and the server;
//!   `admin`: what `authgate users …` does to the store; `keygen`: `authgate keygen`.

// The sidecar needs all of it; without the `server` feature (on by default) only the pure core and
// the upstream client are built, for fuzz targets that should not compile sqlx or argon2.
#![cfg_attr(not(feature = "server"), allow(dead_code))]

#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
mod config;
mod core;
#[cfg(feature = "server")]
mod http;
#[cfg(feature = "server")]
pub mod keygen;
#[cfg(feature = "server")]
mod services;
#[cfg(feature = "server")]
mod start;
#[cfg(feature = "server")]
mod store;
mod upstream;

/// The crate's insides, for its benchmarks, property tests and fuzz targets only: not an API, and
/// free to change with any commit.
#[doc(hidden)]
pub mod internals {
    pub use crate::core::{accounts, classify, headers, json_fields, revocation, routes, token};
    #[cfg(feature = "server")]
    pub use crate::http::{dispatch, error};
    #[cfg(feature = "server")]
    pub mod config {
        pub use crate::config::*;
    }
    pub mod upstream {
        pub use crate::upstream::*;
    }
}

#[cfg(feature = "server")]
pub use config::{Config, LogFormat, StoreConfig};
#[cfg(feature = "server")]
pub use http::dispatch::explain;
#[cfg(feature = "server")]
pub use start::{Listeners, StartError, run, run_with};
