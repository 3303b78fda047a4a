//! The edge: connections, requests and answers. A request's path through authgate reads top to
//! bottom in `server` (accept, serve), `dispatch` (classify, authenticate, authorise) and then
//! `proxy` (forward) or `endpoints` (answer; `pages` for browsers' forms).

pub(crate) mod auth_body;
pub(crate) mod authn;
pub(crate) mod body;
pub(crate) mod cookies;
pub mod dispatch;
pub(crate) mod endpoints;
pub mod error;
pub(crate) mod gate;
pub(crate) mod idle;
pub(crate) mod metrics;
pub(crate) mod pages;
pub(crate) mod proxy;
pub(crate) mod server;
