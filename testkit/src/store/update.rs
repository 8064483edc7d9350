//! Update documents (`update`'s `u`, `findAndModify`'s `update`): parsed once into a
//! replacement, a sorted list of field modifications (`$set`, `$inc`, `$push`, ...) or an
//! aggregation pipeline, with mongod's parse errors; then applied to one document at a time.
//! Also builds the seed document of an upsert from the query's equality fields.

mod apply;
mod fields;

pub(crate) use fields::unset as remove_path;
#[cfg(test)]
mod tests;

use bson::{Bson, Document};

use super::CommandError;
use super::compare::{Number, type_name};
use super::filter::ValueMatcher;
use super::render;

/// A parsed update.
#[derive(Clone, Debug)]
pub(crate) enum Update {
    /// A whole new document (the `_id` is kept).
    Replacement(Document),
    /// Field modifications, sorted by path as mongod applies them.
    Modifiers(Vec<Modification>),
    /// A pipeline-style update (`$set`, `$unset`, `$project`, `$replaceWith` stages).
    Pipeline(Vec<Document>),
}

#[derive(Clone, Debug)]
pub(crate) struct Modification {
    op: Op,
    field: String,
    path: Vec<String>,
    arg: Bson,
}

#[derive(Clone, Debug)]
enum Op {
    Set,
    SetOnInsert,
    Unset,
    Inc,
    Mul,
    Min,
    Max,
    Push(PushSpec),
    AddToSet(Vec<Bson>),
    Pull(ValueMatcher),
    PullAll(Vec<Bson>),
    Pop(bool),
    Rename(Vec<String>),
    CurrentDate(bool),
}

#[derive(Clone, Debug)]
struct PushSpec {
    each: Vec<Bson>,
    position: Option<i64>,
    slice: Option<i64>,
    sort: Option<Bson>,
}

fn failed(msg: String) -> CommandError {
    CommandError::failed_to_parse(msg)
}

impl Update {
    /// Parses `u` (a document or a pipeline array).
    ///
    /// # Errors
    /// `FailedToParse` (9) for unknown modifiers and malformed arguments,
    /// `ConflictingUpdateOperators` (40), `TypeMismatch` (14) for non-numeric `$inc`/`$mul`.
    pub(crate) fn parse(u: &Bson) -> Result<Self, CommandError> {
        match u {
            Bson::Array(stages) => parse_pipeline(stages),
            Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {
                parse_modifiers(d)
            }
            Bson::Document(d) => {
                if let Some(k) = d.keys().find(|k| k.starts_with('$')) {
                    return Err(CommandError::new(
                        52,
                        "DollarPrefixedFieldName",
                        format!(
                            "The dollar ($) prefixed field '{k}' in '{k}' is not valid for storage."
                        ),
                    ));
                }
                Ok(Self::Replacement(d.clone()))
            }
            other => Err(CommandError::type_mismatch(format!(
                "Update argument must be either an object or an array, not {}",
                type_name(other)
            ))),
        }
    }

    pub(crate) fn is_replacement(&self) -> bool {
        matches!(self, Self::Replacement(_))
    }
}

fn parse_pipeline(stages: &[Bson]) -> Result<Update, CommandError> {
    let mut out = Vec::new();
    for stage in stages {
        let Bson::Document(d) = stage else {
            return Err(CommandError::type_mismatch(
                "Each element of the 'pipeline' array must be an object",
            ));
        };
        let name = d.keys().next().map(String::as_str).unwrap_or_default();
        if !matches!(
            name,
            "$addFields" | "$set" | "$project" | "$unset" | "$replaceRoot" | "$replaceWith"
        ) {
            return Err(CommandError::new(
                72,
                "InvalidOptions",
                format!("{name} is not allowed to be used within an update"),
            ));
        }
        out.push(d.clone());
    }
    Ok(Update::Pipeline(out))
}

fn parse_modifiers(u: &Document) -> Result<Update, CommandError> {
    let mut mods = Vec::new();
    for (name, arg) in u {
        let unknown = || {
            failed(format!(
                "Unknown modifier: {name}. Expected a valid update modifier or pipeline-style \
                 update specified as an array"
            ))
        };
        if !name.starts_with('$') {
            return Err(unknown());
        }
        let Bson::Document(fields) = arg else {
            return Err(failed(format!(
                "Modifiers operate on fields but we found type {} instead. For example: \
                 {{$mod: {{<field>: ...}}}} not {{{}}}",
                type_name(arg),
                render::element(name, arg)
            )));
        };
        for (field, value) in fields {
            let path = super::path::split(field).ok_or_else(|| {
                CommandError::new(
                    56,
                    "EmptyFieldName",
                    format!("The update path '{field}' contains an empty field name, which is not allowed."),
                )
            })?;
            let op = parse_op(name, field, value).and_then(|op| op.ok_or_else(unknown))?;
            mods.push(Modification {
                op,
                field: field.clone(),
                path,
                arg: value.clone(),
            });
        }
    }
    check_conflicts(&mods)?;
    mods.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Update::Modifiers(mods))
}

fn parse_op(name: &str, field: &str, value: &Bson) -> Result<Option<Op>, CommandError> {
    let numeric = |verb: &str| {
        if Number::of(value).is_some() {
            Ok(())
        } else {
            Err(CommandError::type_mismatch(format!(
                "Cannot {verb} with non-numeric argument: {{{}}}",
                render::element(field, value)
            )))
        }
    };
    Ok(Some(match name {
        "$set" => Op::Set,
        "$setOnInsert" => Op::SetOnInsert,
        "$unset" => Op::Unset,
        "$inc" => {
            numeric("increment")?;
            Op::Inc
        }
        "$mul" => {
            numeric("multiply")?;
            Op::Mul
        }
        "$min" => Op::Min,
        "$max" => Op::Max,
        "$push" => Op::Push(parse_push(value)?),
        "$addToSet" => Op::AddToSet(match value {
            Bson::Document(d) if d.contains_key("$each") => match d.get("$each") {
                Some(Bson::Array(items)) => items.clone(),
                _ => {
                    return Err(CommandError::type_mismatch(
                        "The argument to $each in $addToSet must be an array",
                    ));
                }
            },
            other => vec![other.clone()],
        }),
        "$pull" => Op::Pull(ValueMatcher::parse_pull(value)?),
        "$pullAll" => match value {
            Bson::Array(items) => Op::PullAll(items.clone()),
            other => {
                return Err(CommandError::bad_value(format!(
                    "$pullAll requires an array argument but was given a {}",
                    type_name(other)
                )));
            }
        },
        "$pop" => match Number::of(value).map(Number::as_f64) {
            Some(n) if n == 1.0 || n == -1.0 => Op::Pop(n < 0.0),
            _ => {
                return Err(failed(format!(
                    "$pop expects 1 or -1, found: {}",
                    render::value(value)
                )));
            }
        },
        "$rename" => match value {
            Bson::String(to) if to == field => {
                return Err(CommandError::bad_value(format!(
                    "The source and target field for $rename must differ: {}",
                    render::element(field, value)
                )));
            }
            Bson::String(to) => Op::Rename(super::path::split(to).ok_or_else(|| {
                CommandError::bad_value(format!(
                    "The update path '{to}' contains an empty field name, which is not allowed."
                ))
            })?),
            other => {
                return Err(CommandError::bad_value(format!(
                    "The 'to' field for $rename must be a string: {}",
                    render::element(field, other)
                )));
            }
        },
        "$currentDate" => match value {
            Bson::Boolean(_) => Op::CurrentDate(false),
            Bson::Document(d) => match d.get("$type") {
                Some(Bson::String(t)) if t == "date" => Op::CurrentDate(false),
                Some(Bson::String(t)) if t == "timestamp" => Op::CurrentDate(true),
                _ => {
                    return Err(CommandError::bad_value(
                        "The '$type' string field is required to be 'date' or 'timestamp': {$currentDate: {field : {$type: 'date'}}}",
                    ));
                }
            },
            _ => {
                return Err(CommandError::bad_value(format!(
                    "{} is not valid type for $currentDate. Please use a boolean ('true') or a $type expression ({{$type: 'timestamp/date'}}).",
                    type_name(value)
                )));
            }
        },
        _ => return Ok(None),
    }))
}

fn parse_push(value: &Bson) -> Result<PushSpec, CommandError> {
    let Bson::Document(d) = value else {
        return Ok(PushSpec {
            each: vec![value.clone()],
            position: None,
            slice: None,
            sort: None,
        });
    };
    if !d.contains_key("$each") {
        return Ok(PushSpec {
            each: vec![value.clone()],
            position: None,
            slice: None,
            sort: None,
        });
    }
    let integer = |key: &str| -> Result<Option<i64>, CommandError> {
        match d.get(key) {
            None => Ok(None),
            Some(v) => match Number::of(v) {
                Some(n) if n.as_f64().fract() == 0.0 => Ok(Some(n.as_f64() as i64)),
                _ => Err(CommandError::bad_value(format!(
                    "The value for {key} must be an integer value but was given type: {}",
                    type_name(v)
                ))),
            },
        }
    };
    let each = match d.get("$each") {
        Some(Bson::Array(items)) => items.clone(),
        Some(other) => {
            return Err(CommandError::bad_value(format!(
                "The argument to $each in $push must be an array but it was of type: {}",
                type_name(other)
            )));
        }
        None => Vec::new(),
    };
    for key in d.keys() {
        if !matches!(key.as_str(), "$each" | "$position" | "$slice" | "$sort") {
            return Err(CommandError::bad_value(format!(
                "Unrecognized clause in $push: {key}"
            )));
        }
    }
    Ok(PushSpec {
        each,
        position: integer("$position")?,
        slice: integer("$slice")?,
        sort: d.get("$sort").cloned(),
    })
}

fn check_conflicts(mods: &[Modification]) -> Result<(), CommandError> {
    let mut targets: Vec<&[String]> = Vec::new();
    for m in mods {
        targets.push(&m.path);
        if let Op::Rename(to) = &m.op {
            targets.push(to);
        }
    }
    for (i, a) in targets.iter().enumerate() {
        for b in &targets[i + 1..] {
            let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
            if long.starts_with(short) {
                return Err(CommandError::new(
                    40,
                    "ConflictingUpdateOperators",
                    format!(
                        "Updating the path '{}' would create a conflict at '{}'",
                        long.join("."),
                        short.join(".")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The document an upsert starts from: the query's equality fields (`{a: 1}`,
/// `{a: {$eq: 1}}`, `{a: {$in: [1]}}`, inside `$and` too), dotted paths expanded.
pub(crate) fn upsert_seed(query: &Document) -> Document {
    let mut seed = Document::new();
    collect_equalities(query, &mut seed);
    if let Some(id) = seed.remove("_id") {
        let mut ordered = bson::doc! {"_id": id};
        ordered.extend(seed);
        return ordered;
    }
    seed
}

fn collect_equalities(query: &Document, seed: &mut Document) {
    for (key, value) in query {
        if key == "$and" {
            if let Bson::Array(items) = value {
                for item in items {
                    if let Bson::Document(d) = item {
                        collect_equalities(d, seed);
                    }
                }
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        let equal_to = match value {
            Bson::RegularExpression(_) => None,
            Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {
                match (d.get("$eq"), d.get("$in")) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(Bson::Array(items))) if items.len() == 1 => Some(items[0].clone()),
                    _ => None,
                }
            }
            other => Some(other.clone()),
        };
        if let (Some(v), Some(path)) = (equal_to, super::path::split(key)) {
            let _ = fields::set(seed, &path, v);
        }
    }
}
