//! Evaluation with RocketMQ's three-valued logic (`LogicExpression`, `UnaryExpression`,
//! `ComparisonExpression` with `CONVERT_STRING_EXPRESSIONS` on, as `SelectorParser.parse`
//! sets it).
//!
//! A missing property is `NULL`. Comparisons with `NULL` are unknown, except `x = p` with a
//! constant or present `x` and a missing `p`, which Java answers FALSE; `AND`/`OR`/`NOT` are
//! Kleene's: `FALSE AND unknown` is FALSE, `TRUE OR unknown` is TRUE, `NOT unknown` is
//! unknown. A message matches only when the whole expression is TRUE.
//!
//! Property values are strings. Compared with a number they are converted (`Long.valueOf`
//! for an integer literal, `Double.valueOf` for a decimal one), and two strings under
//! `> >= < <=` are both read as doubles; a string that does not convert makes the whole
//! evaluation fail ([`EvalError`]), which the broker treats as no match, as
//! `ExpressionMessageFilter` does when the evaluation throws.

use std::cmp::Ordering;

use super::parser::{literal_value, CmpOp, Node, StrOp};
use super::EvalError;

/// A runtime value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'v> {
    Null,
    Str(&'v str),
    Long(i64),
    Double(f64),
    Bool(bool),
}

fn not_a_number(s: &str) -> EvalError {
    EvalError::NotANumber {
        value: s.chars().take(32).collect(),
    }
}

/// Java's `Long.valueOf(String)`: optional sign, ASCII digits, no spaces.
fn parse_long(s: &str) -> Result<i64, EvalError> {
    s.parse::<i64>().map_err(|_| not_a_number(s))
}

/// Java's `Double.valueOf(String)`: surrounding whitespace allowed, an optional `d`/`f`
/// suffix, `NaN` and `Infinity`.
fn parse_double(s: &str) -> Result<f64, EvalError> {
    let t = s.trim_matches(|c: char| c <= ' ');
    let t = t
        .strip_suffix(['d', 'D', 'f', 'F'])
        .filter(|r| !r.is_empty())
        .unwrap_or(t);
    let unsigned = t.trim_start_matches(['+', '-']);
    if unsigned == "NaN" {
        return Ok(f64::NAN);
    }
    if unsigned == "Infinity" {
        return Ok(if t.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    // Rust also accepts "inf"/"nan" spellings Java refuses.
    if unsigned
        .bytes()
        .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
    {
        return Err(not_a_number(s));
    }
    t.parse::<f64>().map_err(|_| not_a_number(s))
}

/// Java's `Double.compareTo`: -0.0 < 0.0, NaN equals itself and is above everything.
fn cmp_double(a: f64, b: f64) -> i32 {
    let ord = match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.total_cmp(&b),
    };
    ord as i32
}

/// RocketMQ's `__compare(lv, rv, convertStringExpressions = true)`: the sign of `lv - rv`
/// after converting the operands to a common type; incomparable kinds give -1.
///
/// # Errors
/// [`EvalError::NotANumber`] when a string must become a number and does not parse.
pub(crate) fn compare(lv: &Value<'_>, rv: &Value<'_>) -> Result<i32, EvalError> {
    use Value::{Bool, Double, Long, Str};
    let ord = match (*lv, *rv) {
        (Str(a), Str(b)) => a.cmp(b) as i32,
        (Long(a), Long(b)) => a.cmp(&b) as i32,
        (Double(a), Double(b)) => cmp_double(a, b),
        (Bool(a), Bool(b)) => a.cmp(&b) as i32,
        (Long(a), Double(b)) => cmp_double(a as f64, b),
        (Double(a), Long(b)) => cmp_double(a, b as f64),
        (Long(a), Str(b)) => a.cmp(&parse_long(b)?) as i32,
        (Double(a), Str(b)) => cmp_double(a, parse_double(b)?),
        (Str(a), Long(b)) => parse_long(a)?.cmp(&b) as i32,
        (Str(a), Double(b)) => cmp_double(parse_double(a)?, b),
        (Str(a), Bool(b)) => a.eq_ignore_ascii_case("true").cmp(&b) as i32,
        // Java's Boolean-on-the-left branch casts the wrong operand and throws; Tern converts
        // the string symmetrically instead.
        (Bool(a), Str(b)) => a.cmp(&b.eq_ignore_ascii_case("true")) as i32,
        // Null never reaches here (callers handle it); other mixes are incomparable.
        _ => -1,
    };
    Ok(ord)
}

fn truth(v: bool) -> Value<'static> {
    Value::Bool(v)
}

fn as_tri(v: Value<'_>) -> Result<Option<bool>, EvalError> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(b)),
        _ => Err(EvalError::NotBoolean),
    }
}

/// Evaluates `node` with `props` giving a property's value (`None` = absent).
pub(crate) fn eval<'v, F>(node: &'v Node, props: &F) -> Result<Value<'v>, EvalError>
where
    F: Fn(&str) -> Option<&'v str>,
{
    Ok(match node {
        Node::Literal(l) => literal_value(l),
        Node::Property(name) => props(name).map_or(Value::Null, Value::Str),
        Node::Negate(inner) => match eval(inner, props)? {
            Value::Long(v) => Value::Long(v.wrapping_neg()),
            Value::Double(v) => Value::Double(-v),
            _ => Value::Null,
        },
        Node::Not(inner) => match as_tri(eval(inner, props)?)? {
            None => Value::Null,
            Some(b) => truth(!b),
        },
        Node::BoolCast(inner) => match eval(inner, props)? {
            Value::Null => Value::Null,
            Value::Bool(b) => truth(b),
            _ => truth(false),
        },
        Node::And(l, r) => {
            let lv = as_tri(eval(l, props)?)?;
            if lv == Some(false) {
                return Ok(truth(false));
            }
            let rv = as_tri(eval(r, props)?)?;
            match (lv, rv) {
                (_, Some(false)) => truth(false),
                (Some(true), Some(true)) => truth(true),
                _ => Value::Null,
            }
        }
        Node::Or(l, r) => {
            let lv = as_tri(eval(l, props)?)?;
            if lv == Some(true) {
                return Ok(truth(true));
            }
            let rv = as_tri(eval(r, props)?)?;
            match (lv, rv) {
                (_, Some(true)) => truth(true),
                (Some(false), Some(false)) => truth(false),
                _ => Value::Null,
            }
        }
        Node::Compare(CmpOp::Eq, l, r) => {
            let lv = eval(l, props)?;
            let rv = eval(r, props)?;
            match (lv, rv) {
                (Value::Null, Value::Null) => truth(true),
                (Value::Null, _) => Value::Null,
                (_, Value::Null) => truth(false),
                _ if same_kind_equal(&lv, &rv) => truth(true),
                _ => truth(compare(&lv, &rv)? == 0),
            }
        }
        Node::Compare(op, l, r) => {
            let lv = eval(l, props)?;
            if lv == Value::Null {
                return Ok(Value::Null);
            }
            let rv = eval(r, props)?;
            if rv == Value::Null {
                return Ok(Value::Null);
            }
            let ord = match (lv, rv) {
                (Value::Str(a), Value::Str(b)) => cmp_double(parse_double(a)?, parse_double(b)?),
                _ => compare(&lv, &rv)?,
            };
            truth(match op {
                CmpOp::Gt => ord > 0,
                CmpOp::Ge => ord >= 0,
                CmpOp::Lt => ord < 0,
                CmpOp::Le => ord <= 0,
                CmpOp::Eq => ord == 0,
            })
        }
        Node::In {
            property,
            list,
            negated,
        } => match props(property) {
            None => Value::Null,
            Some(v) => truth(list.iter().any(|item| item == v) ^ negated),
        },
        Node::Pattern {
            op,
            operand,
            pattern,
            negated,
        } => match eval(operand, props)? {
            Value::Str(s) => {
                let hit = match op {
                    StrOp::Contains => s.contains(pattern.as_str()),
                    StrOp::StartsWith => s.starts_with(pattern.as_str()),
                    StrOp::EndsWith => s.ends_with(pattern.as_str()),
                };
                truth(hit ^ negated)
            }
            Value::Null => Value::Null,
            _ => truth(false),
        },
    })
}

/// Java's `lv.equals(rv)`: same class and same value (`Double.equals` compares bits).
fn same_kind_equal(lv: &Value<'_>, rv: &Value<'_>) -> bool {
    match (lv, rv) {
        (Value::Double(a), Value::Double(b)) => a.to_bits() == b.to_bits(),
        _ => lv == rv,
    }
}
