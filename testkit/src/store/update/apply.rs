//! Applying a parsed update to one document, with mongod's per-operator type rules and the
//! `_id` immutability check.

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::fields;
use super::{Modification, Op, PushSpec, Update};
use crate::store::CommandError;
use crate::store::arith;
use crate::store::compare::{Number, compare, equal, type_name};
use crate::store::path;
use crate::store::render;

impl Update {
    /// Applies the update to `doc`. `inserting` is true for the document an upsert creates
    /// (`$setOnInsert` applies and `_id` may be set).
    ///
    /// # Errors
    /// `ImmutableField` (66) if `_id` would change; type errors of the operators.
    pub(crate) fn apply(&self, doc: &mut Document, inserting: bool) -> Result<(), CommandError> {
        let original_id = doc.get("_id").cloned();
        match self {
            Self::Replacement(replacement) => {
                let mut next = Document::new();
                match (replacement.get("_id"), &original_id) {
                    (Some(new_id), Some(old)) if !inserting && new_id != old => {
                        return Err(CommandError::new(
                            66,
                            "ImmutableField",
                            format!(
                                "After applying the update, the (immutable) field '_id' was found \
                                 to have been altered to {}",
                                render::element("_id", new_id)
                            ),
                        ));
                    }
                    (Some(id), _) | (None, Some(id)) => {
                        next.insert("_id", id.clone());
                    }
                    (None, None) => {}
                }
                for (k, v) in replacement {
                    if k != "_id" {
                        next.insert(k.clone(), v.clone());
                    }
                }
                *doc = next;
                return Ok(());
            }
            Self::Modifiers(mods) => {
                for m in mods {
                    m.apply(doc, inserting)?;
                }
            }
            Self::Pipeline(stages) => {
                *doc = crate::store::aggregate::apply_to_document(stages, doc)?;
            }
        }
        if !inserting && doc.get("_id") != original_id.as_ref() {
            return Err(CommandError::new(
                66,
                "ImmutableField",
                "Performing an update on the path '_id' would modify the immutable field '_id'",
            ));
        }
        if let Some(id) = doc.remove("_id") {
            let mut reordered = bson::doc! {"_id": id};
            reordered.extend(std::mem::take(doc));
            *doc = reordered;
        }
        Ok(())
    }
}

fn id_of(doc: &Document) -> String {
    doc.get("_id").map_or_else(
        || "{}".to_owned(),
        |id| format!("{{{}}}", render::element("_id", id)),
    )
}

impl Modification {
    fn last(&self) -> &str {
        self.path.last().map(String::as_str).unwrap_or_default()
    }

    fn apply(&self, doc: &mut Document, inserting: bool) -> Result<(), CommandError> {
        let current = path::get(doc, &self.path).cloned();
        let next = match &self.op {
            Op::SetOnInsert if !inserting => return Ok(()),
            Op::Set | Op::SetOnInsert => Some(self.arg.clone()),
            Op::Unset => {
                fields::unset(doc, &self.path);
                return Ok(());
            }
            Op::Inc | Op::Mul => Some(self.arithmetic(doc, current)?),
            Op::Min | Op::Max => {
                let want = if matches!(self.op, Op::Min) {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
                match current {
                    Some(v) if compare(&self.arg, &v) != want => None,
                    _ => Some(self.arg.clone()),
                }
            }
            Op::Push(spec) => {
                let mut items = self.array(doc, current, "$push")?.unwrap_or_default();
                push(&mut items, spec);
                Some(Bson::Array(items))
            }
            Op::AddToSet(values) => {
                let mut items = self.array(doc, current, "$addToSet")?.unwrap_or_default();
                for v in values {
                    if !items.iter().any(|i| equal(i, v)) {
                        items.push(v.clone());
                    }
                }
                Some(Bson::Array(items))
            }
            Op::Pull(matcher) => match current {
                None => None,
                Some(Bson::Array(mut items)) => {
                    items.retain(|i| !matcher.matches_value(i));
                    Some(Bson::Array(items))
                }
                Some(_) => {
                    return Err(CommandError::bad_value(
                        "Cannot apply $pull to a non-array value",
                    ));
                }
            },
            Op::PullAll(values) => match current {
                None => None,
                Some(Bson::Array(mut items)) => {
                    items.retain(|i| !values.iter().any(|v| equal(i, v)));
                    Some(Bson::Array(items))
                }
                Some(_) => {
                    return Err(CommandError::bad_value(
                        "Cannot apply $pull to a non-array value",
                    ));
                }
            },
            Op::Pop(first) => match current {
                None => None,
                Some(Bson::Array(mut items)) => {
                    if *first && !items.is_empty() {
                        items.remove(0);
                    } else {
                        items.pop();
                    }
                    Some(Bson::Array(items))
                }
                Some(other) => {
                    return Err(CommandError::type_mismatch(format!(
                        "Path '{}' contains an element of non-array type '{}'",
                        self.field,
                        type_name(&other)
                    )));
                }
            },
            Op::Rename(to) => {
                if let Some(value) = current {
                    fields::unset(doc, &self.path);
                    fields::set(doc, to, value)?;
                }
                return Ok(());
            }
            Op::CurrentDate(timestamp) => Some(if *timestamp {
                let now = bson::DateTime::now().timestamp_millis() / 1000;
                Bson::Timestamp(bson::Timestamp {
                    time: u32::try_from(now).unwrap_or(0),
                    increment: 1,
                })
            } else {
                Bson::DateTime(bson::DateTime::now())
            }),
        };
        match next {
            Some(value) => fields::set(doc, &self.path, value),
            None => Ok(()),
        }
    }

    fn arithmetic(&self, doc: &Document, current: Option<Bson>) -> Result<Bson, CommandError> {
        let (verb, op): (&str, arith::BinaryOp) = match self.op {
            Op::Inc => ("$inc", arith::add),
            _ => ("$mul", arith::multiply),
        };
        let current = match current {
            Some(v) => v,
            None if verb == "$inc" => return Ok(self.arg.clone()),
            None => {
                return Ok(arith::multiply(&self.arg, &Bson::Int32(0)).unwrap_or(Bson::Int32(0)));
            }
        };
        if Number::of(&current).is_none() {
            return Err(CommandError::type_mismatch(format!(
                "Cannot apply {verb} to a value of non-numeric type. {} has the field '{}' of \
                 non-numeric type {}",
                id_of(doc),
                self.last(),
                type_name(&current)
            )));
        }
        op(&current, &self.arg)
            .ok_or_else(|| CommandError::bad_value(format!("Failed to apply {verb}")))
    }

    fn array(
        &self,
        doc: &Document,
        current: Option<Bson>,
        verb: &str,
    ) -> Result<Option<Vec<Bson>>, CommandError> {
        match current {
            None => Ok(None),
            Some(Bson::Array(items)) => Ok(Some(items)),
            Some(other) if verb == "$addToSet" => Err(CommandError::bad_value(format!(
                "Cannot apply $addToSet to non-array field. Field named '{}' has non-array type {}",
                self.last(),
                type_name(&other)
            ))),
            Some(other) => Err(CommandError::bad_value(format!(
                "The field '{}' must be an array but is of type {} in document {}",
                self.field,
                type_name(&other),
                id_of(doc)
            ))),
        }
    }
}

fn push(items: &mut Vec<Bson>, spec: &PushSpec) {
    let len = items.len() as i64;
    let at = match spec.position {
        None => len,
        Some(p) if p < 0 => (len + p).max(0),
        Some(p) => p.min(len),
    };
    let at = usize::try_from(at).unwrap_or(items.len());
    for (offset, value) in spec.each.iter().enumerate() {
        items.insert(at + offset, value.clone());
    }
    if let Some(sort) = &spec.sort {
        sort_elements(items, sort);
    }
    if let Some(slice) = spec.slice {
        let keep = usize::try_from(slice.unsigned_abs()).unwrap_or(usize::MAX);
        if slice >= 0 {
            items.truncate(keep);
        } else if items.len() > keep {
            items.drain(..items.len() - keep);
        }
    }
}

fn sort_elements(items: &mut [Bson], sort: &Bson) {
    match sort {
        Bson::Document(spec) => items.sort_by(|a, b| {
            let (Bson::Document(x), Bson::Document(y)) = (a, b) else {
                return compare(a, b);
            };
            for (field, dir) in spec {
                let ascending = Number::of(dir).is_none_or(|n| n.as_f64() >= 0.0);
                let order = path::order_keys(
                    &path::sort_key(x, field, ascending),
                    &path::sort_key(y, field, ascending),
                    ascending,
                );
                if order != Ordering::Equal {
                    return order;
                }
            }
            Ordering::Equal
        }),
        other => {
            let descending = Number::of(other).is_some_and(|n| n.as_f64() < 0.0);
            items.sort_by(|a, b| {
                if descending {
                    compare(b, a)
                } else {
                    compare(a, b)
                }
            });
        }
    }
}
