//! The auth endpoints' JSON bodies: `string_fields` on arbitrary bytes picks out the fields or
//! names which way the body is wrong, never panics (deep nesting included), and what it returns
//! is what the body says.
#![no_main]

use authgate::internals::json_fields::{FieldError, string_fields};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    match string_fields(data, ["username", "password"]) {
        Ok([username, password]) => {
            let body: Value = serde_json::from_slice(data).expect("string_fields accepted it");
            assert_eq!(body["username"].as_str(), Some(username.as_str()));
            assert_eq!(body["password"].as_str(), Some(password.as_str()));
        }
        Err(FieldError::Missing(name) | FieldError::NotString(name)) => {
            assert!(name == "username" || name == "password", "{name}");
            let body: Value = serde_json::from_slice(data).expect("it was read as JSON");
            assert!(body.is_object());
        }
        Err(FieldError::NotObject) => {
            let body: Value = serde_json::from_slice(data).expect("it was read as JSON");
            assert!(!body.is_object());
        }
        Err(FieldError::NotJson) => assert!(serde_json::from_slice::<Value>(data).is_err()),
    }
});
