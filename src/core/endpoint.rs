//! The auth endpoints authgate answers itself, by name and path (under `auth_prefix`).

/// The auth endpoints, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Register,
    Login,
    Refresh,
    Logout,
    LogoutAll,
    Password,
}

impl Endpoint {
    pub const ALL: [Endpoint; 6] = [
        Endpoint::Register,
        Endpoint::Login,
        Endpoint::Refresh,
        Endpoint::Logout,
        Endpoint::LogoutAll,
        Endpoint::Password,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Register => "/register",
            Endpoint::Login => "/login",
            Endpoint::Refresh => "/refresh",
            Endpoint::Logout => "/logout",
            Endpoint::LogoutAll => "/logout-all",
            Endpoint::Password => "/password",
        }
    }

    /// Whether a browser gets a page here (`GET`): sign in, sign up, sign out.
    pub fn has_page(self) -> bool {
        matches!(
            self,
            Endpoint::Login | Endpoint::Register | Endpoint::Logout
        )
    }
}
