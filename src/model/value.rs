/// One column value decoded from the source, in a form that keeps every bit
/// of information the source had (numerics as exact decimal text, timestamps
/// as microseconds, infinities as their own variants). Mapping turns it into
/// a target's representation; nothing is rounded or re-zoned here.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Float4(f32),
    Float8(f64),
    Numeric(NumericValue),
    /// text, varchar, char, name, xml, tsvector, inet/cidr/macaddr, bit
    /// strings and enum labels: the source's text form, unchanged.
    Text(String),
    Bytes(Vec<u8>),
    Date(DateValue),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since midnight, local to `offset_seconds` east of UTC.
    TimeTz {
        micros: i64,
        offset_seconds: i32,
    },
    /// Microseconds since 1970-01-01 00:00:00, no time zone.
    Timestamp(TimestampValue),
    /// Microseconds since 1970-01-01 00:00:00 UTC.
    TimestampTz(TimestampValue),
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
    Uuid(uuid::Uuid),
    /// json or jsonb text as the source printed it (validated JSON).
    Json(String),
    /// A one-dimensional array; a multi-dimensional array nests arrays.
    Array(Vec<Value>),
    /// A value of a type xdb does not decode: its text and its type name.
    Unknown {
        type_name: String,
        text: String,
    },
}

impl Value {
    /// True for SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// An exact `numeric` value. Finite values keep the source's decimal text
/// (sign, digits, point and trailing zeros of the scale) so that no digit is
/// lost whatever its length.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NumericValue {
    /// Decimal text such as `-12.50`; no exponent, no leading `+`.
    Finite(String),
    NaN,
    PosInfinity,
    NegInfinity,
}

/// A `date`: days since 1970-01-01, or one of the infinities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DateValue {
    Days(i32),
    PosInfinity,
    NegInfinity,
}

/// A `timestamp`/`timestamptz`: microseconds since 1970-01-01 00:00:00
/// (UTC for timestamptz), or one of the infinities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimestampValue {
    NegInfinity,
    Micros(i64),
    PosInfinity,
}

/// One row: a value per column, in the table's column order.
pub type Row = Vec<Value>;
