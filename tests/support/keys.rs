//! Keys and configuration for the tests of asymmetric tokens and the signed identity.

use std::path::{Path, PathBuf};

use super::SECRET;

/// An RSA 2048 key made once with openssl: a debug build takes seconds to make one.
pub const RS256_PEM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/rs256.pem");

/// A new private key for `algorithm` in `dir`, made by `authgate keygen`'s code (RSA: the key
/// above).
pub fn key_file(dir: &Path, algorithm: &str, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.pem"));
    let pem = match algorithm {
        "RS256" => std::fs::read_to_string(RS256_PEM).unwrap(),
        _ => authgate::keygen::private_key_pem(algorithm).unwrap(),
    };
    std::fs::write(&path, pem).unwrap();
    path
}

/// `[identity]` with assertions for audience `the-app`, signed by `keys` (kid, file), the first
/// signing.
pub fn assertions(algorithm: &str, keys: &[(&str, &Path)]) -> String {
    let mut text = format!(
        "[identity]\nassertion_header = \"X-Auth-Assertion\"\nassertion_audience = \"the-app\"\n\
         assertion_algorithm = \"{algorithm}\"\n"
    );
    for (kid, file) in keys {
        text.push_str(&format!(
            "[[identity.assertion_keys]]\nkid = \"{kid}\"\nprivate_key_file = \"{}\"\n",
            file.display()
        ));
    }
    text
}

/// A configuration edit: tokens signed with `algorithm` and the key in `file` instead of the test
/// secret.
pub fn asymmetric_tokens(algorithm: &str, file: &Path) -> impl FnOnce(String) -> String {
    let line = format!(
        "algorithm = \"{algorithm}\"\nprivate_key_file = \"{}\"",
        file.display()
    );
    move |config| config.replace(&format!("secret = \"{SECRET}\""), &line)
}
