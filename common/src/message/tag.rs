//! Tag codes, TAG subscription expressions (PROTOCOL.md §4.1, §7) and the IndexFile key hash
//! (§4.2).
//!
//! All hashes are Java's `String.hashCode()`: `h = 31 * h + c` over the string's UTF-16 code
//! units with 32-bit wrap-around. A consume-queue entry stores the hash of the `TAGS` property
//! sign-extended to i64 (0 without a tag).

use std::collections::BTreeSet;
use std::str::FromStr;

/// The "everything" subscription expression.
pub const SUB_ALL: &str = "*";

/// Java's `String.hashCode()` of `s`.
pub fn java_hash_code(s: &str) -> i32 {
    hash_continue(0, s)
}

fn hash_continue(seed: i32, s: &str) -> i32 {
    s.encode_utf16().fold(seed, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The consume-queue tags code of `tag`: its Java hashCode, sign-extended.
///
/// ```
/// assert_eq!(tern_common::message::tag::tags_hash("TagA"), 2_598_919);
/// ```
pub fn tags_hash(tag: &str) -> i64 {
    i64::from(java_hash_code(tag))
}

/// The IndexFile hash of `key` in `topic`: `abs(hashCode("<topic>#<key>"))`, and 0 when the
/// hash is `i32::MIN` (whose absolute value overflows), as Java's `IndexFile.indexKeyHashMethod`.
pub fn key_hash(topic: &str, key: &str) -> i32 {
    let h = hash_continue(hash_continue(hash_continue(0, topic), "#"), key);
    h.checked_abs().unwrap_or(0)
}

/// A parsed TAG subscription expression (Java `FilterAPI.buildSubscriptionData`).
///
/// `*`, empty or blank means everything. Otherwise the expression is split on `||`, each token
/// trimmed and empty tokens dropped: the tokens form the tag set and their hashes the code set.
/// The broker filters by code (hash collisions pass), the client by exact tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionExpr {
    sub_string: String,
    tags: Vec<String>,
    codes: Vec<i32>,
}

impl SubscriptionExpr {
    /// The subscription to everything.
    pub fn all() -> Self {
        SubscriptionExpr {
            sub_string: SUB_ALL.to_owned(),
            tags: Vec::new(),
            codes: Vec::new(),
        }
    }

    /// Parses a TAG expression such as `TagA || TagB`. Never fails: any text is a valid TAG
    /// expression.
    pub fn parse_tag(expr: &str) -> Self {
        let trimmed = expr.trim();
        if trimmed.is_empty() || trimmed == SUB_ALL {
            return Self::all();
        }
        let mut seen = BTreeSet::new();
        let mut tags = Vec::new();
        for token in expr.split("||").map(str::trim).filter(|t| !t.is_empty()) {
            if seen.insert(token) {
                tags.push(token.to_owned());
            }
        }
        let mut codes = Vec::with_capacity(tags.len());
        for tag in &tags {
            let code = java_hash_code(tag);
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        SubscriptionExpr {
            sub_string: expr.to_owned(),
            tags,
            codes,
        }
    }

    /// A subscription as a client reported it in a heartbeat (`subString`, `tagsSet`,
    /// `codeSet`), trusted as given like Java's broker does.
    pub fn from_parts(sub_string: String, tags: Vec<String>, codes: Vec<i32>) -> Self {
        SubscriptionExpr {
            sub_string,
            tags,
            codes,
        }
    }

    /// The expression text (`*` for everything).
    pub fn sub_string(&self) -> &str {
        &self.sub_string
    }

    /// The tag set, in first-seen order, without duplicates.
    pub fn tags_set(&self) -> &[String] {
        &self.tags
    }

    /// The code set (Java hashCodes of the tags), without duplicates.
    pub fn code_set(&self) -> &[i32] {
        &self.codes
    }

    /// Whether this is the `*` subscription.
    pub fn is_all(&self) -> bool {
        self.sub_string == SUB_ALL
    }

    /// Broker-side match against a consume-queue tags code (inexact: hash collisions pass).
    pub fn matches_code(&self, tags_code: i64) -> bool {
        self.is_all() || self.codes.iter().any(|&c| i64::from(c) == tags_code)
    }

    /// Client-side exact match against a message's `TAGS` property: an empty tag set keeps
    /// everything, otherwise the tag must be present and in the set.
    pub fn matches_tag(&self, tag: Option<&str>) -> bool {
        if self.tags.is_empty() {
            return true;
        }
        tag.is_some_and(|t| self.tags.iter().any(|s| s == t))
    }
}

impl Default for SubscriptionExpr {
    fn default() -> Self {
        Self::all()
    }
}

impl FromStr for SubscriptionExpr {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse_tag(s))
    }
}
