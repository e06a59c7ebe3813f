use std::fmt;

/// A PostgreSQL column type as xdb understands it: built-in types by kind,
/// with the modifiers that matter for mapping (lengths, precision, scale).
///
/// Domains are resolved to their base type by the catalog reader; a type xdb
/// does not know keeps its name in [`PgType::Other`] so mapping can report it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `numeric(p,s)`; both `None` for unconstrained `numeric`.
    Numeric {
        precision: Option<u32>,
        scale: Option<u32>,
    },
    Money,
    Text,
    /// `varchar(n)`; `None` for unbounded `varchar`.
    Varchar(Option<u32>),
    /// `char(n)` (bpchar).
    Char(Option<u32>),
    /// The internal one-byte `"char"` type.
    InternalChar,
    Name,
    Bytea,
    Date,
    /// `time(p)`; precision `None` means the default (6).
    Time(Option<u32>),
    TimeTz(Option<u32>),
    Timestamp(Option<u32>),
    TimestampTz(Option<u32>),
    Interval,
    Uuid,
    Json,
    Jsonb,
    Inet,
    Cidr,
    Macaddr,
    Macaddr8,
    Xml,
    TsVector,
    TsQuery,
    Oid,
    Bit(Option<u32>),
    VarBit(Option<u32>),
    /// A user-defined enum type with its labels in sort order.
    Enum {
        name: String,
        labels: Vec<String>,
    },
    /// An array of the element type.
    Array(Box<PgType>),
    /// Any other type (composite, range, extension type …), by its
    /// schema-qualified name; values keep their text form.
    Other {
        name: String,
    },
}

impl PgType {
    /// The PostgreSQL type name with its modifiers, as `format_type` prints it
    /// (used in messages and DDL for PostgreSQL targets).
    pub fn sql_name(&self) -> String {
        fn p(name: &str, n: &Option<u32>) -> String {
            match n {
                Some(n) => format!("{name}({n})"),
                None => name.to_string(),
            }
        }
        match self {
            PgType::Bool => "boolean".into(),
            PgType::Int2 => "smallint".into(),
            PgType::Int4 => "integer".into(),
            PgType::Int8 => "bigint".into(),
            PgType::Float4 => "real".into(),
            PgType::Float8 => "double precision".into(),
            PgType::Numeric { precision: Some(pr), scale } => {
                format!("numeric({pr},{})", scale.unwrap_or(0))
            }
            PgType::Numeric { .. } => "numeric".into(),
            PgType::Money => "money".into(),
            PgType::Text => "text".into(),
            PgType::Varchar(n) => p("character varying", n),
            PgType::Char(n) => p("character", n),
            PgType::InternalChar => "\"char\"".into(),
            PgType::Name => "name".into(),
            PgType::Bytea => "bytea".into(),
            PgType::Date => "date".into(),
            PgType::Time(n) => format!("{} without time zone", p("time", n)),
            PgType::TimeTz(n) => format!("{} with time zone", p("time", n)),
            PgType::Timestamp(n) => format!("{} without time zone", p("timestamp", n)),
            PgType::TimestampTz(n) => format!("{} with time zone", p("timestamp", n)),
            PgType::Interval => "interval".into(),
            PgType::Uuid => "uuid".into(),
            PgType::Json => "json".into(),
            PgType::Jsonb => "jsonb".into(),
            PgType::Inet => "inet".into(),
            PgType::Cidr => "cidr".into(),
            PgType::Macaddr => "macaddr".into(),
            PgType::Macaddr8 => "macaddr8".into(),
            PgType::Xml => "xml".into(),
            PgType::TsVector => "tsvector".into(),
            PgType::TsQuery => "tsquery".into(),
            PgType::Oid => "oid".into(),
            PgType::Bit(n) => p("bit", n),
            PgType::VarBit(n) => p("bit varying", n),
            PgType::Enum { name, .. } => name.clone(),
            PgType::Array(inner) => format!("{}[]", inner.sql_name()),
            PgType::Other { name } => name.clone(),
        }
    }

    /// The short rule name used in `mappings/*.yaml` (`numeric`, `varchar`,
    /// `timestamptz`, `array`, `enum` …), independent of modifiers.
    pub fn rule_name(&self) -> &str {
        match self {
            PgType::Bool => "boolean",
            PgType::Int2 => "smallint",
            PgType::Int4 => "integer",
            PgType::Int8 => "bigint",
            PgType::Float4 => "real",
            PgType::Float8 => "double precision",
            PgType::Numeric { .. } => "numeric",
            PgType::Money => "money",
            PgType::Text => "text",
            PgType::Varchar(_) => "varchar",
            PgType::Char(_) => "char",
            PgType::InternalChar => "\"char\"",
            PgType::Name => "name",
            PgType::Bytea => "bytea",
            PgType::Date => "date",
            PgType::Time(_) => "time",
            PgType::TimeTz(_) => "timetz",
            PgType::Timestamp(_) => "timestamp",
            PgType::TimestampTz(_) => "timestamptz",
            PgType::Interval => "interval",
            PgType::Uuid => "uuid",
            PgType::Json => "json",
            PgType::Jsonb => "jsonb",
            PgType::Inet => "inet",
            PgType::Cidr => "cidr",
            PgType::Macaddr => "macaddr",
            PgType::Macaddr8 => "macaddr8",
            PgType::Xml => "xml",
            PgType::TsVector => "tsvector",
            PgType::TsQuery => "tsquery",
            PgType::Oid => "oid",
            PgType::Bit(_) => "bit",
            PgType::VarBit(_) => "varbit",
            PgType::Enum { .. } => "enum",
            PgType::Array(_) => "array",
            PgType::Other { name } => name,
        }
    }

    /// Builds the type of a built-in type OID with its `atttypmod`. Returns
    /// `None` for OIDs that are not built-in (enums, domains, extensions):
    /// those need the catalog.
    pub fn from_builtin_oid(oid: u32, typmod: i32) -> Option<PgType> {
        let len = || (typmod >= 4).then(|| (typmod - 4) as u32);
        let prec = || (typmod >= 0).then_some(typmod as u32);
        let bits = || (typmod >= 0).then_some(typmod as u32);
        Some(match oid {
            16 => PgType::Bool,
            17 => PgType::Bytea,
            18 => PgType::InternalChar,
            19 => PgType::Name,
            20 => PgType::Int8,
            21 => PgType::Int2,
            23 => PgType::Int4,
            25 => PgType::Text,
            26 => PgType::Oid,
            114 => PgType::Json,
            142 => PgType::Xml,
            650 => PgType::Cidr,
            700 => PgType::Float4,
            701 => PgType::Float8,
            774 => PgType::Macaddr8,
            790 => PgType::Money,
            829 => PgType::Macaddr,
            869 => PgType::Inet,
            1042 => PgType::Char(len()),
            1043 => PgType::Varchar(len()),
            1082 => PgType::Date,
            1083 => PgType::Time(prec()),
            1114 => PgType::Timestamp(prec()),
            1184 => PgType::TimestampTz(prec()),
            1186 => PgType::Interval,
            1266 => PgType::TimeTz(prec()),
            1560 => PgType::Bit(bits()),
            1562 => PgType::VarBit(bits()),
            1700 => {
                if typmod >= 4 {
                    let t = (typmod - 4) as u32;
                    PgType::Numeric { precision: Some((t >> 16) & 0xFFFF), scale: Some(t & 0xFFFF) }
                } else {
                    PgType::Numeric { precision: None, scale: None }
                }
            }
            2950 => PgType::Uuid,
            3614 => PgType::TsVector,
            3615 => PgType::TsQuery,
            3802 => PgType::Jsonb,
            // Arrays of the above: typmod applies to the element.
            1000 => PgType::Array(Box::new(PgType::Bool)),
            1001 => PgType::Array(Box::new(PgType::Bytea)),
            1005 => PgType::Array(Box::new(PgType::Int2)),
            1007 => PgType::Array(Box::new(PgType::Int4)),
            1016 => PgType::Array(Box::new(PgType::Int8)),
            1009 => PgType::Array(Box::new(PgType::Text)),
            1014 => PgType::Array(Box::new(PgType::Char(len()))),
            1015 => PgType::Array(Box::new(PgType::Varchar(len()))),
            1021 => PgType::Array(Box::new(PgType::Float4)),
            1022 => PgType::Array(Box::new(PgType::Float8)),
            1231 => PgType::Array(Box::new(PgType::from_builtin_oid(1700, typmod)?)),
            1182 => PgType::Array(Box::new(PgType::Date)),
            1183 => PgType::Array(Box::new(PgType::Time(prec()))),
            1115 => PgType::Array(Box::new(PgType::Timestamp(prec()))),
            1185 => PgType::Array(Box::new(PgType::TimestampTz(prec()))),
            1187 => PgType::Array(Box::new(PgType::Interval)),
            2951 => PgType::Array(Box::new(PgType::Uuid)),
            199 => PgType::Array(Box::new(PgType::Json)),
            3807 => PgType::Array(Box::new(PgType::Jsonb)),
            1041 => PgType::Array(Box::new(PgType::Inet)),
            651 => PgType::Array(Box::new(PgType::Cidr)),
            1040 => PgType::Array(Box::new(PgType::Macaddr)),
            1028 => PgType::Array(Box::new(PgType::Oid)),
            791 => PgType::Array(Box::new(PgType::Money)),
            _ => return None,
        })
    }

    /// True for types whose values PostgreSQL may store out of line (TOAST),
    /// so that an UPDATE may mark them unchanged.
    pub fn is_varlena(&self) -> bool {
        !matches!(
            self,
            PgType::Bool
                | PgType::Int2
                | PgType::Int4
                | PgType::Int8
                | PgType::Float4
                | PgType::Float8
                | PgType::Money
                | PgType::InternalChar
                | PgType::Name
                | PgType::Date
                | PgType::Time(_)
                | PgType::TimeTz(_)
                | PgType::Timestamp(_)
                | PgType::TimestampTz(_)
                | PgType::Interval
                | PgType::Uuid
                | PgType::Macaddr
                | PgType::Macaddr8
                | PgType::Oid
                | PgType::Enum { .. }
        )
    }
}

impl fmt::Display for PgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sql_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_oids_carry_modifiers() {
        assert_eq!(
            PgType::from_builtin_oid(1700, ((12 << 16) | 2) + 4),
            Some(PgType::Numeric { precision: Some(12), scale: Some(2) })
        );
        assert_eq!(PgType::from_builtin_oid(1043, 259), Some(PgType::Varchar(Some(255))));
        assert_eq!(PgType::from_builtin_oid(1184, -1), Some(PgType::TimestampTz(None)));
        assert_eq!(PgType::from_builtin_oid(1184, 3).unwrap().sql_name(), "timestamp(3) with time zone");
        assert_eq!(PgType::from_builtin_oid(123456, -1), None);
    }
}
