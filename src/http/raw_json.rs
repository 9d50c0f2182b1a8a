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
    /// An array: its elements, each the text it was sent as.
    Elements(Vec<&'a RawValue>),
    /// Another value (not `null`).
    Other,
}

impl EntityList<'_> {
    /// The elements, `None` when it is not an array.
    pub fn elements(&self) -> Option<&[&RawValue]> {
        match self {
            EntityList::Elements(elements) => Some(elements),
            EntityList::Other => None,
        }
    }

    /// The list's text as sent, its elements joined by commas (each a whole JSON value, so
    /// equal texts are equal lists); `"!"` (no JSON text) when it is not an array.
    pub fn text(&self) -> String {
        let Some(elements) = self.elements() else {
            return "!".to_owned();
        };
        let mut text = String::with_capacity(elements.iter().map(|e| e.get().len() + 1).sum());
        for (i, element) in elements.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(element.get());
        }
        text
    }

    /// Whether `other` is the same list: both arrays whose elements were sent as the same
    /// texts, in order (compared in place, nothing joined).
    pub fn same_as(&self, other: &EntityList<'_>) -> bool {
        match (self.elements(), other.elements()) {
            (Some(mine), Some(theirs)) => {
                mine.len() == theirs.len() && mine.iter().zip(theirs).all(|(a, b)| a.get() == b.get())
            }
            _ => false,
        }
    }
}

impl RequestFields<'_> {
    /// The bytes it was sent in, near enough to bound its cost: its fields' names and values,
    /// the entity list's elements (and a comma each) and the entity references' strings.
    pub fn sent_bytes(&self) -> usize {
        let elements = self
            .entities
            .as_ref()
            .and_then(EntityList::elements)
            .unwrap_or_default();
        self.fields
            .0
            .iter()
            .map(|(key, value)| key.len() + value.get().len())
            .chain(elements.iter().map(|element| element.get().len() + 1))
            .chain(self.uids.iter().flatten().map(UidRef::len))
            .sum()
    }
}

impl<'de> Deserialize<'de> for RequestFields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Objects;
        impl<'de> Visitor<'de> for Objects {
            type Value = RequestFields<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<RequestFields<'de>, M::Error> {
                request_fields_of(map)
            }
        }
        deserializer.deserialize_map(Objects)
    }
}

/// The fields of the request object `map` reads.
fn request_fields_of<'de, M: MapAccess<'de>>(mut map: M) -> Result<RequestFields<'de>, M::Error> {
    let mut fields = Vec::new();
    let mut uids = [None, None, None];
    let mut entities = None;
    while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
        if key == "additional_entities" {
            entities = map.next_value::<MaybeEntityList<'de>>()?.0;
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

/// `null` as `None`, an array as its elements, anything else as [`EntityList::Other`].
struct MaybeEntityList<'a>(Option<EntityList<'a>>);

impl<'de> Deserialize<'de> for MaybeEntityList<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = MaybeEntityList<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON value")
            }
            read_over!('de, MaybeEntityList(Some(EntityList::Other)); scalars, str, map);
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(MaybeEntityList(None))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let mut elements = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(element) = seq.next_element::<&'de RawValue>()? {
                    elements.push(element);
                }
                Ok(MaybeEntityList(Some(EntityList::Elements(elements))))
            }
        }
        deserializer.deserialize_any(Any)
    }
}

/// Any value read in one pass: an object as a request's fields, anything else as `None` (read
/// over).
pub struct MaybeObject<'a>(pub Option<RequestFields<'a>>);

/// Any value read in one pass: an array of [`MaybeObject`]s, anything else as `None`.
pub struct MaybeObjects<'a>(pub Option<Vec<MaybeObject<'a>>>);

impl<'de> Deserialize<'de> for MaybeObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = MaybeObject<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON value")
            }
            read_over!('de, MaybeObject(None); scalars, unit, str, seq);
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<MaybeObject<'de>, M::Error> {
                request_fields_of(map).map(|fields| MaybeObject(Some(fields)))
            }
        }
        deserializer.deserialize_any(Any)
    }
}

impl<'de> Deserialize<'de> for MaybeObjects<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = MaybeObjects<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON value")
            }
            read_over!('de, MaybeObjects(None); scalars, unit, str, map);
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<MaybeObjects<'de>, S::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(8));
                while let Some(item) = seq.next_element::<MaybeObject<'de>>()? {
                    items.push(item);
                }
                Ok(MaybeObjects(Some(items)))
            }
        }
        deserializer.deserialize_any(Any)
    }
}

/// A batch body read in one pass: its `requests` (the last sent), and its first other key.
pub struct BatchBody<'a> {
    pub requests: Option<MaybeObjects<'a>>,
    pub unknown: Option<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for BatchBody<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Body;
        impl<'de> Visitor<'de> for Body {
            type Value = BatchBody<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<BatchBody<'de>, M::Error> {
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
        deserializer.deserialize_map(Body)
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

/// `{"type": …, "id": …}` with string values and no other key (anything else: not plain).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainUid<'a> {
    #[serde(borrow, rename = "type")]
    pub type_name: Cow<'a, str>,
    #[serde(borrow)]
    pub id: Cow<'a, str>,
}

/// An attribute value of the plain shapes: a boolean, an integer that fits in `i64`, a string,
/// or `{"__entity": {"type": …, "id": …}}` (anything else: not plain).
pub enum PlainValue<'a> {
    Bool(bool),
    Long(i64),
    Str(Cow<'a, str>),
    Entity(PlainUid<'a>),
}

impl<'de: 'a, 'a> Deserialize<'de> for PlainValue<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Values<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Values<'a> {
            type Value = PlainValue<'a>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a boolean, an integer, a string or an entity reference")
            }
            fn visit_bool<E>(self, value: bool) -> Result<PlainValue<'a>, E> {
                Ok(PlainValue::Bool(value))
            }
            fn visit_i64<E>(self, value: i64) -> Result<PlainValue<'a>, E> {
                Ok(PlainValue::Long(value))
            }
            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<PlainValue<'a>, E> {
                i64::try_from(value)
                    .map(PlainValue::Long)
                    .map_err(|_| E::custom("out of range"))
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<PlainValue<'a>, E> {
                Ok(PlainValue::Str(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<PlainValue<'a>, E> {
                Ok(PlainValue::Str(Cow::Owned(text.to_owned())))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<PlainValue<'a>, M::Error> {
                use serde::de::Error;
                match map.next_key::<Text<'de>>()? {
                    Some(Text(key)) if key == "__entity" => {}
                    _ => return Err(M::Error::custom("not an entity reference")),
                }
                let uid = map.next_value::<PlainUid<'a>>()?;
                match map.next_key::<Text<'de>>()? {
                    None => Ok(PlainValue::Entity(uid)),
                    Some(_) => Err(M::Error::custom("not an entity reference")),
                }
            }
        }
        deserializer.deserialize_any(Values(std::marker::PhantomData))
    }
}

/// An entity's attributes of the plain shapes, in order (a name sent twice: not plain).
pub struct PlainAttrs<'a>(pub Vec<(Cow<'a, str>, PlainValue<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for PlainAttrs<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Attrs<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Attrs<'a> {
            type Value = PlainAttrs<'a>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an object of attributes")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<PlainAttrs<'a>, M::Error> {
                use serde::de::Error;
                let mut attrs: Vec<(Cow<'a, str>, PlainValue<'a>)> = Vec::new();
                while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
                    if attrs.iter().any(|(seen, _)| *seen == name) {
                        return Err(M::Error::custom("an attribute sent twice"));
                    }
                    attrs.push((name, map.next_value()?));
                }
                Ok(PlainAttrs(attrs))
            }
        }
        deserializer.deserialize_map(Attrs(std::marker::PhantomData))
    }
}

/// `tags` absent or `{}` (anything else: not plain).
#[derive(Default)]
pub struct NoTags;

impl<'de> Deserialize<'de> for NoTags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Empty;
        impl<'de> Visitor<'de> for Empty {
            type Value = NoTags;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an empty object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<NoTags, M::Error> {
                use serde::de::Error;
                match map.next_key::<Text<'de>>()? {
                    None => Ok(NoTags),
                    Some(_) => Err(M::Error::custom("tags")),
                }
            }
        }
        deserializer.deserialize_map(Empty)
    }
}

/// A request-scoped entity of the plain shapes, read in one pass: `uid`, `attrs` and `parents`
/// present (Cedar's parser requires `parents`), each once, no other key, no tags.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainEntity<'a> {
    #[serde(borrow)]
    pub uid: PlainUid<'a>,
    #[serde(borrow)]
    pub attrs: PlainAttrs<'a>,
    #[serde(borrow)]
    pub parents: Vec<PlainUid<'a>>,
    /// Read only to refuse tags that are not empty.
    #[serde(default, rename = "tags")]
    pub _tags: NoTags,
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
            let request: RequestFields<'_> = serde_json::from_str(body).unwrap();
            let keys = request.fields.0.iter().map(|(key, _)| key.to_string()).collect();
            let entities = request.entities.as_ref().map(|list| {
                list.elements()
                    .map(|elements| elements.iter().map(|e| e.get().to_owned()).collect())
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
                serde_json::from_str::<RequestFields<'_>>(body)
                    .unwrap()
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
}
