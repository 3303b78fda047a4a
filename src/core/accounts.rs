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

/// Checks a username for registration (and before a login looks it up).
///
/// The app receives the username in a header, so it must arrive there unchanged: HTTP parsers
/// trim spaces around a header's value, and `" admin "` would reach the app as `admin`. So no
/// whitespace at either end (Unicode's, which NFKC and apps' own trimming both know), no control
/// characters, and no invisible ones (zero-width spaces and joiners, direction marks, soft
/// hyphens, variation selectors), which would make a name that shows as another.
pub fn validate_username(username: &str) -> Result<(), &'static str> {
    if username.trim().is_empty() {
        return Err("Username must not be empty");
    }
    if username.chars().count() > MAX_USERNAME_CHARS {
        return Err("Username must be at most 64 characters");
    }
    let normalised: String = username.nfkc().collect();
    if username.trim() != username || normalised.trim() != normalised {
        return Err("Username must not begin or end with whitespace");
    }
    if username.chars().any(char::is_control) {
        return Err("Username must not contain control characters");
    }
    if username.chars().any(is_invisible) {
        return Err("Username must not contain invisible characters");
    }
    Ok(())
}

/// Characters that show as nothing: Unicode's default-ignorable code points (DerivedCoreProperties,
/// Default_Ignorable_Code_Point), which fonts draw without a glyph.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
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

    /// An app reads `X-Auth-Username` trimmed: a name that differs from another only by what
    /// trimming removes, or by what nobody can see, would pass as that other user.
    #[test]
    fn usernames_that_would_reach_the_app_as_another_are_refused() {
        for padded in [
            " admin",
            "admin ",
            " admin ",
            "\tadmin",
            "admin\u{00A0}",
            "\u{3000}admin",
            "admin\u{2003}",
            "\u{205F}admin",
            "admin\u{2028}",
        ] {
            assert_eq!(
                validate_username(padded),
                Err("Username must not begin or end with whitespace"),
                "{padded:?}"
            );
        }
        for hidden in [
            "ad\u{200B}min",
            "admin\u{200D}",
            "\u{FEFF}admin",
            "ad\u{00AD}min",
            "admin\u{202E}",
            "admin\u{FE0F}",
            "admin\u{E0041}",
        ] {
            assert_eq!(
                validate_username(hidden),
                Err("Username must not contain invisible characters"),
                "{hidden:?}"
            );
        }
        for fine in ["ad min", "Jürgen O'Brien", "名前", "a\u{0301}"] {
            assert!(validate_username(fine).is_ok(), "{fine:?}");
        }
    }

    #[test]
    fn password_rules() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"x".repeat(1024)).is_ok());
        assert!(validate_password(&"x".repeat(1025)).is_err());
    }
}
