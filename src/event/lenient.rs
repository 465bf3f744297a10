//! Lenient readers of an event's head fields: whatever JSON value a field
//! holds, reading it never fails, so one odd field cannot make a whole
//! event unreadable. [`Int`] is an integer or nothing (a float, a string,
//! a number beyond `i64`); [`Text`] tells a string from any other value;
//! [`IdOf`] is the integer `id` of an object (a message event's `message`);
//! [`Head`] is the fields every event's head is read into with them.

use std::borrow::Cow;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// An integer that fits `i64`; `None` for any other value.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Int(pub(super) Option<i64>);

/// A string, or [`Text::Other`] for a value of another kind (`null` is
/// read as no value at all by the `Option` around it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Text<'a> {
    /// A string.
    Str(Cow<'a, str>),
    /// A number, a boolean, an array or an object.
    Other,
}

/// The integer `id` of a JSON object; `None` for anything else.
#[derive(Default)]
pub(super) struct IdOf(pub(super) Option<i64>);

/// The fields read from every event on arrival, in one pass that also
/// checks that the whole text is JSON. Each is read leniently
/// (above): an odd value is noted, never an error. `M` is what is
/// read of the `message` field: its id alone here, the whole message when
/// a message event is read in one pass (`message.rs`, `read_with_head`).
#[derive(Deserialize)]
pub(super) struct Head<'a, M = IdOf> {
    #[serde(default)]
    pub(super) id: Int,
    #[serde(rename = "type", borrow, default)]
    event_type: Option<Text<'a>>,
    #[serde(borrow, default)]
    op: Option<Text<'a>>,
    #[serde(default)]
    message: M,
}

/// An event's `type` and `op`.
pub(super) type Kind<'a> = (Cow<'a, str>, Option<Cow<'a, str>>);

impl<'a, M> Head<'a, M> {
    /// The integer `id`, the kind ([`Head::kind`]) and what was read of
    /// the `message` field.
    pub(super) fn into_parts(self) -> (Option<i64>, Option<Kind<'a>>, M) {
        let kind = match (self.event_type, self.op) {
            (Some(Text::Str(event_type)), None) => Some((event_type, None)),
            (Some(Text::Str(event_type)), Some(Text::Str(op))) => Some((event_type, Some(op))),
            _ => None,
        };
        (self.id.0, kind, self.message)
    }
}

impl<'a> Head<'a> {
    pub(super) fn message_id(&self) -> Option<i64> {
        match &self.event_type {
            Some(Text::Str(t)) if t == "message" => self.message.0,
            _ => None,
        }
    }

    /// The string `type` and `op`; `None` when the type is missing or
    /// either is present but not a string (the event is then malformed).
    pub(super) fn kind(self) -> Option<Kind<'a>> {
        self.into_parts().1
    }
}

/// What a visitor makes of each kind of value: `scalar` for numbers,
/// booleans and `null`, `map` for objects, containers skipped unread.
macro_rules! skip_the_rest {
    ($value:ty, $other:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<$value, E> {
            Ok($other)
        }
        fn visit_f64<E>(self, _: f64) -> Result<$value, E> {
            Ok($other)
        }
        fn visit_unit<E>(self) -> Result<$value, E> {
            Ok($other)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<$value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($other)
        }
    };
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Int, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Int;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Int, E> {
                Ok(Int(Some(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Int, E> {
                Ok(Int(i64::try_from(v).ok()))
            }
            fn visit_str<E>(self, _: &str) -> Result<Int, E> {
                Ok(Int(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Int, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Int(None))
            }
            skip_the_rest!(Int, Int(None));
        }
        d.deserialize_any(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'a>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text::Str(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Text<'de>, E> {
                Ok(Text::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Text<'de>, E> {
                Ok(Text::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text::Other)
            }
            skip_the_rest!(Text<'de>, Text::Other);
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for IdOf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IdOf, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IdOf;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IdOf, A::Error> {
                let mut id = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "id" {
                        id = map.next_value::<Int>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(IdOf(id))
            }
            fn visit_i64<E>(self, _: i64) -> Result<IdOf, E> {
                Ok(IdOf(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<IdOf, E> {
                Ok(IdOf(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<IdOf, E> {
                Ok(IdOf(None))
            }
            skip_the_rest!(IdOf, IdOf(None));
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_int_is_an_integer_that_fits_or_nothing() {
        let int = |s: &str| serde_json::from_str::<Int>(s).unwrap().0;
        assert_eq!(int("4"), Some(4));
        assert_eq!(int("-4"), Some(-4));
        for other in ["4.0", "1.5", r#""4""#, "true", "null", "[4]", r#"{"id":4}"#] {
            assert_eq!(int(other), None, "{other}");
        }
        assert_eq!(int("18446744073709551615"), None);
    }

    #[test]
    fn text_tells_a_string_from_any_other_value() {
        fn text(s: &str) -> Text<'_> {
            serde_json::from_str(s).unwrap()
        }
        assert_eq!(text(r#""add""#), Text::Str("add".into()));
        assert_eq!(text(r#""a\"d""#), Text::Str("a\"d".into()));
        for other in ["5", "-5", "1.5", "true", "[]", r#"{"a":"b"}"#] {
            assert_eq!(text(other), Text::Other, "{other}");
        }
    }
}
