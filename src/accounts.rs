//! Rules for usernames and passwords, pure functions shared by /register and /login.

use unicode_normalization::UnicodeNormalization;

pub const MAX_USERNAME_CHARS: usize = 64;
pub const MIN_PASSWORD_BYTES: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The form two usernames are compared in: NFKC, case-folded, NFKC again (case folding can undo
/// normalisation). "Alice", "ALICE" and the full-width "Ａｌｉｃｅ" are one user.
pub fn username_key(username: &str) -> String {
    let folded = caseless::default_case_fold_str(&username.nfkc().collect::<String>());
    folded.nfkc().collect()
}

/// Checks a username for registration.
pub fn validate_username(username: &str) -> Result<(), &'static str> {
    if username.trim().is_empty() {
        return Err("Username must not be empty");
    }
    if username.chars().count() > MAX_USERNAME_CHARS {
        return Err("Username must be at most 64 characters");
    }
    if username.chars().any(char::is_control) {
        return Err("Username must not contain control characters");
    }
    Ok(())
}

/// Checks a password for registration.
pub fn validate_password(password: &str) -> Result<(), &'static str> {
    if password.len() < MIN_PASSWORD_BYTES {
        return Err("Password must be at least 8 bytes");
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err("Password must be at most 1024 bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_that_differ_by_case_width_or_composition_are_one() {
        let key = username_key("alice");
        for variant in ["Alice", "ALICE", "Ａｌｉｃｅ", "alice"] {
            assert_eq!(username_key(variant), key, "{variant}");
        }
        assert_eq!(username_key("Ame\u{301}lie"), username_key("améLIE"));
        assert_eq!(username_key("straße"), username_key("STRASSE"));
        assert_ne!(username_key("alice"), username_key("alicia"));
    }

    #[test]
    fn username_rules() {
        assert!(validate_username("alice").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("   ").is_err());
        assert!(validate_username(&"x".repeat(64)).is_ok());
        assert!(validate_username(&"x".repeat(65)).is_err());
        assert!(validate_username("al\u{0}ice").is_err());
        assert!(validate_username("al\nice").is_err());
    }

    #[test]
    fn password_rules() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"x".repeat(1024)).is_ok());
        assert!(validate_password(&"x".repeat(1025)).is_err());
    }
}
