//! What is neither a rule nor HTTP: users and their sessions, and password hashing on threads of
//! its own. Services return their own errors; the edge turns them into answers.

pub(crate) mod authenticator;
pub(crate) mod password;
pub(crate) mod sessions;
