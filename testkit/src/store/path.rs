//! Dotted field paths (`a.b.0.c`) resolved against documents, in the three ways mongod uses:
//! query traversal (arrays of sub-documents are searched element by element), exact lookup
//! (numeric components index arrays; used by updates), and sort keys (arrays sort by their
//! smallest element ascending, largest descending).

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::compare::compare;

/// The values a query sees at `path`; `None` marks a branch where the field is missing.
/// Never empty: a path missing everywhere yields `[None]`. A leaf array is returned whole
/// (matchers also try its elements).
pub(crate) fn query_values<'a>(doc: &'a Document, path: &str) -> Vec<Option<&'a Bson>> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut out = Vec::new();
    if let Some((head, rest)) = parts.split_first() {
        walk(doc.get(*head), rest, &mut out);
    }
    if out.is_empty() {
        out.push(None);
    }
    out
}

fn walk<'a>(value: Option<&'a Bson>, parts: &[&str], out: &mut Vec<Option<&'a Bson>>) {
    let Some((head, rest)) = parts.split_first() else {
        out.push(value);
        return;
    };
    match value {
        Some(Bson::Document(d)) => walk(d.get(*head), rest, out),
        Some(Bson::Array(items)) => {
            let index = head.parse::<usize>().ok();
            if let Some(index) = index {
                walk(items.get(index), rest, out);
            }
            for item in items {
                // Under a numeric component, only elements that really have such a field
                // count; otherwise every sub-document is a branch (missing included).
                if let Bson::Document(d) = item
                    && (index.is_none() || d.contains_key(*head))
                {
                    walk(d.get(*head), rest, out);
                }
            }
        }
        _ => out.push(None),
    }
}

/// The value at exactly `path`: documents by field name, arrays by numeric index.
pub(crate) fn get<'a>(doc: &'a Document, path: &[String]) -> Option<&'a Bson> {
    let (head, rest) = path.split_first()?;
    let mut current = doc.get(head)?;
    for part in rest {
        current = match current {
            Bson::Document(d) => d.get(part)?,
            Bson::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The value a sort on `path` uses: missing is null, arrays contribute their elements and an
/// empty array sorts before null.
pub(crate) fn sort_key(doc: &Document, path: &str, ascending: bool) -> Bson {
    let mut keys: Vec<&Bson> = Vec::new();
    let mut saw_empty_array = false;
    for value in query_values(doc, path) {
        match value {
            None => keys.push(&Bson::Null),
            Some(Bson::Array(items)) if items.is_empty() => saw_empty_array = true,
            Some(Bson::Array(items)) => keys.extend(items.iter()),
            Some(other) => keys.push(other),
        }
    }
    let best = if ascending {
        keys.into_iter().min_by(|a, b| compare(a, b))
    } else {
        keys.into_iter().max_by(|a, b| compare(a, b))
    };
    match best {
        Some(value) => value.clone(),
        None if saw_empty_array => Bson::Undefined,
        None => Bson::Null,
    }
}

/// Splits a dotted path, rejecting empty components as mongod does.
pub(crate) fn split(path: &str) -> Option<Vec<String>> {
    let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
    if parts.iter().any(String::is_empty) {
        None
    } else {
        Some(parts)
    }
}

/// Orders two sort keys for a sort direction.
pub(crate) fn order_keys(a: &Bson, b: &Bson, ascending: bool) -> Ordering {
    let order = compare(a, b);
    if ascending { order } else { order.reverse() }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    #[test]
    fn query_values_traverse_arrays_of_subdocuments() {
        let d = doc! {"a": [{"b": 1}, {"c": 2}, {"b": [3, 4]}]};
        let values = query_values(&d, "a.b");
        assert_eq!(values.len(), 3);
        assert_eq!(values[0], Some(&Bson::Int32(1)));
        assert_eq!(values[1], None);
    }

    #[test]
    fn query_values_of_a_missing_path_is_one_missing_marker() {
        assert_eq!(query_values(&doc! {"a": 5}, "a.b"), vec![None]);
        assert_eq!(query_values(&doc! {}, "x"), vec![None]);
    }

    #[test]
    fn numeric_components_index_arrays() {
        let d = doc! {"a": [{"b": 1}, {"b": 2}]};
        assert_eq!(query_values(&d, "a.1.b"), vec![Some(&Bson::Int32(2))]);
        let path = vec!["a".to_owned(), "0".to_owned(), "b".to_owned()];
        assert_eq!(get(&d, &path), Some(&Bson::Int32(1)));
    }

    #[test]
    fn sort_key_uses_min_element_ascending_and_max_descending() {
        let d = doc! {"a": [3, 1, 2]};
        assert_eq!(sort_key(&d, "a", true), Bson::Int32(1));
        assert_eq!(sort_key(&d, "a", false), Bson::Int32(3));
        assert_eq!(sort_key(&doc! {}, "a", true), Bson::Null);
        assert_eq!(sort_key(&doc! {"a": []}, "a", true), Bson::Undefined);
    }
}
