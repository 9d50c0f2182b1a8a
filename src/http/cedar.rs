//! The plain Cedar API, in the request shape of permitio/cedar-agent so its clients work
//! unchanged:
//!
//! * `POST /v1/is_authorized`: `{"principal", "action", "resource", "context"?,
//!   "additional_entities"?}` -> `{"decision": "Allow"|"Deny", "diagnostics": {"reason",
//!   "errors", "revision"}}`;
//! * `POST /v1/batch_is_authorized`: `{"requests": [...]}` -> `{"results": [...]}` in order,
//!   a malformed item answered by an error of its own.
//!
//! Entity references are `"ZenML::User::\"alice\""`, `{"type": "...", "id": "..."}` or
//! `{"__entity": {"type": "...", "id": "..."}}`.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid, RequestValidationError};
use cedar_policy_core::ast;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::Call;
use super::error::ApiError;
use super::observe::{Labels, Lookup, observe_looked_up};
use super::raw_json::{self, EntityList, Fields, PlainEntity, RequestFields as Item, SentEntity, UidRef};
use crate::cache::{CacheKey, RequestKey};
use crate::config::Limits;
use crate::engine::{AuthzRequest, Batch, DecideError, Decision, Engine, SchemaTables, Scoped};
use crate::index::{ScopedEntity, ScopedValue};
use crate::metrics::{Api, Handles};
use crate::pool::{Pace, run_to_end};
use crate::snapshot::Snapshot;

const FIELDS: [&str; 5] = [
    "principal",
    "action",
    "resource",
    "context",
    "additional_entities",
];

/// Request-scoped entities a request of at most [`INLINE_BYTES`] may carry and still be
/// answered on the thread that read it: its cost is then bounded and small (tens of µs), like a
/// ZenML page of up to 16 resources, and a hand-off to the pool would cost more than the work.
const INLINE_ENTITIES: usize = 4;

/// The most bytes of fields (names and values as sent) a request with request-scoped entities
/// may have and still be answered inline.
const INLINE_BYTES: usize = 4096;

/// Answers one `is_authorized` body. A request with more or larger request-scoped entities than
/// a few small ones, or one to be read again (an entity not of the plain shapes), is read and
/// decided in the evaluation pool (its cost is the caller's to choose); the others are answered
/// here.
pub async fn is_authorized(call: &Call<'_>, body: Bytes) -> Result<Answer, ApiError> {
    let item = body_request(&body, false)?;
    if is_small(&item) {
        return answer_one(call, &item);
    }
    drop(item);
    let owned = call.to_owned_call();
    call.state
        .pool()
        .run(move |_| {
            let item = body_request(&body, true)?;
            answer_one(&owned.call(), &item)
        })
        .await?
}

/// A body's request object, read in place (and read again if need be when `again`; else its
/// entities may be left to read again, [`Item::rereads`]): 400 with serde's line and column
/// when it is malformed, or when it is another value.
fn body_request(body: &[u8], again: bool) -> Result<Item<'_>, ApiError> {
    let text = body_text(body)?;
    let read = match again {
        true => read_request(text),
        false => serde_json::from_str(text),
    };
    read.map_err(|error| match error.classify() {
        serde_json::error::Category::Data => {
            ApiError::BadRequest("request: expected a JSON object".to_owned())
        }
        _ => ApiError::BadRequest(format!("malformed JSON: {error}")),
    })
}

/// A request object read in one pass, its request-scoped entities read as plain entities; read
/// again with them as sent when one of them is not plain.
fn read_request(text: &str) -> serde_json::Result<Item<'_>> {
    let item: Item<'_> = serde_json::from_str(text)?;
    if !item.rereads() {
        return Ok(item);
    }
    Ok(serde_json::from_str::<raw_json::SentFields<'_>>(text)?.0)
}

/// Whether answering a request is cheap whatever it says (then it is answered inline): no
/// request-scoped entities, or at most [`INLINE_ENTITIES`] in at most [`INLINE_BYTES`] of
/// fields, none to be read again (the second reading of the body is left to the pool).
fn is_small(item: &Item<'_>) -> bool {
    let entities = item.entities.as_ref().and_then(EntityList::len).unwrap_or(0);
    !item.rereads() && (entities == 0 || (entities <= INLINE_ENTITIES && item.sent_bytes() <= INLINE_BYTES))
}

fn answer_one(call: &Call<'_>, body: &Item<'_>) -> Result<Answer, ApiError> {
    let snapshot = call.state.snapshot();
    let decision = answer(call, &snapshot, body, &mut Memo::default(), &mut Batch::single())
        .map_err(|error| error.map_bad(|message| message))?;
    Ok(Answer {
        snapshot,
        answered: Answered::One(decision),
    })
}

/// What a Cedar API call answers: written to JSON straight from the decisions (no
/// `serde_json::Value` built per item), in cedar-agent's shape.
pub struct Answer {
    /// The snapshot decided under (its revision is in every decision's diagnostics).
    snapshot: Arc<Snapshot>,
    answered: Answered,
}

enum Answered {
    /// `is_authorized`: one decision.
    One(Decision),
    /// `batch_is_authorized`: `{"results": [...]}`, a decision or an item's own error each.
    Many(Vec<Result<Decision, ApiError>>),
}

impl Answer {
    /// The answer as JSON text, written directly (serde's serializer wrote each constant key
    /// through its escaper, and the revision again for each decision: ~1,700 instructions a
    /// decision, against a few hundred).
    pub fn to_json(&self) -> Vec<u8> {
        write_answer(&self.answered, &self.snapshot.revision)
    }
}

/// `answered` as JSON text, in cedar-agent's shape: a decision is `{"decision", "diagnostics":
/// {"reason", "errors", "revision"}}`; a batch's `{"results": [...]}`, each a decision or the
/// item's own error.
fn write_answer(answered: &Answered, revision: &str) -> Vec<u8> {
    // Escaped once, written for each decision.
    let revision = serde_json::to_string(revision).unwrap_or_else(|_| "\"\"".to_owned());
    // About the bytes a decision takes (its strings' escapes aside), so that the text is
    // written into one allocation.
    let size = |decision: &Decision| {
        let strings = decision.reasons.iter().chain(&decision.errors);
        80 + revision.len() + strings.map(|text| text.len() + 3).sum::<usize>()
    };
    match answered {
        Answered::One(decision) => {
            let mut out = Vec::with_capacity(size(decision));
            write_decision(&mut out, decision, &revision);
            out
        }
        Answered::Many(results) => {
            let sizes = results.iter().map(|result| result.as_ref().map_or(128, size));
            let mut out = Vec::with_capacity(16 + sizes.sum::<usize>());
            out.extend_from_slice(br#"{"results":["#);
            for (i, result) in results.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match result {
                    Ok(decision) => write_decision(&mut out, decision, &revision),
                    Err(error) => write_json(&mut out, &error.body()),
                }
            }
            out.extend_from_slice(b"]}");
            out
        }
    }
}

/// One decision (`revision` already a JSON string).
fn write_decision(out: &mut Vec<u8>, decision: &Decision, revision: &str) {
    out.extend_from_slice(match decision.allowed {
        true => br#"{"decision":"Allow","diagnostics":{"reason":"#,
        false => br#"{"decision":"Deny","diagnostics":{"reason":"#,
    });
    write_json(out, &decision.reasons);
    out.extend_from_slice(br#","errors":"#);
    write_json(out, &decision.errors);
    out.extend_from_slice(br#","revision":"#);
    out.extend_from_slice(revision.as_bytes());
    out.extend_from_slice(b"}}");
}

/// `value` as JSON, appended (a `Vec` is written to without error; a value that cannot be
/// written, none here, is `null`).
fn write_json(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// A bad request's message, or an error deciding a well-formed one.
enum Refused {
    Bad(String),
    Decide(ApiError),
}

impl Refused {
    /// The API error, a bad request's message first passed through `word`.
    fn map_bad(self, word: impl FnOnce(String) -> String) -> ApiError {
        match self {
            Refused::Bad(message) => ApiError::BadRequest(word(message)),
            Refused::Decide(error) => error,
        }
    }
}

/// Answers one request object: its principal, action and resource read and checked, then the
/// decision cache asked, and only on a miss the rest (context, request-scoped entities, the
/// schema's check of the whole request) read and decided, as one of `batch`.
fn answer<'i>(
    call: &Call<'_>,
    snapshot: &Snapshot,
    item: &'i Item<'_>,
    memo: &mut Memo<'i>,
    batch: &mut Batch,
) -> Result<Decision, Refused> {
    let limits = call.state.limits();
    let head = head(snapshot, item, limits).map_err(Refused::Bad)?;
    let key = call.state.cache().enabled().then(|| CacheKey {
        revision: snapshot.revision.clone(),
        // Cedar API decisions do not depend on shares: version 0.
        shares_version: 0,
        request: request_key(&head, item),
    });
    let lookup = Lookup::new(call, key);
    let request = match lookup.hit() {
        true => None,
        false => Some(rest(snapshot, &head, item, limits, memo).map_err(Refused::Bad)?),
    };
    decide(
        call,
        snapshot,
        &head,
        request.as_ref(),
        lookup,
        batch,
        &mut memo.handles,
    )
    .map_err(Refused::Decide)
}

/// The largest batch body (bytes) read on the async worker to see whether its items are all
/// small (then it is answered there, in slices); a larger one is read in the pool.
const SLICED_BATCH_BYTES: usize = 64 * 1024;

/// Answers a `batch_is_authorized` body once the evaluation pool admits it: every well-formed
/// item is decided, each bad one gets an error result, all under one snapshot; items not
/// reached before the deadline are not answered (the whole call is refused). A batch whose
/// items are all small (each as cheap as a request answered inline) runs on this task in
/// slices; one with a large item, on a blocking thread.
pub async fn batch_is_authorized(call: &Call<'_>, body: Bytes) -> Result<Answer, ApiError> {
    let max_items = call.state.limits().max_batch_items;
    let pool = call.state.pool();
    if body.len() <= SLICED_BATCH_BYTES {
        // One pass here; a body to be read again goes to the pool (an item is not small then).
        let items = batch_items_as::<false>(body_text(&body)?, max_items)?;
        if items.iter().flatten().all(is_small) {
            return pool
                .run_sliced(|mut pace| async move { answer_items(call, items, &mut pace).await })
                .await?;
        }
    }
    let owned = call.to_owned_call();
    pool.run(move |deadline| {
        let items = batch_items(&body, max_items)?;
        run_to_end(answer_items(&owned.call(), items, &mut Pace::blocking(deadline)))
            .unwrap_or_else(|| Err(ApiError::Internal("the batch waited on a blocking thread".into())))
    })
    .await?
}

/// Answers a batch's items under one snapshot, pacing between them.
async fn answer_items(
    call: &Call<'_>,
    items: Vec<Option<Item<'_>>>,
    pace: &mut Pace,
) -> Result<Answer, ApiError> {
    let snapshot = call.state.snapshot();
    let mut results = Vec::with_capacity(items.len());
    // One batch (equal questions decided once, a slice reused by the next item with the
    // same request-scoped entities) and one memo (those entities parsed once).
    let mut batch = Batch::many();
    let mut memo = Memo::many();
    let count = items.len();
    for (i, item) in items.iter().enumerate() {
        if !pace.go_on().await {
            return Err(ApiError::Overloaded(format!(
                "the batch passed its deadline after {i} of {count} items"
            )));
        }
        let answer = match item {
            Some(item) => answer(call, &snapshot, item, &mut memo, &mut batch),
            None => Err(Refused::Bad("request: expected a JSON object".to_owned())),
        }
        .map_err(|error| error.map_bad(|message| format!("requests[{i}]: {message}")));
        results.push(answer);
    }
    Ok(Answer {
        snapshot,
        answered: Answered::Many(results),
    })
}

/// The items of a batch body, at most `max_items` of them: read in one pass, their
/// request-scoped entities as plain entities; read again with every item's as sent when one
/// of them is not plain.
fn batch_items(body: &[u8], max_items: usize) -> Result<Vec<Option<Item<'_>>>, ApiError> {
    let text = body_text(body)?;
    let items = batch_items_as::<false>(text, max_items)?;
    if !items.iter().flatten().any(Item::rereads) {
        return Ok(items);
    }
    batch_items_as::<true>(text, max_items)
}

/// A body as text.
fn body_text(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|error| ApiError::BadRequest(format!("malformed JSON: {error}")))
}

/// [`batch_items`] of a text, read one way.
fn batch_items_as<const SENT: bool>(text: &str, max_items: usize) -> Result<Vec<Option<Item<'_>>>, ApiError> {
    let body: raw_json::BatchBody<'_, SENT> =
        serde_json::from_str(text).map_err(|error| match error.classify() {
            serde_json::error::Category::Data => {
                ApiError::BadRequest("request body: expected a JSON object with `requests`".into())
            }
            _ => ApiError::BadRequest(format!("malformed JSON: {error}")),
        })?;
    if let Some(unknown) = body.unknown {
        return Err(ApiError::BadRequest(format!(
            "unknown field `{unknown}`; expected `requests`"
        )));
    }
    let items = match body.requests {
        Some(raw_json::MaybeObjects(Some(items))) => items,
        Some(raw_json::MaybeObjects(None)) => {
            return Err(ApiError::BadRequest("requests: expected an array".into()));
        }
        None => return Err(ApiError::BadRequest("missing field `requests`".into())),
    };
    if items.len() > max_items {
        return Err(ApiError::BadRequest(format!(
            "requests: {} items is more than the limit of {max_items}",
            items.len()
        )));
    }
    Ok(items.into_iter().map(|item| item.0).collect())
}

/// Decides through the one observed step (cache, metrics, decision log), as one of `batch`:
/// `request` is the whole request, read unless `lookup` is a hit.
fn decide(
    call: &Call<'_>,
    snapshot: &Snapshot,
    head: &Head,
    request: Option<&AuthzRequest>,
    lookup: Lookup,
    batch: &mut Batch,
    handles: &mut Handles,
) -> Result<Decision, ApiError> {
    let resource_type = head.resource.type_name();
    let resource_type = match snapshot.engine.tables.written(resource_type) {
        Some(written) => std::borrow::Cow::Borrowed(written),
        None => std::borrow::Cow::Owned(resource_type.to_string()),
    };
    let labels = Labels {
        api: Api::Cedar,
        action: head.action.id().unescaped(),
        resource_type: &resource_type,
        revision: &snapshot.revision,
    };
    let fields = || {
        Map::from_iter([
            ("principal".to_owned(), json!(head.principal.to_string())),
            ("action".to_owned(), json!(head.action.to_string())),
            ("resource".to_owned(), json!(head.resource.to_string())),
        ])
    };
    observe_looked_up(call, handles, labels, lookup, fields, || {
        let Some(request) = request else {
            return Err(ApiError::Internal("a request not read was to be decided".into()));
        };
        snapshot
            .engine
            .decide(request, batch)
            .map_err(|error| match error {
                DecideError::Redefined(_) => ApiError::BadRequest(format!("additional_entities: {error}")),
                DecideError::Entities(_) => ApiError::BadRequest(error.to_string()),
            })
    })
}

/// Turns one request object into an engine request, or a message naming the bad field.
/// Everything the request carries is bounded by `limits` before Cedar sees it: id lengths, the
/// context's size, the number of request-scoped entities and the longest parent chain among
/// them (Cedar's transitive closure of a request's entities would otherwise cost the caller's
/// choice of time and stack).
pub fn parse_request(snapshot: &Snapshot, body: &Value, limits: &Limits) -> Result<AuthzRequest, String> {
    let text = body.to_string();
    let item = read_request(&text).map_err(|_| "request: expected a JSON object".to_owned())?;
    let head = head(snapshot, &item, limits)?;
    rest(snapshot, &head, &item, limits, &mut Memo::default())
}

/// What is read of a request before the decision cache is asked: its fields checked, and its
/// principal, action and resource read and declared by the schema.
struct Head {
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
}

/// The request-scoped entities of a batch's last item that had some, kept for the next: the
/// items of one batch often carry the same ones (a resource and where it lives), then parsed
/// and checked once, and shared (so the engine's batch slices once for them). The list is
/// borrowed from the item it came with: remembering costs nothing when the next differs.
#[derive(Default)]
struct Memo<'i> {
    /// Whether it remembers (a single request's would only be dropped).
    many: bool,
    /// The entities as sent, and as read.
    entities: Option<(&'i EntityList<'i>, Scoped)>,
    /// The decision metrics counted last.
    handles: Handles,
}

impl Memo<'_> {
    /// The memo of a batch.
    fn many() -> Self {
        Memo {
            many: true,
            ..Memo::default()
        }
    }
}

/// The [`Head`] of a request object.
fn head(snapshot: &Snapshot, item: &Item<'_>, limits: &Limits) -> Result<Head, String> {
    check_fields(&item.fields)?;
    let tables = &snapshot.engine.tables;
    let [principal, action, resource] = &item.uids;
    let principal = entity_field(principal.as_ref(), "principal", tables, limits)?;
    let action = entity_field(action.as_ref(), "action", tables, limits)?;
    let resource = entity_field(resource.as_ref(), "resource", tables, limits)?;
    for (field, uid) in [("principal", &principal), ("resource", &resource)] {
        if !snapshot.engine.entity_types.contains(uid.type_name()) {
            return Err(format!("{field}: unknown entity type `{}`", uid.type_name()));
        }
    }
    if !snapshot.engine.actions.contains(&action) {
        return Err(format!("action: unknown action `{action}`"));
    }
    Ok(Head {
        principal,
        action,
        resource,
    })
}

/// The cache key of a request: its principal, action and resource, and its context and
/// request-scoped entities as the JSON text they were sent in.
fn request_key(head: &Head, item: &Item<'_>) -> RequestKey {
    RequestKey::Cedar {
        principal: head.principal.to_string(),
        action: head.action.to_string(),
        resource: head.resource.to_string(),
        context: item
            .fields
            .given("context")
            .map_or("{}", RawValue::get)
            .to_owned(),
        entities: item.entities.as_ref().map(EntityList::text).unwrap_or_default(),
    }
}

/// The rest of a request after its [`Head`]: the context, the request-scoped entities (those
/// of `memo` reused when they are sent again) and the schema's check of the whole request.
fn rest<'i>(
    snapshot: &Snapshot,
    head: &Head,
    item: &'i Item<'_>,
    limits: &Limits,
    memo: &mut Memo<'i>,
) -> Result<AuthzRequest, String> {
    let mut referenced = Vec::new();
    let (context, context_is_empty) =
        context_field(&item.fields, snapshot, &head.action, limits, &mut referenced)?;
    let entities: Scoped = match (&memo.entities, &item.entities) {
        (Some((seen, parsed)), Some(list)) if list.same_as(seen) => {
            parsed.add_named(&mut referenced);
            parsed.clone()
        }
        _ => {
            let parsed = additional_entities(item.entities.as_ref(), snapshot, limits, &mut referenced)?;
            if memo.many
                && !parsed.is_empty()
                && let Some(list) = &item.entities
            {
                memo.entities = Some((list, parsed.clone()));
            }
            parsed
        }
    };
    let request = snapshot
        .engine
        .request(
            head.principal.clone(),
            head.action.clone(),
            head.resource.clone(),
            context,
            context_is_empty,
        )
        .map_err(|error| format!("{}: {}", field_of(&error), one_line(&*error)))?;
    Ok(AuthzRequest {
        request,
        entities,
        referenced,
        internal: false,
        context: None,
    })
}

/// Only the request's own fields; `entities` (a whole store per request) is refused by name.
fn check_fields(object: &Fields<'_>) -> Result<(), String> {
    for (key, value) in &object.0 {
        if key == "entities" {
            if value.get() != "null" {
                return Err("entities: replacing the store per request is not supported; send request-scoped entities in `additional_entities`".into());
            }
        } else if !FIELDS.contains(&key.as_ref()) {
            return Err(format!(
                "unknown field `{key}`; expected one of {}",
                FIELDS.join(", ")
            ));
        }
    }
    Ok(())
}

/// The context, checked against the schema for `action` and within the size limit, and whether
/// it is empty; the entities it names are added to `referenced`.
fn context_field(
    object: &Fields<'_>,
    snapshot: &Snapshot,
    action: &EntityUid,
    limits: &Limits,
    referenced: &mut Vec<EntityUid>,
) -> Result<(Context, bool), String> {
    let Some(sent) = object.given("context") else {
        return Ok((Context::empty(), true));
    };
    let context_json = match raw_json::object(sent) {
        // The schema's check of an empty context is `Request::new`'s (a required attribute
        // is missing there too); reading `{}` through Cedar's parser costs as much as a
        // request-scoped entity.
        Some(fields) if fields.0.is_empty() => return Ok((Context::empty(), true)),
        Some(_) => raw_json::value(sent),
        None => return Err("context: expected a JSON object".into()),
    };
    let length = context_json.to_string().len();
    if length > limits.max_context_bytes {
        return Err(format!(
            "context: {length} bytes is more than the limit of {} (--max-context-bytes)",
            limits.max_context_bytes
        ));
    }
    crate::policy::collect_entity_refs(&context_json, referenced);
    check_ids("context", referenced, limits)?;
    Context::from_json_value(context_json, Some((&snapshot.engine.schema, action)))
        .map(|context| (context, false))
        .map_err(|error| format!("context: {}", one_line(&error)))
}

/// The request-scoped entities: within the count, id and depth limits, valid under the schema,
/// none redefining a directory entity; the entities they name are added to `referenced`. Plain
/// data when the schema's tables accept every one as it is, else Cedar entities.
fn additional_entities(
    sent: Option<&EntityList<'_>>,
    snapshot: &Snapshot,
    limits: &Limits,
    referenced: &mut Vec<EntityUid>,
) -> Result<Scoped, String> {
    let items = match sent.map(EntityList::elements) {
        None => return Ok(Scoped::default()),
        Some(Some(items)) => items,
        Some(None) => return Err("additional_entities: expected an array of Cedar entities".into()),
    };
    if items.len() > limits.max_request_entities {
        return Err(format!(
            "additional_entities: {} entities is more than the limit of {} (--max-request-entities)",
            items.len(),
            limits.max_request_entities
        ));
    }
    let engine = &snapshot.engine;
    let mut entities = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        // The field is named only in an error (formatting it per entity cost ~2k instructions).
        let at = |error: String| format!("additional_entities[{i}]: {error}");
        let entity = entity_from(*item, engine).map_err(at)?;
        let before = referenced.len();
        entity.named(referenced);
        let uid = entity.uid();
        referenced[before..]
            .iter()
            .chain([uid])
            .try_for_each(|uid| id_within(uid, limits))
            .map_err(at)?;
        if engine.in_directory(uid) {
            return Err(at(format!(
                "entity `{uid}` is already in the directory; request-scoped entities cannot redefine it"
            )));
        }
        entities.push(entity);
    }
    check_depth(&entities, limits.max_entity_depth)?;
    if entities.iter().all(|entity| matches!(entity, Read::Plain(_))) {
        let plain = entities.into_iter().filter_map(|entity| match entity {
            Read::Plain(plain) => Some(plain),
            Read::Cedar(..) => None,
        });
        return Ok(Scoped::plain(plain.collect()));
    }
    Ok(entities
        .into_iter()
        .map(Read::into_cedar)
        .collect::<Vec<_>>()
        .into())
}

/// A request-scoped entity as read: plain data the schema's tables accept as it is, or a
/// Cedar entity.
enum Read {
    Plain(ScopedEntity),
    /// The entity and its uid.
    Cedar(Box<Entity>, EntityUid),
}

impl Read {
    /// A Cedar entity as read.
    fn cedar(entity: Entity) -> Self {
        let uid = entity.uid();
        Read::Cedar(Box::new(entity), uid)
    }

    /// Its uid.
    fn uid(&self) -> &EntityUid {
        match self {
            Read::Plain(plain) => &plain.uid,
            Read::Cedar(_, uid) => uid,
        }
    }

    /// Whether `f` holds for one of its parents.
    fn any_parent(&self, mut f: impl FnMut(&ast::EntityUID) -> bool) -> bool {
        match self {
            Read::Plain(plain) => plain.parents.iter().any(|parent| f(parent.as_ref())),
            Read::Cedar(entity, _) => AsRef::<ast::Entity>::as_ref(&**entity).parents().any(f),
        }
    }

    /// Adds the entities it names (its parents, and the entities its attributes refer to) to
    /// `referenced`.
    fn named(&self, referenced: &mut Vec<EntityUid>) {
        match self {
            Read::Plain(plain) => referenced.extend(plain.named().cloned()),
            Read::Cedar(entity, _) => crate::engine::named_by(entity, referenced),
        }
    }

    /// As a Cedar entity.
    fn into_cedar(self) -> Entity {
        match self {
            Read::Plain(plain) => plain.to_cedar(),
            Read::Cedar(entity, _) => *entity,
        }
    }
}

/// One request-scoped entity, checked against the schema: exactly what Cedar's own parser
/// (`Entity::from_json_value` with the schema) gives, or its error. The plain shapes (uid and
/// parents as `{"type", "id"}`, attributes that are booleans, integers, strings or
/// `{"__entity": …}` references, no tags) are read as plain data and checked by the schema's
/// tables ([`Engine::plainly_conforms`]), then by Cedar's schema conformance checker on their
/// Cedar form where the tables are unsure (what that parser runs after reading); anything else,
/// or anything the check refuses, is read by Cedar's parser (which also words the error): from
/// the text sent, or, for a plain entity read in a body's one pass, from its own JSON. Cedar's
/// parser reads attribute values by trying one JSON shape after another, and most of its cost
/// is in the attempts that fail (`tests/http.rs` compares the two on random entities, read
/// here as a body's pass reads them).
pub fn request_entity(text: &str, engine: &Engine) -> Result<Entity, String> {
    let read = match PlainEntity::read(text) {
        Some(plain) => entity_from(SentEntity::Plain(&plain), engine),
        None => cedar_entity(text, engine).map(Read::cedar),
    };
    read.map(Read::into_cedar)
}

/// [`request_entity`] of an entity as read: a plain one as data where the schema's tables
/// accept it, or built and checked by Cedar's checker, else read by Cedar's parser from its
/// text (the text sent, or a plain one's own, which Cedar reads alike).
fn entity_from(sent: SentEntity<'_, '_>, engine: &Engine) -> Result<Read, String> {
    let read = |plain: &PlainEntity<'_>| {
        let data = scoped_data(plain, engine)?;
        if engine.plainly_conforms(&data) {
            return Some(Read::Plain(data));
        }
        let core = data.to_core();
        engine.conforms(&core).then(|| Read::cedar(Entity::from(core)))
    };
    match sent {
        SentEntity::Plain(plain) => {
            read(plain).map_or_else(|| cedar_entity(&plain.to_json(), engine).map(Read::cedar), Ok)
        }
        SentEntity::Text(text) => match PlainEntity::read(text).and_then(|plain| read(&plain)) {
            Some(entity) => Ok(entity),
            None => cedar_entity(text, engine).map(Read::cedar),
        },
    }
}

/// The entity `text` sends, as Cedar's parser reads it with the schema.
fn cedar_entity(text: &str, engine: &Engine) -> Result<Entity, String> {
    Entity::from_json_str(text, Some(&engine.schema)).map_err(|error| one_line(&error))
}

/// A plain entity as data, its uids read with the schema's type names; `None` where Cedar's
/// parser must read it (a type the schema does not name, an action).
fn scoped_data(plain: &PlainEntity<'_>, engine: &Engine) -> Option<ScopedEntity> {
    use raw_json::{PlainUid, PlainValue};

    let plain_uid = |uid: &PlainUid<'_>| parts_uid(&uid.type_name, &uid.id, Some(&engine.tables)).ok();
    let uid = plain_uid(&plain.uid)?;
    if uid.type_name().as_ref().is_action() {
        return None;
    }
    let parents = plain.parents.iter().map(plain_uid).collect::<Option<_>>()?;
    let attrs = plain
        .attrs
        .0
        .iter()
        .map(|(name, value)| {
            let value = match value {
                PlainValue::Bool(b) => ScopedValue::Bool(*b),
                PlainValue::Long(n) => ScopedValue::Long(*n),
                PlainValue::Str(text) => ScopedValue::String(smol_str::SmolStr::from(text.as_ref())),
                PlainValue::Entity(uid) => ScopedValue::Entity(plain_uid(uid)?),
            };
            Some((smol_str::SmolStr::from(name.as_ref()), value))
        })
        .collect::<Option<_>>()?;
    Some(ScopedEntity { uid, parents, attrs })
}

/// The request field a schema error is about.
fn field_of(error: &RequestValidationError) -> &'static str {
    match error {
        RequestValidationError::UndeclaredAction(_) | RequestValidationError::ExternalAction(_) => "action",
        RequestValidationError::UndeclaredPrincipalType(_)
        | RequestValidationError::InvalidPrincipalType(_) => "principal",
        RequestValidationError::UndeclaredResourceType(_)
        | RequestValidationError::InvalidResourceType(_) => "resource",
        RequestValidationError::InvalidContext(_) | RequestValidationError::TypeOfContext(_) => "context",
        #[allow(unreachable_patterns, reason = "cedar may add variants")]
        _ => "request",
    }
}

/// Refuses an id longer than the limit.
fn check_id(field: &str, uid: &EntityUid, limits: &Limits) -> Result<(), String> {
    id_within(uid, limits).map_err(|error| format!("{field}: {error}"))
}

/// [`check_id`]'s message, without the field.
fn id_within(uid: &EntityUid, limits: &Limits) -> Result<(), String> {
    let length = uid.id().unescaped().len();
    if length > limits.max_id_bytes {
        return Err(format!(
            "an entity id of {length} bytes is longer than the limit of {} (--max-id-bytes)",
            limits.max_id_bytes
        ));
    }
    Ok(())
}

fn check_ids(field: &str, uids: &[EntityUid], limits: &Limits) -> Result<(), String> {
    uids.iter().try_for_each(|uid| check_id(field, uid, limits))
}

/// Up to this many request-scoped entities are checked for nesting pair by pair.
const FEW_ENTITIES: usize = 16;

/// Refuses request-scoped entities whose parents among themselves form a cycle or a chain of
/// more than `max_depth` entities (linear time, no recursion: the check itself is bounded).
fn check_depth(items: &[Read], max_depth: usize) -> Result<(), String> {
    // Most requests: a few entities none of which is a parent of another (depth 1, no cycle),
    // seen without copying or hashing a uid.
    if items.len() <= FEW_ENTITIES
        && !items.iter().any(|entity| {
            entity.any_parent(|parent| items.iter().any(|other| other.uid().as_ref() == parent))
        })
    {
        return Ok(());
    }
    let entities: Vec<(EntityUid, Vec<EntityUid>)> = items
        .iter()
        .map(|entity| {
            let mut parents = Vec::new();
            entity.any_parent(|parent| {
                parents.push(EntityUid::from(parent.clone()));
                false
            });
            (entity.uid().clone(), parents)
        })
        .collect();
    let index: HashMap<&EntityUid, usize> = entities
        .iter()
        .enumerate()
        .map(|(i, (uid, _))| (uid, i))
        .collect();
    // children[p]: the request-scoped entities whose parent is p; pending[c]: c's parents
    // among the request-scoped entities whose depth is not known yet.
    let mut children = vec![Vec::new(); entities.len()];
    let mut pending = vec![0usize; entities.len()];
    for (child, (_, parents)) in entities.iter().enumerate() {
        for parent in parents {
            if let Some(&parent) = index.get(parent) {
                children[parent].push(child);
                pending[child] += 1;
            }
        }
    }
    let mut depth = vec![1usize; entities.len()];
    let mut ready: Vec<usize> = (0..entities.len()).filter(|&i| pending[i] == 0).collect();
    let mut done = 0;
    while let Some(parent) = ready.pop() {
        done += 1;
        if depth[parent] > max_depth {
            return Err(format!(
                "additional_entities: a chain of more than {max_depth} entities, each a parent of the next, reaches `{}` (--max-entity-depth)",
                entities[parent].0
            ));
        }
        for &child in &children[parent] {
            depth[child] = depth[child].max(depth[parent] + 1);
            pending[child] -= 1;
            if pending[child] == 0 {
                ready.push(child);
            }
        }
    }
    if done < entities.len() {
        let on_cycle = pending
            .iter()
            .position(|&p| p > 0)
            .map(|i| entities[i].0.to_string());
        return Err(format!(
            "additional_entities: the entities' parents form a cycle (through `{}`)",
            on_cycle.unwrap_or_default()
        ));
    }
    Ok(())
}

/// The entity `field` names (`sent`: as read; `None` or `null`: missing), its type looked up in
/// `tables`, its id within the limit.
fn entity_field(
    sent: Option<&UidRef<'_>>,
    field: &str,
    tables: &SchemaTables,
    limits: &Limits,
) -> Result<EntityUid, String> {
    let sent = sent
        .filter(|sent| !matches!(sent, UidRef::Null))
        .ok_or_else(|| format!("missing field `{field}`"))?;
    let uid = uid_of(sent, Some(tables)).map_err(|message| format!("{field}: {message}"))?;
    check_id(field, &uid, limits)?;
    Ok(uid)
}

/// Parses an entity reference in any of the three accepted shapes.
pub fn entity_uid(value: &Value) -> Result<EntityUid, String> {
    let text = value.to_string();
    let sent: UidRef<'_> = serde_json::from_str(&text).map_err(|error| error.to_string())?;
    uid_of(&sent, None)
}

/// [`entity_uid`] of a reference as read: a type name `tables` declares is looked up there, any
/// other parsed.
fn uid_of(sent: &UidRef<'_>, tables: Option<&SchemaTables>) -> Result<EntityUid, String> {
    const EXPECTED: &str = r#"expected an entity reference: `Type::"id"`, {"type": ..., "id": ...} or {"__entity": {"type": ..., "id": ...}}"#;
    match sent {
        UidRef::Text(text) => {
            EntityUid::from_str(text).map_err(|error| format!("`{text}`: {EXPECTED} ({})", one_line(&error)))
        }
        UidRef::Parts(type_name, id) => parts_uid(type_name, id, tables),
        UidRef::Null | UidRef::Other => Err(EXPECTED.to_owned()),
    }
}

/// The entity of type `type_name` (see [`type_named`]) with id `id`.
fn parts_uid(type_name: &str, id: &str, tables: Option<&SchemaTables>) -> Result<EntityUid, String> {
    Ok(EntityUid::from_type_name_and_id(
        type_named(type_name, tables)?,
        EntityId::new(id),
    ))
}

/// The entity type `name`: a type `tables` declares is looked up there, any other parsed (its
/// error worded for the caller).
fn type_named(name: &str, tables: Option<&SchemaTables>) -> Result<EntityTypeName, String> {
    match tables.and_then(|tables| tables.type_name(name)) {
        Some(declared) => Ok(declared.clone()),
        None => {
            EntityTypeName::from_str(name).map_err(|error| format!("type `{name}`: {}", one_line(&error)))
        }
    }
}

/// A Cedar error (which may span several lines) on one line.
fn one_line(error: &dyn std::error::Error) -> String {
    crate::error::error_chain(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entity reference read in one pass names the entity a `serde_json::Value` of the same
    /// text names (a key sent twice counts as its last value; `__entity`, when present, is the
    /// reference whatever else the object holds), and is refused where that has none.
    #[test]
    fn entity_references_read_as_json_values_name_them() {
        fn named_by_value(value: &Value) -> Option<EntityUid> {
            match value {
                Value::String(text) => EntityUid::from_str(text).ok(),
                Value::Object(object) => {
                    let inner = match object.get("__entity") {
                        Some(Value::Object(inner)) => inner,
                        Some(_) => return None,
                        None => object,
                    };
                    match (inner.get("type")?, inner.get("id")?) {
                        (Value::String(type_name), Value::String(id)) => {
                            Some(EntityUid::from_type_name_and_id(
                                EntityTypeName::from_str(type_name).ok()?,
                                EntityId::new(id),
                            ))
                        }
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        let texts = [
            r#" "ZenML::User::\"alice\"" "#,
            r#""ZenML::User::alice""#,
            r#"{"type": "ZenML::User", "id": "alice"}"#,
            r#"{"id": "al\u0069ce", "type": "ZenML::User"}"#,
            r#"{"type": "ZenML::User", "id": "alice", "extra": [1, {"type": "X"}]}"#,
            r#"{"type": "ZenML::User", "type": "ZenML::Team", "id": "a"}"#,
            r#"{"type": "ZenML::User", "id": "a", "type": 5}"#,
            r#"{"type": "ZenML::User", "id": 7}"#,
            r#"{"type": "ZenML::User"}"#,
            r#"{"__entity": {"type": "ZenML::User", "id": "bob"}}"#,
            r#"{"type": 1, "__entity": {"type": "ZenML::User", "id": "bob"}, "id": null}"#,
            r#"{"__entity": null, "type": "ZenML::User", "id": "bob"}"#,
            r#"{"__entity": "ZenML::User::\"bob\"", "type": "ZenML::User", "id": "bob"}"#,
            r#"{"__entity": {"__entity": {"type": "ZenML::User", "id": "x"}, "type": "ZenML::Team", "id": "t"}}"#,
            r#"{"__entity": {"type": "ZenML::User", "id": "x"}, "__entity": {"type": "ZenML::Team", "id": "t"}}"#,
            r#"{"__entity": {"type": "ZenML::User", "id": "x"}, "__entity": 3}"#,
            r#"{"type": "not a type!", "id": "x"}"#,
            r#"{}"#,
            "[]",
            r#"["ZenML::User::\"alice\""]"#,
            "12",
            "true",
            "null",
        ];
        for text in texts {
            let value: Value = serde_json::from_str(text).unwrap();
            let sent: UidRef<'_> = serde_json::from_str(text).unwrap();
            let named = uid_of(&sent, None).ok();
            assert_eq!(named, named_by_value(&value), "{text}");
        }
        // Not all refused: the table's shapes that name an entity do.
        let named = texts
            .iter()
            .filter(|text| uid_of(&serde_json::from_str(text).unwrap(), None).is_ok())
            .count();
        assert_eq!(named, 9);
    }

    /// The answer written directly is what serde writes for the same JSON value, byte for
    /// byte: one decision and a batch, allowed and denied, reasons and errors that need
    /// escaping, an item's error.
    #[test]
    fn answers_are_written_as_serde_writes_them() {
        let decision = |allowed: bool, reasons: &[&str], errors: &[&str]| Decision {
            allowed,
            reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
            errors: errors.iter().map(|e| (*e).to_owned()).collect(),
        };
        let as_json = |d: &Decision, revision: &str| {
            json!({"decision": if d.allowed { "Allow" } else { "Deny" },
                "diagnostics": {"reason": d.reasons, "errors": d.errors, "revision": revision}})
        };
        let decisions = [
            decision(true, &["workspace-admin"], &[]),
            decision(false, &[], &[]),
            decision(
                false,
                &["a \"quoted\" id", "b\\c", "\u{1}é"],
                &["policy `p`: error\non two lines"],
            ),
        ];
        for revision in ["3c41e37a37b3dc09", "r\"ev"] {
            for d in &decisions {
                let ours = write_answer(&Answered::One(d.clone()), revision);
                assert_eq!(ours, serde_json::to_vec(&as_json(d, revision)).unwrap());
            }
            let error = ApiError::BadRequest("requests[1]: action: unknown action `x`".into());
            let expected = json!({"results": [as_json(&decisions[0], revision), error.body(), as_json(&decisions[2], revision)]});
            let results = vec![Ok(decisions[0].clone()), Err(error), Ok(decisions[2].clone())];
            let ours = write_answer(&Answered::Many(results), revision);
            assert_eq!(String::from_utf8(ours).unwrap(), expected.to_string());
            let empty = write_answer(&Answered::Many(Vec::new()), revision);
            assert_eq!(empty, br#"{"results":[]}"#);
        }
    }
}
