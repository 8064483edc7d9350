//! Sort specifications (`{a: 1, b: -1}`) for `find`, `findAndModify` and `$sort`: a stable
//! multi-key sort in BSON type order, where a missing field sorts as null and an array by its
//! smallest (ascending) or largest (descending) element.

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::CommandError;
use super::compare::Number;
use super::path::{order_keys, sort_key};

/// A parsed sort specification.
#[derive(Clone, Debug, Default)]
pub(crate) struct SortSpec {
    keys: Vec<(String, bool)>,
    /// `{$natural: -1}`: reverse insertion order before the other keys apply.
    natural_reverse: bool,
}

impl SortSpec {
    /// Parses a sort document.
    ///
    /// # Errors
    /// `Location15975` for a direction other than 1 or -1; `BadValue` for `$meta` sorts.
    pub(crate) fn parse(spec: &Document) -> Result<Self, CommandError> {
        let mut keys = Vec::new();
        let mut natural_reverse = false;
        for (field, direction) in spec {
            if field.is_empty() || field.split('.').any(str::is_empty) {
                return Err(CommandError::location(
                    15998,
                    "FieldPath field names may not be empty strings.",
                ));
            }
            let number = Number::of(direction).map(Number::as_f64);
            let ascending = if number == Some(1.0) {
                true
            } else if number == Some(-1.0) {
                false
            } else if matches!(direction, Bson::Document(d) if d.contains_key("$meta")) {
                return Err(CommandError::bad_value(
                    "atlas-sim does not support $meta sort keys",
                ));
            } else {
                return Err(CommandError::location(
                    15975,
                    "$sort key ordering must be 1 (for ascending) or -1 (for descending)",
                ));
            };
            if field == "$natural" {
                natural_reverse = !ascending;
                continue;
            }
            keys.push((field.clone(), ascending));
        }
        Ok(Self {
            keys,
            natural_reverse,
        })
    }

    /// Sorts `docs` in place; equal documents keep their order.
    pub(crate) fn sort(&self, docs: &mut Vec<Document>) {
        self.sort_with(docs, |d| d);
    }

    /// Sorts items that carry a document (e.g. `(position, document)`), stably.
    pub(crate) fn sort_with<T>(&self, items: &mut Vec<T>, doc: impl Fn(&T) -> &Document) {
        if self.natural_reverse {
            items.reverse();
        }
        if self.keys.is_empty() {
            return;
        }
        let mut decorated: Vec<(Vec<Bson>, T)> = items
            .drain(..)
            .map(|item| {
                let d = doc(&item);
                let keys = self
                    .keys
                    .iter()
                    .map(|(path, asc)| sort_key(d, path, *asc))
                    .collect();
                (keys, item)
            })
            .collect();
        decorated.sort_by(|(a, _), (b, _)| self.compare_keys(a, b));
        items.extend(decorated.into_iter().map(|(_, item)| item));
    }

    fn compare_keys(&self, a: &[Bson], b: &[Bson]) -> Ordering {
        for ((x, y), (_, ascending)) in a.iter().zip(b).zip(&self.keys) {
            let order = order_keys(x, y, *ascending);
            if order != Ordering::Equal {
                return order;
            }
        }
        Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use bson::{doc, oid::ObjectId};

    use super::*;

    fn sorted(spec: Document, docs: Vec<Document>) -> Vec<Bson> {
        let mut docs = docs;
        SortSpec::parse(&spec).unwrap().sort(&mut docs);
        docs.into_iter()
            .map(|d| d.get("_id").cloned().unwrap())
            .collect()
    }

    #[test]
    fn sort_orders_mixed_types_by_bson_type_order() {
        let docs = vec![
            doc! {"_id": "bool", "v": true},
            doc! {"_id": "oid", "v": ObjectId::new()},
            doc! {"_id": "str", "v": "a"},
            doc! {"_id": "num", "v": 5},
            doc! {"_id": "missing"},
            doc! {"_id": "obj", "v": {"x": 1}},
            doc! {"_id": "null", "v": null},
            doc! {"_id": "small", "v": 1.5},
        ];
        let ids = sorted(doc! {"v": 1}, docs);
        let expected = [
            "missing", "null", "small", "num", "str", "obj", "oid", "bool",
        ];
        assert_eq!(
            ids,
            expected
                .iter()
                .map(|s| Bson::String((*s).into()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn sort_is_multi_key_and_stable() {
        let docs = vec![
            doc! {"_id": 1, "a": 1, "b": 1},
            doc! {"_id": 2, "a": 2, "b": 1},
            doc! {"_id": 3, "a": 1, "b": 2},
            doc! {"_id": 4, "a": 1, "b": 2},
        ];
        let ids = sorted(doc! {"a": 1, "b": -1}, docs);
        assert_eq!(ids, vec![Bson::Int32(3), 4.into(), 1.into(), 2.into()]);
    }

    #[test]
    fn natural_sort_descending_reverses_insertion_order() {
        let docs = vec![doc! {"_id": 1}, doc! {"_id": 2}, doc! {"_id": 3}];
        let ids = sorted(doc! {"$natural": -1}, docs);
        assert_eq!(ids, vec![Bson::Int32(3), 2.into(), 1.into()]);
    }

    #[test]
    fn sort_rejects_invalid_direction() {
        let err = SortSpec::parse(&doc! {"a": 2}).unwrap_err();
        assert_eq!(err.code, 15975);
    }
}
