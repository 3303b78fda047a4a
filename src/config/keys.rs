//! Signing keys from the configuration: HMAC secrets (inline, in a file, or in an environment
//! variable) and private keys (PKCS#8 PEM files), all checked before anything starts.

use std::path::PathBuf;

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
