//! Signing keys from the configuration: HMAC secrets (inline, in a file, or in an environment
//! variable) and private keys (PKCS#8 PEM files), all checked before anything starts.

use std::path::{Path, PathBuf};

use jsonwebtoken::Algorithm;

use super::{RawKey, RawTokens};
use crate::core::assertion::AssertionConfig;
use crate::core::keys::{self, is_asymmetric};
use crate::core::token::{SigningKey, TokenConfig};

const SECRET_HELP: &str = "generate one with `openssl rand -base64 48` (or `head -c 48 /dev/urandom | base64`) \
and put it in tokens.secret_env (an environment variable's name), tokens.secret_file, or tokens.secret";

/// The signing keys: the single `secret*` or `private_key_file` of `[tokens]`, or the
/// `[[tokens.keys]]` list.
pub(super) fn load_keys(
    tokens: &RawTokens,
    algorithm: Algorithm,
) -> Result<Vec<SigningKey>, String> {
    let inline = tokens.secret.is_some()
        || tokens.secret_file.is_some()
        || tokens.secret_env.is_some()
        || tokens.private_key_file.is_some();
    if tokens.keys.is_empty() {
        let key = RawKey {
            kid: None,
            secret: tokens.secret.clone(),
            secret_file: tokens.secret_file.clone(),
            secret_env: tokens.secret_env.clone(),
            private_key_file: tokens.private_key_file.clone(),
        };
        let secret = key_material("tokens", &key, algorithm)?;
        return Ok(vec![SigningKey {
            kid: default_kid(algorithm, &secret),
            secret,
        }]);
    }
    if inline {
        return Err(
            "tokens: use either secret/secret_file/secret_env/private_key_file or [[tokens.keys]], not both"
                .into(),
        );
    }
    load_key_list("tokens.keys", &tokens.keys, algorithm)
}

/// A list of keys that rotate: each with a `kid` of its own (one may have none), the first signs.
pub(super) fn load_key_list(
    section: &str,
    list: &[RawKey],
    algorithm: Algorithm,
) -> Result<Vec<SigningKey>, String> {
    let mut keys: Vec<SigningKey> = Vec::new();
    for (i, key) in list.iter().enumerate() {
        let label = format!("{section}[{i}]");
        let secret = key_material(&label, key, algorithm)?;
        let kid = key.kid.clone().or_else(|| default_kid(algorithm, &secret));
        if keys.iter().any(|k| k.kid == kid) {
            return Err(match &kid {
                Some(kid) => format!("{label}: kid {kid:?} is used twice"),
                None => format!("{label}: only one key may have no kid"),
            });
        }
        if key.kid.as_deref() == Some("") {
            return Err(format!(
                "{label}: kid must not be empty (leave it out instead)"
            ));
        }
        keys.push(SigningKey { kid, secret });
    }
    Ok(keys)
}

/// One key's material for `algorithm`: a checked secret for HMAC, a private key's PEM otherwise.
fn key_material(label: &str, key: &RawKey, algorithm: Algorithm) -> Result<Vec<u8>, String> {
    if !is_asymmetric(algorithm) {
        if key.private_key_file.is_some() {
            return Err(format!(
                "{label}.private_key_file: {algorithm:?} signs with a secret; a private key needs \
                 an algorithm of {}",
                keys::ASYMMETRIC_NAMES
            ));
        }
        let secret = load_secret(label, &key.secret, &key.secret_file, &key.secret_env)?;
        return check_secret(label, secret, algorithm);
    }
    let help = keygen_help(algorithm);
    if key.secret.is_some() || key.secret_file.is_some() || key.secret_env.is_some() {
        return Err(format!(
            "{label}: {algorithm:?} signs with a private key, not a secret: set private_key_file; {help}"
        ));
    }
    let Some(file) = &key.private_key_file else {
        return Err(format!("{label}.private_key_file is missing; {help}"));
    };
    read_private_key(label, file, algorithm)
}

/// A PKCS#8 PEM private key from `file`, checked to sign for `algorithm`.
pub(super) fn read_private_key(
    label: &str,
    file: &PathBuf,
    algorithm: Algorithm,
) -> Result<Vec<u8>, String> {
    let help = keygen_help(algorithm);
    let pem = std::fs::read(file).map_err(|e| {
        format!(
            "{label}.private_key_file: cannot read {}: {e}; {help}",
            file.display()
        )
    })?;
    keys::encoding_key(algorithm, &pem)
        .map_err(|e| format!("{label}.private_key_file: {} {e}; {help}", file.display()))?;
    Ok(pem)
}

/// Tokens and assertions never share a key or a key's name. Whoever holds a key that signs both
/// could make access tokens with it; and a JWKS that gives two keys one name lets an app take
/// either.
pub(super) fn keep_apart(tokens: &TokenConfig, assertion: &AssertionConfig) -> Result<(), String> {
    let token_keys: Vec<Option<String>> = tokens
        .keys
        .iter()
        .map(|t| default_kid(tokens.algorithm, &t.secret))
        .collect();
    for (i, key) in assertion.keys.iter().enumerate() {
        let label = format!("identity.assertion_keys[{i}]");
        if key.kid.is_some() && tokens.keys.iter().any(|t| t.kid == key.kid) {
            return Err(format!(
                "{label}: kid {:?} names a token key too; every key in the JWKS needs a name of its own",
                key.kid.as_deref().unwrap_or_default()
            ));
        }
        let public = default_kid(assertion.algorithm, &key.secret);
        if public.is_some() && token_keys.contains(&public) {
            return Err(format!(
                "{label}.private_key_file is a token key too: assertions need a key of their own \
                 (make one with `authgate keygen --algorithm {:?} > assertion-key.pem`)",
                assertion.algorithm
            ));
        }
    }
    Ok(())
}

/// The `kid` of a key the configuration names none for: an asymmetric key's thumbprint, so that
/// its tokens and its JWKS entry name it (there are no tokens from before keys had names);
/// none for a secret, whose key then verifies tokens that carry no `kid`.
fn default_kid(algorithm: Algorithm, material: &[u8]) -> Option<String> {
    if !is_asymmetric(algorithm) {
        return None;
    }
    let key = keys::encoding_key(algorithm, material).ok()?;
    keys::thumbprint(algorithm, &key).ok()
}

/// How to make a key for `algorithm`.
fn keygen_help(algorithm: Algorithm) -> String {
    format!("make one with `authgate keygen --algorithm {algorithm:?} > key.pem`")
}

pub(super) fn load_secret(
    label: &str,
    secret: &Option<String>,
    secret_file: &Option<PathBuf>,
    secret_env: &Option<String>,
) -> Result<Vec<u8>, String> {
    let given = [
        secret.is_some(),
        secret_file.is_some(),
        secret_env.is_some(),
    ]
    .iter()
    .filter(|&&b| b)
    .count();
    if given != 1 {
        return Err(format!(
            "{label}: set exactly one of secret, secret_file, secret_env (found {given}); {SECRET_HELP}"
        ));
    }
    if let Some(s) = secret {
        return Ok(s.as_bytes().to_vec());
    }
    if let Some(file) = secret_file {
        let text = std::fs::read(file).map_err(|e| {
            format!(
                "{label}.secret_file: cannot read {}: {e}; {SECRET_HELP}",
                file.display()
            )
        })?;
        return Ok(trim_ascii_end(text));
    }
    let var = secret_env.as_deref().unwrap_or_default();
    match std::env::var(var) {
        Ok(v) => Ok(v.into_bytes()),
        Err(_) => Err(format!(
            "{label}.secret_env: environment variable {var} is not set; {SECRET_HELP}"
        )),
    }
}

/// Warnings for the key files that every user of this machine may read or change: whoever reads
/// one can sign tokens that authgate accepts. A warning, not a refusal: a Kubernetes secret volume
/// mounts its files 0644 unless told otherwise, and inside its own container that is no leak.
/// Access by the file's group is left alone: sharing a key with a group (Kubernetes' `fsGroup`)
/// is a choice.
pub(super) fn exposed_key_files(tokens: &RawTokens, assertion_keys: &[RawKey]) -> Vec<String> {
    let mut files = vec![
        ("tokens.secret_file".to_string(), &tokens.secret_file),
        (
            "tokens.private_key_file".to_string(),
            &tokens.private_key_file,
        ),
    ];
    for (section, keys) in [
        ("tokens.keys", &tokens.keys[..]),
        ("identity.assertion_keys", assertion_keys),
    ] {
        for (i, key) in keys.iter().enumerate() {
            files.push((format!("{section}[{i}].secret_file"), &key.secret_file));
            files.push((
                format!("{section}[{i}].private_key_file"),
                &key.private_key_file,
            ));
        }
    }
    files
        .into_iter()
        .filter_map(|(label, file)| {
            let file = file.as_deref()?;
            exposure_warning(&label, file, file_mode(file)?)
        })
        .collect()
}

#[cfg(unix)]
fn file_mode(file: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(std::fs::metadata(file).ok()?.permissions().mode())
}

#[cfg(not(unix))]
fn file_mode(_: &Path) -> Option<u32> {
    None
}

/// What is wrong with a key file of `mode`, if anything, and how to fix it.
fn exposure_warning(label: &str, file: &Path, mode: u32) -> Option<String> {
    let what = match (mode & 0o004 != 0, mode & 0o002 != 0) {
        (false, false) => return None,
        (true, false) => {
            "can be read by every user of this machine, and whoever reads it can sign tokens that authgate accepts"
        }
        (false, true) => {
            "can be changed by every user of this machine, who could put their own key in it"
        }
        (true, true) => {
            "can be read and changed by every user of this machine, and whoever reads it can sign tokens that authgate accepts"
        }
    };
    Some(format!(
        "{label}: {} {what} (mode {:o}): run `chmod o-rw {}` (in Kubernetes, give the secret volume `defaultMode: 0400`, or 0440 with the pod's fsGroup)",
        file.display(),
        mode & 0o777,
        file.display()
    ))
}

fn trim_ascii_end(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    bytes
}

/// An HMAC key must be at least as long as the hash output (RFC 7518 §3.2) and not trivially repetitive.
fn check_secret(
    label: &str,
    secret: Vec<u8>,
    algorithm: jsonwebtoken::Algorithm,
) -> Result<Vec<u8>, String> {
    let min = match algorithm {
        jsonwebtoken::Algorithm::HS384 => 48,
        jsonwebtoken::Algorithm::HS512 => 64,
        _ => 32,
    };
    if secret.len() < min {
        return Err(format!(
            "{label}: the signing secret is too weak: {:?} needs at least {min} bytes, this one has {}; {SECRET_HELP}",
            algorithm,
            secret.len()
        ));
    }
    let mut seen = [false; 256];
    secret.iter().for_each(|&b| seen[b as usize] = true);
    if seen.iter().filter(|&&s| s).count() < 8 {
        return Err(format!(
            "{label}: the signing secret is too weak: it repeats fewer than 8 distinct characters; {SECRET_HELP}"
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_others_may_read_or_change_is_named_with_the_fix() {
        let file = Path::new("/etc/authgate/secret");
        for mode in [0o600, 0o400, 0o640, 0o440, 0o660, 0o100600] {
            assert_eq!(
                exposure_warning("tokens.secret_file", file, mode),
                None,
                "{mode:o}"
            );
        }
        for (mode, says) in [
            (0o644, "can be read by every user"),
            (0o100604, "can be read by every user"),
            (0o602, "can be changed by every user"),
            (0o666, "can be read and changed by every user"),
        ] {
            let warning = exposure_warning("tokens.secret_file", file, mode).unwrap();
            assert!(
                warning.starts_with("tokens.secret_file: /etc/authgate/secret "),
                "{warning}"
            );
            assert!(warning.contains(says), "{mode:o}: {warning}");
            assert!(
                warning.contains(&format!("(mode {:o})", mode & 0o777)),
                "{warning}"
            );
            assert!(
                warning.contains("chmod o-rw /etc/authgate/secret"),
                "{warning}"
            );
            assert!(warning.contains("defaultMode: 0400"), "{warning}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn every_key_file_of_the_configuration_is_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, "key material").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            Some(path)
        };
        let key = |secret_file, private_key_file| RawKey {
            kid: None,
            secret: None,
            secret_file,
            secret_env: None,
            private_key_file,
        };
        let tokens = RawTokens {
            secret_file: file("single", 0o644),
            private_key_file: file("private", 0o600),
            keys: vec![key(file("old", 0o600), None), key(None, file("new", 0o666))],
            ..toml::from_str("").unwrap()
        };
        let assertion_keys = [key(None, file("assertion", 0o604))];
        let warnings = exposed_key_files(&tokens, &assertion_keys);
        let labels: Vec<&str> = warnings
            .iter()
            .map(|w| w.split(':').next().unwrap())
            .collect();
        assert_eq!(
            labels,
            [
                "tokens.secret_file",
                "tokens.keys[1].private_key_file",
                "identity.assertion_keys[0].private_key_file"
            ]
        );
        // A file that cannot be read is the loader's problem, not a warning.
        let missing = RawTokens {
            secret_file: Some(dir.path().join("missing")),
            ..toml::from_str("").unwrap()
        };
        assert!(exposed_key_files(&missing, &[]).is_empty());
    }
}
