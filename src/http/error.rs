//! Every refusal authgate answers with, and the one place that decides its status, message and
//! headers. Messages follow Flask-JWT-Extended so clients written for it keep working.

use http::{HeaderValue, Response, StatusCode, header};

use crate::core::classify::Refusal;
use crate::core::json_fields::FieldError;
use crate::core::routes::PathError;
use crate::core::token::TokenError;
use crate::http::body::{Body, full};
use crate::services::sessions::AuthError;
use crate::upstream::UpstreamError;

#[derive(Debug)]
pub enum ApiError {
    MissingAuthHeader,
    MissingBearer,
    BadAuthHeader,
    AuthHeaderTooLarge,
    Token(TokenError),
    BadPath(PathError),
    /// The request's headers add up to more than the limit.
    HeadersTooLarge,
    /// No Host on HTTP/1.1, or more than one.
    BadHost,
    BadRequest(String),
    /// A request body in a transfer coding other than `chunked`, which would not reach the app.
    UnsupportedTransferCoding,
    BodyTooLarge,
    /// The body did not arrive within its deadline.
    BodyTimeout,
    UnsupportedMediaType,
    UsernameTaken,
    BadCredentials,
    /// The old password given to /password is wrong.
    WrongPassword,
    Forbidden,
    MethodNotAllowed(&'static str),
    UpstreamUnavailable,
    UpstreamTimeout,
    StoreUnavailable,
    /// Revocations are not loaded yet, so no token can be trusted.
    NotReady,
    /// Login throttled; retry after this long.
    TooManyAttempts(std::time::Duration),
    /// Too many password hashes waiting already.
    Busy,
    /// No token in any of `tokens.location`: Flask-JWT-Extended's message, naming each place.
    NoToken(String),
    /// A state-changing request authenticated by cookie, without `X-CSRF-TOKEN`.
    MissingCsrf,
    /// Its `X-CSRF-TOKEN` is not its token's `csrf` claim.
    CsrfMismatch,
    /// `accounts.allow_registration = false`.
    RegistrationClosed,
    /// A browser that must sign in first: `303` to the sign-in page, which sends it on to the
    /// path it asked for.
    SignIn(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingAuthHeader
            | ApiError::MissingBearer
            | ApiError::BadAuthHeader
            | ApiError::Token(_)
            | ApiError::BadCredentials
            | ApiError::WrongPassword
            | ApiError::NoToken(_)
            | ApiError::MissingCsrf
            | ApiError::CsrfMismatch => StatusCode::UNAUTHORIZED,
            ApiError::RegistrationClosed => StatusCode::FORBIDDEN,
            ApiError::SignIn(_) => StatusCode::SEE_OTHER,
            ApiError::AuthHeaderTooLarge | ApiError::HeadersTooLarge => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            ApiError::BadHost => StatusCode::BAD_REQUEST,
            ApiError::BadPath(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::UsernameTaken => StatusCode::CONFLICT,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::StoreUnavailable | ApiError::NotReady | ApiError::Busy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::MissingAuthHeader => "Missing Authorization Header".into(),
            ApiError::MissingBearer => {
                "Missing 'Bearer' type in 'Authorization' header. Expected 'Authorization: Bearer <JWT>'".into()
            }
            ApiError::BadAuthHeader => "Bad Authorization header. Expected 'Authorization: Bearer <JWT>'".into(),
            ApiError::AuthHeaderTooLarge => "Authorization header is too large".into(),
            ApiError::HeadersTooLarge => "Request headers are too large".into(),
            ApiError::BadHost => "A request needs exactly one Host header".into(),
            ApiError::Token(e) => e.message().into(),
            ApiError::BadPath(e) => e.to_string(),
            ApiError::BadRequest(msg) => msg.clone(),
            ApiError::BodyTooLarge => "Request body is too large".into(),
            ApiError::UnsupportedTransferCoding => {
                "Transfer-Encoding must be chunked alone".into()
            }
            ApiError::BodyTimeout => "Request body took too long to arrive".into(),
            ApiError::UnsupportedMediaType => "Content-Type must be application/json".into(),
            ApiError::UsernameTaken => "Username already exists".into(),
            ApiError::BadCredentials => "Bad username or password".into(),
            ApiError::WrongPassword => "Wrong password".into(),
            ApiError::Forbidden => "Access denied".into(),
            ApiError::MethodNotAllowed(_) => "Method not allowed".into(),
            ApiError::UpstreamUnavailable => "Upstream unavailable".into(),
            ApiError::UpstreamTimeout => "Upstream timed out".into(),
            ApiError::StoreUnavailable => "Store unavailable, try again shortly".into(),
            ApiError::NotReady => "Not ready: revocations are still loading, try again shortly".into(),
            ApiError::TooManyAttempts(_) => "Too many login attempts, try again later".into(),
            ApiError::Busy => "Too many logins at once, try again shortly".into(),
            ApiError::NoToken(msg) => msg.clone(),
            ApiError::MissingCsrf => "Missing CSRF token".into(),
            ApiError::CsrfMismatch => "CSRF double submit tokens do not match".into(),
            ApiError::RegistrationClosed => "Registration is disabled".into(),
            ApiError::SignIn(_) => "Sign in first".into(),
        }
    }

    /// A short name for logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            ApiError::MissingAuthHeader
            | ApiError::MissingBearer
            | ApiError::BadAuthHeader
            | ApiError::NoToken(_) => "no_token",
            ApiError::MissingCsrf | ApiError::CsrfMismatch => "csrf",
            ApiError::RegistrationClosed => "registration_closed",
            ApiError::SignIn(_) => "sign_in",
            ApiError::AuthHeaderTooLarge | ApiError::HeadersTooLarge => "header_too_large",
            ApiError::BadHost => "bad_host",
            ApiError::Token(TokenError::Expired) => "token_expired",
            ApiError::Token(TokenError::Revoked) => "token_revoked",
            ApiError::Token(_) => "token_invalid",
            ApiError::BadPath(_) => "bad_path",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::BodyTooLarge => "body_too_large",
            ApiError::UnsupportedTransferCoding => "bad_transfer_coding",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::UnsupportedMediaType => "bad_content_type",
            ApiError::UsernameTaken => "username_taken",
            ApiError::BadCredentials | ApiError::WrongPassword => "bad_credentials",
            ApiError::Forbidden => "denied",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::UpstreamUnavailable => "upstream_unavailable",
            ApiError::UpstreamTimeout => "upstream_timeout",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::NotReady => "not_ready",
            ApiError::TooManyAttempts(_) => "throttled",
            ApiError::Busy => "busy",
        }
    }

    #[cold]
    pub fn into_response(self) -> Response<Body> {
        let mut response =
            json_response(self.status(), &serde_json::json!({ "msg": self.message() }));
        let headers = response.headers_mut();
        match &self {
            // RFC 6750 §3.1: no error code when the request carried no credentials at all.
            ApiError::MissingAuthHeader
            | ApiError::NoToken(_)
            | ApiError::BadCredentials
            | ApiError::WrongPassword => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"authgate\""),
                );
            }
            ApiError::MissingBearer | ApiError::BadAuthHeader | ApiError::Token(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"authgate\", error=\"invalid_token\""),
                );
            }
            ApiError::MethodNotAllowed(allow) => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::SignIn(location) => {
                // Built from the configured prefix and a percent-encoded path: always a value.
                if let Ok(value) = HeaderValue::from_str(location) {
                    headers.insert(header::LOCATION, value);
                }
            }
            ApiError::StoreUnavailable | ApiError::NotReady | ApiError::Busy => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::TooManyAttempts(wait) => {
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            }
            _ => {}
        }
        response
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::BadPath(e) => ApiError::BadPath(e),
            Refusal::MethodNotAllowed(allow) => ApiError::MethodNotAllowed(allow),
        }
    }
}

/// The app's failures: 504 when it did not answer in time, 502 for everything else (unreachable,
/// closed, or an answer that breaks HTTP/1.1), logged, since the client learns nothing more.
impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> ApiError {
        match e {
            UpstreamError::Timeout => ApiError::UpstreamTimeout,
            e => {
                tracing::warn!(error = %e, "upstream request failed");
                ApiError::UpstreamUnavailable
            }
        }
    }
}

/// The one map from the sessions service's refusals to answers.
impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> ApiError {
        ApiError::BadRequest(match e {
            FieldError::NotJson => "Request body must be valid JSON".into(),
            FieldError::NotObject => "Request body must be a JSON object".into(),
            FieldError::Missing(name) => format!("Missing \"{name}\" in JSON body"),
            FieldError::NotString(name) => format!("\"{name}\" must be a string"),
        })
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Invalid(rule) => ApiError::BadRequest(rule.into()),
            AuthError::UsernameTaken => ApiError::UsernameTaken,
            AuthError::BadCredentials => ApiError::BadCredentials,
            AuthError::WrongPassword => ApiError::WrongPassword,
            AuthError::Throttled(wait) => ApiError::TooManyAttempts(wait),
            AuthError::Busy => ApiError::Busy,
            AuthError::Token(e) => ApiError::Token(e),
            AuthError::NotReady => ApiError::NotReady,
            AuthError::Store(e) => {
                tracing::error!(error = %e, "store failed");
                ApiError::StoreUnavailable
            }
        }
    }
}

/// A JSON answer of authgate's own.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::json_fields::string_fields;

    fn answer(body: &[u8]) -> (u16, String) {
        let e = ApiError::from(string_fields(body, ["username", "password"]).unwrap_err());
        (e.status().as_u16(), e.message())
    }

    #[test]
    fn a_json_body_without_its_fields_is_a_400_that_names_what_is_wrong() {
        let bad = |m: &str| (400, m.to_string());
        assert_eq!(answer(b"{"), bad("Request body must be valid JSON"));
        assert_eq!(answer(b"[]"), bad("Request body must be a JSON object"));
        assert_eq!(
            answer(br#"{"username":"a"}"#),
            bad("Missing \"password\" in JSON body")
        );
        assert_eq!(
            answer(br#"{"username":1,"password":"b"}"#),
            bad("\"username\" must be a string")
        );
    }
}
