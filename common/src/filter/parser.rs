//! Recursive-descent parser for the selector grammar of RocketMQ's `SelectorParser.jj`,
//! including its compile-time checks (`ComparisonExpression.checkLessThanOperand`,
//! `checkEqualOperand`, `createBetween`, `createInFilter`, `asBooleanExpression`).
//!
//! Precedence, loosest first: `OR`; `AND`; `=`, `<>`, `IS [NOT] NULL`; `>`, `>=`, `<`, `<=`,
//! `[NOT] CONTAINS|STARTSWITH|ENDSWITH 'lit'`, `[NOT] BETWEEN x AND y`, `[NOT] IN ('lit', …)`;
//! unary `+`, `-`, `NOT`; literals, properties and parentheses. As in RocketMQ, unary `NOT`
//! binds tighter than comparisons, so `NOT a > 5` is refused (`NOT (a > 5)` is meant).

use super::eval::{compare, Value};
use super::lexer::{Token, TokenKind};
use super::{FilterError, MAX_NESTING_DEPTH, MAX_NODE_COUNT};

/// A literal of the language.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Str(String),
    Long(i64),
    Double(f64),
    Bool(bool),
    Null,
}

/// Ordering and equality operators (`<>` is `NOT (=)`, as in RocketMQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

/// String-pattern operators (RocketMQ 5 `CONTAINS`, `STARTSWITH`, `ENDSWITH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// The compiled expression tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Literal(Literal),
    Property(String),
    Negate(Box<Node>),
    Not(Box<Node>),
    /// A property used where a boolean is expected (`createBooleanCast`).
    BoolCast(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Compare(CmpOp, Box<Node>, Box<Node>),
    In {
        property: String,
        list: Vec<String>,
        negated: bool,
    },
    Pattern {
        op: StrOp,
        operand: Box<Node>,
        pattern: String,
        negated: bool,
    },
}

impl Node {
    /// Whether Java would see a `BooleanExpression` (the TRUE/FALSE/NULL constants included).
    fn is_boolean(&self) -> bool {
        match self {
            Node::Literal(l) => matches!(l, Literal::Bool(_) | Literal::Null),
            Node::Property(_) | Node::Negate(_) => false,
            _ => true,
        }
    }
}

pub(crate) struct Parser {
    tokens: Vec<Token>,
    next: usize,
    depth: usize,
    nodes: usize,
}

impl Parser {
    pub(crate) fn new(tokens: Vec<Token>) -> Self {
        Parser {
            tokens,
            next: 0,
            depth: 0,
            nodes: 0,
        }
    }

    /// Parses the whole token list as one boolean expression.
    pub(crate) fn parse(mut self) -> Result<Node, FilterError> {
        if self.peek() == &TokenKind::Eof {
            return Err(FilterError::Empty);
        }
        let pos = self.pos();
        let node = self.or_expression()?;
        self.expect(&TokenKind::Eof, "end of expression")?;
        self.as_boolean(node, pos)
    }

    fn peek(&self) -> &TokenKind {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &TokenKind {
        // The list always ends with Eof, which is never consumed past.
        let i = (self.next + ahead).min(self.tokens.len().saturating_sub(1));
        self.tokens.get(i).map_or(&TokenKind::Eof, |t| &t.kind)
    }

    fn pos(&self) -> usize {
        let i = self.next.min(self.tokens.len().saturating_sub(1));
        self.tokens.get(i).map_or(0, |t| t.pos)
    }

    fn bump(&mut self) -> TokenKind {
        let kind = self.peek().clone();
        if self.next < self.tokens.len() {
            self.next += 1;
        }
        kind
    }

    fn unexpected(&self, expected: &'static str) -> FilterError {
        FilterError::Unexpected {
            pos: self.pos(),
            expected,
            found: self.peek().describe(),
        }
    }

    fn expect(&mut self, kind: &TokenKind, expected: &'static str) -> Result<(), FilterError> {
        if self.peek() == kind {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    /// Counts a new node against [`MAX_NODE_COUNT`] (which also bounds the tree's depth, and
    /// so the recursion of evaluation and drop).
    fn node(&mut self, node: Node) -> Result<Node, FilterError> {
        self.nodes += 1;
        if self.nodes > MAX_NODE_COUNT {
            return Err(FilterError::TooManyNodes {
                max: MAX_NODE_COUNT,
            });
        }
        Ok(node)
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_NESTING_DEPTH {
            return Err(FilterError::TooDeep {
                max: MAX_NESTING_DEPTH,
            });
        }
        Ok(())
    }

    fn as_boolean(&mut self, node: Node, pos: usize) -> Result<Node, FilterError> {
        if node.is_boolean() {
            Ok(node)
        } else if matches!(node, Node::Property(_)) {
            self.node(Node::BoolCast(Box::new(node)))
        } else {
            Err(FilterError::Invalid {
                pos,
                reason: "expression will not result in a boolean value",
            })
        }
    }

    fn or_expression(&mut self) -> Result<Node, FilterError> {
        let pos = self.pos();
        let mut left = self.and_expression()?;
        while self.peek() == &TokenKind::Or {
            self.bump();
            let rpos = self.pos();
            let right = self.and_expression()?;
            let l = self.as_boolean(left, pos)?;
            let r = self.as_boolean(right, rpos)?;
            left = self.node(Node::Or(Box::new(l), Box::new(r)))?;
        }
        Ok(left)
    }

    fn and_expression(&mut self) -> Result<Node, FilterError> {
        let pos = self.pos();
        let mut left = self.equality_expression()?;
        while self.peek() == &TokenKind::And {
            self.bump();
            let rpos = self.pos();
            let right = self.equality_expression()?;
            let l = self.as_boolean(left, pos)?;
            let r = self.as_boolean(right, rpos)?;
            left = self.node(Node::And(Box::new(l), Box::new(r)))?;
        }
        Ok(left)
    }

    fn equality_expression(&mut self) -> Result<Node, FilterError> {
        let mut left = self.comparison_expression()?;
        loop {
            let pos = self.pos();
            match self.peek() {
                TokenKind::Eq | TokenKind::Ne => {
                    let negated = self.bump() == TokenKind::Ne;
                    let right = self.comparison_expression()?;
                    check_equal_operand(&left, pos)?;
                    check_equal_operand(&right, pos)?;
                    if let (Node::Literal(l), Node::Literal(r)) = (&left, &right) {
                        let l_bool = matches!(l, Literal::Bool(_) | Literal::Null);
                        let r_bool = matches!(r, Literal::Bool(_) | Literal::Null);
                        if l_bool && !r_bool {
                            return Err(FilterError::Invalid {
                                pos,
                                reason: "a boolean cannot be compared with a non-boolean",
                            });
                        }
                    }
                    left = self.node(Node::Compare(CmpOp::Eq, Box::new(left), Box::new(right)))?;
                    if negated {
                        left = self.node(Node::Not(Box::new(left)))?;
                    }
                }
                TokenKind::Is => {
                    self.bump();
                    let negated = if self.peek() == &TokenKind::Not {
                        self.bump();
                        true
                    } else {
                        false
                    };
                    self.expect(&TokenKind::Null, "NULL")?;
                    left = self.node(Node::Compare(
                        CmpOp::Eq,
                        Box::new(left),
                        Box::new(Node::Literal(Literal::Null)),
                    ))?;
                    if negated {
                        left = self.node(Node::Not(Box::new(left)))?;
                    }
                }
                _ => return Ok(left),
            }
        }
    }

    fn string_literal(&mut self) -> Result<String, FilterError> {
        match self.peek() {
            TokenKind::Str(_) => match self.bump() {
                TokenKind::Str(s) => Ok(s),
                _ => Err(self.unexpected("string literal")),
            },
            _ => Err(self.unexpected("string literal")),
        }
    }

    fn ordering(&mut self, op: CmpOp, left: Node, pos: usize) -> Result<Node, FilterError> {
        let right = self.unary_expr()?;
        check_less_than_operand(&left, pos)?;
        check_less_than_operand(&right, pos)?;
        self.node(Node::Compare(op, Box::new(left), Box::new(right)))
    }

    fn comparison_expression(&mut self) -> Result<Node, FilterError> {
        let mut left = self.unary_expr()?;
        loop {
            let pos = self.pos();
            let negated = self.peek() == &TokenKind::Not
                && matches!(
                    self.peek_at(1),
                    TokenKind::Contains
                        | TokenKind::StartsWith
                        | TokenKind::EndsWith
                        | TokenKind::Between
                        | TokenKind::In
                );
            if negated {
                self.bump();
            }
            left = match self.peek() {
                TokenKind::Gt if !negated => {
                    self.bump();
                    self.ordering(CmpOp::Gt, left, pos)?
                }
                TokenKind::Ge if !negated => {
                    self.bump();
                    self.ordering(CmpOp::Ge, left, pos)?
                }
                TokenKind::Lt if !negated => {
                    self.bump();
                    self.ordering(CmpOp::Lt, left, pos)?
                }
                TokenKind::Le if !negated => {
                    self.bump();
                    self.ordering(CmpOp::Le, left, pos)?
                }
                TokenKind::Contains | TokenKind::StartsWith | TokenKind::EndsWith => {
                    let op = match self.bump() {
                        TokenKind::Contains => StrOp::Contains,
                        TokenKind::StartsWith => StrOp::StartsWith,
                        _ => StrOp::EndsWith,
                    };
                    let pattern = self.string_literal()?;
                    self.node(Node::Pattern {
                        op,
                        operand: Box::new(left),
                        pattern,
                        negated,
                    })?
                }
                TokenKind::Between => {
                    self.bump();
                    let low = self.unary_expr()?;
                    self.expect(&TokenKind::And, "AND")?;
                    let high = self.unary_expr()?;
                    self.between(left, low, high, negated, pos)?
                }
                TokenKind::In => {
                    self.bump();
                    self.expect(&TokenKind::LParen, "(")?;
                    let mut list = vec![self.string_literal()?];
                    while self.peek() == &TokenKind::Comma {
                        self.bump();
                        list.push(self.string_literal()?);
                    }
                    self.expect(&TokenKind::RParen, ")")?;
                    let Node::Property(property) = left else {
                        return Err(FilterError::Invalid {
                            pos,
                            reason: "IN needs a property on its left",
                        });
                    };
                    self.node(Node::In {
                        property,
                        list,
                        negated,
                    })?
                }
                _ => return Ok(left),
            };
        }
    }

    /// `v BETWEEN lo AND hi` is `v >= lo AND v <= hi`; `NOT BETWEEN` is `v < lo OR v > hi`.
    /// Constant bounds must be non-null and ordered (RocketMQ's `createBetween` check).
    fn between(
        &mut self,
        value: Node,
        low: Node,
        high: Node,
        negated: bool,
        pos: usize,
    ) -> Result<Node, FilterError> {
        if !negated {
            if let (Node::Literal(lo), Node::Literal(hi)) = (&low, &high) {
                let (lo, hi) = (literal_value(lo), literal_value(hi));
                if matches!(lo, Value::Null) || matches!(hi, Value::Null) {
                    return Err(FilterError::Invalid {
                        pos,
                        reason: "BETWEEN bounds cannot be NULL",
                    });
                }
                match compare(&hi, &lo) {
                    Ok(ord) if ord < 0 => {
                        return Err(FilterError::Invalid {
                            pos,
                            reason: "BETWEEN needs its low bound at most its high bound",
                        })
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(FilterError::Invalid {
                            pos,
                            reason: "BETWEEN bounds cannot be compared",
                        })
                    }
                }
            }
        }
        for operand in [&value, &low, &high] {
            check_less_than_operand(operand, pos)?;
        }
        let (op_low, op_high) = if negated {
            (CmpOp::Lt, CmpOp::Gt)
        } else {
            (CmpOp::Ge, CmpOp::Le)
        };
        // The value is evaluated twice, as in Java; count its copy too.
        let copy = value.clone();
        self.nodes += count_nodes(&copy);
        let left = self.node(Node::Compare(op_low, Box::new(value), Box::new(low)))?;
        let right = self.node(Node::Compare(op_high, Box::new(copy), Box::new(high)))?;
        if negated {
            self.node(Node::Or(Box::new(left), Box::new(right)))
        } else {
            self.node(Node::And(Box::new(left), Box::new(right)))
        }
    }

    fn unary_expr(&mut self) -> Result<Node, FilterError> {
        self.enter()?;
        let pos = self.pos();
        let node = match self.peek() {
            TokenKind::Plus => {
                self.bump();
                self.unary_expr()?
            }
            TokenKind::Minus => {
                self.bump();
                let operand = self.unary_expr()?;
                self.node(Node::Negate(Box::new(operand)))?
            }
            TokenKind::Not => {
                self.bump();
                let operand = self.unary_expr()?;
                let operand = self.as_boolean(operand, pos)?;
                self.node(Node::Not(Box::new(operand)))?
            }
            _ => self.primary_expr()?,
        };
        self.depth -= 1;
        Ok(node)
    }

    fn primary_expr(&mut self) -> Result<Node, FilterError> {
        let literal = match self.peek() {
            TokenKind::Str(_) | TokenKind::Long(_) | TokenKind::Double(_) => match self.bump() {
                TokenKind::Str(s) => Literal::Str(s),
                TokenKind::Long(v) => Literal::Long(v),
                TokenKind::Double(v) => Literal::Double(v),
                _ => return Err(self.unexpected("literal")),
            },
            TokenKind::True => {
                self.bump();
                Literal::Bool(true)
            }
            TokenKind::False => {
                self.bump();
                Literal::Bool(false)
            }
            TokenKind::Null => {
                self.bump();
                Literal::Null
            }
            TokenKind::Ident(_) => {
                let TokenKind::Ident(name) = self.bump() else {
                    return Err(self.unexpected("property name"));
                };
                return self.node(Node::Property(name));
            }
            TokenKind::LParen => {
                self.bump();
                self.enter()?;
                let inner = self.or_expression()?;
                self.depth -= 1;
                self.expect(&TokenKind::RParen, ")")?;
                return Ok(inner);
            }
            _ => return Err(self.unexpected("a literal, a property or '('")),
        };
        self.node(Node::Literal(literal))
    }
}

fn count_nodes(node: &Node) -> usize {
    match node {
        Node::Literal(_) | Node::Property(_) | Node::In { .. } => 1,
        Node::Negate(n) | Node::Not(n) | Node::BoolCast(n) => 1 + count_nodes(n),
        Node::Pattern { operand, .. } => 1 + count_nodes(operand),
        Node::And(l, r) | Node::Or(l, r) | Node::Compare(_, l, r) => {
            1 + count_nodes(l) + count_nodes(r)
        }
    }
}

/// The runtime value of a literal.
pub(crate) fn literal_value(literal: &Literal) -> Value<'_> {
    match literal {
        Literal::Str(s) => Value::Str(s),
        Literal::Long(v) => Value::Long(*v),
        Literal::Double(v) => Value::Double(*v),
        Literal::Bool(v) => Value::Bool(*v),
        Literal::Null => Value::Null,
    }
}

/// Only numbers, properties and numeric sub-expressions may be ordered.
fn check_less_than_operand(node: &Node, pos: usize) -> Result<(), FilterError> {
    let ok = match node {
        Node::Literal(l) => matches!(l, Literal::Long(_) | Literal::Double(_)),
        other => !other.is_boolean(),
    };
    if ok {
        Ok(())
    } else {
        Err(FilterError::Invalid {
            pos,
            reason: "only numbers and properties can be compared with > >= < <= or BETWEEN",
        })
    }
}

/// `NULL` cannot be an operand of `=` or `<>` (use `IS NULL`).
fn check_equal_operand(node: &Node, pos: usize) -> Result<(), FilterError> {
    if matches!(node, Node::Literal(Literal::Null)) {
        Err(FilterError::Invalid {
            pos,
            reason: "NULL cannot be compared with = or <>; use IS NULL",
        })
    } else {
        Ok(())
    }
}
