//! Path normalisation and route matching: pure functions, no I/O.
//!
//! The rule a request meets and the path the upstream receives are computed from the same
//! normalised string, so the decision and the forwarded path can never disagree.

use std::fmt;

/// What a route lets through, from the least to the most strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
    /// Roles of which the user must hold at least one; empty: none needed. Only on
    /// `authenticated` rules.
    pub roles: Vec<String>,
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
            roles: Vec::new(),
        })
    }

    /// The rule, requiring at least one of `roles`: an `authenticated` rule only, since a public
    /// route has no user to ask and a denied one lets nobody in.
    pub fn with_roles(mut self, roles: Vec<String>) -> Result<RouteRule, String> {
        if self.access != Access::Authenticated {
            return Err(format!(
                "roles need an authenticated route (leave access out, or make it \"authenticated\"), not access = \"{}\"",
                self.access
            ));
        }
        if roles.is_empty() {
            return Err("roles must not be empty (leave it out to let every user in)".into());
        }
        for role in &roles {
            crate::core::roles::validate_role(role)?;
        }
        self.roles = roles;
        Ok(self)
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
    wildcard_match(
        globs,
        parts,
        |glob| matches!(glob, Glob::AnyDepth),
        |glob, part| match glob {
            Glob::Segment(pattern) => segment_match(pattern.as_bytes(), part, ci),
            Glob::AnyDepth => unreachable!("a star is never compared"),
        },
    )
}

/// `*` matches any run of bytes in one segment; everything else literally.
fn segment_match(pattern: &[u8], text: &[u8], ci: bool) -> bool {
    wildcard_match(
        pattern,
        text,
        |&p| p == b'*',
        |&p, &t| p == t || (ci && p.eq_ignore_ascii_case(&t)),
    )
}

/// Whether `text` matches `pattern`, whose stars match any run of items (none included) and whose
/// other items match one item each, as `same` says.
///
/// Greedy, with one place to go back to: on a mismatch, only the latest star takes one more item.
/// That is enough, since whatever an earlier star could take instead, the later star can take as
/// well; and it bounds the work by (text length × pattern length). Trying every split, as a
/// recursive matcher does, is exponential in the number of stars: `/assets/*-*.js` against
/// 25,000 dashes held a worker for a second.
fn wildcard_match<P, T>(
    pattern: &[P],
    text: &[T],
    is_star: impl Fn(&P) -> bool,
    same: impl Fn(&P, &T) -> bool,
) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the latest star: the pattern item after it, and the text item it
    // would take next.
    let mut retry: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(item) if is_star(item) => {
                p += 1;
                retry = Some((p, t));
            }
            Some(item) if same(item, &text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match retry {
                Some((after_star, taken)) => {
                    p = after_star;
                    t = taken + 1;
                    retry = Some((after_star, t));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(is_star)
}

/// The methods a query's `_method` parameters ask for, upper-cased: Symfony and Laravel, and
/// Express's `method-override` set up with a key, run a `POST /x?_method=DELETE` as a `DELETE`.
/// Keys and values are read as those frameworks read them (percent-decoded, `+` as a space, pairs
/// split at `&` or `;`); a value that is not a method token names no method.
pub fn query_method_overrides(query: &str) -> impl Iterator<Item = String> + '_ {
    // Most queries hold neither the word nor an escape that could spell it.
    let may_override = query.contains("method") || query.contains('%');
    query
        .split(['&', ';'])
        .filter(move |_| may_override)
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            is_method_key(&decode_query_part(key)).then(|| decode_query_part(value))
        })
        .map(|value| value.trim().to_ascii_uppercase())
        .filter(|method| !method.is_empty() && method.bytes().all(is_token_byte))
}

/// Whether a decoded query key is `_method` to some framework: PHP (and so Symfony and Laravel)
/// skips a key's leading spaces, reads `.`, ` ` and `[` in it as `_`, and ends it at a NUL, so
/// `.method`, ` _method` and `_method\0x` are all `_method` there.
fn is_method_key(key: &str) -> bool {
    let key = key.trim_start_matches(' ');
    let key = key.split('\0').next().unwrap_or_default();
    let as_php = key.bytes().map(|b| {
        if matches!(b, b'.' | b' ' | b'[') {
            b'_'
        } else {
            b
        }
    });
    as_php.eq(*b"_method")
}

/// One key or value of a query, as form decoders read it.
fn decode_query_part(part: &str) -> String {
    let spaced = part.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether `b` may stand in a method name (RFC 9110 §5.6.2, `tchar`).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The ordered rules; the first match decides, and no match means `authenticated`.
#[derive(Debug, Clone)]
pub struct RouteTable {
    rules: Vec<RouteRule>,
    case_insensitive: bool,
}

/// What a request meets: the rule (if any) and the resulting access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Index into the rule list; `None` is the default rule.
    pub rule: Option<usize>,
    pub access: Access,
    /// The other rules the request met, through a method override in its query: their roles
    /// are needed too. Empty for nearly every request, and then never allocated.
    pub also: Vec<usize>,
}

impl Decision {
    /// The decision for a request that must meet both `self` and `other` (a method override):
    /// the stricter access decides, and the roles of both rules are needed.
    pub fn and(self, other: Decision) -> Decision {
        let (mut strict, lenient) = if other.access > self.access {
            (other, self)
        } else {
            (self, other)
        };
        for rule in lenient.rule.into_iter().chain(lenient.also) {
            if strict.rule != Some(rule) && !strict.also.contains(&rule) {
                strict.also.push(rule);
            }
        }
        strict
    }
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
                    also: Vec::new(),
                };
            }
        }
        Decision {
            rule: None,
            access: Access::Authenticated,
            also: Vec::new(),
        }
    }

    /// Whether a user holding `roles` may pass `decision`: at least one role of every rule it
    /// met, for rules that require roles.
    pub fn permits(&self, decision: &Decision, roles: &[String]) -> bool {
        decision
            .rule
            .iter()
            .chain(&decision.also)
            .all(|&i| crate::core::roles::holds_any(roles, &self.rules[i].roles))
    }

    /// The roles `decision` needs, one list per rule that requires some: for `explain`.
    pub fn roles_needed(&self, decision: &Decision) -> Vec<&[String]> {
        decision
            .rule
            .iter()
            .chain(&decision.also)
            .map(|&i| self.rules[i].roles.as_slice())
            .filter(|roles| !roles.is_empty())
            .collect()
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
                access: Access::Public,
                also: vec![]
            }
        );
        assert_eq!(
            d("GET", "/public"),
            Decision {
                rule: Some(0),
                access: Access::Public,
                also: vec![]
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
                access: Access::Authenticated,
                also: vec![]
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

    /// Every split tried, as the matcher did before: the definition the greedy one must meet.
    fn by_every_split(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| by_every_split(rest, &text[skip..])),
            Some((&p, rest)) => text
                .split_first()
                .is_some_and(|(&t, more)| p == t && by_every_split(rest, more)),
        }
    }

    /// All strings over `alphabet` up to `max` long.
    fn strings(alphabet: &[u8], max: usize) -> Vec<Vec<u8>> {
        let mut all = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s: &Vec<u8>| {
                    alphabet.iter().map(move |&c| [s.as_slice(), &[c]].concat())
                })
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn the_greedy_matcher_agrees_with_trying_every_split() {
        let texts = strings(b"ab-", 6);
        for pattern in strings(b"a-*", 5) {
            for text in &texts {
                assert_eq!(
                    segment_match(&pattern, text, false),
                    by_every_split(&pattern, text),
                    "{:?} against {:?}",
                    String::from_utf8_lossy(&pattern),
                    String::from_utf8_lossy(text)
                );
            }
        }
    }

    /// The hostile paths of the security review: stars that each could end anywhere in a long
    /// run, with no match at the end. Counted in comparisons, not seconds: at most one per pair
    /// of (text byte, pattern byte), where trying every split makes billions.
    #[test]
    fn matching_work_is_bounded_by_path_times_pattern_length() {
        for pattern in [&b"*-*.js"[..], b"*-*-*.js", b"*-*-*-*-*.js"] {
            let text = vec![b'-'; 25_000];
            let compared = std::cell::Cell::new(0usize);
            let matched = wildcard_match(
                pattern,
                &text,
                |&p| p == b'*',
                |&p, &t| {
                    compared.set(compared.get() + 1);
                    p == t
                },
            );
            assert!(!matched);
            assert!(
                compared.get() <= text.len() * pattern.len(),
                "{} comparisons for {}",
                compared.get(),
                String::from_utf8_lossy(pattern)
            );
        }
        // The same across segments: `**` between literal segments, against 5,000 of them.
        let rule = RouteRule::new("/**/a/**/a/**/b", None, Access::Public).unwrap();
        let table = RouteTable::new(vec![rule], false);
        let path = "/a".repeat(5_000);
        assert_eq!(table.decide("GET", &path).rule, None);
        assert_eq!(table.decide("GET", &format!("{path}/b")).rule, Some(0));
    }

    #[test]
    fn a_query_names_its_method_overrides_as_frameworks_read_them() {
        let overrides = |q: &str| query_method_overrides(q).collect::<Vec<_>>();
        assert_eq!(overrides("_method=DELETE"), ["DELETE"]);
        assert_eq!(overrides("a=1&_method=delete&b=2"), ["DELETE"]);
        assert_eq!(overrides("%5Fmethod=put;_%6Dethod=patch"), ["PUT", "PATCH"]);
        assert_eq!(overrides("_method=%44ELETE"), ["DELETE"]);
        assert_eq!(overrides("_method=+delete+"), ["DELETE"]);
        assert!(overrides("method=DELETE&x_method=PUT&_methods=PUT").is_empty());
        // PHP's spellings of the key (the second attack on the fixes found them).
        for php in [
            ".method=DELETE",
            "%2Emethod=delete",
            "+_method=DELETE",
            "%20%20_method=DELETE",
            "_method%00=DELETE",
            "_method%00anything=DELETE",
            "[method=DELETE",
        ] {
            assert_eq!(overrides(php), ["DELETE"], "{php}");
        }
        assert!(overrides("_method=&_method=DE%20LETE&_method=%FF").is_empty());
        assert!(overrides("page=2").is_empty());
    }

    fn role_table() -> RouteTable {
        let roles = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let rule = |p: &str, m: Option<&[&str]>, a| {
            RouteRule::new(p, m.map(|m| m.iter().map(|s| s.to_string()).collect()), a).unwrap()
        };
        RouteTable::new(
            vec![
                rule("/items/**", Some(&["DELETE"]), Access::Authenticated)
                    .with_roles(roles(&["admin"]))
                    .unwrap(),
                rule("/items/**", Some(&["PUT"]), Access::Authenticated)
                    .with_roles(roles(&["editor", "admin"]))
                    .unwrap(),
                rule("/items/**", None, Access::Public),
            ],
            false,
        )
    }

    #[test]
    fn a_rule_with_roles_needs_one_of_them() {
        let t = role_table();
        let held = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let put = t.decide("PUT", "/items/1");
        assert_eq!(put.access, Access::Authenticated);
        assert!(t.permits(&put, &held(&["editor"])));
        assert!(t.permits(&put, &held(&["admin", "other"])));
        assert!(!t.permits(&put, &held(&["viewer"])));
        assert!(!t.permits(&put, &[]));
        let get = t.decide("GET", "/items/1");
        assert!(t.permits(&get, &[]), "a rule without roles lets anyone in");
        assert!(
            t.permits(&t.decide("GET", "/other"), &[]),
            "nor does the default"
        );
    }

    /// `POST /items/1?_method=DELETE` is a `DELETE` to the app: the roles of both rules apply,
    /// whichever access is stricter.
    #[test]
    fn a_method_override_needs_the_roles_of_both_rules() {
        let t = role_table();
        let held = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let both = t
            .decide("PUT", "/items/1")
            .and(t.decide("DELETE", "/items/1"));
        assert_eq!(both.access, Access::Authenticated);
        assert!(!t.permits(&both, &held(&["editor"])), "DELETE needs admin");
        assert!(t.permits(&both, &held(&["admin"])));
        let public_then_guarded = t
            .decide("GET", "/items/1")
            .and(t.decide("DELETE", "/items/1"));
        assert_eq!(public_then_guarded.access, Access::Authenticated);
        assert!(!t.permits(&public_then_guarded, &held(&["editor"])));
        assert_eq!(
            t.roles_needed(&both),
            vec![
                &["editor".to_string(), "admin".to_string()][..],
                &["admin".to_string()][..]
            ]
        );
        // The same rule met twice is one requirement.
        let twice = t
            .decide("DELETE", "/items/1")
            .and(t.decide("DELETE", "/items/1"));
        assert!(twice.also.is_empty());
    }

    #[test]
    fn roles_only_on_authenticated_rules_and_never_empty() {
        let rule = |a| RouteRule::new("/x/**", None, a).unwrap();
        for access in [Access::Public, Access::Deny] {
            let e = rule(access).with_roles(vec!["admin".into()]).unwrap_err();
            assert!(e.contains("roles need an authenticated route"), "{e}");
        }
        let e = rule(Access::Authenticated).with_roles(vec![]).unwrap_err();
        assert!(e.contains("must not be empty"), "{e}");
        let e = rule(Access::Authenticated)
            .with_roles(vec!["Admin".into()])
            .unwrap_err();
        assert!(e.contains("role \"Admin\""), "{e}");
    }

    #[test]
    fn patterns_must_be_normalised() {
        for bad in ["public", "/a/../b", "/a/**x", "/a;b", "/%2e"] {
            assert!(RouteRule::new(bad, None, Access::Public).is_err(), "{bad}");
        }
    }
}
