//! The string fields of the auth endpoints' small JSON bodies, picked out by a pure function that
//! the fuzzer and the property tests call on any bytes. What each refusal says is the edge's
//! (`http::error`); here is only which way the body was wrong.

use serde_json::Value;

/// Which way a body fails to carry the fields asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldError {
    /// Not JSON at all, or nested past serde_json's recursion limit.
    NotJson,
    NotObject,
    /// The named field is absent or `null`.
    Missing(String),
    /// The named field is not a string.
    NotString(String),
}

/// The string values of `names` in a JSON object body, in that order. Other fields are ignored.
pub fn string_fields<const N: usize>(
    body: &[u8],
    names: [&str; N],
) -> Result<[String; N], FieldError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| FieldError::NotJson)?;
    let object = value.as_object().ok_or(FieldError::NotObject)?;
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (slot, name) in out.iter_mut().zip(names) {
        *slot = match object.get(name) {
            None | Some(Value::Null) => return Err(FieldError::Missing(name.into())),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(FieldError::NotString(name.into())),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 2] = ["username", "password"];

    #[test]
    fn fields_are_picked_out_or_the_way_the_body_is_wrong_is_named() {
        let ok = string_fields(br#"{"username":"a","password":"b","extra":1}"#, NAMES).unwrap();
        assert_eq!(ok, ["a".to_string(), "b".to_string()]);
        assert_eq!(string_fields(b"{", NAMES), Err(FieldError::NotJson));
        assert_eq!(string_fields(b"[]", NAMES), Err(FieldError::NotObject));
        assert_eq!(
            string_fields(br#"{"username":"a"}"#, NAMES),
            Err(FieldError::Missing("password".into()))
        );
        assert_eq!(
            string_fields(br#"{"username":"a","password":null}"#, NAMES),
            Err(FieldError::Missing("password".into()))
        );
        assert_eq!(
            string_fields(br#"{"username":1,"password":"b"}"#, NAMES),
            Err(FieldError::NotString("username".into()))
        );
    }

    #[test]
    fn nesting_past_the_recursion_limit_is_not_json_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            string_fields(deep.as_bytes(), NAMES),
            Err(FieldError::NotJson)
        );
    }
}
