//! Index definitions of a collection and the uniqueness they enforce. Every collection has
//! the unique `_id_` index. Keys come from dotted paths; an array contributes each element
//! (multikey), a missing field indexes as null, compound keys are the cartesian product.
//! Sparse and partial (`partialFilterExpression`) indexes skip the documents they exclude.

use bson::{Bson, Document, doc};

use super::CommandError;
use super::compare::{Number, equal};
use super::filter::Filter;
use super::path::query_values;
use super::render;

/// One index of a collection.
#[derive(Clone, Debug)]
pub(crate) struct Index {
    name: String,
    key: Document,
    unique: bool,
    sparse: bool,
    partial: Option<Filter>,
    spec: Document,
}

/// A unique-index violation, with what mongod reports in a write error.
#[derive(Clone, Debug)]
pub(crate) struct DuplicateKey {
    pub(crate) key_pattern: Document,
    pub(crate) key_value: Document,
    pub(crate) errmsg: String,
}

impl DuplicateKey {
    /// The same failure as a top-level command error (`findAndModify`, `createIndexes`).
    pub(crate) fn to_command_error(&self) -> CommandError {
        CommandError::new(11000, "DuplicateKey", self.errmsg.clone())
    }
}

fn cannot_create(errmsg: impl Into<String>) -> CommandError {
    CommandError::new(67, "CannotCreateIndex", errmsg)
}

impl Index {
    /// The `_id_` index every collection has.
    pub(crate) fn id_index() -> Self {
        let key = doc! {"_id": 1};
        Self {
            name: "_id_".to_owned(),
            key: key.clone(),
            unique: true,
            sparse: false,
            partial: None,
            spec: doc! {"v": 2, "key": key, "name": "_id_"},
        }
    }

    /// Parses one entry of `createIndexes.indexes`.
    ///
    /// # Errors
    /// `CannotCreateIndex` (67) or `TypeMismatch` (14) for malformed specifications.
    pub(crate) fn from_spec(spec: &Document) -> Result<Self, CommandError> {
        let key = match spec.get("key") {
            Some(Bson::Document(k)) if k.is_empty() => {
                return Err(cannot_create("Index keys cannot be empty."));
            }
            Some(Bson::Document(k)) => k.clone(),
            Some(other) => {
                return Err(CommandError::type_mismatch(format!(
                    "The field 'key' must be an object, but got {}",
                    super::compare::type_name(other)
                )));
            }
            None => {
                return Err(CommandError::failed_to_parse(
                    "The 'key' field is a required property of an index specification",
                ));
            }
        };
        for (field, value) in &key {
            let valid = match value {
                Bson::String(_) => true,
                other => Number::of(other).is_some_and(|n| n.as_f64() != 0.0),
            };
            if !valid {
                return Err(cannot_create(format!(
                    "Values in v:2 index key pattern cannot be of type {}. Only numbers > 0, \
                     numbers < 0, and strings are allowed. Field: {field}",
                    super::compare::type_name(value)
                )));
            }
        }
        let name = match spec.get("name") {
            Some(Bson::String(n)) if !n.is_empty() => n.clone(),
            Some(Bson::String(_)) => return Err(cannot_create("index name cannot be empty")),
            Some(other) => {
                return Err(CommandError::type_mismatch(format!(
                    "The field 'name' must be a string, but got {}",
                    super::compare::type_name(other)
                )));
            }
            None => default_name(&key),
        };
        let flag = |field: &str| {
            spec.get(field)
                .is_some_and(|v| super::expression::truthy(Some(v)))
        };
        let partial = match spec.get("partialFilterExpression") {
            None => None,
            Some(Bson::Document(d)) => Some(Filter::parse(d)?),
            Some(_) => {
                return Err(CommandError::type_mismatch(
                    "The field 'partialFilterExpression' must be an object",
                ));
            }
        };
        let mut stored = doc! {"v": 2, "key": key.clone(), "name": name.clone()};
        for (k, v) in spec {
            if !matches!(k.as_str(), "v" | "key" | "name" | "ns") {
                stored.insert(k.clone(), v.clone());
            }
        }
        Ok(Self {
            name,
            key,
            unique: flag("unique"),
            sparse: flag("sparse"),
            partial,
            spec: stored,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn key(&self) -> &Document {
        &self.key
    }

    /// The specification `listIndexes` reports.
    pub(crate) fn spec(&self) -> &Document {
        &self.spec
    }

    /// True if both have the same key pattern and options (an idempotent `createIndexes`).
    pub(crate) fn same_options(&self, other: &Self) -> bool {
        let options = |s: &Document| {
            let mut d = s.clone();
            d.remove("name");
            d.remove("v");
            d
        };
        options(&self.spec) == options(&other.spec)
    }

    fn applies_to(&self, doc: &Document) -> bool {
        if self.sparse && self.key.keys().all(|k| query_values(doc, k) == vec![None]) {
            return false;
        }
        self.partial.as_ref().is_none_or(|f| f.matches(doc))
    }

    /// The key tuples `doc` contributes (one per combination of array elements).
    fn key_tuples(&self, doc: &Document) -> Vec<Vec<Bson>> {
        let mut tuples: Vec<Vec<Bson>> = vec![Vec::new()];
        for field in self.key.keys() {
            let mut values: Vec<Bson> = Vec::new();
            for value in query_values(doc, field) {
                match value {
                    None => values.push(Bson::Null),
                    Some(Bson::Array(items)) if items.is_empty() => values.push(Bson::Undefined),
                    Some(Bson::Array(items)) => values.extend(items.iter().cloned()),
                    Some(other) => values.push(other.clone()),
                }
            }
            let mut distinct: Vec<Bson> = Vec::new();
            for v in values {
                if !distinct.iter().any(|d| equal(d, &v)) {
                    distinct.push(v);
                }
            }
            tuples = tuples
                .into_iter()
                .flat_map(|t| {
                    distinct.iter().map(move |v| {
                        let mut next = t.clone();
                        next.push(v.clone());
                        next
                    })
                })
                .collect();
        }
        tuples
    }

    /// The canonical keys `doc` adds to this index, if it is unique and covers `doc`: equal
    /// keys (in the sense of [`equal`]) have equal encodings, so a hash set finds clashes.
    pub(crate) fn unique_keys(&self, doc: &Document) -> Option<Vec<(Vec<u8>, Vec<Bson>)>> {
        if !self.unique || !self.applies_to(doc) {
            return None;
        }
        Some(
            self.key_tuples(doc)
                .into_iter()
                .map(|tuple| {
                    let mut key = Vec::new();
                    for value in &tuple {
                        canonical(value, &mut key);
                    }
                    (key, tuple)
                })
                .collect(),
        )
    }

    /// The error for `doc` clashing on `tuple`.
    pub(crate) fn duplicate_error(&self, ns: &str, tuple: &[Bson]) -> DuplicateKey {
        let key_value: Document = self
            .key
            .keys()
            .cloned()
            .zip(tuple.iter().cloned())
            .collect();
        DuplicateKey {
            errmsg: format!(
                "E11000 duplicate key error collection: {ns} index: {} dup key: {}",
                self.name,
                render::document(&key_value)
            ),
            key_pattern: self.key.clone(),
            key_value,
        }
    }

    /// The first key `doc` would duplicate among `others`, if this index is unique.
    pub(crate) fn find_duplicate<'a>(
        &self,
        ns: &str,
        doc: &Document,
        others: impl Iterator<Item = &'a Document>,
    ) -> Option<DuplicateKey> {
        if !self.unique || !self.applies_to(doc) {
            return None;
        }
        let mine = self.key_tuples(doc);
        for other in others.filter(|o| self.applies_to(o)) {
            let theirs = self.key_tuples(other);
            let clash = mine.iter().find(|k| {
                theirs
                    .iter()
                    .any(|t| t.iter().zip(k.iter()).all(|(a, b)| equal(a, b)))
            });
            if let Some(tuple) = clash {
                return Some(self.duplicate_error(ns, tuple));
            }
        }
        None
    }
}

/// Appends an encoding of `value` under which values that compare equal encode equally:
/// numbers by value whatever their type, documents and arrays element by element.
fn canonical(value: &Bson, out: &mut Vec<u8>) {
    if let Some(n) = Number::of(value) {
        let f = n.as_f64();
        match n {
            Number::Int(i) => {
                out.push(b'n');
                out.extend_from_slice(&i.to_le_bytes());
            }
            Number::Float(_) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18 => {
                out.push(b'n');
                out.extend_from_slice(&(f as i64).to_le_bytes());
            }
            Number::Float(_) => {
                out.push(b'f');
                let f = if f == 0.0 { 0.0 } else { f };
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
        }
        return;
    }
    let tag = |out: &mut Vec<u8>, t: u8, len: usize| {
        out.push(t);
        out.extend_from_slice(&(len as u64).to_le_bytes());
    };
    match value {
        Bson::String(s) => {
            tag(out, b's', s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Bson::Document(d) => {
            tag(out, b'o', d.len());
            for (k, v) in d {
                tag(out, b'k', k.len());
                out.extend_from_slice(k.as_bytes());
                canonical(v, out);
            }
        }
        Bson::Array(items) => {
            tag(out, b'a', items.len());
            for item in items {
                canonical(item, out);
            }
        }
        other => {
            let bytes = doc! { "": other.clone() }.to_vec().unwrap_or_default();
            tag(out, b'r', bytes.len());
            out.extend_from_slice(&bytes);
        }
    }
}

/// The name drivers generate: `a_1_b_-1`.
pub(crate) fn default_name(key: &Document) -> String {
    key.iter()
        .map(|(k, v)| match v {
            Bson::String(s) => format!("{k}_{s}"),
            other => format!("{k}_{}", Number::of(other).map_or(0.0, Number::as_f64)),
        })
        .collect::<Vec<_>>()
        .join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(key: Document) -> Index {
        Index::from_spec(&doc! {"key": key, "name": "k", "unique": true}).unwrap()
    }

    #[test]
    fn unique_index_reports_duplicate_with_key_pattern_and_value() {
        let index = unique(doc! {"email": 1});
        let existing = [doc! {"_id": 1, "email": "a@x"}];
        let dup = index
            .find_duplicate("db.users", &doc! {"email": "a@x"}, existing.iter())
            .unwrap();
        assert_eq!(dup.key_pattern, doc! {"email": 1});
        assert_eq!(dup.key_value, doc! {"email": "a@x"});
        assert_eq!(
            dup.errmsg,
            r#"E11000 duplicate key error collection: db.users index: k dup key: { email: "a@x" }"#
        );
    }

    #[test]
    fn missing_fields_index_as_null_and_collide() {
        let index = unique(doc! {"a": 1, "b": 1});
        let existing = [doc! {"a": 1}];
        let dup = index.find_duplicate("d.c", &doc! {"a": 1.0, "b": null}, existing.iter());
        assert_eq!(dup.unwrap().key_value, doc! {"a": 1.0, "b": null});
    }

    #[test]
    fn multikey_unique_index_compares_array_elements() {
        let index = unique(doc! {"tags": 1});
        let existing = [doc! {"tags": ["a", "b"]}];
        assert!(
            index
                .find_duplicate("d.c", &doc! {"tags": ["c", "b"]}, existing.iter())
                .is_some()
        );
        assert!(
            index
                .find_duplicate("d.c", &doc! {"tags": ["c"]}, existing.iter())
                .is_none()
        );
    }

    #[test]
    fn sparse_and_partial_indexes_skip_excluded_documents() {
        let sparse = Index::from_spec(
            &doc! {"key": {"a": 1}, "name": "a_1", "unique": true, "sparse": true},
        )
        .unwrap();
        assert!(
            sparse
                .find_duplicate("d.c", &doc! {}, [doc! {}].iter())
                .is_none()
        );
        let partial = Index::from_spec(&doc! {"key": {"a": 1}, "name": "a_1", "unique": true,
        "partialFilterExpression": {"live": true}})
        .unwrap();
        let existing = [doc! {"a": 1, "live": false}];
        assert!(
            partial
                .find_duplicate("d.c", &doc! {"a": 1, "live": true}, existing.iter())
                .is_none()
        );
    }

    #[test]
    fn default_names_follow_driver_convention() {
        assert_eq!(
            default_name(&doc! {"a": 1, "b": -1, "c": "text"}),
            "a_1_b_-1_c_text"
        );
    }
}
