//! Tokens of the SQL92 selector language (RocketMQ `SelectorParser.jj`, token section).
//!
//! Whitespace is space, tab, CR, LF and form feed; `-- …` line comments and `/* … */` block
//! comments are skipped. Keywords and identifiers are case-insensitive ASCII; an identifier is
//! `[A-Za-z_$][A-Za-z0-9_$]*` and keeps its spelling. String literals are single-quoted with
//! `''` as the escaped quote. Integer literals are `0` or `[1-9][0-9]*` with an optional `L`;
//! decimal literals are `5.5`, `5.`, `.5`, with an optional exponent (`5E10`, `5.5e-3`).

use super::FilterError;

/// One token with the byte position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) pos: usize,
}

/// Token kinds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    Not,
    And,
    Or,
    Between,
    In,
    True,
    False,
    Null,
    Is,
    Contains,
    StartsWith,
    EndsWith,
    Ident(String),
    Str(String),
    Long(i64),
    Double(f64),
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Eof,
}

impl TokenKind {
    /// A short description for error messages (never the content of a string literal).
    pub(crate) fn describe(&self) -> String {
        match self {
            TokenKind::Ident(name) => format!("identifier {name}"),
            TokenKind::Str(_) => "string literal".into(),
            TokenKind::Long(v) => format!("number {v}"),
            TokenKind::Double(v) => format!("number {v}"),
            TokenKind::Eof => "end of expression".into(),
            other => format!("{other:?}").to_uppercase(),
        }
    }
}

fn keyword(word: &str) -> Option<TokenKind> {
    let kind = match word.to_ascii_uppercase().as_str() {
        "NOT" => TokenKind::Not,
        "AND" => TokenKind::And,
        "OR" => TokenKind::Or,
        "BETWEEN" => TokenKind::Between,
        "IN" => TokenKind::In,
        "TRUE" => TokenKind::True,
        "FALSE" => TokenKind::False,
        "NULL" => TokenKind::Null,
        "IS" => TokenKind::Is,
        "CONTAINS" => TokenKind::Contains,
        "STARTSWITH" => TokenKind::StartsWith,
        "ENDSWITH" => TokenKind::EndsWith,
        _ => return None,
    };
    Some(kind)
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$'
}

fn is_ident_part(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Splits `src` into tokens, ending with [`TokenKind::Eof`].
///
/// # Errors
/// [`FilterError`] for a character outside the language, an unterminated string or comment,
/// or a malformed number.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, FilterError> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        match b {
            b' ' | b'\t' | b'\r' | b'\n' | 0x0c => {
                i += 1;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let Some(end) = src[i + 2..].find("*/") else {
                    return Err(FilterError::UnterminatedComment { pos: start });
                };
                i += 2 + end + 2;
                continue;
            }
            b'\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    let Some(rest) = src.get(i..) else {
                        return Err(FilterError::UnterminatedString { pos: start });
                    };
                    let Some(q) = rest.find('\'') else {
                        return Err(FilterError::UnterminatedString { pos: start });
                    };
                    value.push_str(&rest[..q]);
                    i += q + 1;
                    if bytes.get(i) == Some(&b'\'') {
                        value.push('\'');
                        i += 1;
                    } else {
                        break;
                    }
                }
                tokens.push(Token {
                    kind: TokenKind::Str(value),
                    pos: start,
                });
                continue;
            }
            b'0'..=b'9' | b'.' => {
                let (kind, end) = number(src, start)?;
                tokens.push(Token { kind, pos: start });
                i = end;
                continue;
            }
            _ => {}
        }
        if is_ident_start(b) {
            while i < bytes.len() && is_ident_part(bytes[i]) {
                i += 1;
            }
            let word = &src[start..i];
            let kind = keyword(word).unwrap_or_else(|| TokenKind::Ident(word.to_string()));
            tokens.push(Token { kind, pos: start });
            continue;
        }
        let two = bytes.get(i + 1).copied();
        let (kind, len) = match (b, two) {
            (b'<', Some(b'>')) => (TokenKind::Ne, 2),
            (b'<', Some(b'=')) => (TokenKind::Le, 2),
            (b'>', Some(b'=')) => (TokenKind::Ge, 2),
            (b'<', _) => (TokenKind::Lt, 1),
            (b'>', _) => (TokenKind::Gt, 1),
            (b'=', _) => (TokenKind::Eq, 1),
            (b'(', _) => (TokenKind::LParen, 1),
            (b')', _) => (TokenKind::RParen, 1),
            (b',', _) => (TokenKind::Comma, 1),
            (b'+', _) => (TokenKind::Plus, 1),
            (b'-', _) => (TokenKind::Minus, 1),
            _ => {
                let ch = src[start..].chars().next().unwrap_or('\u{fffd}');
                return Err(FilterError::UnexpectedChar { pos: start, ch });
            }
        };
        tokens.push(Token { kind, pos: start });
        i += len;
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        pos: src.len(),
    });
    Ok(tokens)
}

/// Scans a number literal starting at `start`; returns it and the byte after it.
fn number(src: &str, start: usize) -> Result<(TokenKind, usize), FilterError> {
    let bytes = src.as_bytes();
    let digits = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let int_end = digits(start);
    let mut i = int_end;
    let mut is_float = false;
    if bytes.get(i) == Some(&b'.') {
        is_float = true;
        i = digits(i + 1);
    }
    // An exponent needs at least one digit after the optional sign.
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let k = digits(j);
        if k > j {
            is_float = true;
            i = k;
        }
    }
    let text = &src[start..i];
    let end = i.max(start + 1).min(src.len());
    let invalid = || FilterError::InvalidNumber {
        pos: start,
        text: src.get(start..end).unwrap_or_default().to_string(),
    };
    if is_float {
        // `.` alone, or `.E5`, has no digits at all.
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(e) => (&text[..e], &text[e..]),
            None => (text, ""),
        };
        let mantissa_digits = mantissa.trim_end_matches('.');
        if mantissa_digits.is_empty() || mantissa_digits == "." {
            return Err(invalid());
        }
        let normalized = format!("{mantissa_digits}{exponent}");
        let value: f64 = normalized.parse().map_err(|_| invalid())?;
        if is_ident_part(bytes.get(i).copied().unwrap_or(b' ')) {
            return Err(invalid());
        }
        return Ok((TokenKind::Double(value), i));
    }
    if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
        return Err(invalid());
    }
    if matches!(bytes.get(i), Some(b'l' | b'L')) {
        i += 1;
    }
    if is_ident_part(bytes.get(i).copied().unwrap_or(b' ')) {
        return Err(invalid());
    }
    let value: i64 = text.parse().map_err(|_| invalid())?;
    Ok((TokenKind::Long(value), i))
}
