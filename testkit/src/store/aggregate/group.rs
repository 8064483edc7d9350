//! The `$group` stage: documents are bucketed by the `_id` expression (compared with BSON
//! equality, so `1` and `1.0` share a group) in order of first appearance, and each
//! accumulator (`$sum`, `$count`, `$avg`, `$min`, `$max`, `$first`, `$last`, `$push`,
//! `$addToSet`, `$mergeObjects`) folds its expression over the group.

use std::cmp::Ordering;

use bson::{Bson, Document};

use crate::store::CommandError;
use crate::store::arith;
use crate::store::compare::{Number, compare, equal};
use crate::store::expression::{self, evaluate};

#[derive(Clone, Debug)]
enum Acc {
    Sum(Bson),
    Avg(f64, usize),
    Min(Option<Bson>),
    Max(Option<Bson>),
    First(Option<Bson>),
    Last(Bson),
    Push(Vec<Bson>),
    AddToSet(Vec<Bson>),
    Count(usize),
    Merge(Document),
}

struct Field {
    name: String,
    op: String,
    expr: Bson,
}

fn parse(spec: &Document) -> Result<(Bson, Vec<Field>), CommandError> {
    let id = spec.get("_id").cloned().ok_or_else(|| {
        CommandError::location(15955, "a group specification must include an _id")
    })?;
    expression::check(&id)?;
    let mut fields = Vec::new();
    for (name, value) in spec.iter().filter(|(k, _)| *k != "_id") {
        if name.contains('.') {
            return Err(CommandError::location(
                40235,
                format!("The field name '{name}' cannot contain '.'"),
            ));
        }
        let accumulator = match value {
            Bson::Document(d) if d.len() == 1 => d.iter().next(),
            _ => None,
        };
        let Some((op, expr)) = accumulator else {
            return Err(CommandError::location(
                40234,
                format!("The field '{name}' must be an accumulator object"),
            ));
        };
        if !matches!(
            op.as_str(),
            "$sum"
                | "$count"
                | "$avg"
                | "$min"
                | "$max"
                | "$first"
                | "$last"
                | "$push"
                | "$addToSet"
                | "$mergeObjects"
        ) {
            return Err(CommandError::location(
                15952,
                format!("unknown group operator '{op}'"),
            ));
        }
        if op == "$count" && !matches!(expr, Bson::Document(d) if d.is_empty()) {
            return Err(CommandError::location(
                40237,
                "$count takes no arguments, i.e. $count:{}",
            ));
        }
        expression::check(expr)?;
        fields.push(Field {
            name: name.clone(),
            op: op.clone(),
            expr: expr.clone(),
        });
    }
    Ok((id, fields))
}

fn start(op: &str) -> Acc {
    match op {
        "$sum" => Acc::Sum(arith::zero()),
        "$avg" => Acc::Avg(0.0, 0),
        "$min" => Acc::Min(None),
        "$max" => Acc::Max(None),
        "$first" => Acc::First(None),
        "$last" => Acc::Last(Bson::Null),
        "$push" => Acc::Push(Vec::new()),
        "$addToSet" => Acc::AddToSet(Vec::new()),
        "$mergeObjects" => Acc::Merge(Document::new()),
        _ => Acc::Count(0),
    }
}

impl Acc {
    fn feed(&mut self, value: Option<Bson>) -> Result<(), CommandError> {
        let present = value
            .clone()
            .filter(|v| !matches!(v, Bson::Null | Bson::Undefined));
        match self {
            Self::Sum(total) => {
                if let Some(sum) = value.as_ref().and_then(|v| arith::add(total, v)) {
                    *total = sum;
                }
            }
            Self::Avg(sum, n) => {
                if let Some(x) = value.as_ref().and_then(Number::of) {
                    *sum += x.as_f64();
                    *n += 1;
                }
            }
            Self::Min(best) => {
                if let Some(v) = present
                    && best
                        .as_ref()
                        .is_none_or(|b| compare(&v, b) == Ordering::Less)
                {
                    *best = Some(v);
                }
            }
            Self::Max(best) => {
                if let Some(v) = present
                    && best
                        .as_ref()
                        .is_none_or(|b| compare(&v, b) == Ordering::Greater)
                {
                    *best = Some(v);
                }
            }
            Self::First(first) => {
                if first.is_none() {
                    *first = Some(value.unwrap_or(Bson::Null));
                }
            }
            Self::Last(last) => *last = value.unwrap_or(Bson::Null),
            Self::Push(items) => items.extend(value),
            Self::AddToSet(items) => {
                if let Some(v) = value
                    && !items.iter().any(|i| equal(i, &v))
                {
                    items.push(v);
                }
            }
            Self::Count(n) => *n += 1,
            Self::Merge(doc) => match present {
                None => {}
                Some(Bson::Document(d)) => doc.extend(d),
                Some(other) => {
                    return Err(CommandError::location(
                        40400,
                        format!(
                            "$mergeObjects requires object inputs, but input {} is of type {}",
                            crate::store::render::value(&other),
                            crate::store::compare::type_name(&other)
                        ),
                    ));
                }
            },
        }
        Ok(())
    }

    fn finish(self) -> Bson {
        match self {
            Self::Sum(total) => total,
            Self::Avg(_, 0) => Bson::Null,
            Self::Avg(sum, n) => Bson::Double(sum / n as f64),
            Self::Min(best) | Self::Max(best) => best.unwrap_or(Bson::Null),
            Self::First(first) => first.unwrap_or(Bson::Null),
            Self::Last(last) => last,
            Self::Push(items) | Self::AddToSet(items) => Bson::Array(items),
            Self::Count(n) => i32::try_from(n).map_or(Bson::Int64(n as i64), Bson::Int32),
            Self::Merge(doc) => Bson::Document(doc),
        }
    }
}

/// Runs `$group` over `docs`.
///
/// # Errors
/// mongod's `$group` parse errors (15955, 15952, 40234, 40235) and expression errors.
pub(super) fn group(spec: &Bson, docs: Vec<Document>) -> Result<Vec<Document>, CommandError> {
    let Bson::Document(spec) = spec else {
        return Err(CommandError::location(
            15947,
            "a group's fields must be specified in an object",
        ));
    };
    let (id, fields) = parse(spec)?;
    let mut groups: Vec<(Bson, Vec<Acc>)> = Vec::new();
    for doc in &docs {
        let key = evaluate(&id, doc)?.unwrap_or(Bson::Null);
        let position = match groups.iter().position(|(k, _)| equal(k, &key)) {
            Some(p) => p,
            None => {
                groups.push((key, fields.iter().map(|f| start(&f.op)).collect()));
                groups.len() - 1
            }
        };
        for (field, acc) in fields.iter().zip(groups[position].1.iter_mut()) {
            let value = if field.op == "$count" {
                None
            } else {
                evaluate(&field.expr, doc)?
            };
            acc.feed(value)?;
        }
    }
    Ok(groups
        .into_iter()
        .map(|(key, accs)| {
            let mut out = bson::doc! {"_id": key};
            for (field, acc) in fields.iter().zip(accs) {
                out.insert(field.name.clone(), acc.finish());
            }
            out
        })
        .collect())
}
