//! The FHIRPath syntax tree and its parser (precedence climbing over the token stream).

use super::lexer::{tokenize, Tok, Token};
use super::FhirPathError;

/// Literal values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Empty,
    Bool(bool),
    Str(String),
    Int(i64),
    Dec(String),
    DateTime(String),
    Quantity(String, String),
}

/// Binary operators, in FHIRPath's sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

/// An expression node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Literal(Literal),
    /// A member name at the start of a path (also a resource type name like `Patient`).
    Identifier(String),
    /// `$this`, `$index`, `$total`.
    Special(String),
    /// `%resource`, `%context`, `%ucum`, ...
    Env(String),
    /// `base.name`
    Member(Box<Expr>, String),
    /// `base.fn(args)`, or `fn(args)` with `base = None`.
    Call(Option<Box<Expr>>, String, Vec<Expr>),
    /// `base[index]`
    Index(Box<Expr>, Box<Expr>),
    /// Unary minus.
    Negate(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `expr is Type`
    Is(Box<Expr>, String),
    /// `expr as Type`
    As(Box<Expr>, String),
}

/// The deepest nesting accepted, so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 128;

/// Parses a complete expression.
pub(crate) fn parse(src: &str) -> Result<Expr, FhirPathError> {
    let tokens = tokenize(src)?;
    let mut p = Parser { tokens, pos: 0, depth: 0 };
    let e = p.expr(0)?;
    match p.peek() {
        Tok::Eof => Ok(e),
        _ => Err(FhirPathError::parse("unexpected token", p.offset())),
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

/// Binding power of infix operators (higher binds tighter).
fn infix(tok: &Tok) -> Option<(u8, Infix)> {
    let op = |p, o| Some((p, Infix::Bin(o)));
    match tok {
        Tok::Sym("*") => op(10, BinOp::Mul),
        Tok::Sym("/") => op(10, BinOp::Div),
        Tok::Ident(s) if s == "div" => op(10, BinOp::IntDiv),
        Tok::Ident(s) if s == "mod" => op(10, BinOp::Mod),
        Tok::Sym("+") => op(9, BinOp::Add),
        Tok::Sym("-") => op(9, BinOp::Sub),
        Tok::Sym("&") => op(9, BinOp::Concat),
        Tok::Ident(s) if s == "is" => Some((8, Infix::Is)),
        Tok::Ident(s) if s == "as" => Some((8, Infix::As)),
        Tok::Sym("|") => op(7, BinOp::Union),
        Tok::Sym("<") => op(6, BinOp::Lt),
        Tok::Sym("<=") => op(6, BinOp::Le),
        Tok::Sym(">") => op(6, BinOp::Gt),
        Tok::Sym(">=") => op(6, BinOp::Ge),
        Tok::Sym("=") => op(5, BinOp::Eq),
        Tok::Sym("!=") => op(5, BinOp::Ne),
        Tok::Sym("~") => op(5, BinOp::Equiv),
        Tok::Sym("!~") => op(5, BinOp::NotEquiv),
        Tok::Ident(s) if s == "in" => op(4, BinOp::In),
        Tok::Ident(s) if s == "contains" => op(4, BinOp::Contains),
        Tok::Ident(s) if s == "and" => op(3, BinOp::And),
        Tok::Ident(s) if s == "or" => op(2, BinOp::Or),
        Tok::Ident(s) if s == "xor" => op(2, BinOp::Xor),
        Tok::Ident(s) if s == "implies" => op(1, BinOp::Implies),
        _ => None,
    }
}

enum Infix {
    Bin(BinOp),
    Is,
    As,
}

const CALENDAR_UNITS: [&str; 16] = [
    "year",
    "years",
    "month",
    "months",
    "week",
    "weeks",
    "day",
    "days",
    "hour",
    "hours",
    "minute",
    "minutes",
    "second",
    "seconds",
    "millisecond",
    "milliseconds",
];

/// Whether `unit` is a calendar duration keyword (`day`, `weeks`, ...).
pub(crate) fn is_calendar_unit(unit: &str) -> bool {
    CALENDAR_UNITS.contains(&unit)
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos.min(self.tokens.len() - 1)].kind
    }
    fn offset(&self) -> usize {
        self.tokens[self.pos.min(self.tokens.len() - 1)].pos
    }
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn expect(&mut self, sym: &'static str) -> Result<(), FhirPathError> {
        if self.peek() == &Tok::Sym(sym) {
            self.next();
            Ok(())
        } else {
            Err(FhirPathError::parse(format!("expected '{sym}'"), self.offset()))
        }
    }

    fn expr(&mut self, min_bp: u8) -> Result<Expr, FhirPathError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FhirPathError::parse("expression nested too deeply", self.offset()));
        }
        let mut lhs = self.unary()?;
        while let Some((bp, op)) = infix(self.peek()) {
            if bp <= min_bp {
                break;
            }
            self.next();
            lhs = match op {
                Infix::Bin(op) => {
                    let rhs = self.expr(bp)?;
                    Expr::Binary(op, Box::new(lhs), Box::new(rhs))
                }
                Infix::Is => Expr::Is(Box::new(lhs), self.type_specifier()?),
                Infix::As => Expr::As(Box::new(lhs), self.type_specifier()?),
            };
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn type_specifier(&mut self) -> Result<String, FhirPathError> {
        let mut name = self.identifier()?;
        while self.peek() == &Tok::Sym(".") {
            self.next();
            name.push('.');
            name.push_str(&self.identifier()?);
        }
        Ok(name)
    }

    fn identifier(&mut self) -> Result<String, FhirPathError> {
        match self.next() {
            Tok::Ident(s) | Tok::Delimited(s) => Ok(s),
            _ => Err(FhirPathError::parse("expected an identifier", self.offset())),
        }
    }

    fn unary(&mut self) -> Result<Expr, FhirPathError> {
        match self.peek() {
            Tok::Sym("-") | Tok::Sym("+") => {
                let negate = self.next() == Tok::Sym("-");
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(FhirPathError::parse("expression nested too deeply", self.offset()));
                }
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(if negate { Expr::Negate(Box::new(inner)) } else { inner })
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Expr, FhirPathError> {
        let mut e = self.term()?;
        loop {
            match self.peek() {
                Tok::Sym(".") => {
                    self.next();
                    let name = self.identifier()?;
                    if self.peek() == &Tok::Sym("(") {
                        let args = self.args()?;
                        e = Expr::Call(Some(Box::new(e)), name, args);
                    } else {
                        e = Expr::Member(Box::new(e), name);
                    }
                }
                Tok::Sym("[") => {
                    self.next();
                    let idx = self.expr(0)?;
                    self.expect("]")?;
                    e = Expr::Index(Box::new(e), Box::new(idx));
                }
                _ => return Ok(e),
            }
        }
    }

    fn args(&mut self) -> Result<Vec<Expr>, FhirPathError> {
        self.expect("(")?;
        let mut args = Vec::new();
        if self.peek() == &Tok::Sym(")") {
            self.next();
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            match self.next() {
                Tok::Sym(",") => continue,
                Tok::Sym(")") => return Ok(args),
                _ => return Err(FhirPathError::parse("expected ',' or ')'", self.offset())),
            }
        }
    }

    fn term(&mut self) -> Result<Expr, FhirPathError> {
        let at = self.offset();
        match self.next() {
            Tok::Sym("(") => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Sym("{") => {
                self.expect("}")?;
                Ok(Expr::Literal(Literal::Empty))
            }
            Tok::Str(s) => Ok(Expr::Literal(Literal::Str(s))),
            Tok::DateTime(s) => Ok(Expr::Literal(Literal::DateTime(s))),
            Tok::Int(n) => Ok(self.maybe_quantity(n.to_string(), Literal::Int(n))),
            Tok::Dec(d) => Ok(self.maybe_quantity(d.clone(), Literal::Dec(d))),
            Tok::Env(s) => Ok(Expr::Env(s)),
            Tok::Special(s) => match s.as_str() {
                "this" | "index" | "total" => Ok(Expr::Special(s)),
                _ => Err(FhirPathError::parse("unknown special variable", at)),
            },
            Tok::Delimited(s) => Ok(Expr::Identifier(s)),
            Tok::Ident(s) => match s.as_str() {
                "true" => Ok(Expr::Literal(Literal::Bool(true))),
                "false" => Ok(Expr::Literal(Literal::Bool(false))),
                _ if self.peek() == &Tok::Sym("(") => {
                    let args = self.args()?;
                    Ok(Expr::Call(None, s, args))
                }
                _ => Ok(Expr::Identifier(s)),
            },
            _ => Err(FhirPathError::parse("expected an expression", at)),
        }
    }

    fn maybe_quantity(&mut self, number: String, lit: Literal) -> Expr {
        let unit = match self.peek() {
            Tok::Str(u) => Some(u.clone()),
            Tok::Ident(u) if CALENDAR_UNITS.contains(&u.as_str()) => Some(u.clone()),
            _ => None,
        };
        match unit {
            Some(u) => {
                self.next();
                Expr::Literal(Literal::Quantity(number, u))
            }
            None => Expr::Literal(lit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        let e = parse("a | b and c = 1 + 2 * 3").unwrap();
        let Expr::Binary(BinOp::And, l, r) = e else { panic!("and at the top") };
        assert!(matches!(*l, Expr::Binary(BinOp::Union, ..)));
        let Expr::Binary(BinOp::Eq, _, sum) = *r else { panic!("eq below and") };
        let Expr::Binary(BinOp::Add, _, prod) = *sum else { panic!("add below eq") };
        assert!(matches!(*prod, Expr::Binary(BinOp::Mul, ..)));
    }

    #[test]
    fn invocations_types_and_quantities() {
        assert_eq!(
            parse("Observation.value as Quantity").unwrap(),
            Expr::As(Box::new(Expr::Member(Box::new(Expr::Identifier("Observation".into())), "value".into())), "Quantity".into())
        );
        assert!(matches!(parse("x.where(a = 1)[0]").unwrap(), Expr::Index(..)));
        assert_eq!(parse("4 'mg'").unwrap(), Expr::Literal(Literal::Quantity("4".into(), "mg".into())));
        assert_eq!(parse("3 days").unwrap(), Expr::Literal(Literal::Quantity("3".into(), "days".into())));
        assert!(matches!(parse("x is FHIR.Patient").unwrap(), Expr::Is(_, t) if t == "FHIR.Patient"));
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "a.", "a..b", "(a", "a b", "f(a,", "a[1", "$foo", "a = ", ")"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let deep = "(".repeat(10_000) + "1" + &")".repeat(10_000);
        assert!(parse(&deep).is_err());
        assert!(parse(&"-".repeat(100_000)).is_err());
        assert!(parse(&"a.where(".repeat(5_000)).is_err());
    }
}
