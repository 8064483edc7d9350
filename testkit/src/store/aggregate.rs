//! The `aggregate` command: a pipeline of stages run over a collection's documents (or, for
//! `aggregate: 1`, over `$documents`), producing a cursor. Stage implementations are in
//! `stages`, `$group` in `group`.

mod group;
mod stages;
#[cfg(test)]
mod tests;

use bson::{Bson, Document};

use super::args::Args;
use super::compare::Number;
use super::{CommandError, Outcome, Store, collection_name};

/// Reads other collections of the same database (for `$lookup`).
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Vec<Document>;

/// `aggregate` -> cursor over "db.coll" (or "db.$cmd.aggregate").
pub(crate) fn command(
    store: &Store,
    db: &str,
    command: &Document,
) -> Result<Outcome, CommandError> {
    let args = Args::new("aggregate", command);
    let pipeline = args.required_documents("pipeline")?;
    if !command.contains_key("cursor") && !args.bool("explain", false)? {
        return Err(CommandError::failed_to_parse(
            "The 'cursor' option is required, except for aggregate with the explain argument",
        ));
    }
    args.document("cursor")?;
    for stage in &pipeline {
        if stage.len() != 1 {
            return Err(CommandError::location(
                40323,
                "A pipeline stage specification object must contain exactly one field.",
            ));
        }
    }
    let collection_less = command
        .values()
        .next()
        .and_then(Number::of)
        .is_some_and(|n| n.as_f64() == 1.0);
    let lookup = |name: &str| store.documents(db, name).to_vec();
    if collection_less {
        let first = pipeline
            .first()
            .and_then(|s| s.keys().next())
            .map(String::as_str);
        if first != Some("$documents") {
            let name = first.unwrap_or("aggregate");
            return Err(CommandError::invalid_namespace(format!(
                "{{aggregate: 1}} is not valid for '{name}'; a collection is required."
            )));
        }
        let documents = run(&pipeline, Vec::new(), &lookup)?;
        return Ok(Outcome::Cursor {
            ns: format!("{db}.$cmd.aggregate"),
            documents,
        });
    }
    let coll = collection_name(db, command)?;
    let documents = run(&pipeline, store.documents(db, coll).to_vec(), &lookup)?;
    Ok(Outcome::Cursor {
        ns: format!("{db}.{coll}"),
        documents,
    })
}

/// Runs `pipeline` over `docs`.
///
/// # Errors
/// The first stage error.
pub(crate) fn run(
    pipeline: &[&Document],
    docs: Vec<Document>,
    lookup: Lookup<'_>,
) -> Result<Vec<Document>, CommandError> {
    let mut docs = docs;
    for (position, stage) in pipeline.iter().enumerate() {
        let Some((name, spec)) = stage.iter().next() else {
            return Err(CommandError::location(
                40323,
                "A pipeline stage specification object must contain exactly one field.",
            ));
        };
        docs = stages::apply(name, spec, docs, position, lookup)?;
    }
    Ok(docs)
}

/// Runs an update pipeline (`$set`, `$unset`, `$project`, `$replaceWith`...) on one document.
///
/// # Errors
/// Stage errors, or a pipeline that does not produce exactly one document.
pub(crate) fn apply_to_document(
    stages: &[Document],
    doc: &Document,
) -> Result<Document, CommandError> {
    let pipeline: Vec<&Document> = stages.iter().collect();
    let mut out = run(&pipeline, vec![doc.clone()], &|_| Vec::new())?;
    match out.pop() {
        Some(d) if out.is_empty() => Ok(d),
        _ => Err(CommandError::bad_value(
            "an update pipeline must produce exactly one document",
        )),
    }
}

fn expect_document<'a>(
    stage: &str,
    spec: &'a Bson,
    code: i32,
) -> Result<&'a Document, CommandError> {
    match spec {
        Bson::Document(d) => Ok(d),
        _ => Err(CommandError::location(
            code,
            format!("{stage} specification must be an object"),
        )),
    }
}
