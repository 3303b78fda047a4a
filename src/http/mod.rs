//! The edge: connections, requests and answers. A request's path through authgate reads top to
//! bottom in `server` (accept, serve), `dispatch` (classify, authenticate, authorise) and then
//! `proxy` (forward) or `endpoints` (answer).

pub mod auth_body;
pub mod authn;
pub mod body;
pub mod dispatch;
pub mod endpoints;
pub mod error;
pub mod gate;
pub mod idle;
pub mod metrics;
pub mod proxy;
pub mod server;
