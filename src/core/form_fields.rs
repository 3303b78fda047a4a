//! The fields of the sign-in pages' forms (`application/x-www-form-urlencoded`), and of a query
//! string, decoded as browsers encode them.

/// The values of `names` in a form body or query, in that order: the first of each, `None` where
/// a field is absent.
pub fn form_fields<const N: usize>(body: &[u8], names: [&str; N]) -> [Option<String>; N] {
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    for (key, value) in form_urlencoded::parse(body) {
        if let Some(i) = names.iter().position(|n| *n == key) {
            if out[i].is_none() {
                out[i] = Some(value.into_owned());
            }
        }
    }
    out
}

/// `value` percent-encoded for a query string.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_decoded_as_browsers_encode_them_and_the_first_wins() {
        let [user, pass, next, missing] = form_fields(
            b"username=ada+l&password=p%26ss%3D1&next=%2Fapp%3Fx%3D1&username=other",
            ["username", "password", "next", "csrf_token"],
        );
        assert_eq!(user.as_deref(), Some("ada l"));
        assert_eq!(pass.as_deref(), Some("p&ss=1"));
        assert_eq!(next.as_deref(), Some("/app?x=1"));
        assert_eq!(missing, None);
        let [bad] = form_fields(b"next=%ZZ%F0%9F", ["next"]);
        assert!(bad.is_some(), "bad escapes are kept, not a panic");
    }

    #[test]
    fn encoding_round_trips() {
        let next = "/a b?c=d&e=/f#g";
        let [back] = form_fields(format!("next={}", encode(next)).as_bytes(), ["next"]);
        assert_eq!(back.as_deref(), Some(next));
    }
}
