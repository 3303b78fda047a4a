//! Work that is neither a rule nor HTTP: password hashing on threads of its own.

pub mod password;
