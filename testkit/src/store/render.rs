//! Renders BSON values the way mongod prints them inside error messages
//! (`dup key: { name: "x" }`, `{_id: ObjectId('...')}`), so drivers and tests that match on
//! `errmsg` see the same text as with a real server.

use std::fmt::Write;

use bson::{Bson, Document};

/// `{ a: 1, b: "x" }`, or `{}` when empty.
pub(crate) fn document(doc: &Document) -> String {
    if doc.is_empty() {
        return "{}".to_owned();
    }
    let fields: Vec<String> = doc.iter().map(|(k, v)| element(k, v)).collect();
    format!("{{ {} }}", fields.join(", "))
}

/// `name: value`, as mongod's `BSONElement::toString`.
pub(crate) fn element(name: &str, value: &Bson) -> String {
    format!("{name}: {}", self::value(value))
}

/// One value in mongod's shell-like notation.
pub(crate) fn value(value: &Bson) -> String {
    match value {
        Bson::Double(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
        Bson::Double(f) => format!("{f}"),
        Bson::String(s) | Bson::Symbol(s) => format!("{s:?}"),
        Bson::Document(d) => document(d),
        Bson::Array(items) if items.is_empty() => "[]".to_owned(),
        Bson::Array(items) => {
            let parts: Vec<String> = items.iter().map(self::value).collect();
            format!("[ {} ]", parts.join(", "))
        }
        Bson::Binary(b) => {
            let mut hex = String::with_capacity(b.bytes.len() * 2);
            for byte in &b.bytes {
                let _ = write!(hex, "{byte:02X}");
            }
            format!("BinData({}, {hex})", u8::from(b.subtype))
        }
        Bson::Undefined => "undefined".to_owned(),
        Bson::ObjectId(id) => format!("ObjectId('{id}')"),
        Bson::Boolean(b) => b.to_string(),
        Bson::DateTime(d) => format!("new Date({})", d.timestamp_millis()),
        Bson::Null => "null".to_owned(),
        Bson::RegularExpression(r) => format!("/{}/{}", r.pattern.as_str(), r.options.as_str()),
        Bson::JavaScriptCode(code) => code.clone(),
        Bson::JavaScriptCodeWithScope(c) => format!("{} {}", c.code, document(&c.scope)),
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        Bson::Timestamp(t) => format!("Timestamp({}, {})", t.time, t.increment),
        Bson::Decimal128(d) => format!("{d}"),
        Bson::MinKey => "MinKey".to_owned(),
        Bson::MaxKey => "MaxKey".to_owned(),
        Bson::DbPointer(_) => "DBPointer".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    #[test]
    fn documents_render_like_mongod_error_messages() {
        assert_eq!(
            document(&doc! {"name": "x", "n": 1, "f": 2.0}),
            r#"{ name: "x", n: 1, f: 2.0 }"#
        );
        assert_eq!(document(&doc! {}), "{}");
        assert_eq!(
            value(&Bson::Array(vec![1.into(), Bson::Null])),
            "[ 1, null ]"
        );
    }
}
