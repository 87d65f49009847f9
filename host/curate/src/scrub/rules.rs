//! The built-in rule table.
//!
//! Order is priority: when two rules claim overlapping text starting at the same byte, the longer
//! match wins, then the rule listed first. Specific token formats come before the generic
//! assignment rules so that `api_key = "sk-proj-…"` is counted as `openai-api-key`.

use super::check::Check;

/// A rule as written in the table (compiled by [`super::Scrubber::new`]).
pub(crate) struct RuleSpec {
    pub id: &'static str,
    /// Lower-case literals, found ASCII case-insensitively. For an anchored rule every match
    /// starts with one of them and the regex is tried only where they occur; otherwise the regex
    /// scans texts that contain one.
    pub keywords: &'static [&'static str],
    pub anchored: bool,
    /// The first participating capture group is the secret; without groups, the whole match.
    pub regex: &'static str,
    /// Minimum Shannon entropy (bits per byte) of the secret.
    pub entropy: f64,
    pub check: Check,
}

const fn rule(id: &'static str, keywords: &'static [&'static str], regex: &'static str, entropy: f64, check: Check) -> RuleSpec {
    RuleSpec { id, keywords, regex, entropy, check, anchored: true }
}

/// `=`, `:=`, `:`, `=>` between a key (optionally quoted) and its value (optionally quoted).
macro_rules! assign {
    () => {
        r#"[A-Za-z0-9_.\-]{0,24}['"]?[ \t]{0,4}(?:=>|:=|=|:)[ \t]{0,4}['"`]?"#
    };
}

/// Rules that are off unless the config turns them on (`emails`, `home_paths`).
pub(crate) const EMAIL: &str = "email";
pub(crate) const HOME_PATH: &str = "home-path";

pub(crate) const BUILTIN: &[RuleSpec] = &[
    rule(
        "private-key",
        &["-----begin"],
        // A whole PEM / OpenSSH private key block; a block cut short (no END line, e.g. a
        // truncated diff) is redacted up to where its base64 body stops.
        r#"(-----BEGIN[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:(?s:.)*?-----END[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s\\:,.+-]*))"#,
        0.0,
        Check::KeyBlock,
    ),
    rule(
        "aws-access-key-id",
        &["akia", "asia", "abia", "acca", "a3t"],
        r"(?-u:\b)((?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16})(?-u:\b)",
        3.0,
        Check::None,
    ),
    rule(
        "aws-secret-access-key",
        &["aws"],
        concat!(r"(?i:aws)[A-Za-z0-9_.\-]{0,30}?(?i:secret|key)", assign!(), r"([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"),
        4.0,
        Check::None,
    ),
    rule(
        "github-token",
        &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        r"(?-u:\b)((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255})(?-u:\b)",
        3.0,
        Check::None,
    ),
    rule("github-fine-grained-pat", &["github_pat_"], r"(?-u:\b)(github_pat_[A-Za-z0-9_]{22,255})(?-u:\b)", 3.0, Check::None),
    rule("gitlab-token", &["glpat-"], r"(?-u:\b)(glpat-[A-Za-z0-9_\-]{20,255})", 3.0, Check::None),
    rule(
        "slack-token",
        &["xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-"],
        r"(?-u:\b)(xox[abprs]-[A-Za-z0-9\-]{10,255})",
        3.0,
        Check::None,
    ),
    rule(
        "slack-webhook",
        &["hooks.slack.com"],
        r"hooks\.slack\.com/((?:services|workflows|triggers)/[A-Za-z0-9_+/\-]{20,255})",
        3.0,
        Check::None,
    ),
    rule("anthropic-api-key", &["sk-ant-"], r"(?-u:\b)(sk-ant-[A-Za-z0-9_\-]{20,255})", 3.0, Check::None),
    rule(
        "openai-api-key",
        &["sk-"],
        r"(?-u:\b)(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,255})",
        3.0,
        Check::TokenLike,
    ),
    rule("google-api-key", &["aiza"], r"(?-u:\b)(AIza[A-Za-z0-9_\-]{35})(?:[^A-Za-z0-9_\-]|$)", 3.0, Check::None),
    rule(
        "stripe-secret-key",
        &["sk_live_", "rk_live_", "sk_test_", "rk_test_", "sk_prod_", "rk_prod_"],
        r"(?-u:\b)((?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{16,255})(?-u:\b)",
        3.0,
        Check::None,
    ),
    rule("npm-token", &["npm_"], r"(?-u:\b)(npm_[A-Za-z0-9]{36})(?-u:\b)", 3.0, Check::None),
    rule(
        "jwt",
        &["eyj"],
        r"(?-u:\b)(ey[A-Za-z0-9_\-]{15,}\.ey[A-Za-z0-9_\-]{15,}(?:\.[A-Za-z0-9_\-]{10,}={0,2})?)",
        3.0,
        Check::None,
    ),
    rule(
        "url-password",
        &["://"],
        r#"://[^\s:@/?#'"<>\[\]]{1,128}:([^\s:@/?#'"<>\[\]]{1,256})@"#,
        0.0,
        Check::UrlPassword,
    ),
    rule(
        "authorization-header",
        &["bearer", "basic"],
        r"(?-u:\b)(?i:bearer|basic)[ \t]+([A-Za-z0-9\-._~+/]{16,}={0,2})",
        3.0,
        Check::TokenLike,
    ),
    rule(
        "password-assignment",
        &["pass", "pwd", "secret", "token", "api", "auth", "access", "private", "credential"],
        concat!(
            r"(?i:pass(?:word|wd|phrase)?|pwd|secret|token|api[_\-]?key|auth[_\-]?key|access[_\-]?key|private[_\-]?key|credentials?)",
            assign!(),
            r"([A-Za-z0-9!#$%&*+\-./:=?@^_|~]{8,200})"
        ),
        2.5,
        Check::Password,
    ),
    rule(
        "generic-api-key",
        &["key", "secret", "token", "auth", "cred", "access", "api", "private", "signature", "salt", "session", "cookie"],
        concat!(
            r"(?i:key|secret|token|auth|credentials?|creds|access|api|private|signature|salt|session|cookie)",
            assign!(),
            r"([A-Za-z0-9+/_\-]{16,200}={0,2})(?:[^A-Za-z0-9+/_\-=]|$)"
        ),
        0.0,
        Check::Generic,
    ),
    RuleSpec {
        id: EMAIL,
        keywords: &["@"],
        regex: r"(?-u:\b)([A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24})(?-u:\b)",
        entropy: 0.0,
        check: Check::Email,
        anchored: false,
    },
    RuleSpec {
        id: HOME_PATH,
        keywords: &["/home/", "/users/", "\\users\\"],
        regex: r"(?:^|[^A-Za-z0-9_.\-/~])(?:/home/|/Users/|[A-Za-z]:\\Users\\)([A-Za-z0-9._\-]{1,64})",
        entropy: 0.0,
        check: Check::HomeUser,
        anchored: false,
    },
];

/// Substrings (case-insensitive) that mark a match as a placeholder, not a secret.
pub(crate) const STOPWORDS: &[&str] = &[
    "example", "xxxx", "****", "your", "placeholder", "changeme", "change_me", "dummy", "sample", "redacted", "lorem", "<",
    ">", "${", "{{",
];
