//! Path normalisation and route matching: pure functions, no I/O.
//!
//! The rule a request meets and the path the upstream receives are computed from the same
//! normalised string, so the decision and the forwarded path can never disagree.

use std::fmt;

/// What a route lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Authenticated,
    Deny,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Public => "public",
            Access::Authenticated => "authenticated",
            Access::Deny => "deny",
        })
    }
}

/// Why a path cannot be normalised safely. Such a request is answered 400 and never forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotOriginForm,
    BadPercentEncoding,
    EncodedSeparator,
    ControlCharacter,
    Backslash,
    PathParameter,
    InvalidUtf8,
    NonAscii,
    EscapesRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "Request path must start with '/'",
            PathError::BadPercentEncoding => "Request path has a malformed percent-encoding",
            PathError::EncodedSeparator => "Request path has an encoded '/' or '\\'",
            PathError::ControlCharacter => "Request path has a NUL or control character",
            PathError::Backslash => "Request path has a backslash",
            PathError::PathParameter => "Request path has a ';' path parameter",
            PathError::InvalidUtf8 => "Request path is not valid UTF-8 once decoded",
            PathError::NonAscii => "Request path has a raw non-ASCII byte",
            PathError::EscapesRoot => "Request path climbs above the root",
        })
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Normalises one segment: decodes percent-encoded unreserved characters, upper-cases the hex of
/// the rest, and refuses anything that some server behind us might read as a separator or a dot
/// segment. Returns the segment as it will be sent upstream.
fn normalise_segment(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    // The fully decoded segment, only to check what an upstream that decodes everything would see.
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (h, l) = match (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(PathError::BadPercentEncoding),
            };
            let v = h << 4 | l;
            match v {
                b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                // An upstream that decodes before it strips path parameters would read `..%3B` as `..;`.
                b';' => return Err(PathError::PathParameter),
                0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                _ => {}
            }
            if is_unreserved(v) {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(char::from_digit(h as u32, 16).unwrap().to_ascii_uppercase());
                out.push(char::from_digit(l as u32, 16).unwrap().to_ascii_uppercase());
            }
            decoded.push(v);
            i += 3;
            continue;
        }
        match b {
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::PathParameter),
            0..=0x20 | 0x7f => return Err(PathError::ControlCharacter),
            0x80.. => return Err(PathError::NonAscii),
            _ => {}
        }
        out.push(b as char);
        decoded.push(b);
        i += 1;
    }
    // Overlong or broken UTF-8 (`%c0%ae` as a lax decoder's '.') never reaches the upstream.
    std::str::from_utf8(&decoded).map_err(|_| PathError::InvalidUtf8)?;
    Ok(out)
}

/// Normalises a request path (no query): percent-decoding of unreserved characters, dot segments
/// resolved (RFC 3986 §5.2.4), repeated slashes collapsed. The trailing slash is kept.
pub fn normalise_path(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    if is_already_normal(path) {
        return Ok(path.to_string());
    }
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    for raw in path[1..].split('/') {
        let seg = normalise_segment(raw)?;
        trailing_slash = false;
        match seg.as_str() {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::EscapesRoot);
                }
                trailing_slash = true;
            }
            _ => segments.push(seg),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The common case, checked in one pass: plain characters only, no empty segment but a trailing
/// one, no `.` or `..` segment. Such a path is its own normal form.
fn is_already_normal(path: &str) -> bool {
    let rest = &path.as_bytes()[1..];
    let plain = rest
        .iter()
        .all(|&b| b.is_ascii_graphic() && !matches!(b, b'%' | b'\\' | b';'));
    let mut segments = rest.split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || segment == b"." || segment == b".." {
            return false;
        }
    }
    plain
}

/// One `[[routes]]` entry: a glob on the normalised path, optional methods, and the access it grants.
#[derive(Debug, Clone)]
pub struct RouteRule {
    /// The pattern as written, for `explain` and logs.
    pub pattern: String,
    segments: Vec<Glob>,
    /// Upper-case method names; `None` matches every method.
    pub methods: Option<Vec<String>>,
    pub access: Access,
}

#[derive(Debug, Clone, PartialEq)]
enum Glob {
    /// `**`: any number of segments, none included.
    AnyDepth,
    /// A segment pattern where `*` matches any run of characters within the segment.
    Segment(String),
}

impl RouteRule {
    pub fn new(
        pattern: &str,
        methods: Option<Vec<String>>,
        access: Access,
    ) -> Result<RouteRule, String> {
        if !pattern.starts_with('/') {
            return Err("path must start with '/'".into());
        }
        let mut segments = Vec::new();
        for part in pattern[1..].split('/') {
            if part == "**" {
                segments.push(Glob::AnyDepth);
            } else if part.contains("**") {
                return Err("'**' must be a whole segment".into());
            } else {
                // A pattern names paths as they look after normalisation.
                let normal = normalise_segment(&part.replace('*', "x"))
                    .map_err(|e| format!("not a normalised path segment: {e}"))?;
                if normal != part.replace('*', "x") || part == "." || part == ".." {
                    return Err(format!("segment {part:?} is not in normalised form"));
                }
                segments.push(Glob::Segment(part.to_string()));
            }
        }
        Ok(RouteRule {
            pattern: pattern.to_string(),
            segments,
            methods,
            access,
        })
    }

    /// `parts`: the normalised path's segments, split once for the whole table.
    fn matches(&self, method: &str, parts: &[&[u8]], case_insensitive: bool) -> bool {
        if let Some(methods) = &self.methods {
            if !methods.iter().any(|m| m == method) {
                return false;
            }
        }
        glob_match(&self.segments, parts, case_insensitive)
    }
}

fn glob_match(globs: &[Glob], parts: &[&[u8]], ci: bool) -> bool {
    match globs.split_first() {
        None => parts.is_empty(),
        Some((Glob::AnyDepth, rest)) => {
            (0..=parts.len()).any(|skip| glob_match(rest, &parts[skip..], ci))
        }
        Some((Glob::Segment(pattern), rest)) => match parts.split_first() {
            Some((part, more)) => {
                segment_match(pattern.as_bytes(), part, ci) && glob_match(rest, more, ci)
            }
            None => false,
        },
    }
}

/// `*` matches any run of bytes in one segment; everything else literally.
fn segment_match(pattern: &[u8], text: &[u8], ci: bool) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| segment_match(rest, &text[skip..], ci)),
        Some((&p, rest)) => match text.split_first() {
            Some((&t, more)) => {
                (p == t || (ci && p.eq_ignore_ascii_case(&t))) && segment_match(rest, more, ci)
            }
            None => false,
        },
    }
}

/// The ordered rules; the first match decides, and no match means `authenticated`.
#[derive(Debug, Clone)]
pub struct RouteTable {
    rules: Vec<RouteRule>,
    case_insensitive: bool,
}

/// What a request meets: the rule (if any) and the resulting access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Index into the rule list; `None` is the default rule.
    pub rule: Option<usize>,
    pub access: Access,
}

impl RouteTable {
    pub fn new(rules: Vec<RouteRule>, case_insensitive: bool) -> RouteTable {
        RouteTable {
            rules,
            case_insensitive,
        }
    }

    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    /// Decides on a path that `normalise_path` produced.
    pub fn decide(&self, method: &str, normalised_path: &str) -> Decision {
        // Paths rarely have more than a handful of segments: no allocation on the hot path. Split
        // as bytes: a string's `split('/')` sets up a searcher that costs more than a short path.
        let parts: smallvec::SmallVec<[&[u8]; 16]> = normalised_path.as_bytes()[1..]
            .split(|&b| b == b'/')
            .collect();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.matches(method, &parts, self.case_insensitive) {
                return Decision {
                    rule: Some(i),
                    access: rule.access,
                };
            }
        }
        Decision {
            rule: None,
            access: Access::Authenticated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_resolves_dots_and_collapses_slashes() {
        let cases = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("//a///b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/public/../private", "/private"),
            ("/public/%2e%2e/private", "/private"),
            ("/public/%2E%2e/private", "/private"),
            ("/%7euser/%41", "/~user/A"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%20b", "/a%20b"),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_path(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let cases = [
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%2Fb", PathError::EncodedSeparator),
            ("/a%5cb", PathError::EncodedSeparator),
            ("/a\\b", PathError::Backslash),
            ("/a%00b", PathError::ControlCharacter),
            ("/a%0ab", PathError::ControlCharacter),
            ("/..", PathError::EscapesRoot),
            ("/a/../..", PathError::EscapesRoot),
            ("/public/..;/private", PathError::PathParameter),
            ("/public/.;x/private", PathError::PathParameter),
            ("/private;x", PathError::PathParameter),
            ("/public/..%3b/admin", PathError::PathParameter),
            ("/public/..%3B/admin", PathError::PathParameter),
            ("/%zz", PathError::BadPercentEncoding),
            ("/%4", PathError::BadPercentEncoding),
            ("/%c0%ae%c0%ae/x", PathError::InvalidUtf8),
            ("relative", PathError::NotOriginForm),
            ("*", PathError::NotOriginForm),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_path(input), Err(want), "{input}");
        }
    }

    #[test]
    fn normalisation_is_idempotent() {
        for input in ["/a/../b/./c//", "/%7e/%2e/x", "/x%20y/", "/"] {
            let once = normalise_path(input).unwrap();
            assert_eq!(normalise_path(&once).unwrap(), once);
        }
    }

    fn table(ci: bool) -> RouteTable {
        let rule = |p: &str, m: Option<&[&str]>, a| {
            RouteRule::new(p, m.map(|m| m.iter().map(|s| s.to_string()).collect()), a).unwrap()
        };
        RouteTable::new(
            vec![
                rule("/public/**", Some(&["GET"]), Access::Public),
                rule("/admin/**", None, Access::Deny),
                rule("/files/*/raw", None, Access::Public),
                rule("/assets/*.css", None, Access::Public),
            ],
            ci,
        )
    }

    #[test]
    fn first_matching_rule_decides_and_default_is_authenticated() {
        let t = table(false);
        let d = |m, p| t.decide(m, p);
        assert_eq!(
            d("GET", "/public/"),
            Decision {
                rule: Some(0),
                access: Access::Public
            }
        );
        assert_eq!(
            d("GET", "/public"),
            Decision {
                rule: Some(0),
                access: Access::Public
            }
        );
        assert_eq!(d("GET", "/public/a/b/c").access, Access::Public);
        assert_eq!(d("POST", "/public/a").access, Access::Authenticated);
        assert_eq!(d("GET", "/publicity").access, Access::Authenticated);
        assert_eq!(d("GET", "/admin").access, Access::Deny);
        assert_eq!(d("GET", "/files/x/raw").access, Access::Public);
        assert_eq!(d("GET", "/files/x/y/raw").access, Access::Authenticated);
        assert_eq!(d("GET", "/assets/site.css").access, Access::Public);
        assert_eq!(d("GET", "/assets/site.js").access, Access::Authenticated);
        assert_eq!(
            d("GET", "/other"),
            Decision {
                rule: None,
                access: Access::Authenticated
            }
        );
    }

    #[test]
    fn case_matters_unless_configured_otherwise() {
        assert_eq!(
            table(false).decide("GET", "/PUBLIC/x").access,
            Access::Authenticated
        );
        assert_eq!(
            table(true).decide("GET", "/PUBLIC/x").access,
            Access::Public
        );
        assert_eq!(table(true).decide("GET", "/Admin").access, Access::Deny);
    }

    #[test]
    fn patterns_must_be_normalised() {
        for bad in ["public", "/a/../b", "/a/**x", "/a;b", "/%2e"] {
            assert!(RouteRule::new(bad, None, Access::Public).is_err(), "{bad}");
        }
    }
}
