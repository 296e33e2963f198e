//! RocketMQ's SQL92 message filter: a sans-IO parser and evaluator for selector expressions
//! over message properties (PROTOCOL.md §7; RocketMQ `filter/…/parser/SelectorParser.jj` and
//! `filter/…/expression/*`).
//!
//! [`Expression::parse`] compiles a selector such as `a > 5 AND TAGS IN ('T1', 'T2')` once
//! (the broker does it when a subscription is registered); [`Expression::matches`] then
//! evaluates it against one message's properties, given as a lookup function, so a stored
//! record's property string can be read without building a map.
//!
//! The language: `=`, `<>`, `>`, `>=`, `<`, `<=`, `[NOT] BETWEEN x AND y`,
//! `[NOT] IN ('a', …)`, `IS [NOT] NULL`, `AND`, `OR`, `NOT`, parentheses, `TRUE`, `FALSE`,
//! `NULL`, unary `+`/`-`, and `[NOT] CONTAINS|STARTSWITH|ENDSWITH 'text'`; string literals
//! in single quotes (`''` escapes a quote), integer (`42`, `42L`) and decimal (`4.2`, `.5`,
//! `1E3`) literals, `--` and `/* */` comments. Keywords are case-insensitive; property names
//! (`[A-Za-z_$][A-Za-z0-9_$]*`) are case-sensitive. `TAGS`, `KEYS` and the other system
//! properties are ordinary properties.
//!
//! Semantics (three-valued logic, conversions) are in the `eval` module's documentation:
//! a missing property makes a comparison unknown, a message matches only when the whole
//! expression is TRUE, and a property that cannot be read as the number it is compared with
//! makes the evaluation fail (no match).
//!
//! Differences from Java, all at the edges: integer literals and conversions are 64-bit
//! throughout (Java narrows literals that fit to `Integer`, so `a = 5` with `a=3000000000`
//! throws there and is FALSE here); an integer literal beyond 64 bits is refused at parse
//! time (Java keeps a `BigDecimal` that compares with nothing); a `--` comment may end the
//! expression without a newline.
//!
//! Bounds: the text is at most [`MAX_EXPRESSION_LEN_BYTES`], parentheses and unary operators
//! nest at most [`MAX_NESTING_DEPTH`] deep, and the tree has at most [`MAX_NODE_COUNT`] nodes,
//! which bounds the recursion of parsing and evaluation whatever a peer sends.

mod eval;
mod lexer;
mod parser;

use std::fmt;
use std::str::FromStr;

/// The `expressionType` of SQL92 subscriptions (`ExpressionType.SQL92`).
pub const EXPRESSION_TYPE_SQL92: &str = "SQL92";
/// The `expressionType` of tag subscriptions (`ExpressionType.TAG`, the default).
pub const EXPRESSION_TYPE_TAG: &str = "TAG";
/// Longest accepted expression text, in bytes.
pub const MAX_EXPRESSION_LEN_BYTES: usize = 16 * 1024;
/// Deepest accepted nesting of parentheses and unary operators.
pub const MAX_NESTING_DEPTH: usize = 64;
/// Most nodes an expression tree may have (an `IN` list counts as one).
pub const MAX_NODE_COUNT: usize = 1024;

/// Whether an `expressionType` names SQL92 (case-insensitive, as Tern accepts `sql92` too;
/// absent, empty or `TAG` mean tags).
pub fn is_sql92(expression_type: &str) -> bool {
    expression_type
        .trim()
        .eq_ignore_ascii_case(EXPRESSION_TYPE_SQL92)
}

/// Why an expression does not compile. Positions are byte offsets into the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The text is empty or blank.
    #[error("empty expression")]
    Empty,
    /// The text is longer than [`MAX_EXPRESSION_LEN_BYTES`].
    #[error("expression is {len_bytes} bytes, more than {max_bytes}")]
    TooLong {
        /// Length of the text.
        len_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// A character that starts no token.
    #[error("unexpected character {ch:?} at byte {pos}")]
    UnexpectedChar {
        /// Where.
        pos: usize,
        /// The character.
        ch: char,
    },
    /// A string literal without its closing quote.
    #[error("unterminated string literal starting at byte {pos}")]
    UnterminatedString {
        /// Where the literal starts.
        pos: usize,
    },
    /// A `/*` comment without `*/`.
    #[error("unterminated comment starting at byte {pos}")]
    UnterminatedComment {
        /// Where the comment starts.
        pos: usize,
    },
    /// A malformed or out-of-range number literal.
    #[error("invalid number literal {text:?} at byte {pos}")]
    InvalidNumber {
        /// Where.
        pos: usize,
        /// The literal's text.
        text: String,
    },
    /// A token the grammar does not allow here.
    #[error("expected {expected} at byte {pos}, found {found}")]
    Unexpected {
        /// Where.
        pos: usize,
        /// What the grammar wanted.
        expected: &'static str,
        /// What was there.
        found: String,
    },
    /// Well-formed but refused by RocketMQ's compile-time checks (comparing a string with
    /// `>`, `NULL` with `=`, a non-boolean top level, reversed `BETWEEN` bounds, ...).
    #[error("{reason} (at byte {pos})")]
    Invalid {
        /// Where the offending operator or operand is.
        pos: usize,
        /// Which rule.
        reason: &'static str,
    },
    /// Nested deeper than [`MAX_NESTING_DEPTH`].
    #[error("expression nests deeper than {max}")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// More than [`MAX_NODE_COUNT`] nodes.
    #[error("expression has more than {max} nodes")]
    TooManyNodes {
        /// The limit.
        max: usize,
    },
}

/// Why one evaluation failed (Java throws; the message does not match).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A string had to be read as a number and is not one (its first 32 characters).
    #[error("cannot read {value:?} as a number")]
    NotANumber {
        /// The start of the offending value.
        value: String,
    },
    /// A logical operator got a non-boolean operand.
    #[error("logical operand is not a boolean")]
    NotBoolean,
}

/// A compiled SQL92 selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    source: String,
    root: parser::Node,
}

impl Expression {
    /// Compiles `sql`.
    ///
    /// # Errors
    /// [`FilterError`] when the text is too long, does not lex or parse, breaks one of
    /// RocketMQ's compile-time checks, or exceeds the nesting or size bounds.
    pub fn parse(sql: &str) -> Result<Self, FilterError> {
        if sql.len() > MAX_EXPRESSION_LEN_BYTES {
            return Err(FilterError::TooLong {
                len_bytes: sql.len(),
                max_bytes: MAX_EXPRESSION_LEN_BYTES,
            });
        }
        let tokens = lexer::tokenize(sql)?;
        let root = parser::Parser::new(tokens).parse()?;
        Ok(Expression {
            source: sql.to_string(),
            root,
        })
    }

    /// The text it was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression: `Some(true)`/`Some(false)`, or `None` for unknown (a
    /// comparison with a missing property decided the outcome). `props(name)` gives a
    /// property's value, `None` when the message lacks it.
    ///
    /// # Errors
    /// [`EvalError`] when a property cannot be converted as a comparison requires.
    pub fn evaluate<'v, F>(&'v self, props: F) -> Result<Option<bool>, EvalError>
    where
        F: Fn(&str) -> Option<&'v str>,
    {
        match eval::eval(&self.root, &props)? {
            eval::Value::Bool(b) => Ok(Some(b)),
            eval::Value::Null => Ok(None),
            _ => Err(EvalError::NotBoolean),
        }
    }

    /// Whether a message with these properties is selected: the expression is TRUE (unknown
    /// and evaluation errors do not match, as in RocketMQ's `ExpressionMessageFilter`).
    pub fn matches<'v, F>(&'v self, props: F) -> bool
    where
        F: Fn(&str) -> Option<&'v str>,
    {
        matches!(self.evaluate(props), Ok(Some(true)))
    }
}

impl FromStr for Expression {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Expression::parse(s)
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}
