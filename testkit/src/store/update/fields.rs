//! Writing and removing values at exact dotted paths inside a document, as update operators
//! do: missing documents on the way are created, numeric components index (and pad) arrays,
//! and a scalar in the way is mongod's `PathNotViable` (28).

use bson::{Bson, Document};

use crate::store::CommandError;
use crate::store::render;

fn not_viable(field: &str, name: &str, value: &Bson) -> CommandError {
    CommandError::new(
        28,
        "PathNotViable",
        format!(
            "Cannot create field '{field}' in element {{{}}}",
            render::element(name, value)
        ),
    )
}

/// Sets `path` to `value`, creating what is missing. An existing field keeps its position.
///
/// # Errors
/// `PathNotViable` (28) when a non-container value is in the way.
pub(crate) fn set(doc: &mut Document, path: &[String], value: Bson) -> Result<(), CommandError> {
    let Some((head, rest)) = path.split_first() else {
        return Ok(());
    };
    if rest.is_empty() {
        doc.insert(head.clone(), value);
        return Ok(());
    }
    match doc.get_mut(head) {
        None => {
            let mut inner = Document::new();
            set(&mut inner, rest, value)?;
            doc.insert(head.clone(), inner);
            Ok(())
        }
        Some(existing) => set_in(existing, head, rest, value),
    }
}

fn set_in(
    container: &mut Bson,
    name: &str,
    rest: &[String],
    value: Bson,
) -> Result<(), CommandError> {
    match container {
        Bson::Document(d) => set(d, rest, value),
        Bson::Array(items) => {
            let (head, tail) = match rest.split_first() {
                Some(split) => split,
                None => return Ok(()),
            };
            let Ok(index) = head.parse::<usize>() else {
                return Err(not_viable(head, name, &Bson::Array(items.clone())));
            };
            if items.len() <= index {
                items.resize(index + 1, Bson::Null);
            }
            if tail.is_empty() {
                items[index] = value;
                return Ok(());
            }
            if matches!(items[index], Bson::Null) {
                items[index] = Bson::Document(Document::new());
            }
            set_in(&mut items[index], head, tail, value)
        }
        other => {
            let field = rest.first().map(String::as_str).unwrap_or_default();
            Err(not_viable(field, name, other))
        }
    }
}

/// Removes `path`; an array element is set to null instead, as `$unset` does.
pub(crate) fn unset(doc: &mut Document, path: &[String]) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        doc.remove(head);
        return;
    }
    if let Some(value) = doc.get_mut(head) {
        unset_in(value, rest);
    }
}

fn unset_in(container: &mut Bson, rest: &[String]) {
    let Some((head, tail)) = rest.split_first() else {
        return;
    };
    match container {
        Bson::Document(d) => unset(d, rest),
        Bson::Array(items) => {
            if let Some(item) = head.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                if tail.is_empty() {
                    *item = Bson::Null;
                } else {
                    unset_in(item, tail);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn set_creates_nested_documents_and_pads_arrays() {
        let mut d = doc! {"a": [1]};
        set(&mut d, &path("x.y.z"), 1.into()).unwrap();
        set(&mut d, &path("a.2"), 3.into()).unwrap();
        assert_eq!(d, doc! {"a": [1, null, 3], "x": {"y": {"z": 1}}});
    }

    #[test]
    fn set_through_a_scalar_is_path_not_viable() {
        let mut d = doc! {"a": 1};
        let err = set(&mut d, &path("a.b"), 1.into()).unwrap_err();
        assert_eq!(err.code, 28);
        assert_eq!(err.errmsg, "Cannot create field 'b' in element {a: 1}");
    }

    #[test]
    fn unset_nulls_array_elements_and_removes_fields() {
        let mut d = doc! {"a": [1, 2], "b": {"c": 1, "d": 2}};
        unset(&mut d, &path("a.0"));
        unset(&mut d, &path("b.c"));
        assert_eq!(d, doc! {"a": [null, 2], "b": {"d": 2}});
    }
}
