//! A deserializer that reads what it knows and skips the rest, so a reader ignores the fields
//! a newer writer appended.
//!
//! MessagePack structs cross the wire as arrays (no field names: they cost bytes in every
//! datagram). A plain reader refuses an array longer than the struct it expects; wrapped in
//! [`Lenient`], it reads the fields it knows in order and skips the extra elements, at any
//! depth (in sequences, maps, options and enum variants). The other direction is serde's:
//! a field appended in a newer version carries `#[serde(default)]`, so a shorter array from
//! an older writer fills it with its default.
//!
//! What this does not cover, by design: a new enum variant, a removed field or a changed
//! field type. Those change the wire version (see [`super::VERSION`]), and each host speaks
//! to a peer the version that peer speaks.

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use std::fmt;

/// Wraps a deserializer so that sequences may be longer than what is read from them.
pub struct Lenient<D>(pub D);

struct LenientVisitor<V>(V);
struct LenientSeed<S>(S);
struct LenientSeq<A>(A);
struct LenientMap<A>(A);
struct LenientEnum<A>(A);
struct LenientVariant<A>(A);

macro_rules! forward_deserialize {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method(LenientVisitor(visitor))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Lenient<D> {
    type Error = D::Error;

    forward_deserialize!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_unit_struct(name, LenientVisitor(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_newtype_struct(name, LenientVisitor(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, LenientVisitor(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_tuple_struct(name, len, LenientVisitor(visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_struct(name, fields, LenientVisitor(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_enum(name, variants, LenientVisitor(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.0.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for LenientVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }

    forward_visit!(
        visit_bool: bool,
        visit_i8: i8,
        visit_i16: i16,
        visit_i32: i32,
        visit_i64: i64,
        visit_i128: i128,
        visit_u8: u8,
        visit_u16: u16,
        visit_u32: u32,
        visit_u64: u64,
        visit_u128: u128,
        visit_f32: f32,
        visit_f64: f64,
        visit_char: char,
        visit_str: &str,
        visit_borrowed_str: &'de str,
        visit_string: String,
        visit_bytes: &[u8],
        visit_borrowed_bytes: &'de [u8],
        visit_byte_buf: Vec<u8>,
    );

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Lenient(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Lenient(d))
    }

    /// The heart of it: after the inner visitor read what it knows, the rest is skipped.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let mut seq = LenientSeq(seq);
        let value = self.0.visit_seq(&mut seq)?;
        while seq.0.next_element::<IgnoredAny>()?.is_some() {}
        Ok(value)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(LenientMap(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(LenientEnum(data))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for LenientSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Lenient(d))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for LenientSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(LenientSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for LenientMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(LenientSeed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(LenientSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for LenientEnum<A> {
    type Error = A::Error;
    type Variant = LenientVariant<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(seed)?;
        Ok((value, LenientVariant(variant)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for LenientVariant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(LenientSeed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, LenientVisitor(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, LenientVisitor(visitor))
    }
}

#[cfg(test)]
mod tests {
    use super::Lenient;
    use serde::{Deserialize, Serialize};

    fn read<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
        let mut de = rmp_serde::Deserializer::new(bytes);
        T::deserialize(Lenient(&mut de))
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Old {
        a: u32,
        b: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct New {
        a: u32,
        b: String,
        #[serde(default)]
        c: Vec<u64>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum OldMsg {
        Unit,
        Pair(u8, u8),
        Item { x: Old, list: Vec<Old> },
        Wrapped(Option<Old>),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum NewMsg {
        Unit,
        Pair(u8, u8),
        Item { x: New, list: Vec<New> },
        Wrapped(Option<New>),
    }

    fn new(a: u32) -> New {
        New {
            a,
            b: format!("b{a}"),
            c: vec![1, 2, 3],
        }
    }

    fn old(a: u32) -> Old {
        Old {
            a,
            b: format!("b{a}"),
        }
    }

    #[test]
    fn a_plain_reader_refuses_what_a_lenient_one_reads() {
        let bytes = rmp_serde::to_vec(&new(1)).unwrap();
        assert!(rmp_serde::from_slice::<Old>(&bytes).is_err());
        assert_eq!(read::<Old>(&bytes).unwrap(), old(1));
    }

    #[test]
    fn fields_appended_at_any_depth_are_skipped() {
        let msg = NewMsg::Item {
            x: new(1),
            list: vec![new(2), new(3)],
        };
        let bytes = rmp_serde::to_vec(&msg).unwrap();
        assert_eq!(
            read::<OldMsg>(&bytes).unwrap(),
            OldMsg::Item {
                x: old(1),
                list: vec![old(2), old(3)],
            }
        );
        let bytes = rmp_serde::to_vec(&NewMsg::Wrapped(Some(new(4)))).unwrap();
        assert_eq!(
            read::<OldMsg>(&bytes).unwrap(),
            OldMsg::Wrapped(Some(old(4)))
        );
        for (n, o) in [
            (NewMsg::Unit, OldMsg::Unit),
            (NewMsg::Pair(1, 2), OldMsg::Pair(1, 2)),
        ] {
            let bytes = rmp_serde::to_vec(&n).unwrap();
            assert_eq!(read::<OldMsg>(&bytes).unwrap(), o);
        }
    }

    #[test]
    fn an_older_writer_leaves_the_new_fields_at_their_default() {
        let bytes = rmp_serde::to_vec(&old(5)).unwrap();
        assert_eq!(
            read::<New>(&bytes).unwrap(),
            New {
                a: 5,
                b: "b5".into(),
                c: vec![],
            }
        );
    }

    #[test]
    fn missing_fields_without_a_default_and_wrong_types_are_still_errors() {
        let short = rmp_serde::to_vec(&(7u32,)).unwrap();
        assert!(read::<Old>(&short).is_err());
        let wrong = rmp_serde::to_vec(&("x", "y")).unwrap();
        assert!(read::<Old>(&wrong).is_err());
    }

    #[test]
    fn an_unknown_variant_is_an_error() {
        #[derive(Serialize)]
        enum Newer {
            #[allow(dead_code)]
            Unit,
            Other(u8),
        }
        let bytes = rmp_serde::to_vec(&Newer::Other(1)).unwrap();
        assert!(read::<OldMsg>(&bytes).is_err());
    }
}
