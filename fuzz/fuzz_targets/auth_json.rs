//! The auth endpoints' JSON bodies: `string_fields` on arbitrary bytes answers Ok or a 400, never
//! panics (deep nesting included), and what it returns is what the body says.
#![no_main]

use authgate::internals::auth_body::string_fields;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok([username, password]) = string_fields(data, ["username", "password"]) {
        let body: Value = serde_json::from_slice(data).expect("string_fields accepted it");
        assert_eq!(body["username"].as_str(), Some(username.as_str()));
        assert_eq!(body["password"].as_str(), Some(password.as_str()));
    }
    if let Err(e) = string_fields(data, ["old_password", "new_password"]) {
        assert_eq!(e.status().as_u16(), 400);
    }
});
