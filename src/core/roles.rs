//! Role names: what a user may hold and a route may require. Pure rules, shared by the
//! configuration, the store, tokens and the administrator's commands.
//!
//! A role reaches the app inside one header value, comma-separated, and is compared byte for
//! byte: so a name is short, lower-case ASCII, and has nothing an app's parser could split,
//! trim or fold (`Admin` and `admin` would otherwise be two roles to the gate and one to an app
//! that lower-cases).

pub const MAX_ROLE_BYTES: usize = 64;
/// A user's roles travel in every access token: bounded, so a token stays small.
pub const MAX_ROLES: usize = 32;

/// Checks one role name: 1 to 64 bytes of `a`–`z`, `0`–`9`, `-`, `_`, `.` and `:`, beginning
/// with a letter or a digit.
pub fn validate_role(role: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.:".contains(&b);
    let first_ok = role
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if role.is_empty() || role.len() > MAX_ROLE_BYTES || !first_ok || !role.bytes().all(allowed) {
        return Err(format!(
            "role {role:?} must be 1 to {MAX_ROLE_BYTES} characters of a-z, 0-9, '-', '_', '.' \
             and ':', beginning with a letter or a digit"
        ));
    }
    Ok(())
}

/// A user's roles in the one form they are stored, signed and compared in: each name checked,
/// sorted, no name twice.
pub fn canonical_roles<S: AsRef<str>>(roles: &[S]) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(roles.len());
    for role in roles {
        validate_role(role.as_ref())?;
        out.push(role.as_ref().to_string());
    }
    out.sort();
    out.dedup();
    if out.len() > MAX_ROLES {
        return Err(format!("a user may hold at most {MAX_ROLES} roles"));
    }
    Ok(out)
}

/// Roles as one comma-separated text: the store's column and the app's header.
pub fn join_roles(roles: &[String]) -> String {
    roles.join(",")
}

/// The store's column back into roles; the empty text is no role.
pub fn split_roles(joined: &str) -> Vec<String> {
    joined
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether a user holding `held` meets a rule that requires `required`: at least one in common,
/// or nothing required.
pub fn holds_any(held: &[String], required: &[String]) -> bool {
    required.is_empty() || required.iter().any(|r| held.contains(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_short_lower_case_and_unsplittable() {
        for good in [
            "admin",
            "billing",
            "team:ops",
            "v1.reader",
            "a",
            "0day",
            "x_y-z",
        ] {
            assert!(validate_role(good).is_ok(), "{good}");
        }
        assert!(validate_role(&"r".repeat(64)).is_ok());
        for bad in [
            "",
            "Admin",
            "ADMIN",
            " admin",
            "admin ",
            "ad min",
            "admin,billing",
            "-admin",
            ":admin",
            "admin\n",
            "admin\0",
            "adm\u{0131}n",
            "ａdmin",
            "admin;x",
            "admin\"",
        ] {
            assert!(validate_role(bad).is_err(), "{bad:?}");
        }
        assert!(validate_role(&"r".repeat(65)).is_err());
    }

    #[test]
    fn roles_are_kept_sorted_once_each_and_bounded() {
        assert_eq!(
            canonical_roles(&["ops", "admin", "ops"]).unwrap(),
            ["admin", "ops"]
        );
        assert_eq!(canonical_roles::<&str>(&[]).unwrap(), Vec::<String>::new());
        assert!(canonical_roles(&["admin", "Billing"]).is_err());
        let many: Vec<String> = (0..33).map(|i| format!("r{i}")).collect();
        assert!(canonical_roles(&many).is_err());
        assert!(canonical_roles(&many[..32]).is_ok());
    }

    #[test]
    fn the_stored_text_gives_the_roles_back() {
        let roles = canonical_roles(&["b", "a"]).unwrap();
        assert_eq!(join_roles(&roles), "a,b");
        assert_eq!(split_roles(&join_roles(&roles)), roles);
        assert!(split_roles("").is_empty());
    }

    #[test]
    fn one_required_role_is_enough_and_none_required_lets_anyone_in() {
        let held = vec!["billing".to_string()];
        let req = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(holds_any(&held, &req(&["admin", "billing"])));
        assert!(!holds_any(&held, &req(&["admin"])));
        assert!(holds_any(&held, &[]));
        assert!(!holds_any(&[], &req(&["admin"])));
    }
}
