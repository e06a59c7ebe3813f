//! Stored generated columns (`GENERATED ALWAYS AS (…) STORED`) on the target.
//!
//! pgoutput does not publish generated columns (before PostgreSQL 18, and on
//! 18 only when the publication asks), so neither the copy nor the stream
//! carries them: the target computes them itself, as a generated column of
//! its own. That needs the expression in the target's SQL with the same
//! value for every row:
//!
//! * PostgreSQL: the expression as the source prints it.
//! * SQLite and MySQL/MariaDB: only what is proven to compute the same
//!   value — integer and text column references, integer literals, string
//!   literals, `+ - *` and `/` on integers (truncating on every side),
//!   `||` on text (`CONCAT` on MySQL; NULL in, NULL out on every side),
//!   `coalesce`, `abs` on integers and `length`/`char_length` on text.
//!   Not `round` or `/` on numeric (SQLite computes in binary floating
//!   point, MySQL with its own division scale), not `lower`/`upper` (SQLite
//!   folds ASCII only, MySQL by its collation, PostgreSQL by its locale).
//!
//! Any other expression is refused for the table with the reason, before
//! anything is created: the column is never silently left out.

use std::fmt::Write as _;

use std::sync::Arc;

use super::{MappedColumn, MappedTable, MysqlFlavour, TargetClass, TargetKind};
use crate::model::{Column, GeneratedColumn, PgType, ReplicaIdentity, Row, TableSchema};
use crate::plan::LossyPolicy;

/// A generated column as the target creates it.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedGenerated {
    pub name: String,
    pub source_type: PgType,
    /// The target column type.
    pub target_type: String,
    /// The expression in the target's SQL.
    pub expression: String,
    /// The expression as the source has it.
    pub source_expression: String,
}

impl MappedGenerated {
    /// How `schema` and `check` say where the column's values come from.
    pub fn describe(&self, table: &str, kind: &TargetKind) -> String {
        format!(
            "{table}.{}: generated column, created as generated on {kind}: {} GENERATED ALWAYS AS ({}) STORED \
             (source: {}); neither the copy nor the stream writes it",
            self.name, self.target_type, self.expression, self.source_expression
        )
    }
}

/// The table as `xdb validate` compares it: the generated columns appended
/// to the source's and the target's columns, so their values are compared
/// like any other (read from both sides, never written).
pub fn compared(m: &MappedTable) -> MappedTable {
    if m.generated.is_empty() {
        return m.clone();
    }
    let mut source = (*m.source).clone();
    let mut out = m.clone();
    for g in &m.generated {
        let on_source = m.source.generated.iter().find(|s| s.name == g.name);
        source.columns.push(Column {
            type_oid: on_source.map_or(0, |s| s.type_oid),
            typmod: on_source.map_or(-1, |s| s.typmod),
            ..Column::new(&g.name, g.source_type.clone())
        });
        out.columns.push(MappedColumn {
            name: g.name.clone(),
            source_type: g.source_type.clone(),
            target_type: g.target_type.clone(),
            class: TargetClass::of(&m.kind, &g.target_type),
            nullable: true,
            policy: LossyPolicy::default(),
            identity: false,
            default: None,
            check: None,
        });
    }
    out.source = Arc::new(source);
    out
}

/// The table and rows as a repair writes them: without the generated
/// columns [`compared`] appended (the target computes those).
pub fn writable(m: &MappedTable, rows: &[Row]) -> Option<(MappedTable, Vec<Row>)> {
    let width = m.columns.iter().take_while(|c| !m.generated.iter().any(|g| g.name == c.name)).count();
    if width == m.columns.len() {
        return None;
    }
    let mut out = m.clone();
    out.columns.truncate(width);
    let mut source = (*m.source).clone();
    source.columns.truncate(width);
    out.source = Arc::new(source);
    Some((out, rows.iter().map(|r| r[..width.min(r.len())].to_vec()).collect()))
}

/// The target expression for `g`, or why there is none.
pub fn translate(kind: &TargetKind, table: &TableSchema, g: &GeneratedColumn) -> Result<String, String> {
    if let TargetKind::Postgres = kind {
        return Ok(g.expression.clone());
    }
    let tokens = tokenize(&g.expression)?;
    let mut p = Parser { tokens, pos: 0 };
    let ast = p.expr(0)?;
    if p.pos != p.tokens.len() {
        return Err(format!("unexpected `{}`", p.tokens[p.pos]));
    }
    let mut out = String::new();
    emit(kind, table, &ast, &mut out)?;
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Int(String),
    Num(String),
    Str(String),
    Op(&'static str),
    Open,
    Close,
    Comma,
}

impl std::fmt::Display for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Ident(s) | Tok::Int(s) | Tok::Num(s) => f.write_str(s),
            Tok::Str(s) => write!(f, "'{s}'"),
            Tok::Op(o) => f.write_str(o),
            Tok::Open => f.write_str("("),
            Tok::Close => f.write_str(")"),
            Tok::Comma => f.write_str(","),
        }
    }
}

/// Whether a `ty` value reads back from a `kind` target as exactly the
/// source's input text (what `sink::writer::current_value` relies on when
/// it reads a TOASTed input of a recomputed generated column back).
pub fn reads_back_exactly(kind: &TargetKind, ty: &PgType) -> bool {
    let mysql = matches!(kind, TargetKind::Mysql { flavour: MysqlFlavour::Mysql, .. });
    match ty {
        PgType::Text | PgType::Varchar(_) | PgType::Bytea => true,
        PgType::Json | PgType::Jsonb => !mysql,
        _ => false,
    }
}

/// Why `table` cannot have its generated columns recomputed exactly on a
/// `kind` target, one line per input column (empty when it can): an
/// UPDATE of other columns leaves a large (TOASTed) value out of the
/// change, and xdb then reads it back from the target row, which it can
/// only do exactly for some types ([`reads_back_exactly`]).
/// REPLICA IDENTITY FULL carries the old row instead. Said by `check`
/// and `schema`, and refused before the copy creates anything.
pub fn unreadable_inputs(kind: &TargetKind, table: &TableSchema) -> Vec<String> {
    if table.replica_identity == ReplicaIdentity::Full {
        return Vec::new();
    }
    let mut out = Vec::new();
    for c in table.columns.iter().filter(|c| c.feeds_generated) {
        let large = matches!(
            c.pg_type,
            PgType::Xml
                | PgType::TsVector
                | PgType::TsQuery
                | PgType::Array(_)
                | PgType::Other { .. }
                | PgType::Json
                | PgType::Jsonb
        );
        if large && !reads_back_exactly(kind, &c.pg_type) {
            out.push(format!(
                "a generated column of {t} reads {col} ({ty}); before PostgreSQL 18 xdb recomputes it on the \
                 source for each change, and an UPDATE that leaves a large (TOASTed) {col} unchanged does not \
                 carry it, nor can xdb read a {ty} back from {kind} exactly. Run ALTER TABLE {t} REPLICA IDENTITY \
                 FULL; on the source (every change then carries the old row), or remove mapping.generated: source",
                t = table.name,
                col = c.name,
                ty = c.pg_type.sql_name(),
            ));
        }
    }
    out
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '+' | '-' | '*' | '/' => {
                out.push(Tok::Op(match c {
                    '+' => "+",
                    '-' => "-",
                    '*' => "*",
                    _ => "/",
                }));
                i += 1
            }
            '|' if b.get(i + 1) == Some(&'|') => {
                out.push(Tok::Op("||"));
                i += 2
            }
            ':' if b.get(i + 1) == Some(&':') => {
                out.push(Tok::Op("::"));
                i += 2
            }
            '\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("unterminated string".into()),
                        Some('\'') if b.get(i + 1) == Some(&'\'') => {
                            v.push('\'');
                            i += 2
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            v.push(ch);
                            i += 1
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            '"' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("unterminated identifier".into()),
                        Some('"') if b.get(i + 1) == Some(&'"') => {
                            v.push('"');
                            i += 2
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            v.push(ch);
                            i += 1
                        }
                    }
                }
                // A quoted name keeps its case: marked by a leading quote.
                out.push(Tok::Ident(format!("\"{v}")));
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == '.') {
                    i += 1;
                }
                let n: String = b[start..i].iter().collect();
                out.push(if n.contains('.') { Tok::Num(n) } else { Tok::Int(n) });
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '$' || b[i] == '.') {
                    i += 1;
                }
                out.push(Tok::Ident(b[start..i].iter().collect()));
            }
            other => return Err(format!("`{other}` is not translated")),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Ast {
    Col(String),
    Int(String),
    Num(String),
    Str(String),
    Neg(Box<Ast>),
    Bin(&'static str, Box<Ast>, Box<Ast>),
    Call(String, Vec<Ast>),
    Cast(Box<Ast>, String),
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Result<Tok, String> {
        let t = self.tokens.get(self.pos).cloned().ok_or("the expression ends early")?;
        self.pos += 1;
        Ok(t)
    }

    fn expect(&mut self, t: Tok) -> Result<(), String> {
        let got = self.next()?;
        if got == t {
            Ok(())
        } else {
            Err(format!("expected `{t}`, found `{got}`"))
        }
    }

    /// Precedence climbing; `::` binds tightest, then `* /`, `+ -`, `||`.
    fn expr(&mut self, min: u8) -> Result<Ast, String> {
        let mut lhs = self.unary()?;
        while let Some(Tok::Op(op)) = self.peek().cloned() {
            let prec = match op {
                "::" => 4,
                "*" | "/" => 3,
                "+" | "-" => 2,
                "||" => 1,
                _ => break,
            };
            if prec < min {
                break;
            }
            self.pos += 1;
            if op == "::" {
                lhs = Ast::Cast(Box::new(lhs), self.type_name()?);
                continue;
            }
            let rhs = self.expr(prec + 1)?;
            lhs = Ast::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn type_name(&mut self) -> Result<String, String> {
        let mut name = match self.next()? {
            Tok::Ident(s) => s.to_ascii_lowercase(),
            t => return Err(format!("expected a type after ::, found `{t}`")),
        };
        // `character varying`, `double precision`, `timestamp with time zone`.
        while let Some(Tok::Ident(s)) = self.peek().cloned() {
            name.push(' ');
            name.push_str(&s.to_ascii_lowercase());
            self.pos += 1;
        }
        if self.peek() == Some(&Tok::Open) {
            return Err(format!("the cast to {name}(…) is not translated"));
        }
        Ok(name)
    }

    fn unary(&mut self) -> Result<Ast, String> {
        match self.next()? {
            Tok::Op("-") => Ok(Ast::Neg(Box::new(self.expr(4)?))),
            Tok::Open => {
                let e = self.expr(0)?;
                self.expect(Tok::Close)?;
                Ok(e)
            }
            Tok::Int(n) => Ok(Ast::Int(n)),
            Tok::Num(n) => Ok(Ast::Num(n)),
            Tok::Str(s) => Ok(Ast::Str(s)),
            Tok::Ident(name) => {
                if self.peek() == Some(&Tok::Open) {
                    self.pos += 1;
                    let mut args = Vec::new();
                    if self.peek() != Some(&Tok::Close) {
                        loop {
                            args.push(self.expr(0)?);
                            match self.next()? {
                                Tok::Comma => continue,
                                Tok::Close => break,
                                t => return Err(format!("expected `,` or `)`, found `{t}`")),
                            }
                        }
                    } else {
                        self.pos += 1;
                    }
                    Ok(Ast::Call(name.to_ascii_lowercase(), args))
                } else {
                    Ok(Ast::Col(name))
                }
            }
            t => Err(format!("unexpected `{t}`")),
        }
    }
}

/// What a sub-expression computes, as far as equivalence is proven.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Text,
}

fn kind_of_type(t: &PgType) -> Option<Kind> {
    match t {
        PgType::Int2 | PgType::Int4 | PgType::Int8 => Some(Kind::Int),
        PgType::Text | PgType::Varchar(_) => Some(Kind::Text),
        _ => None,
    }
}

fn column_name(raw: &str) -> String {
    match raw.strip_prefix('"') {
        Some(quoted) => quoted.to_string(),
        None => raw.to_lowercase(),
    }
}

fn emit(kind: &TargetKind, table: &TableSchema, e: &Ast, out: &mut String) -> Result<Kind, String> {
    let mysql = kind.is_mysql();
    let d = kind.dialect();
    match e {
        Ast::Col(raw) => {
            let name = column_name(raw);
            let c = table.columns.iter().find(|c| c.name == name).ok_or_else(|| {
                format!("column {name} is not a stored column (a generated column cannot use another one)")
            })?;
            let k = kind_of_type(&c.pg_type)
                .ok_or_else(|| format!("column {name} is {}, not integer or text", c.pg_type.sql_name()))?;
            out.push_str(&d.ident(&name));
            Ok(k)
        }
        Ast::Int(n) => {
            out.push_str(n);
            Ok(Kind::Int)
        }
        Ast::Num(n) => Err(format!("the numeric literal {n} is computed differently there")),
        Ast::Str(s) => {
            out.push_str(&super::ddl::sql_string(kind, s));
            Ok(Kind::Text)
        }
        Ast::Neg(inner) => {
            out.push_str("(-");
            let k = emit(kind, table, inner, out)?;
            out.push(')');
            if k != Kind::Int {
                return Err("a minus sign on text".into());
            }
            Ok(k)
        }
        Ast::Cast(inner, ty) => {
            let want = match ty.as_str() {
                "text" | "character varying" | "varchar" => Kind::Text,
                "integer" | "int" | "int4" | "bigint" | "int8" | "smallint" | "int2" => Kind::Int,
                other => return Err(format!("the cast to {other} is not translated")),
            };
            let mut s = String::new();
            let k = emit(kind, table, inner, &mut s)?;
            if k != want {
                return Err(format!("the cast to {ty} changes the value's type"));
            }
            out.push_str(&s);
            Ok(k)
        }
        Ast::Bin(op, l, r) => {
            let (mut ls, mut rs) = (String::new(), String::new());
            let lk = emit(kind, table, l, &mut ls)?;
            let rk = emit(kind, table, r, &mut rs)?;
            match (*op, lk, rk) {
                ("||", Kind::Text, Kind::Text) => {
                    if mysql {
                        let _ = write!(out, "CONCAT({ls}, {rs})");
                    } else {
                        let _ = write!(out, "({ls} || {rs})");
                    }
                    Ok(Kind::Text)
                }
                ("/", Kind::Int, Kind::Int) if mysql => {
                    let _ = write!(out, "({ls} DIV {rs})");
                    Ok(Kind::Int)
                }
                ("+" | "-" | "*" | "/", Kind::Int, Kind::Int) => {
                    let _ = write!(out, "({ls} {op} {rs})");
                    Ok(Kind::Int)
                }
                _ => Err(format!("`{op}` on {lk:?} and {rk:?} is not translated")),
            }
        }
        Ast::Call(name, args) => {
            let mut parts = Vec::new();
            let mut kinds = Vec::new();
            for a in args {
                let mut s = String::new();
                kinds.push(emit(kind, table, a, &mut s)?);
                parts.push(s);
            }
            let (func, k) = match (name.as_str(), kinds.as_slice()) {
                ("coalesce", [first, rest @ ..]) if rest.iter().all(|k| k == first) => ("COALESCE", *first),
                ("abs", [Kind::Int]) => ("ABS", Kind::Int),
                ("length" | "char_length", [Kind::Text]) => (if mysql { "CHAR_LENGTH" } else { "length" }, Kind::Int),
                _ => return Err(format!("{name}() is not proven to compute the same value there")),
            };
            let _ = write!(out, "{func}({})", parts.join(", "));
            Ok(k)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, ReplicaIdentity, TableName};

    fn table() -> TableSchema {
        let col = |name: &str, pg_type: PgType| Column::new(name, pg_type);
        TableSchema {
            oid: 1,
            name: TableName::new("public", "t"),
            columns: vec![
                col("a", PgType::Int4),
                col("b", PgType::Int8),
                col("first", PgType::Text),
                col("Last", PgType::Varchar(None)),
                col("len", PgType::Numeric { precision: None, scale: None }),
            ],
            replica_identity: ReplicaIdentity::Default,
            primary_key: vec![0],
            generated: Vec::new(),
        }
    }

    fn tr(kind: &TargetKind, expr: &str) -> Result<String, String> {
        let g = GeneratedColumn {
            name: "g".into(),
            pg_type: PgType::Int8,
            type_oid: 0,
            typmod: -1,
            expression: expr.into(),
        };
        translate(kind, &table(), &g)
    }

    #[test]
    fn translates_what_is_proven() {
        let maria = TargetKind::mysql_from_version_string("10.11.6-MariaDB");
        let lite = TargetKind::Sqlite;
        assert_eq!(tr(&lite, "((a + b) * 2)").unwrap(), "((\"a\" + \"b\") * 2)");
        assert_eq!(tr(&maria, "(a / 3)").unwrap(), "(`a` DIV 3)");
        assert_eq!(
            tr(&maria, "((first || ' '::text) || (\"Last\")::text)").unwrap(),
            "CONCAT(CONCAT(`first`, ' '), `Last`)"
        );
        assert_eq!(tr(&lite, "COALESCE(first, 'x'::text)").unwrap(), "COALESCE(\"first\", 'x')");
        assert_eq!(tr(&maria, "length(first)").unwrap(), "CHAR_LENGTH(`first`)");
        assert_eq!(tr(&lite, "(- a)").unwrap(), "(-\"a\")");
        assert_eq!(tr(&TargetKind::Postgres, "round((len / 60.0), 2)").unwrap(), "round((len / 60.0), 2)");
    }

    #[test]
    fn refuses_what_is_not() {
        let lite = TargetKind::Sqlite;
        let e = tr(&lite, "round((len / 60.0), 2)").unwrap_err();
        assert!(e.contains("numeric"), "{e}");
        assert!(tr(&lite, "lower(first)").unwrap_err().contains("lower()"));
        assert!(tr(&lite, "(a || first)").is_err());
        assert!(tr(&lite, "(a)::numeric").is_err());
        assert!(tr(&lite, "now()").is_err());
    }
}
