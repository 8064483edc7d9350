//! The pipeline stages atlas-sim runs: `$match $sort $skip $limit $project $addFields/$set
//! $unset $group $count $unwind $replaceRoot/$replaceWith $sortByCount $lookup $facet
//! $sample $documents`. Each parses its specification before touching documents, so a bad
//! stage fails even on an empty collection.

use bson::{Bson, Document, doc};
use rand::seq::SliceRandom;

use super::{Lookup, expect_document, group::group, run};
use crate::store::CommandError;
use crate::store::compare::{Number, equal, type_name};
use crate::store::expression::{self, evaluate};
use crate::store::filter::Filter;
use crate::store::path::query_values;
use crate::store::projection::{Projection, set_lenient};
use crate::store::render;
use crate::store::sort::SortSpec;

fn integer(stage: &str, spec: &Bson) -> Result<i64, CommandError> {
    match Number::of(spec) {
        Some(Number::Int(i)) => Ok(i),
        Some(Number::Float(f)) if f.fract() == 0.0 => Ok(f as i64),
        _ => Err(CommandError::location(
            15957,
            format!(
                "the {stage} field must be an integer, but found type {}",
                type_name(spec)
            ),
        )),
    }
}

/// Applies one stage.
///
/// # Errors
/// The stage's parse or evaluation errors; `Location40324` for an unknown stage.
pub(super) fn apply(
    name: &str,
    spec: &Bson,
    docs: Vec<Document>,
    position: usize,
    lookup: Lookup<'_>,
) -> Result<Vec<Document>, CommandError> {
    match name {
        "$match" => {
            let filter = Filter::parse(expect_document("$match", spec, 15959)?)?;
            Ok(docs.into_iter().filter(|d| filter.matches(d)).collect())
        }
        "$sort" => {
            let spec = expect_document("$sort", spec, 15973)?;
            if spec.is_empty() {
                return Err(CommandError::location(
                    15976,
                    "$sort stage must have at least one sort key",
                ));
            }
            let mut docs = docs;
            SortSpec::parse(spec)?.sort(&mut docs);
            Ok(docs)
        }
        "$skip" => {
            let n = integer("$skip", spec)?;
            let n = usize::try_from(n).map_err(|_| {
                CommandError::location(15956, format!("Argument to $skip cannot be negative: {n}"))
            })?;
            Ok(docs.into_iter().skip(n).collect())
        }
        "$limit" => {
            let n = integer("$limit", spec)?;
            if n <= 0 {
                return Err(CommandError::location(15958, "the limit must be positive"));
            }
            Ok(docs
                .into_iter()
                .take(usize::try_from(n).unwrap_or(usize::MAX))
                .collect())
        }
        "$project" => {
            let spec = expect_document("$project", spec, 15969)?;
            let projection = Projection::parse(spec)?.ok_or_else(|| {
                CommandError::location(51272, "Invalid $project :: caused by :: projection specification must have at least one field")
            })?;
            docs.iter().map(|d| projection.apply(d)).collect()
        }
        "$addFields" | "$set" => add_fields(expect_document(name, spec, 40272)?, docs),
        "$unset" => {
            let fields: Vec<&str> = match spec {
                Bson::String(s) => vec![s.as_str()],
                Bson::Array(items) => items.iter().filter_map(|i| i.as_str()).collect(),
                _ => Vec::new(),
            };
            if fields.is_empty() {
                return Err(CommandError::location(
                    31002,
                    "$unset specification must be a string or an array containing at least one field",
                ));
            }
            let exclusion: Document = fields
                .into_iter()
                .map(|f| (f.to_owned(), Bson::Int32(0)))
                .collect();
            let projection = Projection::parse(&exclusion)?;
            docs.iter()
                .map(|d| projection.as_ref().map_or(Ok(d.clone()), |p| p.apply(d)))
                .collect()
        }
        "$group" => group(spec, docs),
        "$count" => count(spec, docs),
        "$unwind" => unwind(spec, docs),
        "$replaceRoot" => {
            let spec = expect_document("$replaceRoot", spec, 40228)?;
            let new_root = spec.get("newRoot").ok_or_else(|| {
                CommandError::location(40231, "no newRoot specified for the $replaceRoot stage")
            })?;
            replace_root(new_root, docs)
        }
        "$replaceWith" => replace_root(spec, docs),
        "$sortByCount" => {
            expression::check(spec)?;
            let grouped = group(
                &doc! {"_id": spec.clone(), "count": {"$sum": 1}}.into(),
                docs,
            )?;
            apply(
                "$sort",
                &doc! {"count": -1}.into(),
                grouped,
                position,
                lookup,
            )
        }
        "$lookup" => lookup_stage(expect_document("$lookup", spec, 40319)?, docs, lookup),
        "$facet" => {
            let spec = expect_document("$facet", spec, 40169)?;
            let mut out = Document::new();
            for (field, pipeline) in spec {
                let Bson::Array(stages) = pipeline else {
                    return Err(CommandError::location(
                        40170,
                        format!(
                            "arguments to $facet must be arrays, {field} is type {}",
                            type_name(pipeline)
                        ),
                    ));
                };
                let stages: Vec<&Document> =
                    stages.iter().filter_map(|s| s.as_document()).collect();
                let results = run(&stages, docs.clone(), lookup)?;
                out.insert(
                    field.clone(),
                    results.into_iter().map(Bson::Document).collect::<Vec<_>>(),
                );
            }
            Ok(vec![out])
        }
        "$sample" => {
            let spec = expect_document("$sample", spec, 28745)?;
            let size = spec
                .get("size")
                .map(|s| integer("$sample", s))
                .transpose()?
                .unwrap_or(0);
            let mut docs = docs;
            docs.shuffle(&mut rand::rng());
            docs.truncate(usize::try_from(size).unwrap_or(0));
            Ok(docs)
        }
        "$documents" if position == 0 => match evaluate(spec, &Document::new())? {
            Some(Bson::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    Bson::Document(d) => Ok(d),
                    other => Err(CommandError::type_mismatch(format!(
                        "$documents expression must evaluate to an array of objects, found {}",
                        type_name(&other)
                    ))),
                })
                .collect(),
            _ => Err(CommandError::location(
                5858203,
                "error during lookup: $documents must evaluate to an array",
            )),
        },
        "$out" | "$merge" => Err(CommandError::bad_value(format!(
            "atlas-sim does not support the {name} stage"
        ))),
        other => Err(CommandError::location(
            40324,
            format!("Unrecognized pipeline stage name: '{other}'"),
        )),
    }
}

fn add_fields(spec: &Document, docs: Vec<Document>) -> Result<Vec<Document>, CommandError> {
    for expr in spec.values() {
        expression::check(expr)?;
    }
    docs.into_iter()
        .map(|doc| {
            let mut out = doc.clone();
            for (field, expr) in spec {
                let path: Vec<&str> = field.split('.').collect();
                match evaluate(expr, &doc)? {
                    Some(value) => set_lenient(&mut out, &path, value),
                    None => {
                        let parts: Vec<String> = path.iter().map(|p| (*p).to_owned()).collect();
                        crate::store::update::remove_path(&mut out, &parts);
                    }
                }
            }
            Ok(out)
        })
        .collect()
}

fn count(spec: &Bson, docs: Vec<Document>) -> Result<Vec<Document>, CommandError> {
    let Bson::String(name) = spec else {
        return Err(CommandError::location(
            40156,
            "the count field must be a non-empty string",
        ));
    };
    if name.is_empty() {
        return Err(CommandError::location(
            40157,
            "the count field must be a non-empty string",
        ));
    }
    if name.starts_with('$') {
        return Err(CommandError::location(
            40158,
            "the count field cannot be a $-prefixed path",
        ));
    }
    if name.contains('.') {
        return Err(CommandError::location(
            40160,
            "the count field cannot contain '.'",
        ));
    }
    if docs.is_empty() {
        return Ok(Vec::new());
    }
    let n = i32::try_from(docs.len()).map_or(Bson::Int64(docs.len() as i64), Bson::Int32);
    Ok(vec![doc! {name.clone(): n}])
}

fn unwind(spec: &Bson, docs: Vec<Document>) -> Result<Vec<Document>, CommandError> {
    let (path, index_field, preserve) = match spec {
        Bson::String(p) => (p.as_str(), None, false),
        Bson::Document(d) => (
            d.get_str("path")
                .map_err(|_| CommandError::location(28812, "no path specified to $unwind stage"))?,
            d.get_str("includeArrayIndex").ok(),
            d.get_bool("preserveNullAndEmptyArrays").unwrap_or(false),
        ),
        other => {
            return Err(CommandError::location(
                15981,
                format!(
                    "expected either a string or an object as specification for $unwind stage, got {}",
                    type_name(other)
                ),
            ));
        }
    };
    let Some(field) = path.strip_prefix('$') else {
        return Err(CommandError::location(
            28818,
            format!("path option to $unwind stage should be prefixed with a '$': {path}"),
        ));
    };
    let parts: Vec<&str> = field.split('.').collect();
    let mut out = Vec::new();
    for doc in docs {
        let value = expression::field_path(&doc, field);
        match value {
            Some(Bson::Array(items)) if !items.is_empty() => {
                for (i, item) in items.into_iter().enumerate() {
                    let mut next = doc.clone();
                    set_lenient(&mut next, &parts, item);
                    if let Some(index_field) = index_field {
                        next.insert(index_field, i as i64);
                    }
                    out.push(next);
                }
            }
            Some(Bson::Array(_)) | None | Some(Bson::Null) => {
                if preserve {
                    let mut next = doc;
                    if let Some(index_field) = index_field {
                        next.insert(index_field, Bson::Null);
                    }
                    out.push(next);
                }
            }
            Some(_) => {
                let mut next = doc;
                if let Some(index_field) = index_field {
                    next.insert(index_field, Bson::Null);
                }
                out.push(next);
            }
        }
    }
    Ok(out)
}

fn replace_root(new_root: &Bson, docs: Vec<Document>) -> Result<Vec<Document>, CommandError> {
    expression::check(new_root)?;
    docs.into_iter()
        .map(|doc| match evaluate(new_root, &doc)? {
            Some(Bson::Document(d)) => Ok(d),
            other => Err(CommandError::location(40228, format!(
                "'newRoot' expression must evaluate to an object, but resulting value was: {}. Type of resulting value: '{}'. Input document: {}",
                other.as_ref().map_or_else(|| "MISSING".to_owned(), render::value),
                other.as_ref().map_or("missing", type_name),
                render::document(&doc)
            ))),
        })
        .collect()
}

fn lookup_stage(
    spec: &Document,
    docs: Vec<Document>,
    lookup: Lookup<'_>,
) -> Result<Vec<Document>, CommandError> {
    let field = |name: &str| -> Result<&str, CommandError> {
        spec.get_str(name).map_err(|_| {
            CommandError::failed_to_parse(format!("$lookup requires '{name}' to be a string (atlas-sim supports only the localField/foreignField form)"))
        })
    };
    let (from, local, foreign, as_field) = (
        field("from")?,
        field("localField")?,
        field("foreignField")?,
        field("as")?,
    );
    let foreign_docs = lookup(from);
    let as_path: Vec<&str> = as_field.split('.').collect();
    Ok(docs
        .into_iter()
        .map(|mut doc| {
            let mut keys: Vec<Bson> = Vec::new();
            for value in query_values(&doc, local) {
                match value {
                    None => keys.push(Bson::Null),
                    Some(Bson::Array(items)) => keys.extend(items.iter().cloned()),
                    Some(other) => keys.push(other.clone()),
                }
            }
            let matches: Vec<Bson> = foreign_docs
                .iter()
                .filter(|f| {
                    query_values(f, foreign).into_iter().any(|v| {
                        let candidates: Vec<Bson> = match v {
                            None => vec![Bson::Null],
                            Some(Bson::Array(items)) => items.clone(),
                            Some(other) => vec![other.clone()],
                        };
                        candidates.iter().any(|c| keys.iter().any(|k| equal(c, k)))
                    })
                })
                .cloned()
                .map(Bson::Document)
                .collect();
            set_lenient(&mut doc, &as_path, Bson::Array(matches));
            doc
        })
        .collect())
}
