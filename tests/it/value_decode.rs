//! Value decoding against the real PostgreSQL: a table with a column of
//! every supported type and nasty values, read once in text form through
//! `decode_text` (under several TimeZone / IntervalStyle / bytea_output
//! settings) and once as `COPY … (FORMAT binary)` through
//! `CopyBinaryReader`; both must give the Values constructed here.

use bytes::Bytes;
use chrono::NaiveDate;
use futures_util::StreamExt;
use xdb::model::{DateValue, NumericValue, PgType, Row, TimestampValue, Value};
use xdb::source::postgres::codec::copy_binary::CopyBinaryReader;
use xdb::source::postgres::codec::value_binary::decode_binary;
use xdb::source::postgres::codec::value_text::decode_text;

use crate::support::PgDb;

const US: i64 = 1_000_000;
const HOUR: i64 = 3600 * US;

fn t(s: &str) -> Value {
    Value::Text(s.to_string())
}
fn n(s: &str) -> Value {
    Value::Numeric(NumericValue::Finite(s.to_string()))
}
fn arr(v: Vec<Value>) -> Value {
    Value::Array(v)
}
fn days(y: i32, m: u32, d: u32) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    NaiveDate::from_ymd_opt(y, m, d).unwrap().signed_duration_since(epoch).num_days() as i32
}
fn date(y: i32, m: u32, d: u32) -> Value {
    Value::Date(DateValue::Days(days(y, m, d)))
}
/// Microseconds since 1970 of a local date-time `offset` seconds east of UTC
/// (astronomical years: 44 BC is -43).
#[allow(clippy::too_many_arguments)]
fn micros(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, us: u32, offset: i64) -> i64 {
    NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_micro_opt(h, mi, s, us).unwrap().and_utc().timestamp_micros()
        - offset * US
}
fn tstz(m: i64) -> Value {
    Value::TimestampTz(TimestampValue::Micros(m))
}
fn iv(months: i32, days: i32, micros: i64) -> Value {
    Value::Interval { months, days, micros }
}

struct Col {
    name: &'static str,
    decl: &'static str,
    ty: PgType,
    /// (SQL literal, expected value) for each of the four rows.
    rows: [(&'static str, Value); 4],
}

fn mood() -> PgType {
    PgType::Enum { name: "mood".into(), labels: vec!["sad".into(), "ok".into(), "happy 'quoted'".into()] }
}

fn columns() -> Vec<Col> {
    use Value::Null;
    let a = |t: PgType| PgType::Array(Box::new(t));
    let col = |name, decl, ty, rows| Col { name, decl, ty, rows };
    vec![
        col(
            "b",
            "boolean",
            PgType::Bool,
            [("true", Value::Bool(true)), ("false", Value::Bool(false)), ("NULL", Null), ("true", Value::Bool(true))],
        ),
        col(
            "i2",
            "int2",
            PgType::Int2,
            [("-32768", Value::Int2(-32768)), ("32767", Value::Int2(32767)), ("NULL", Null), ("0", Value::Int2(0))],
        ),
        col(
            "i4",
            "int4",
            PgType::Int4,
            [
                ("2147483647", Value::Int4(i32::MAX)),
                ("-2147483648", Value::Int4(i32::MIN)),
                ("NULL", Null),
                ("0", Value::Int4(0)),
            ],
        ),
        col(
            "i8",
            "int8",
            PgType::Int8,
            [
                ("'-9223372036854775808'", Value::Int8(i64::MIN)),
                ("9223372036854775807", Value::Int8(i64::MAX)),
                ("NULL", Null),
                ("0", Value::Int8(0)),
            ],
        ),
        col(
            "f4",
            "float4",
            PgType::Float4,
            [
                ("1.5", Value::Float4(1.5)),
                ("'3.4028235e+38'", Value::Float4(3.402_823_5e38)),
                ("NULL", Null),
                ("'NaN'", Value::Float4(f32::NAN)),
            ],
        ),
        col(
            "f8",
            "float8",
            PgType::Float8,
            [
                ("'-0'", Value::Float8(-0.0)),
                ("0.1", Value::Float8(0.1)),
                ("NULL", Null),
                ("'-Infinity'", Value::Float8(f64::NEG_INFINITY)),
            ],
        ),
        col(
            "n",
            "numeric",
            PgType::Numeric { precision: None, scale: None },
            [
                ("12345678901234567890.123456789000", n("12345678901234567890.123456789000")),
                (
                    "-123456789012345678901234567890123456789012345678901234567890.000000000000000000001",
                    n("-123456789012345678901234567890123456789012345678901234567890.000000000000000000001"),
                ),
                ("NULL", Null),
                ("'NaN'", Value::Numeric(NumericValue::NaN)),
            ],
        ),
        col(
            "n2",
            "numeric(10,3)",
            PgType::Numeric { precision: Some(10), scale: Some(3) },
            [("1.5", n("1.500")), ("-9999999.999", n("-9999999.999")), ("NULL", Null), ("0", n("0.000"))],
        ),
        col(
            "m",
            "money",
            PgType::Money,
            [
                ("'-1234.56'", n("-1234.56")),
                ("'92233720368547758.07'", n("92233720368547758.07")),
                ("NULL", Null),
                ("0", n("0.00")),
            ],
        ),
        col(
            "tx",
            "text",
            PgType::Text,
            [
                ("'hello'", t("hello")),
                ("'héllo \"wörld\" \\ ,{} ☃ 😀'", t("héllo \"wörld\" \\ ,{} ☃ 😀")),
                ("NULL", Null),
                ("E'line1\\nline2\\ttab'", t("line1\nline2\ttab")),
            ],
        ),
        col(
            "vc",
            "varchar(10)",
            PgType::Varchar(Some(10)),
            [("'abc'", t("abc")), ("'ünïcödé'", t("ünïcödé")), ("NULL", Null), ("''", t(""))],
        ),
        col(
            "ch",
            "char(5)",
            PgType::Char(Some(5)),
            [("'ab'", t("ab   ")), ("'abcde'", t("abcde")), ("NULL", Null), ("''", t("     "))],
        ),
        col(
            "ic",
            "\"char\"",
            PgType::InternalChar,
            [("'x'", t("x")), ("'é'", t("\\303")), ("NULL", Null), ("''", t(""))],
        ),
        col(
            "nm",
            "name",
            PgType::Name,
            [("'name1'", t("name1")), ("'Ünïcode Name'", t("Ünïcode Name")), ("NULL", Null), ("''", t(""))],
        ),
        col(
            "x",
            "xml",
            PgType::Xml,
            [
                ("'<a>1</a>'", t("<a>1</a>")),
                ("'<b attr=\"q&amp;\">ü</b>'", t("<b attr=\"q&amp;\">ü</b>")),
                ("NULL", Null),
                ("''", t("")),
            ],
        ),
        col(
            "tv",
            "tsvector",
            PgType::TsVector,
            [
                ("'fat:2,4A cat:3B'", t("'cat':3B 'fat':2,4A")),
                ("$$'it''s' 'back\\\\slash' zz:1C$$", t("'back\\\\slash' 'it''s' 'zz':1C")),
                ("NULL", Null),
                ("''", t("")),
            ],
        ),
        col(
            "tq",
            "tsquery",
            PgType::TsQuery,
            [
                ("'fat & (rat | cat)'", t("'fat' & ( 'rat' | 'cat' )")),
                ("'a <-> (b <2> c) & !d:*AB'", t("'a' <-> ( 'b' <2> 'c' ) & !'d':*AB")),
                ("NULL", Null),
                ("'!(a & b) | c <-> d'", t("!( 'a' & 'b' ) | 'c' <-> 'd'")),
            ],
        ),
        col(
            "ip",
            "inet",
            PgType::Inet,
            [
                ("'192.168.1.5/24'", t("192.168.1.5/24")),
                ("'::ffff:1.2.3.4'", t("::ffff:1.2.3.4")),
                ("NULL", Null),
                ("'2001:db8::1/64'", t("2001:db8::1/64")),
            ],
        ),
        col(
            "cr",
            "cidr",
            PgType::Cidr,
            [
                ("'10.0.0.0/8'", t("10.0.0.0/8")),
                ("'2001:db8::/32'", t("2001:db8::/32")),
                ("NULL", Null),
                ("'192.168.0.1'", t("192.168.0.1/32")),
            ],
        ),
        col(
            "mc",
            "macaddr",
            PgType::Macaddr,
            [
                ("'08:00:2b:01:02:03'", t("08:00:2b:01:02:03")),
                ("'FF-FF-FF-FF-FF-FF'", t("ff:ff:ff:ff:ff:ff")),
                ("NULL", Null),
                ("'000000000000'", t("00:00:00:00:00:00")),
            ],
        ),
        col(
            "mc8",
            "macaddr8",
            PgType::Macaddr8,
            [
                ("'08:00:2b:01:02:03:04:05'", t("08:00:2b:01:02:03:04:05")),
                ("'08:00:2b:01:02:03'", t("08:00:2b:ff:fe:01:02:03")),
                ("NULL", Null),
                ("'0000000000000000'", t("00:00:00:00:00:00:00:00")),
            ],
        ),
        col(
            "bt",
            "bit(4)",
            PgType::Bit(Some(4)),
            [("B'1010'", t("1010")), ("B'0001'", t("0001")), ("NULL", Null), ("B'1111'", t("1111"))],
        ),
        col(
            "vb",
            "varbit",
            PgType::VarBit(None),
            [("B'1'", t("1")), ("B''", t("")), ("NULL", Null), ("B'101010101'", t("101010101"))],
        ),
        col(
            "by",
            "bytea",
            PgType::Bytea,
            [
                ("'\\x00ff'", Value::Bytes(vec![0, 255])),
                ("'\\x'", Value::Bytes(vec![])),
                ("NULL", Null),
                ("'\\x5c2c22e9'", Value::Bytes(vec![0x5c, 0x2c, 0x22, 0xe9])),
            ],
        ),
        col(
            "d",
            "date",
            PgType::Date,
            [
                ("'2024-02-29'", date(2024, 2, 29)),
                ("'0044-03-15 BC'", date(-43, 3, 15)),
                ("NULL", Null),
                ("'infinity'", Value::Date(DateValue::PosInfinity)),
            ],
        ),
        col(
            "tm",
            "time",
            PgType::Time(None),
            [
                ("'23:59:59.999999'", Value::Time(24 * HOUR - 1)),
                ("'24:00:00'", Value::Time(24 * HOUR)),
                ("NULL", Null),
                ("'00:00:00'", Value::Time(0)),
            ],
        ),
        col(
            "ttz",
            "timetz",
            PgType::TimeTz(None),
            [
                (
                    "'04:05:06.789-03:30:15'",
                    Value::TimeTz {
                        micros: 4 * HOUR + 5 * 60 * US + 6_789_000,
                        offset_seconds: -(3 * 3600 + 30 * 60 + 15),
                    },
                ),
                ("'23:59:59.5+14'", Value::TimeTz { micros: 24 * HOUR - US / 2, offset_seconds: 14 * 3600 }),
                ("NULL", Null),
                ("'00:00:00+00'", Value::TimeTz { micros: 0, offset_seconds: 0 }),
            ],
        ),
        col(
            "ts",
            "timestamp",
            PgType::Timestamp(None),
            [
                (
                    "'2024-02-29 12:34:56.123456'",
                    Value::Timestamp(TimestampValue::Micros(micros(2024, 2, 29, 12, 34, 56, 123456, 0))),
                ),
                (
                    "'0044-03-15 12:00:00 BC'",
                    Value::Timestamp(TimestampValue::Micros(micros(-43, 3, 15, 12, 0, 0, 0, 0))),
                ),
                ("NULL", Null),
                ("'-infinity'", Value::Timestamp(TimestampValue::NegInfinity)),
            ],
        ),
        col(
            "tstz",
            "timestamptz",
            PgType::TimestampTz(None),
            [
                ("'2024-02-29 12:34:56.5+05:30'", tstz(micros(2024, 2, 29, 12, 34, 56, 500_000, 5 * 3600 + 1800))),
                ("'0044-03-15 12:00:00+00 BC'", tstz(micros(-43, 3, 15, 12, 0, 0, 0, 0))),
                ("NULL", Null),
                ("'infinity'", Value::TimestampTz(TimestampValue::PosInfinity)),
            ],
        ),
        col(
            "iv",
            "interval",
            PgType::Interval,
            [
                ("'1 year 2 mons -3 days 04:05:06.7'", iv(14, -3, 4 * HOUR + 5 * 60 * US + 6_700_000)),
                ("'-00:00:01'", iv(0, 0, -US)),
                ("NULL", Null),
                ("'-1 years -2 mons +3 days -04:05:06.000001'", iv(-14, 3, -(4 * HOUR + 5 * 60 * US + 6 * US + 1))),
            ],
        ),
        col(
            "u",
            "uuid",
            PgType::Uuid,
            [
                (
                    "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
                    Value::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".parse().unwrap()),
                ),
                ("'00000000-0000-0000-0000-000000000000'", Value::Uuid(uuid::Uuid::nil())),
                ("NULL", Null),
                (
                    "'ffffffff-ffff-ffff-ffff-ffffffffffff'",
                    Value::Uuid("ffffffff-ffff-ffff-ffff-ffffffffffff".parse().unwrap()),
                ),
            ],
        ),
        col(
            "j",
            "json",
            PgType::Json,
            [
                ("'{\"b\": 1, \"a\": [1, \"x\"]}'", Value::Json("{\"b\": 1, \"a\": [1, \"x\"]}".into())),
                ("'\"unicode ☃ \\u00e9\"'", Value::Json("\"unicode ☃ \\u00e9\"".into())),
                ("NULL", Null),
                ("'[]'", Value::Json("[]".into())),
            ],
        ),
        col(
            "jb",
            "jsonb",
            PgType::Jsonb,
            [
                ("'{\"b\": 1, \"a\": [1, \"x\"]}'", Value::Json("{\"a\": [1, \"x\"], \"b\": 1}".into())),
                ("'\"unicode ☃ \\u00e9\"'", Value::Json("\"unicode ☃ é\"".into())),
                ("NULL", Null),
                ("'null'", Value::Json("null".into())),
            ],
        ),
        col(
            "o",
            "oid",
            PgType::Oid,
            [("4294967295", Value::Int8(4294967295)), ("0", Value::Int8(0)), ("NULL", Null), ("1", Value::Int8(1))],
        ),
        col(
            "e",
            "mood",
            mood(),
            [("'sad'", t("sad")), ("'happy ''quoted'''", t("happy 'quoted'")), ("NULL", Null), ("'ok'", t("ok"))],
        ),
        col(
            "a_i4",
            "int4[]",
            a(PgType::Int4),
            [
                ("'{1,NULL,-3}'", arr(vec![Value::Int4(1), Null, Value::Int4(-3)])),
                ("'{}'", arr(vec![])),
                ("NULL", Null),
                ("'{NULL}'", arr(vec![Null])),
            ],
        ),
        col(
            "a_tx",
            "text[]",
            a(PgType::Text),
            [
                (
                    "$${\"a,b\",\"q\\\"x\",\"NULL\",NULL,\"\",\"c\\\\d\",\"é\", sp }$$",
                    arr(vec![t("a,b"), t("q\"x"), t("NULL"), Null, t(""), t("c\\d"), t("é"), t("sp")]),
                ),
                (
                    "$${\"{}\",\"}\",\"\\\\\\\\\",\"multi word\",\" lead\"}$$",
                    arr(vec![t("{}"), t("}"), t("\\\\"), t("multi word"), t(" lead")]),
                ),
                ("NULL", Null),
                ("'{NULL,NULL}'", arr(vec![Null, Null])),
            ],
        ),
        col(
            "a_n",
            "numeric[]",
            a(PgType::Numeric { precision: None, scale: None }),
            [
                (
                    "'{1.50,NaN,-0.000001000}'",
                    arr(vec![n("1.50"), Value::Numeric(NumericValue::NaN), n("-0.000001000")]),
                ),
                (
                    "'{Infinity,-Infinity}'",
                    arr(vec![Value::Numeric(NumericValue::PosInfinity), Value::Numeric(NumericValue::NegInfinity)]),
                ),
                ("NULL", Null),
                ("'{0}'", arr(vec![n("0")])),
            ],
        ),
        col(
            "a_ts",
            "timestamptz[]",
            a(PgType::TimestampTz(None)),
            [
                (
                    "'{\"2024-01-01 00:00:00+00\",infinity,-infinity}'",
                    arr(vec![
                        tstz(micros(2024, 1, 1, 0, 0, 0, 0, 0)),
                        Value::TimestampTz(TimestampValue::PosInfinity),
                        Value::TimestampTz(TimestampValue::NegInfinity),
                    ]),
                ),
                (
                    "'{\"9999-12-31 23:59:59.999999+00\",\"0001-01-01 00:00:00+00 BC\"}'",
                    arr(vec![tstz(micros(9999, 12, 31, 23, 59, 59, 999_999, 0)), tstz(micros(0, 1, 1, 0, 0, 0, 0, 0))]),
                ),
                ("NULL", Null),
                ("'{}'", arr(vec![])),
            ],
        ),
        col(
            "a_2d",
            "int4[]",
            a(PgType::Int4),
            [
                (
                    "'{{1,2},{3,4}}'",
                    arr(vec![arr(vec![Value::Int4(1), Value::Int4(2)]), arr(vec![Value::Int4(3), Value::Int4(4)])]),
                ),
                (
                    "'{{{1}},{{2}}}'",
                    arr(vec![arr(vec![arr(vec![Value::Int4(1)])]), arr(vec![arr(vec![Value::Int4(2)])])]),
                ),
                ("NULL", Null),
                (
                    "'[0:1][1:2]={{5,6},{7,8}}'",
                    arr(vec![arr(vec![Value::Int4(5), Value::Int4(6)]), arr(vec![Value::Int4(7), Value::Int4(8)])]),
                ),
            ],
        ),
        col(
            "a_e",
            "mood[]",
            a(mood()),
            [
                ("'{sad,\"happy ''quoted''\"}'", arr(vec![t("sad"), t("happy 'quoted'")])),
                ("'{}'", arr(vec![])),
                ("NULL", Null),
                ("'{NULL,ok}'", arr(vec![Null, t("ok")])),
            ],
        ),
        col(
            "a_by",
            "bytea[]",
            a(PgType::Bytea),
            [
                ("'{\"\\\\x00ff\",\"\"}'", arr(vec![Value::Bytes(vec![0, 255]), Value::Bytes(vec![])])),
                ("'{NULL}'", arr(vec![Null])),
                ("NULL", Null),
                ("'{\"\\\\x2c7b\"}'", arr(vec![Value::Bytes(vec![0x2c, 0x7b])])),
            ],
        ),
        col(
            "a_dec",
            "int4[]",
            a(PgType::Int4),
            [
                ("'[0:1]={7,8}'", arr(vec![Value::Int4(7), Value::Int4(8)])),
                ("'[-2:-1]={1,2}'", arr(vec![Value::Int4(1), Value::Int4(2)])),
                ("NULL", Null),
                ("'{9}'", arr(vec![Value::Int4(9)])),
            ],
        ),
        col(
            "a_iv",
            "interval[]",
            a(PgType::Interval),
            [
                ("'{\"100:00:00\",\"-1 days\"}'", arr(vec![iv(0, 0, 100 * HOUR), iv(0, -1, 0)])),
                ("'{P1Y}'", arr(vec![iv(12, 0, 0)])),
                ("NULL", Null),
                ("'{}'", arr(vec![])),
            ],
        ),
        col(
            "a_ip",
            "inet[]",
            a(PgType::Inet),
            [
                ("'{192.168.0.1,::1}'", arr(vec![t("192.168.0.1"), t("::1")])),
                ("'{NULL}'", arr(vec![Null])),
                ("NULL", Null),
                ("'{}'", arr(vec![])),
            ],
        ),
        col(
            "a_d",
            "date[]",
            a(PgType::Date),
            [
                (
                    "'{2000-01-01,infinity,-infinity,\"0001-01-01 BC\"}'",
                    arr(vec![
                        date(2000, 1, 1),
                        Value::Date(DateValue::PosInfinity),
                        Value::Date(DateValue::NegInfinity),
                        date(0, 1, 1),
                    ]),
                ),
                ("'{}'", arr(vec![])),
                ("NULL", Null),
                ("'{1970-01-01}'", arr(vec![date(1970, 1, 1)])),
            ],
        ),
    ]
}

async fn setup(db: &PgDb, cols: &[Col]) {
    let decls: Vec<String> = cols.iter().map(|c| format!("{} {}", c.name, c.decl)).collect();
    let mut sql = format!(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy ''quoted''');
         CREATE TABLE vals (id int PRIMARY KEY, pt point, {});",
        decls.join(", ")
    );
    let points = ["'(1,2)'", "'(-1.5,0)'", "NULL", "'(3,4)'"];
    for (r, pt) in points.iter().enumerate() {
        let lits: Vec<&str> = cols.iter().map(|c| c.rows[r].0).collect();
        sql.push_str(&format!("INSERT INTO vals VALUES ({r}, {pt}, {});", lits.join(", ")));
    }
    db.exec(&sql).await;
}

fn expected(cols: &[Col]) -> Vec<Row> {
    (0..4).map(|r| cols.iter().map(|c| c.rows[r].1.clone()).collect()).collect()
}

/// Debug text makes NaN equal to NaN and keeps -0.0 apart from 0.0.
fn assert_rows(what: &str, got: &[Row], want: &[Row], cols: &[Col]) {
    assert_eq!(got.len(), want.len(), "{what}: row count");
    for (r, (g, w)) in got.iter().zip(want).enumerate() {
        for (i, c) in cols.iter().enumerate() {
            assert_eq!(format!("{:?}", g[i]), format!("{:?}", w[i]), "{what}: row {r}, column {} ({})", c.name, c.decl);
        }
    }
}

/// Every column in its text form as the type's output function prints it
/// (the simple-query protocol; what pgoutput sends). `col::text` would not
/// do: the cast trims char(n) padding.
async fn read_text(client: &tokio_postgres::Client, cols: &[Col]) -> Vec<Row> {
    let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
    let msgs = client.simple_query(&format!("SELECT {} FROM vals ORDER BY id", names.join(", "))).await.unwrap();
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .map(|row| {
            cols.iter()
                .enumerate()
                .map(|(i, c)| match row.get(i) {
                    None => Value::Null,
                    Some(s) => decode_text(&c.ty, s).unwrap_or_else(|e| panic!("column {}: {e}", c.name)),
                })
                .collect()
        })
        .collect()
}

/// The raw COPY binary stream of the query, as the chunks the server sent.
async fn copy_chunks(client: &tokio_postgres::Client, query: &str) -> Vec<Bytes> {
    let stream = client.copy_out(&format!("COPY ({query}) TO STDOUT (FORMAT binary)")).await.unwrap();
    let mut stream = std::pin::pin!(stream);
    let mut chunks = Vec::new();
    while let Some(c) = stream.next().await {
        chunks.push(c.unwrap());
    }
    chunks
}

fn read_copy(types: Vec<PgType>, chunks: impl IntoIterator<Item = Bytes>) -> Vec<Row> {
    let mut reader = CopyBinaryReader::new(types);
    let mut rows = Vec::new();
    for chunk in chunks {
        reader.feed(chunk);
        while let Some(row) = reader.next_row().unwrap_or_else(|e| panic!("{e}")) {
            rows.push(row);
        }
    }
    reader.finish().unwrap();
    assert_eq!(reader.rows_read(), rows.len() as u64);
    rows
}

#[tokio::test]
async fn text_and_copy_binary_decode_every_type_alike() {
    let db = PgDb::create("xdb_values").await;
    let cols = columns();
    setup(&db, &cols).await;
    let want = expected(&cols);
    let client = db.super_client().await;

    // The text path under different session settings: offsets, interval and
    // bytea styles change the text, never the decoded value.
    for (zone, style, bytea) in [
        ("UTC", "postgres", "hex"),
        ("Asia/Kolkata", "iso_8601", "escape"),
        ("America/St_Johns", "postgres", "escape"),
        ("Pacific/Chatham", "iso_8601", "hex"),
    ] {
        client
            .batch_execute(&format!(
                "SET DateStyle = ISO; SET lc_monetary = 'C'; SET TimeZone = '{zone}'; \
                 SET IntervalStyle = {style}; SET bytea_output = {bytea}"
            ))
            .await
            .unwrap();
        let got = read_text(&client, &cols).await;
        assert_rows(&format!("text under {zone}/{style}/{bytea}"), &got, &want, &cols);
    }

    // The binary path, with the server's chunking and with 7-byte chunks.
    let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
    let query = format!("SELECT {} FROM vals ORDER BY id", names.join(", "));
    let types: Vec<PgType> = cols.iter().map(|c| c.ty.clone()).collect();
    let chunks = copy_chunks(&client, &query).await;
    assert_rows("COPY binary", &read_copy(types.clone(), chunks.clone()), &want, &cols);
    let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let small = whole.chunks(7).map(Bytes::copy_from_slice).collect::<Vec<_>>();
    assert_rows("COPY binary, 7-byte chunks", &read_copy(types, small), &want, &cols);

    // A type xdb does not know: kept as text; its binary form is refused
    // with advice to cast.
    let other = PgType::Other { name: "point".into() };
    let pt: String = client.query_one("SELECT pt::text FROM vals WHERE id = 0", &[]).await.unwrap().get(0);
    assert_eq!(decode_text(&other, &pt).unwrap(), Value::Unknown { type_name: "point".into(), text: "(1,2)".into() });
    let chunks = copy_chunks(&client, "SELECT pt FROM vals WHERE id = 0").await;
    let mut reader = CopyBinaryReader::new(vec![other]);
    chunks.into_iter().for_each(|c| reader.feed(c));
    let err = reader.next_row().unwrap_err().to_string();
    assert!(err.contains("row 1, column 0") && err.contains("cast to text"), "{err}");
}

#[tokio::test]
async fn interval_styles_and_binary_agree_on_many_intervals() {
    let db = PgDb::create("xdb_values_iv").await;
    let client = db.super_client().await;
    // Mixed signs, big hour counts, sub-second fractions of every length.
    let query = "SELECT make_interval(years => (i % 7) - 3, months => (i * 5 % 23) - 11, days => (i * 13 % 61) - 30, \
                 hours => (i * 37 % 2000) - 1000, mins => (i * 7 % 120) - 60, \
                 secs => ((i * 7919) % 120000 - 60000)::float8 / (10 ^ (i % 7))) AS v \
                 FROM generate_series(1, 300) i ORDER BY i";
    let mut by_style = Vec::new();
    for style in ["postgres", "iso_8601"] {
        client.batch_execute(&format!("SET IntervalStyle = {style}")).await.unwrap();
        let rows = client.query(&format!("SELECT v::text FROM ({query}) q"), &[]).await.unwrap();
        let vals: Vec<Value> =
            rows.iter().map(|r| decode_text(&PgType::Interval, r.get(0)).unwrap_or_else(|e| panic!("{e}"))).collect();
        by_style.push(vals);
    }
    assert_eq!(by_style[0], by_style[1], "postgres and iso_8601 styles decode differently");
    let chunks = copy_chunks(&client, query).await;
    let binary: Vec<Value> = read_copy(vec![PgType::Interval], chunks).into_iter().map(|mut r| r.remove(0)).collect();
    assert_eq!(binary, by_style[0], "binary and text intervals differ");
    // And one value checked field by field.
    let raw = [6_700_000i64.to_be_bytes().as_slice(), &(-3i32).to_be_bytes(), &14i32.to_be_bytes()].concat();
    assert_eq!(decode_binary(&PgType::Interval, &raw).unwrap(), iv(14, -3, 6_700_000));
}

#[tokio::test]
async fn edge_values_error_or_decode_without_panicking() {
    let db = PgDb::create("xdb_values_edge").await;
    let client = db.super_client().await;
    // Valid in PostgreSQL, but past what i64 microseconds since 1970 hold:
    // both paths report it, neither panics.
    let late = "SELECT '294270-01-01 00:00:00'::timestamp";
    let text: String = client.query_one(&format!("{late}::text"), &[]).await.unwrap().get(0);
    let err = decode_text(&PgType::Timestamp(None), &text).unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
    let mut reader = CopyBinaryReader::new(vec![PgType::Timestamp(None)]);
    copy_chunks(&client, late).await.into_iter().for_each(|c| reader.feed(c));
    let err = reader.next_row().unwrap_err().to_string();
    assert!(err.contains("row 1, column 0") && err.contains("out of range"), "{err}");

    // JSON nested far deeper than serde_json's recursion limit.
    let deep = format!("{}1{}", "[".repeat(2000), "]".repeat(2000));
    let q = format!("SELECT '{deep}'::json AS j, '{deep}'::jsonb AS jb");
    let msgs = client.simple_query(&q).await.unwrap();
    let row = msgs
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .unwrap();
    let (j, jb) = (row.get(0).unwrap(), row.get(1).unwrap());
    assert_eq!(decode_text(&PgType::Json, j).unwrap(), Value::Json(deep.clone()));
    let jb_value = decode_text(&PgType::Jsonb, jb).unwrap();
    let rows = read_copy(vec![PgType::Json, PgType::Jsonb], copy_chunks(&client, &q).await);
    assert_eq!(rows, vec![vec![Value::Json(deep), jb_value]]);
}
