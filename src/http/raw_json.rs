//! JSON read in place: an object as its fields in order, each value the text it was sent as
//! (`RawValue`), read further only where it is used.
//!
//! Cedar turns on serde_json's `preserve_order`, so every object of a `serde_json::Value` is an
//! `IndexMap` keyed by SipHash: reading a Cedar API body into a `Value` cost about as much as
//! deciding it. Here nothing is hashed or copied up front: a request's principal, action and
//! resource are read from their few bytes, and its request-scoped entities are kept as the text
//! they were sent in (the cache key and the batch's entity memo compare that text).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Visitor methods for the listed kinds of value (`scalars`: booleans and numbers; `unit`:
/// `null`; `str`; `map`; `seq`), each reading the value over and answering `$value`.
macro_rules! read_over {
    ($de:lifetime, $value:expr; $($kind:ident),+) => { $( read_over!(@$kind $de, $value); )+ };
    (@scalars $de:lifetime, $value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    (@unit $de:lifetime, $value:expr) => {
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    (@str $de:lifetime, $value:expr) => {
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    (@map $de:lifetime, $value:expr) => {
        fn visit_map<M: MapAccess<$de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok($value)
        }
    };
    (@seq $de:lifetime, $value:expr) => {
        fn visit_seq<S: SeqAccess<$de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok($value)
        }
    };
}

/// A JSON string, borrowed from the input unless it has escapes.
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Strings;
        impl<'de> Visitor<'de> for Strings {
            type Value = Text<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Strings)
    }
}

/// An object's fields in the order sent (a key sent twice: both, in order).
pub struct Fields<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Fields<'a> {
    /// The value of `key` (the last one sent, as serde_json's `Value` keeps it).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| *value)
    }

    /// The value of `key`, unless it is absent or `null`.
    pub fn given(&self, key: &str) -> Option<&'a RawValue> {
        self.get(key).filter(|value| value.get() != "null")
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Objects;
        impl<'de> Visitor<'de> for Objects {
            type Value = Fields<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Fields<'de>, M::Error> {
                fields_of(map)
            }
        }
        deserializer.deserialize_map(Objects)
    }
}

/// The fields of the object `map` reads.
fn fields_of<'de, M: MapAccess<'de>>(mut map: M) -> Result<Fields<'de>, M::Error> {
    let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(4));
    while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
        fields.push((key, map.next_value::<&'de RawValue>()?));
    }
    Ok(Fields(fields))
}

/// A Cedar API request object read in one pass: its fields in order, each value as sent, but
/// `additional_entities`, which is split into its elements as it is read (reading its text
/// first and its elements again cost a second scan of the largest part of most requests).
pub struct RequestFields<'a> {
    /// Every field but `principal`, `action`, `resource` and `additional_entities`.
    pub fields: Fields<'a>,
    /// `principal`, `action` and `resource` ([`UID_FIELDS`]), each the last sent, read as they
    /// are met.
    pub uids: [Option<UidRef<'a>>; 3],
    /// `additional_entities`, the last sent, unless absent or `null`.
    pub entities: Option<EntityList<'a>>,
}

/// The fields of a request that name an entity, in the order of [`RequestFields::uids`].
pub const UID_FIELDS: [&str; 3] = ["principal", "action", "resource"];

/// An entity reference as sent, read in one pass whatever its shape.
pub enum UidRef<'a> {
    /// `"Type::\"id\""`: Cedar's syntax, parsed by Cedar.
    Text(Cow<'a, str>),
    /// `{"type": …, "id": …}`, or `{"__entity": {"type": …, "id": …}}`, string values (other
    /// keys are read over; a key sent twice counts as its last value, as a
    /// `serde_json::Value` would keep it).
    Parts(Cow<'a, str>, Cow<'a, str>),
    /// `null`.
    Null,
    /// Any other value or shape.
    Other,
}

impl UidRef<'_> {
    /// The bytes of its strings.
    pub fn len(&self) -> usize {
        match self {
            UidRef::Text(text) => text.len(),
            UidRef::Parts(type_name, id) => type_name.len() + id.len(),
            UidRef::Null | UidRef::Other => 0,
        }
    }
}

/// A string as `Some`, any other value as `None` (read over).
struct MaybeText<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for MaybeText<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = MaybeText<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON value")
            }
            read_over!('de, MaybeText(None); scalars, unit, map, seq);
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeText(Some(Cow::Borrowed(text))))
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(MaybeText(Some(Cow::Owned(text.to_owned()))))
            }
        }
        deserializer.deserialize_any(Any)
    }
}

/// An object's last `type` and `id` (each `Some(None)` when not a string) and its last
/// `__entity` (`Some(None)` when not an object); `None` for any other value.
#[derive(Default)]
struct UidObject<'a> {
    type_name: Option<Option<Cow<'a, str>>>,
    id: Option<Option<Cow<'a, str>>>,
    entity: Option<Option<Box<UidObject<'a>>>>,
}

impl<'de> UidRef<'de> {
    fn from_object(object: UidObject<'de>) -> Self {
        let inner = match object.entity {
            Some(Some(inner)) => *inner,
            Some(None) => return UidRef::Other,
            None => object,
        };
        match (inner.type_name, inner.id) {
            (Some(Some(type_name)), Some(Some(id))) => UidRef::Parts(type_name, id),
            _ => UidRef::Other,
        }
    }
}

/// Reads the object `map` as a [`UidObject`]; `nested`: an `__entity` inside is not read
/// further (only the outermost one counts).
fn uid_object<'de, M: MapAccess<'de>>(mut map: M, nested: bool) -> Result<UidObject<'de>, M::Error> {
    let mut object = UidObject::default();
    while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
        match key.as_ref() {
            "type" => object.type_name = Some(map.next_value::<MaybeText<'de>>()?.0),
            "id" => object.id = Some(map.next_value::<MaybeText<'de>>()?.0),
            "__entity" if !nested => {
                object.entity = Some(map.next_value::<MaybeUidObject<'de>>()?.0.map(Box::new));
            }
            _ => {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
    }
    Ok(object)
}

/// An object as a nested [`UidObject`], anything else as `None`.
struct MaybeUidObject<'a>(Option<UidObject<'a>>);

impl<'de> Deserialize<'de> for MaybeUidObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = MaybeUidObject<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON value")
            }
            read_over!('de, MaybeUidObject(None); scalars, unit, str, seq);
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                uid_object(map, true).map(|object| MaybeUidObject(Some(object)))
            }
        }
        deserializer.deserialize_any(Any)
    }
}

impl<'de> Deserialize<'de> for UidRef<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = UidRef<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON value")
            }
            read_over!('de, UidRef::Other; scalars, seq);
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(UidRef::Null)
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(UidRef::Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(UidRef::Text(Cow::Owned(text.to_owned())))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                uid_object(map, false).map(UidRef::from_object)
            }
        }
        deserializer.deserialize_any(Any)
    }
}

/// What `additional_entities` was sent as.
pub enum EntityList<'a> {
    /// An array whose elements all have the plain shapes ([`PlainEntity`]), each read as such
    /// in the body's one pass (the usual request).
    Plain(Vec<PlainEntity<'a>>),
    /// An array: its elements, each the text it was sent as (how a body is read again when
    /// one of its entities does not have the plain shapes).
    Elements(Vec<&'a RawValue>),
    /// An array with an element of other shapes, found in the body's first pass: the body is
    /// read again ([`RequestFields::rereads`]); never answered from.
    Reread,
    /// Another value (not `null`).
    Other,
}

/// One request-scoped entity as read: plain, or the text sent.
#[derive(Clone, Copy)]
pub enum SentEntity<'l, 'a> {
    Plain(&'l PlainEntity<'a>),
    Text(&'a str),
}

impl<'a> EntityList<'a> {
    /// The elements, `None` when it is not an array (or was not read as one).
    pub fn elements(&self) -> Option<Vec<SentEntity<'_, 'a>>> {
        match self {
            EntityList::Plain(plain) => Some(plain.iter().map(SentEntity::Plain).collect()),
            EntityList::Elements(elements) => {
                Some(elements.iter().map(|e| SentEntity::Text(e.get())).collect())
            }
            EntityList::Reread | EntityList::Other => None,
        }
    }

    /// How many elements, `None` when it is not an array.
    pub fn len(&self) -> Option<usize> {
        match self {
            EntityList::Plain(plain) => Some(plain.len()),
            EntityList::Elements(elements) => Some(elements.len()),
            EntityList::Reread | EntityList::Other => None,
        }
    }

    /// The list as JSON text, its elements joined by commas (each a whole JSON value, so equal
    /// texts are equal lists): as sent, or as a plain entity is written ([`PlainEntity::to_json`]);
    /// `"!"` (no JSON text) when it is not an array.
    pub fn text(&self) -> String {
        let texts: Vec<std::borrow::Cow<'_, str>> = match self {
            EntityList::Plain(plain) => plain.iter().map(|e| e.to_json().into()).collect(),
            EntityList::Elements(elements) => elements.iter().map(|e| e.get().into()).collect(),
            EntityList::Reread | EntityList::Other => return "!".to_owned(),
        };
        texts.join(",")
    }

    /// Whether `other` is the same list: both arrays whose elements are the same plain
    /// entities, or were sent as the same texts, in order.
    pub fn same_as(&self, other: &EntityList<'_>) -> bool {
        match (self, other) {
            (EntityList::Plain(mine), EntityList::Plain(theirs)) => mine == theirs,
            (EntityList::Elements(mine), EntityList::Elements(theirs)) => {
                mine.len() == theirs.len() && mine.iter().zip(theirs).all(|(a, b)| a.get() == b.get())
            }
            _ => false,
        }
    }
}

impl RequestFields<'_> {
    /// The bytes it was sent in, near enough to bound its cost: its fields' names and values,
    /// the entity list's elements (and a comma each; a plain entity's estimated from its
    /// strings, [`PlainEntity::sent_len`]) and the entity references' strings.
    pub fn sent_bytes(&self) -> usize {
        let entities = match &self.entities {
            Some(EntityList::Plain(plain)) => plain.iter().map(|e| e.sent_len() + 1).sum(),
            Some(EntityList::Elements(elements)) => elements.iter().map(|e| e.get().len() + 1).sum(),
            _ => 0,
        };
        self.fields
            .0
            .iter()
            .map(|(key, value)| key.len() + value.get().len())
            .chain(self.uids.iter().flatten().map(UidRef::len))
            .sum::<usize>()
            + entities
    }

    /// Whether the body must be read again with the entities as sent
    /// ([`EntityList::Reread`]).
    pub fn rereads(&self) -> bool {
        matches!(self.entities, Some(EntityList::Reread))
    }
}

/// A request object read with its request-scoped entities as sent, each element's text (the
/// second reading of a body one of whose entities does not have the plain shapes).
pub struct SentFields<'a>(pub RequestFields<'a>);

impl<'de> Deserialize<'de> for SentFields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Objects::<true>).map(SentFields)
    }
}

impl<'de> Deserialize<'de> for RequestFields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Objects::<false>)
    }
}

/// Reads a request object (its entities as sent when `SENT`).
struct Objects<const SENT: bool>;

impl<'de, const SENT: bool> Visitor<'de> for Objects<SENT> {
    type Value = RequestFields<'de>;
    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }
    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<RequestFields<'de>, M::Error> {
        request_fields_of::<M, SENT>(map)
    }
}

/// The fields of the request object `map` reads (its request-scoped entities as sent when
/// `SENT`, else as plain entities where they all are).
fn request_fields_of<'de, M: MapAccess<'de>, const SENT: bool>(
    mut map: M,
) -> Result<RequestFields<'de>, M::Error> {
    let mut fields = Vec::new();
    let mut uids = [None, None, None];
    let mut entities = None;
    while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
        if key == "additional_entities" {
            entities = map.next_value::<MaybeEntityList<'de, SENT>>()?.0;
        } else if let Some(at) = UID_FIELDS.iter().position(|field| *field == key) {
            uids[at] = Some(map.next_value::<UidRef<'de>>()?);
        } else {
            fields.push((key, map.next_value::<&'de RawValue>()?));
        }
    }
    Ok(RequestFields {
        fields: Fields(fields),
        uids,
        entities,
    })
}

/// `null` as `None`, an array as its elements (plain entities, [`EntityList::Reread`] when
/// one is not; each as sent when `SENT`), anything else as [`EntityList::Other`].
struct MaybeEntityList<'a, const SENT: bool>(Option<EntityList<'a>>);

impl<'de, const SENT: bool> Deserialize<'de> for MaybeEntityList<'de, SENT> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any<const SENT: bool>;
        impl<'de, const SENT: bool> Visitor<'de> for Any<SENT> {
            type Value = MaybeEntityList<'de, SENT>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON value")
            }
            read_over!('de, MaybeEntityList(Some(EntityList::Other)); scalars, str, map);
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(MaybeEntityList(None))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                if SENT {
                    let mut elements = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                    while let Some(element) = seq.next_element::<&'de RawValue>()? {
                        elements.push(element);
                    }
                    return Ok(MaybeEntityList(Some(EntityList::Elements(elements))));
                }
                let mut plain = Some(Vec::with_capacity(seq.size_hint().unwrap_or(4)));
                while let Some(MaybePlain(entity)) = seq.next_element()? {
                    plain = plain.zip(entity).map(|(mut plain, entity)| {
                        plain.push(entity);
                        plain
                    });
                }
                Ok(MaybeEntityList(Some(
                    plain.map_or(EntityList::Reread, EntityList::Plain),
                )))
            }
        }
        deserializer.deserialize_any(Any::<SENT>)
    }
}

/// Any value read in one pass: an object as a request's fields (its entities as sent when
/// `SENT`), anything else as `None` (read over).
pub struct MaybeObject<'a, const SENT: bool = false>(pub Option<RequestFields<'a>>);

/// Any value read in one pass: an array of [`MaybeObject`]s, anything else as `None`.
pub struct MaybeObjects<'a, const SENT: bool = false>(pub Option<Vec<MaybeObject<'a, SENT>>>);

impl<'de, const SENT: bool> Deserialize<'de> for MaybeObject<'de, SENT> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any<const SENT: bool>;
        impl<'de, const SENT: bool> Visitor<'de> for Any<SENT> {
            type Value = MaybeObject<'de, SENT>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON value")
            }
            read_over!('de, MaybeObject(None); scalars, unit, str, seq);
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<MaybeObject<'de, SENT>, M::Error> {
                request_fields_of::<M, SENT>(map).map(|fields| MaybeObject(Some(fields)))
            }
        }
        deserializer.deserialize_any(Any::<SENT>)
    }
}

impl<'de, const SENT: bool> Deserialize<'de> for MaybeObjects<'de, SENT> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any<const SENT: bool>;
        impl<'de, const SENT: bool> Visitor<'de> for Any<SENT> {
            type Value = MaybeObjects<'de, SENT>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON value")
            }
            read_over!('de, MaybeObjects(None); scalars, unit, str, map);
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<MaybeObjects<'de, SENT>, S::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(8));
                while let Some(item) = seq.next_element::<MaybeObject<'de, SENT>>()? {
                    items.push(item);
                }
                Ok(MaybeObjects(Some(items)))
            }
        }
        deserializer.deserialize_any(Any::<SENT>)
    }
}

/// A batch body read in one pass: its `requests` (the last sent; their entities as sent when
/// `SENT`), and its first other key.
pub struct BatchBody<'a, const SENT: bool = false> {
    pub requests: Option<MaybeObjects<'a, SENT>>,
    pub unknown: Option<Cow<'a, str>>,
}

impl<'de, const SENT: bool> Deserialize<'de> for BatchBody<'de, SENT> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Body<const SENT: bool>;
        impl<'de, const SENT: bool> Visitor<'de> for Body<SENT> {
            type Value = BatchBody<'de, SENT>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<BatchBody<'de, SENT>, M::Error> {
                let mut body = BatchBody {
                    requests: None,
                    unknown: None,
                };
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    if key == "requests" {
                        body.requests = Some(map.next_value()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        body.unknown.get_or_insert(key);
                    }
                }
                Ok(body)
            }
        }
        deserializer.deserialize_map(Body::<SENT>)
    }
}

/// The first byte of a value's text (values are sent without leading whitespace in a
/// `RawValue`; the whole body may have some).
fn first(value: &str) -> Option<u8> {
    value.trim_start().bytes().next()
}

/// `value`'s fields when it is an object, else `None`.
pub fn object(value: &RawValue) -> Option<Fields<'_>> {
    object_text(value.get())
}

/// [`object`] of a text that is valid JSON.
pub fn object_text(value: &str) -> Option<Fields<'_>> {
    (first(value) == Some(b'{'))
        .then(|| serde_json::from_str(value).ok())
        .flatten()
}

/// `value` as a `serde_json::Value` (for what only Cedar's own parsers read).
pub fn value(value: &RawValue) -> serde_json::Value {
    serde_json::from_str(value.get()).unwrap_or(serde_json::Value::Null)
}

/// `{"type": …, "id": …}` with string values, each once, and no other key (anything else: not
/// plain).
#[derive(Debug, PartialEq, serde::Serialize)]
pub struct PlainUid<'a> {
    #[serde(rename = "type")]
    pub type_name: Cow<'a, str>,
    pub id: Cow<'a, str>,
}

/// An attribute value of the plain shapes: a boolean, an integer that fits in `i64`, a string,
/// or `{"__entity": {"type": …, "id": …}}` (anything else: not plain).
#[derive(Debug, PartialEq)]
pub enum PlainValue<'a> {
    Bool(bool),
    Long(i64),
    Str(Cow<'a, str>),
    Entity(PlainUid<'a>),
}

impl serde::Serialize for PlainValue<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            PlainValue::Bool(value) => serializer.serialize_bool(*value),
            PlainValue::Long(value) => serializer.serialize_i64(*value),
            PlainValue::Str(text) => serializer.serialize_str(text),
            PlainValue::Entity(uid) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("__entity", uid)?;
                map.end()
            }
        }
    }
}

/// An entity's attributes of the plain shapes, in the order sent (a name sent twice: not plain).
#[derive(Debug, PartialEq)]
pub struct PlainAttrs<'a>(pub Vec<(Cow<'a, str>, PlainValue<'a>)>);

impl serde::Serialize for PlainAttrs<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, value)))
    }
}

/// A request-scoped entity of the plain shapes: an object with `uid`, `attrs` and `parents`
/// (Cedar's parser requires `parents`), each once, and no other key but `tags` as `{}`.
#[derive(Debug, PartialEq, serde::Serialize)]
pub struct PlainEntity<'a> {
    pub uid: PlainUid<'a>,
    pub attrs: PlainAttrs<'a>,
    pub parents: Vec<PlainUid<'a>>,
}

impl<'a> PlainEntity<'a> {
    /// The entity `text` (valid JSON or not) sends, if it has the plain shapes.
    pub fn read(text: &'a str) -> Option<PlainEntity<'a>> {
        serde_json::from_str::<MaybePlain<'a>>(text).ok()?.0
    }

    /// The entity as JSON: what Cedar's parser reads as it would read the text it was sent as
    /// (the same keys and values; escapes and spacing written anew, `tags` left out as empty).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// About the bytes it was sent in (its strings and what frames them), to bound its cost.
    fn sent_len(&self) -> usize {
        const FRAME: usize = 16;
        let uid_len = |uid: &PlainUid<'_>| uid.type_name.len() + uid.id.len() + 2 * FRAME;
        let value_len = |value: &PlainValue<'_>| match value {
            PlainValue::Str(text) => text.len() + FRAME,
            PlainValue::Entity(uid) => uid_len(uid) + FRAME,
            PlainValue::Bool(_) | PlainValue::Long(_) => FRAME,
        };
        uid_len(&self.uid)
            + self
                .attrs
                .0
                .iter()
                .map(|(name, value)| name.len() + FRAME + value_len(value))
                .sum::<usize>()
            + self.parents.iter().map(uid_len).sum::<usize>()
            + 3 * FRAME
    }
}

/// A value read in one pass whatever its shape: a [`PlainEntity`], or `None` when it does not
/// have the plain shapes (read over to its end, as each reader below: only malformed JSON is an
/// error).
pub struct MaybePlain<'a>(pub Option<PlainEntity<'a>>);

/// [`MaybePlain`]'s reader of one kind of value: `$reader` reads an object (`map`) or an array
/// (`seq`) into an `Option`, anything else is read over as `None`.
macro_rules! maybe_plain {
    ($name:ident, $kind:ident, $reader:expr) => {
        impl<'de> Deserialize<'de> for $name<'de> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Any;
                impl<'de> Visitor<'de> for Any {
                    type Value = $name<'de>;
                    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                        formatter.write_str("a JSON value")
                    }
                    maybe_plain!(@read $name, $kind, $reader);
                }
                deserializer.deserialize_any(Any)
            }
        }
    };
    (@read $name:ident, map, $reader:expr) => {
        read_over!('de, $name(None); scalars, unit, str, seq);
        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
            $reader(map).map($name)
        }
    };
    (@read $name:ident, seq, $reader:expr) => {
        read_over!('de, $name(None); scalars, unit, str, map);
        fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Self::Value, S::Error> {
            $reader(seq).map($name)
        }
    };
}

struct MaybePlainUid<'a>(Option<PlainUid<'a>>);
maybe_plain!(MaybePlainUid, map, plain_uid_of);
struct MaybePlainParents<'a>(Option<Vec<PlainUid<'a>>>);
maybe_plain!(MaybePlainParents, seq, plain_parents_of);
struct MaybePlainAttrs<'a>(Option<PlainAttrs<'a>>);
maybe_plain!(MaybePlainAttrs, map, plain_attrs_of);
struct MaybeNoTags<'a>(Option<std::marker::PhantomData<&'a ()>>);
maybe_plain!(MaybeNoTags, map, no_tags_of);
maybe_plain!(MaybePlain, map, plain_entity_of);

/// Reads the rest of an object over.
fn read_over_map<'de, M: MapAccess<'de>>(map: &mut M) -> Result<(), M::Error> {
    while map
        .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
        .is_some()
    {}
    Ok(())
}

fn plain_uid_of<'de, M: MapAccess<'de>>(mut map: M) -> Result<Option<PlainUid<'de>>, M::Error> {
    let (mut type_name, mut id, mut plain) = (None, None, true);
    while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
        let slot = match key.as_ref() {
            "type" => &mut type_name,
            "id" => &mut id,
            _ => {
                map.next_value::<serde::de::IgnoredAny>()?;
                plain = false;
                continue;
            }
        };
        let value = map.next_value::<MaybeText<'de>>()?.0;
        plain &= slot.is_none() && value.is_some();
        *slot = value;
    }
    Ok(match (type_name, id) {
        (Some(type_name), Some(id)) if plain => Some(PlainUid { type_name, id }),
        _ => None,
    })
}

fn plain_parents_of<'de, S: SeqAccess<'de>>(mut seq: S) -> Result<Option<Vec<PlainUid<'de>>>, S::Error> {
    let mut parents = Some(Vec::with_capacity(seq.size_hint().unwrap_or(1)));
    while let Some(MaybePlainUid(uid)) = seq.next_element()? {
        parents = parents.zip(uid).map(|(mut parents, uid)| {
            parents.push(uid);
            parents
        });
    }
    Ok(parents)
}

/// An attribute value of the plain shapes, or `None` (read over).
struct MaybePlainValue<'a>(Option<PlainValue<'a>>);

impl<'de> Deserialize<'de> for MaybePlainValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = MaybePlainValue<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON value")
            }
            read_over!('de, MaybePlainValue(None); unit, seq);
            fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
                Ok(MaybePlainValue(Some(PlainValue::Bool(value))))
            }
            fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
                Ok(MaybePlainValue(Some(PlainValue::Long(value))))
            }
            fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
                Ok(MaybePlainValue(i64::try_from(value).ok().map(PlainValue::Long)))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybePlainValue(None))
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(MaybePlainValue(Some(PlainValue::Str(Cow::Borrowed(text)))))
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(MaybePlainValue(Some(PlainValue::Str(Cow::Owned(
                    text.to_owned(),
                )))))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                // `{"__entity": <plain uid>}` and nothing else.
                let uid = match map.next_key::<Text<'de>>()? {
                    Some(Text(key)) if key == "__entity" => map.next_value::<MaybePlainUid<'de>>()?.0,
                    Some(_) => {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        None
                    }
                    None => None,
                };
                if map.next_key::<serde::de::IgnoredAny>()?.is_some() {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    read_over_map(&mut map)?;
                    return Ok(MaybePlainValue(None));
                }
                Ok(MaybePlainValue(uid.map(PlainValue::Entity)))
            }
        }
        deserializer.deserialize_any(Any)
    }
}

fn plain_attrs_of<'de, M: MapAccess<'de>>(mut map: M) -> Result<Option<PlainAttrs<'de>>, M::Error> {
    let mut attrs: Option<Vec<(Cow<'de, str>, PlainValue<'de>)>> = Some(Vec::new());
    while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
        let MaybePlainValue(value) = map.next_value()?;
        attrs = match (attrs, value) {
            (Some(mut attrs), Some(value)) if attrs.iter().all(|(seen, _)| *seen != name) => {
                attrs.push((name, value));
                Some(attrs)
            }
            _ => None,
        };
    }
    Ok(attrs.map(PlainAttrs))
}

fn no_tags_of<'de, M: MapAccess<'de>>(
    mut map: M,
) -> Result<Option<std::marker::PhantomData<&'de ()>>, M::Error> {
    if map.next_key::<serde::de::IgnoredAny>()?.is_none() {
        return Ok(Some(std::marker::PhantomData));
    }
    map.next_value::<serde::de::IgnoredAny>()?;
    read_over_map(&mut map)?;
    Ok(None)
}

fn plain_entity_of<'de, M: MapAccess<'de>>(mut map: M) -> Result<Option<PlainEntity<'de>>, M::Error> {
    let (mut uid, mut attrs, mut parents, mut tags) = (None, None, None, None);
    let mut plain = true;
    while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
        // Each key once, its value of the plain shapes.
        plain &= match key.as_ref() {
            "uid" => uid.replace(map.next_value::<MaybePlainUid<'de>>()?.0).is_none(),
            "attrs" => attrs
                .replace(map.next_value::<MaybePlainAttrs<'de>>()?.0)
                .is_none(),
            "parents" => parents
                .replace(map.next_value::<MaybePlainParents<'de>>()?.0)
                .is_none(),
            "tags" => tags.replace(map.next_value::<MaybeNoTags<'de>>()?.0).is_none(),
            _ => {
                map.next_value::<serde::de::IgnoredAny>()?;
                false
            }
        };
    }
    Ok(match (uid, attrs, parents, tags) {
        (Some(Some(uid)), Some(Some(attrs)), Some(Some(parents)), None | Some(Some(_))) if plain => {
            Some(PlainEntity { uid, attrs, parents })
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_in_order_and_values_as_sent() {
        let body = r#" {"a": 1, "b\n": {"c" : [1, 2]}, "a": "x\"y", "n": null} "#;
        let root: &RawValue = serde_json::from_str(body).unwrap();
        let fields = object(root).unwrap();
        let keys: Vec<&str> = fields.0.iter().map(|(key, _)| key.as_ref()).collect();
        assert_eq!(keys, ["a", "b\n", "a", "n"]);
        assert_eq!(fields.get("b\n").unwrap().get(), r#"{"c" : [1, 2]}"#);
        assert_eq!(fields.get("a").unwrap().get(), r#""x\"y""#);
        assert!(fields.given("n").is_none() && fields.get("n").is_some());
        let inner = object(fields.get("b\n").unwrap()).unwrap();
        let one = serde_json::from_str::<&RawValue>("1").unwrap();
        assert!(object(one).is_none());
        assert_eq!(value(inner.get("c").unwrap()), serde_json::json!([1, 2]));
    }

    /// A request's `additional_entities` is split into its elements as it is read, the last
    /// one sent counts, `null` is none sent, any other value is not a list; the other fields
    /// are kept in order.
    #[test]
    fn reads_a_requests_entities_as_elements() {
        let read = |body: &str| -> (Vec<String>, Option<Option<Vec<String>>>) {
            let SentFields(request) = serde_json::from_str(body).unwrap();
            let keys = request.fields.0.iter().map(|(key, _)| key.to_string()).collect();
            let entities = request.entities.as_ref().map(|list| match list {
                EntityList::Elements(elements) => Some(elements.iter().map(|e| e.get().to_owned()).collect()),
                _ => None,
            });
            (keys, entities)
        };
        let owned = |texts: &[&str]| Some(Some(texts.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>()));
        let (keys, entities) = read(r#"{"a": 1, "additional_entities": [ {"x": [1,2]} , "s,t" ], "b": 2}"#);
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(entities, owned(&[r#"{"x": [1,2]}"#, r#""s,t""#]));
        assert_eq!(
            read(r#"{"additional_entities": [1], "additional_entities": []}"#).1,
            owned(&[])
        );
        assert_eq!(
            read(r#"{"additional_entities": [1], "additional_entities": null}"#).1,
            None
        );
        for other in ["1", "true", r#""[]""#, r#"{"a": [1]}"#, "1.5"] {
            let body = format!(r#"{{"additional_entities": {other}}}"#);
            assert_eq!(read(&body).1, Some(None), "{body}");
        }
    }

    /// An item's request-scoped entities are the same as a remembered list's (the batch's
    /// memo), and cached under equal texts, exactly for equal lists of element texts: a comma inside an
    /// element, a split element, a prefix and a longer list are told apart; a value that is not
    /// an array is never taken for a remembered list.
    #[test]
    fn entity_texts_tell_lists_apart() {
        // The list as sent, and its elements as texts (`None`: not an array).
        let table: [(&str, Option<&[&str]>); 10] = [
            ("[]", Some(&[])),
            ("[1,2]", Some(&["1", "2"])),
            ("[12]", Some(&["12"])),
            (r#"["a,b"]"#, Some(&[r#""a,b""#])),
            (r#"["a","b"]"#, Some(&[r#""a""#, r#""b""#])),
            (r#"["a"]"#, Some(&[r#""a""#])),
            (r#"["a","b","c"]"#, Some(&[r#""a""#, r#""b""#, r#""c""#])),
            (r#"[{"uid": 1}]"#, Some(&[r#"{"uid": 1}"#])),
            (r#"[ {"uid": 1} ]"#, Some(&[r#"{"uid": 1}"#])),
            ("7", None),
        ];
        let bodies: Vec<String> = table
            .iter()
            .map(|(list, _)| format!(r#"{{"additional_entities": {list}}}"#))
            .collect();
        let lists: Vec<EntityList<'_>> = bodies
            .iter()
            .map(|body| {
                serde_json::from_str::<SentFields<'_>>(body)
                    .unwrap()
                    .0
                    .entities
                    .unwrap()
            })
            .collect();
        for ((list, elements), item) in table.iter().zip(&lists) {
            let text = item.text();
            for ((other_list, other_elements), other) in table.iter().zip(&lists) {
                let what = format!("{list} remembered, {other_list} sent");
                assert_eq!(
                    other.same_as(item),
                    elements.is_some() && elements == other_elements,
                    "{what}"
                );
                assert_eq!(other.text() == text, elements == other_elements, "{what}");
            }
        }
        let none: RequestFields<'_> = serde_json::from_str(r#"{"principal": 1}"#).unwrap();
        assert!(none.entities.is_none());
    }

    /// In a body's first pass, a list whose elements are all plain entities is read as such
    /// (the same entities its texts read as), and a list with any other element asks for the
    /// body to be read again (however malformed for an entity the element is; only malformed
    /// JSON is an error); a plain entity's own JSON reads back as the same entity.
    #[test]
    fn plain_lists_are_read_in_one_pass() {
        let w = r#"{"type": "ZenML::Workspace", "id": "w\u0031"}"#;
        let plain = [
            format!(
                r#"{{"uid": {{"type": "ZenML::Stack", "id": "s"}}, "attrs": {{"workspace": {{"__entity": {w}}}, "n": -3, "b": true, "t": "x\"y"}}, "parents": [{w}]}}"#
            ),
            format!(r#"{{"parents": [], "tags": {{}}, "attrs": {{}}, "uid": {w}}}"#),
        ];
        let not_plain = [
            r#"{"uid": {"type": "T", "id": "s"}, "attrs": {}}"#,
            r#"{"uid": {"type": "T", "id": "s"}, "attrs": {}, "parents": [], "tags": {"a": 1}}"#,
            r#"{"uid": {"type": "T", "id": "s"}, "attrs": {}, "parents": [], "tags": null}"#,
            r#"{"uid": {"type": "T", "id": "s", "id": "t"}, "attrs": {}, "parents": []}"#,
            r#"{"uid": {"type": "T", "id": "s"}, "attrs": {"a": 1, "a": 2}, "parents": []}"#,
            r#"{"uid": {"type": "T", "id": "s"}, "attrs": {"a": 1.5}, "parents": []}"#,
            r#"{"uid": {"type": "T", "id": "s"}, "attrs": {"a": 9223372036854775808}, "parents": []}"#,
            r#"{"uid": {"type": "T", "id": "s"}, "attrs": {"a": [1]}, "parents": []}"#,
            r#"{"uid": {"type": "T", "id": "s"}, "attrs": {"a": {"__entity": {"type": "T", "id": "u"}, "b": 1}}, "parents": []}"#,
            r#"{"uid": {"type": "T", "id": "s"}, "attrs": {"a": {"__extn": {"fn": "ip", "arg": "1.2.3.4"}}}, "parents": []}"#,
            r#"{"uid": {"type": "T", "id": "s"}, "attrs": {}, "parents": [], "uid": {"type": "T", "id": "s"}}"#,
            r#"{"uid": {"type": "T", "id": "s"}, "attrs": {}, "parents": [], "other": 1}"#,
            r#"{"uid": "T::\"s\"", "attrs": {}, "parents": []}"#,
            r#"[{"type": "T", "id": "s"}, {}, []]"#,
            r#"{"uid": ["T", "s"], "attrs": {}, "parents": []}"#,
            "7",
        ];
        let list = |elements: &[&str]| {
            let body = format!(
                r#"{{"additional_entities": [{}], "after": 1}}"#,
                elements.join(",")
            );
            let request: RequestFields<'_> = serde_json::from_str(&body).unwrap();
            // The rest of the body is read on either way.
            assert_eq!(request.fields.0.len(), 1, "{body}");
            (request.rereads(), request.entities.map(|list| list.text()))
        };
        for text in &plain {
            let read = PlainEntity::read(text).unwrap();
            assert_eq!(PlainEntity::read(&read.to_json()).as_ref(), Some(&read), "{text}");
            assert_eq!(list(&[text]), (false, Some(read.to_json())), "{text}");
        }
        for text in not_plain {
            assert!(PlainEntity::read(text).is_none(), "{text}");
            assert_eq!(list(&[&plain[0], text]), (true, Some("!".to_owned())), "{text}");
        }
    }
}
