//! Cookies, for browsers: the four Flask-JWT-Extended cookies read from a request's `Cookie`
//! fields, and written as `Set-Cookie` values with the configured attributes.

use std::time::Duration;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

/// The cookie that carries the access token (Flask-JWT-Extended's `JWT_ACCESS_COOKIE_NAME`).
pub const ACCESS_COOKIE: &str = "access_token_cookie";
/// The cookie that carries the refresh token.
pub const REFRESH_COOKIE: &str = "refresh_token_cookie";
/// The access token's `csrf` claim, readable by the page's scripts for `X-CSRF-TOKEN`.
pub const ACCESS_CSRF_COOKIE: &str = "csrf_access_token";
/// The refresh token's `csrf` claim.
pub const REFRESH_CSRF_COOKIE: &str = "csrf_refresh_token";
/// The login form's double-submit token: set with the form, sent back in its `csrf_token` field.
pub const LOGIN_CSRF_COOKIE: &str = "authgate_login_csrf";

/// Where a request's token may be found (`tokens.location`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLocation {
    /// `Authorization: Bearer …`.
    Headers,
    /// `access_token_cookie` (and `refresh_token_cookie` for a refresh).
    Cookies,
}

/// `SameSite`, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn parse(text: &str) -> Option<SameSite> {
        match text {
            "Strict" => Some(SameSite::Strict),
            "Lax" => Some(SameSite::Lax),
            "None" => Some(SameSite::None),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// The attributes every cookie authgate sets carries (`[cookies]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    pub secure: bool,
    pub same_site: SameSite,
    /// `None`: host-only.
    pub domain: Option<String>,
    pub csrf_protect: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            secure: true,
            same_site: SameSite::Lax,
            domain: None,
            csrf_protect: true,
        }
    }
}

/// Whether a page's scripts may read the cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// `HttpOnly`: tokens.
    Hidden,
    /// Readable: the CSRF values, which scripts copy into `X-CSRF-TOKEN`.
    Readable,
}

impl CookieConfig {
    /// A `Set-Cookie` value: `name=value`, `Path=path`, kept for `max_age`, with the configured
    /// attributes. Values are authgate's own (tokens, UUIDs): never anything a client sent.
    pub fn set(
        &self,
        name: &str,
        value: &str,
        path: &str,
        max_age: Duration,
        script: Script,
    ) -> String {
        let mut out = format!("{name}={value}; Path={path}; Max-Age={}", max_age.as_secs());
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if script == Script::Hidden {
            out.push_str("; HttpOnly");
        }
        out.push_str("; SameSite=");
        out.push_str(self.same_site.as_str());
        out
    }

    /// A `Set-Cookie` value that makes the browser forget `name` (at `path`).
    pub fn clear(&self, name: &str, path: &str, script: Script) -> String {
        self.set(name, "", path, Duration::ZERO, script)
    }
}

/// The value of the first cookie called `name` in the request's `Cookie` fields (HTTP/2 may
/// send several), or `None`. Pairs without `=` and empty values count as absent.
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|value| !value.is_empty())
}

/// `headers`' `Cookie` fields with the cookies called any of `names` taken out, joined as one
/// value; `None` when nothing is left. The refresh token is authgate's alone: the app never sees
/// it.
pub fn without(headers: &HeaderMap, names: &[&str]) -> Option<String> {
    let kept: Vec<&str> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !names.contains(&pair.split_once('=').map_or(*pair, |(key, _)| key)))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// `headers`' `Cookie` fields as one value, with the cookie `name` set to `value` (replaced, or
/// added); `None` if that is not a valid field value.
pub fn with_value(headers: &HeaderMap, name: &str, value: &str) -> Option<HeaderValue> {
    let mut text = without(headers, &[name]).unwrap_or_default();
    if !text.is_empty() {
        text.push_str("; ");
    }
    text.push_str(name);
    text.push('=');
    text.push_str(value);
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn a_cookie_is_found_by_its_exact_name_in_any_cookie_field() {
        let h = cookies(&["a=1; access_token_cookie=tok; b=2", "c=3"]);
        assert_eq!(find(&h, ACCESS_COOKIE), Some("tok"));
        assert_eq!(find(&h, "c"), Some("3"));
        assert_eq!(find(&h, "access_token"), None, "no prefix match");
        assert_eq!(
            find(&cookies(&["xaccess_token_cookie=1"]), ACCESS_COOKIE),
            None
        );
        assert_eq!(
            find(&cookies(&["access_token_cookie="]), ACCESS_COOKIE),
            None
        );
        assert_eq!(
            find(&cookies(&["access_token_cookie"]), ACCESS_COOKIE),
            None
        );
        assert_eq!(
            find(&cookies(&["access_token_cookie=\"q\""]), ACCESS_COOKIE),
            Some("q")
        );
        assert_eq!(
            find(
                &cookies(&["access_token_cookie=first; access_token_cookie=second"]),
                ACCESS_COOKIE
            ),
            Some("first"),
            "the first, as browsers send the most specific path first"
        );
        assert_eq!(find(&HeaderMap::new(), ACCESS_COOKIE), None);
    }

    #[test]
    fn the_refresh_cookie_is_taken_out_of_what_the_app_gets() {
        let h = cookies(&[
            "a=1; refresh_token_cookie=r; access_token_cookie=t",
            "refresh_token_cookie=x",
        ]);
        let names = [REFRESH_COOKIE, LOGIN_CSRF_COOKIE];
        assert_eq!(
            without(&h, &names).as_deref(),
            Some("a=1; access_token_cookie=t")
        );
        assert_eq!(without(&cookies(&["refresh_token_cookie=r"]), &names), None);
        assert_eq!(without(&HeaderMap::new(), &names), None);
    }

    #[test]
    fn a_cookie_is_given_a_new_value_or_added() {
        let h = cookies(&["a=1; access_token_cookie=old", "b=2"]);
        assert_eq!(
            with_value(&h, ACCESS_COOKIE, "new").unwrap(),
            "a=1; b=2; access_token_cookie=new"
        );
        assert_eq!(
            with_value(&HeaderMap::new(), ACCESS_COOKIE, "new").unwrap(),
            "access_token_cookie=new"
        );
    }

    #[test]
    fn set_cookie_values_carry_the_configured_attributes() {
        let config = CookieConfig::default();
        assert_eq!(
            config.set(
                ACCESS_COOKIE,
                "tok",
                "/",
                Duration::from_secs(900),
                Script::Hidden
            ),
            "access_token_cookie=tok; Path=/; Max-Age=900; Secure; HttpOnly; SameSite=Lax"
        );
        let plain = CookieConfig {
            secure: false,
            same_site: SameSite::Strict,
            domain: Some("example.com".into()),
            csrf_protect: true,
        };
        assert_eq!(
            plain.set(
                ACCESS_CSRF_COOKIE,
                "c",
                "/",
                Duration::from_secs(60),
                Script::Readable
            ),
            "csrf_access_token=c; Path=/; Max-Age=60; Domain=example.com; SameSite=Strict"
        );
        assert_eq!(
            config.clear(REFRESH_COOKIE, "/", Script::Hidden),
            "refresh_token_cookie=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax"
        );
        assert_eq!(SameSite::parse("None"), Some(SameSite::None));
        assert_eq!(SameSite::parse("lax"), None, "written as the attribute is");
    }
}
