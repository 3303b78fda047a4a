//! The rules, pure: no sockets, no database, no HTTP server. What a request is and may do is
//! decided here, so that it can be tested, fuzzed and explained without starting anything.

pub mod accounts;
pub mod assertion;
pub(crate) mod browser;
pub mod classify;
pub(crate) mod cookies;
pub mod endpoint;
pub(crate) mod form_fields;
pub(crate) mod forwarded;
pub mod headers;
pub mod json_fields;
pub mod keys;
pub mod revocation;
pub mod roles;
pub mod routes;
pub(crate) mod throttle;
pub mod token;
pub(crate) mod verified;
pub(crate) mod websocket;
