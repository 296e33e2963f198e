//! SQL92 filter: parser acceptance and refusals, and evaluation with RocketMQ's three-valued
//! logic and conversions, checked against hand-computed truth tables; plus property tests
//! that arbitrary input never panics and that `BETWEEN`/`IN` agree with their expansions.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tern_common::filter::{EvalError, Expression, FilterError};

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn eval(sql: &str, pairs: &[(&str, &str)]) -> Result<Option<bool>, EvalError> {
    let expr = Expression::parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let map = props(pairs);
    expr.evaluate(|name| map.get(name).map(String::as_str))
}

fn matches(sql: &str, pairs: &[(&str, &str)]) -> bool {
    eval(sql, pairs) == Ok(Some(true))
}

#[test]
fn numeric_comparisons_convert_string_properties() {
    for (sql, expected) in [
        ("a > 5", true),
        ("a >= 7", true),
        ("a < 7", false),
        ("a <= 7", true),
        ("a = 7", true),
        ("a <> 7", false),
        ("a = 7.0", true),
        ("a > 6.5", true),
        ("a BETWEEN 1 AND 7", true),
        ("a BETWEEN 8 AND 10", false),
        ("a NOT BETWEEN 8 AND 10", true),
        ("a > -1", true),
        ("-a < 0", false), // negating a string property is NULL
    ] {
        assert_eq!(matches(sql, &[("a", "7")]), expected, "{sql}");
    }
}

#[test]
fn string_equality_and_in() {
    let p = [("TAGS", "T1"), ("b", "x'y")];
    assert!(matches("TAGS = 'T1'", &p));
    assert!(!matches("TAGS = 'T2'", &p));
    assert!(matches("TAGS <> 'T2'", &p));
    assert!(matches("b = 'x''y'", &p));
    assert!(matches("TAGS IN ('T0', 'T1')", &p));
    assert!(!matches("TAGS NOT IN ('T0', 'T1')", &p));
    assert!(matches("TAGS NOT IN ('T0')", &p));
}

#[test]
fn string_patterns() {
    let p = [("s", "hello world")];
    assert!(matches("s CONTAINS 'lo w'", &p));
    assert!(matches("s STARTSWITH 'hell'", &p));
    assert!(matches("s ENDSWITH 'world'", &p));
    assert!(!matches("s NOT CONTAINS 'lo'", &p));
    assert!(matches("s NOT STARTSWITH 'world'", &p));
    assert!(!matches("s NOT ENDSWITH 'ld'", &p));
    assert_eq!(eval("missing CONTAINS 'x'", &p), Ok(None));
    assert_eq!(eval("missing NOT CONTAINS 'x'", &p), Ok(None));
}

#[test]
fn missing_properties_follow_three_valued_logic() {
    let none: [(&str, &str); 0] = [];
    assert_eq!(eval("a > 5", &none), Ok(None));
    assert_eq!(eval("a = 5", &none), Ok(None));
    // Java's equality: a constant on the left and a missing property on the right is FALSE.
    assert_eq!(eval("5 = a", &none), Ok(Some(false)));
    assert_eq!(eval("a <> 5", &none), Ok(None));
    assert_eq!(eval("NOT (a > 5)", &none), Ok(None));
    assert_eq!(eval("a IN ('x')", &none), Ok(None));
    assert_eq!(eval("a IS NULL", &none), Ok(Some(true)));
    assert_eq!(eval("a IS NOT NULL", &none), Ok(Some(false)));
    // Kleene AND / OR.
    assert_eq!(eval("a > 5 AND FALSE", &none), Ok(Some(false)));
    assert_eq!(eval("FALSE AND a > 5", &none), Ok(Some(false)));
    assert_eq!(eval("a > 5 AND TRUE", &none), Ok(None));
    assert_eq!(eval("a > 5 OR TRUE", &none), Ok(Some(true)));
    assert_eq!(eval("a > 5 OR FALSE", &none), Ok(None));
    assert_eq!(eval("NULL", &none), Ok(None));
    assert_eq!(eval("TRUE", &none), Ok(Some(true)));
    assert_eq!(eval("NOT FALSE", &none), Ok(Some(true)));
}

#[test]
fn unconvertible_values_fail_the_evaluation() {
    assert!(matches!(
        eval("a > 5", &[("a", "abc")]),
        Err(EvalError::NotANumber { .. })
    ));
    assert!(eval("a = 5", &[("a", "5.5")]).is_err());
    assert!(!matches("a = 5 OR TRUE", &[("a", "x")]));
    // Two strings ordered are both read as doubles.
    assert!(matches("a > b", &[("a", "10"), ("b", "9")]));
    assert!(eval("a > b", &[("a", "x"), ("b", "9")]).is_err());
    // Two strings compared for equality stay strings.
    assert!(matches("a = b", &[("a", "x"), ("b", "x")]));
    // A bare property is a boolean only if it is a Boolean, which a string never is.
    assert_eq!(eval("a", &[("a", "true")]), Ok(Some(false)));
    assert_eq!(eval("a", &[]), Ok(None));
    assert!(matches("a = TRUE", &[("a", "TRUE")]));
}

#[test]
fn keywords_are_case_insensitive_and_comments_are_skipped() {
    let p = [("a", "7"), ("TAGS", "T1")];
    assert!(matches(
        "a between 1 and 9 /* range */ and tags is null or TAGS in ('T1') -- tail",
        &p
    ));
    assert!(matches("(a > 5) AND (TAGS = 'T1')", &p));
    assert!(matches("a > 5L AND a < .8E1", &p));
}

#[test]
fn refused_expressions() {
    for sql in [
        "",
        "   ",
        "a >",
        "a > 'x'",
        "'x' < a",
        "a = NULL",
        "a > TRUE",
        "a BETWEEN 9 AND 1",
        "a BETWEEN NULL AND 1",
        "5",
        "'x'",
        "a IN (1, 2)",
        "5 IN ('x')",
        "NOT a > 5",
        "a > 5 AND",
        "(a > 5",
        "a > 5)",
        "a == 5",
        "a != 5",
        "a > 007",
        "a > 99999999999999999999",
        "a = 'open",
        "a = 1 /* open",
        "a.b = 1",
        "TRUE = 5",
        "a CONTAINS b",
        "a LIKE 'x%'",
    ] {
        assert!(
            Expression::parse(sql).is_err(),
            "{sql:?} should not compile"
        );
    }
    assert_eq!(Expression::parse(""), Err(FilterError::Empty));
}

#[test]
fn bounds_hold_against_hostile_input() {
    let deep = format!("{}a > 1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(Expression::parse(&deep).is_err());
    let nots = format!("{}TRUE", "NOT ".repeat(3_000));
    assert!(matches!(
        Expression::parse(&nots),
        Err(FilterError::TooDeep { .. })
    ));
    let wide = vec!["a = 1"; 3_000].join(" AND ");
    assert!(matches!(
        Expression::parse(&wide),
        Err(FilterError::TooManyNodes { .. } | FilterError::TooLong { .. })
    ));
    let long = "a".repeat(100_000);
    assert!(matches!(
        Expression::parse(&long),
        Err(FilterError::TooLong { .. })
    ));
}

#[test]
fn source_and_display_round_trip() {
    let expr: Expression = "a > 5 AND TAGS = 'T1'".parse().unwrap();
    assert_eq!(expr.source(), "a > 5 AND TAGS = 'T1'");
    assert_eq!(expr.to_string(), expr.source());
}

proptest! {
    #[test]
    fn parse_never_panics(s in "\\PC{0,200}") {
        let _ = Expression::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_selector_like_text(
        s in "[ a-c0-9'().,=<>+*/-]{0,40}|((a|b|NOT|AND|OR|IN|BETWEEN|IS|NULL|TRUE|1|2.5|'x'|\\(|\\)|,|=|<>|>|<=) ){0,20}"
    ) {
        if let Ok(expr) = Expression::parse(&s) {
            let _ = expr.evaluate(|n| if n == "a" { Some("3") } else { None });
        }
    }

    #[test]
    fn between_agrees_with_its_expansion(v in -50i64..50, lo in -20i64..20, width in 0i64..20) {
        let hi = lo + width;
        let value = v.to_string();
        let p = [("a", value.as_str())];
        prop_assert_eq!(
            matches(&format!("a BETWEEN {lo} AND {hi}"), &p),
            v >= lo && v <= hi
        );
        prop_assert_eq!(
            matches(&format!("a NOT BETWEEN {lo} AND {hi}"), &p),
            v < lo || v > hi
        );
    }

    #[test]
    fn comparisons_agree_with_integers(v in any::<i32>(), c in any::<i32>()) {
        let value = v.to_string();
        let p = [("a", value.as_str())];
        let lit = if c < 0 { format!("-{}", i64::from(c).abs()) } else { c.to_string() };
        prop_assert_eq!(matches(&format!("a > {lit}"), &p), v > c);
        prop_assert_eq!(matches(&format!("a <= {lit}"), &p), v <= c);
        prop_assert_eq!(matches(&format!("a = {lit}"), &p), v == c);
        prop_assert_eq!(matches(&format!("a <> {lit}"), &p), v != c);
    }

    #[test]
    fn in_agrees_with_membership(v in "[a-d]", items in proptest::collection::vec("[a-d]", 1..5)) {
        let list = items.iter().map(|i| format!("'{i}'")).collect::<Vec<_>>().join(", ");
        let p = [("x", v.as_str())];
        prop_assert_eq!(matches(&format!("x IN ({list})"), &p), items.contains(&v));
        prop_assert_eq!(matches(&format!("x NOT IN ({list})"), &p), !items.contains(&v));
    }
}
