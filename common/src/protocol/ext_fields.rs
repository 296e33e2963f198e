//! [`ExtFields`]: a command's custom-header fields (PROTOCOL.md §1.5), stored flat.
//!
//! A RocketMQ header carries a dozen or so short string pairs. A `HashMap<String, String>`
//! costs two allocations and a SipHash per pair on both sides of every request; on the publish
//! path that was about a fifth of the broker's and the client's CPU per message. `ExtFields`
//! keeps every key and value in one `String` and their spans in one `Vec`, so decoding a header
//! costs two allocations whatever its size, and a lookup is a scan of a few length
//! comparisons.
//!
//! Semantics are those of the map it replaces: one value per key (a later value for a key
//! replaces the earlier one, as in Java's `HashMap`), and no order promised to peers. Iteration
//! yields entries in insertion order.

use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Below this many entries, duplicate keys are found by comparing every pair; above it, by
/// sorting (so a hostile header with a million keys costs `n log n`, not `n²`).
const PAIRWISE_DEDUP_MAX: usize = 16;

/// Bytes of replaced or removed text tolerated before the buffer is compacted.
const GARBAGE_SLACK: usize = 1024;

/// One entry: the key is `text[key..value]`, the value `text[value..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    key: usize,
    value: usize,
    end: usize,
}

/// The custom-header fields of a command: Java field name → value rendered as a string
/// (PROTOCOL.md §1.5).
///
/// At most one value per key. [`ExtFields::put`] and [`ExtFields::insert`] replace an existing
/// value; decoding keeps the last of duplicate keys, as Java's `HashMap` does. Equality ignores
/// order.
#[derive(Clone, Default)]
pub struct ExtFields {
    text: String,
    spans: Vec<Span>,
    /// Bytes of `text` no span refers to any more (replaced or removed entries).
    garbage: usize,
    /// One bit per [`key_bucket`] of every key pushed since the last [`ExtFields::clear`]
    /// (removals leave their bit set). A key whose bit is clear is surely absent, so a fresh
    /// key is added and a missing optional field is looked up without a scan.
    buckets: u64,
}

/// The bit of `key`'s bucket in [`ExtFields::buckets`]: one of 64, from its length and last
/// byte, which tells apart the single-letter keys `a`..`z` and most of a header's names.
fn key_bucket(key: &[u8]) -> u64 {
    let last = key.last().copied().unwrap_or(0);
    1 << ((key.len().wrapping_mul(31) + usize::from(last)) & 63)
}

impl ExtFields {
    /// An empty set of fields; allocates nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty set with room for `fields` entries (and about 16 bytes of text each).
    pub fn with_capacity(fields: usize) -> Self {
        ExtFields {
            text: String::with_capacity(fields * 16),
            spans: Vec::with_capacity(fields),
            garbage: 0,
            buckets: 0,
        }
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Bytes of text in the keys and values together.
    pub fn text_len(&self) -> usize {
        self.text.len() - self.garbage
    }

    /// True if there are no fields.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn key_of(&self, span: Span) -> &str {
        &self.text[span.key..span.value]
    }

    fn value_of(&self, span: Span) -> &str {
        &self.text[span.value..span.end]
    }

    /// True if the key of `span` is `key`. Length and last byte are compared before the bytes:
    /// headers are full of same-length keys (`a`..`n`, `topic`/`queueId`), and a `memcmp` call
    /// per candidate was most of a lookup.
    fn key_is(text: &[u8], span: Span, key: &[u8]) -> bool {
        if span.value - span.key != key.len()
            || (!key.is_empty() && text[span.value - 1] != key[key.len() - 1])
        {
            return false;
        }
        let candidate = &text[span.key..span.value];
        // Short keys are compared inline: a `memcmp` call cost more than the comparison.
        if key.len() <= 16 {
            candidate.iter().zip(key).all(|(a, b)| a == b)
        } else {
            candidate == key
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        let key = key.as_bytes();
        if self.buckets & key_bucket(key) == 0 {
            return None;
        }
        let text = self.text.as_bytes();
        self.spans.iter().position(|&s| Self::key_is(text, s, key))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|i| self.value_of(self.spans[i]))
    }

    /// True if `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Records an entry whose text is already in `text`, and the bucket of its key.
    fn push_span(&mut self, span: Span) {
        self.buckets |= key_bucket(&self.text.as_bytes()[span.key..span.value]);
        self.spans.push(span);
    }

    /// Appends `key` and `value` as a new entry without looking for an existing one.
    pub(crate) fn push(&mut self, key: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(key);
        self.text.push_str(value);
        self.push_span(Span {
            key: start,
            value: start + key.len(),
            end: self.text.len(),
        });
    }

    /// Makes the entry written last the value of its key: if the key was present, the old
    /// entry takes the new span and the last one is dropped. `maybe_present` is false when
    /// the key's bucket was empty before the entry was pushed, so no scan is needed.
    fn settle_last(&mut self, maybe_present: bool) {
        if !maybe_present {
            return;
        }
        let Some((&last, rest)) = self.spans.split_last() else {
            return;
        };
        let key = self.key_of(last).as_bytes();
        let text = self.text.as_bytes();
        let earlier = rest.iter().position(|&s| Self::key_is(text, s, key));
        if let Some(i) = earlier {
            let old = self.spans[i];
            self.garbage += old.end - old.key;
            self.spans[i] = last;
            self.spans.pop();
            self.compact_if_wasteful();
        }
    }

    /// Sets `key` to `value`, replacing any earlier value. Allocates only to grow the buffer.
    pub fn put(&mut self, key: &str, value: &str) {
        let maybe_present = self.buckets & key_bucket(key.as_bytes()) != 0;
        self.push(key, value);
        self.settle_last(maybe_present);
    }

    /// Sets `key` to `value`'s `Display` text (numbers, booleans) without an intermediate
    /// `String`.
    pub fn put_display(&mut self, key: &str, value: impl fmt::Display) {
        let maybe_present = self.buckets & key_bucket(key.as_bytes()) != 0;
        let start = self.text.len();
        self.text.push_str(key);
        let value_start = self.text.len();
        // Writing into a `String` cannot fail.
        let _ = write!(self.text, "{value}");
        self.push_span(Span {
            key: start,
            value: value_start,
            end: self.text.len(),
        });
        self.settle_last(maybe_present);
    }

    /// Sets `key` to the decimal text of `value` (Java's `toString()` of a number), written
    /// by `itoa` rather than the formatting machinery: headers carry several numbers each.
    pub fn put_int(&mut self, key: &str, value: impl itoa::Integer) {
        let mut text = itoa::Buffer::new();
        self.put(key, text.format(value));
    }

    /// Sets `key` to `value` and returns the value it replaces, like `HashMap::insert`.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        let old = self.get(&key).map(str::to_owned);
        self.put(&key, &value);
        old
    }

    /// Removes `key` and returns its value, keeping the order of the others.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.position(key)?;
        let span = self.spans.remove(i);
        let value = self.value_of(span).to_owned();
        self.garbage += span.end - span.key;
        self.compact_if_wasteful();
        Some(value)
    }

    /// Drops every field, keeping the allocations.
    pub fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
        self.garbage = 0;
        self.buckets = 0;
    }

    /// The fields in insertion order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            fields: self,
            spans: self.spans.iter(),
        }
    }

    /// The keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.iter().map(|(k, _)| k)
    }

    /// Rewrites the text without the bytes of replaced and removed entries once they are
    /// both more than [`GARBAGE_SLACK`] and more than the live text.
    fn compact_if_wasteful(&mut self) {
        let live = self.text.len() - self.garbage;
        if self.garbage <= GARBAGE_SLACK || self.garbage <= live {
            return;
        }
        let mut text = String::with_capacity(live);
        for span in &mut self.spans {
            let start = text.len();
            text.push_str(&self.text[span.key..span.end]);
            *span = Span {
                key: start,
                value: start + (span.value - span.key),
                end: text.len(),
            };
        }
        self.text = text;
        self.garbage = 0;
    }

    /// True when no two keys share a (length, last byte) bucket out of 64, which rules out
    /// duplicates in one pass; the usual header (`a`..`n`, or a dozen distinct names) passes.
    fn keys_surely_distinct(&self) -> bool {
        let text = self.text.as_bytes();
        let mut seen = 0u64;
        for s in &self.spans {
            let bit = key_bucket(&text[s.key..s.value]);
            if seen & bit != 0 {
                return false;
            }
            seen |= bit;
        }
        true
    }

    /// Keeps only the last entry of each key (entries were pushed without checks), preserving
    /// the order of the survivors.
    pub(crate) fn dedup_keep_last(&mut self) {
        let n = self.spans.len();
        if self.keys_surely_distinct() {
            return;
        }
        let mut dropped = vec![];
        if n <= PAIRWISE_DEDUP_MAX {
            let text = self.text.as_bytes();
            for i in 0..n {
                let key = self.key_of(self.spans[i]).as_bytes();
                if self.spans[i + 1..]
                    .iter()
                    .any(|&s| Self::key_is(text, s, key))
                {
                    dropped.push(i);
                }
            }
        } else {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| {
                self.key_of(self.spans[a])
                    .cmp(self.key_of(self.spans[b]))
                    .then(a.cmp(&b))
            });
            for pair in order.windows(2) {
                if self.key_of(self.spans[pair[0]]) == self.key_of(self.spans[pair[1]]) {
                    dropped.push(pair[0]);
                }
            }
            dropped.sort_unstable();
        }
        if dropped.is_empty() {
            return;
        }
        let mut next_drop = dropped.iter().copied().peekable();
        let mut index = 0;
        let garbage = &mut self.garbage;
        self.spans.retain(|s| {
            let keep = next_drop.next_if_eq(&index).is_none();
            if !keep {
                *garbage += s.end - s.key;
            }
            index += 1;
            keep
        });
        self.compact_if_wasteful();
    }
}

/// [`ExtFields`] assembled from raw bytes, checked as UTF-8 once at the end rather than one
/// key or value at a time (a header decoder's per-string `from_utf8` calls were a fifth of its
/// time).
pub(crate) struct RawFields {
    text: Vec<u8>,
    spans: Vec<Span>,
}

impl RawFields {
    /// Room for `fields` entries and `text_bytes` bytes of keys and values.
    pub(crate) fn with_capacity(fields: usize, text_bytes: usize) -> Self {
        RawFields {
            text: Vec::with_capacity(text_bytes),
            spans: Vec::with_capacity(fields),
        }
    }

    /// Starts an entry with `key`; its value is appended next with [`RawFields::value`] or
    /// [`RawFields::value_display`].
    pub(crate) fn key(&mut self, key: &[u8]) {
        let start = self.text.len();
        self.text.extend_from_slice(key);
        self.spans.push(Span {
            key: start,
            value: self.text.len(),
            end: self.text.len(),
        });
    }

    /// Ends the entry begun by the last [`RawFields::key`] with `value`.
    pub(crate) fn value(&mut self, value: &[u8]) {
        self.text.extend_from_slice(value);
        self.close_value();
    }

    /// Ends the entry begun by the last [`RawFields::key`] with `value`'s `Display` text.
    pub(crate) fn value_display(&mut self, value: impl fmt::Display) {
        use std::io::Write as _;
        // Writing into a `Vec` cannot fail.
        let _ = write!(self.text, "{value}");
        self.close_value();
    }

    /// Drops the entry begun by the last [`RawFields::key`] (a null value).
    pub(crate) fn drop_key(&mut self) {
        if let Some(span) = self.spans.pop() {
            self.text.truncate(span.key);
        }
    }

    fn close_value(&mut self) {
        if let Some(span) = self.spans.last_mut() {
            span.end = self.text.len();
        }
    }

    /// The fields, the last of duplicate keys kept; `None` if any key or value is not UTF-8.
    ///
    /// The whole text is validated once; every key and value is then valid on its own as
    /// long as it starts and ends on a character boundary, which is checked per span.
    pub(crate) fn finish(self) -> Option<ExtFields> {
        let text = String::from_utf8(self.text).ok()?;
        let mut buckets = 0;
        for span in &self.spans {
            let bounded = [span.key, span.value, span.end]
                .into_iter()
                .all(|at| text.is_char_boundary(at));
            if !bounded {
                return None;
            }
            buckets |= key_bucket(&text.as_bytes()[span.key..span.value]);
        }
        let mut fields = ExtFields {
            text,
            spans: self.spans,
            garbage: 0,
            buckets,
        };
        fields.dedup_keep_last();
        Some(fields)
    }
}

/// Iterator over [`ExtFields`] entries as `(key, value)`.
#[derive(Debug)]
pub struct Iter<'a> {
    fields: &'a ExtFields,
    spans: std::slice::Iter<'a, Span>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let span = *self.spans.next()?;
        Some((self.fields.key_of(span), self.fields.value_of(span)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a ExtFields {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Extend<(K, V)> for ExtFields {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.push(k.as_ref(), v.as_ref());
        }
        self.dedup_keep_last();
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut fields = ExtFields::new();
        fields.extend(iter);
        fields
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for ExtFields {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl PartialEq for ExtFields {
    /// Same keys with the same values, in any order.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for ExtFields {}

impl fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for ExtFields {
    /// A map of strings, in insertion order.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ExtFields {
    /// A map whose keys are strings and whose values are strings, numbers or booleans
    /// (rendered as Java's `toString()` would); null values are dropped, as Java drops null
    /// fields. Strings are copied straight from the input into the buffer.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = ExtFields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of header fields")
    }

    fn visit_unit<E: de::Error>(self) -> Result<ExtFields, E> {
        Ok(ExtFields::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExtFields, A::Error> {
        // The hint comes from the input: bound what it may reserve.
        let mut fields = ExtFields::with_capacity(map.size_hint().unwrap_or(0).min(32));
        loop {
            let start = fields.text.len();
            let Some(key) = map.next_key_seed(TextSeed {
                text: &mut fields.text,
                what: "a string key",
            })?
            else {
                break;
            };
            if key.is_none() {
                return Err(de::Error::custom("null header field name"));
            }
            let value_start = fields.text.len();
            let value = map.next_value_seed(TextSeed {
                text: &mut fields.text,
                what: "a string, number or boolean value",
            })?;
            if value.is_some() {
                fields.push_span(Span {
                    key: start,
                    value: value_start,
                    end: fields.text.len(),
                });
            } else {
                fields.text.truncate(start);
            }
        }
        fields.dedup_keep_last();
        Ok(fields)
    }
}

/// Appends one scalar's text to `text`; `None` for null.
struct TextSeed<'a> {
    text: &'a mut String,
    what: &'static str,
}

impl<'de> DeserializeSeed<'de> for TextSeed<'_> {
    type Value = Option<()>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<()>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextSeed<'_> {
    type Value = Option<()>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<()>, E> {
        self.text.push_str(v);
        Ok(Some(()))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Option<()>, E> {
        self.text.push_str(&String::from_utf8_lossy(v));
        Ok(Some(()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Option<()>, E> {
        self.text.push_str(if v { "true" } else { "false" });
        Ok(Some(()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<()>, E> {
        let _ = write!(self.text, "{v}");
        Ok(Some(()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<()>, E> {
        let _ = write!(self.text, "{v}");
        Ok(Some(()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<()>, E> {
        let _ = write!(self.text, "{v}");
        Ok(Some(()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<()>, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<()>, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_replaces_and_keeps_insertion_order() {
        let mut ext = ExtFields::new();
        ext.put("a", "1");
        ext.put_int("b", 22);
        ext.put("a", "3");
        assert_eq!(ext.len(), 2);
        assert_eq!(ext.get("a"), Some("3"));
        assert_eq!(ext.get("b"), Some("22"));
        assert_eq!(ext.get("c"), None);
        assert_eq!(ext.iter().collect::<Vec<_>>(), [("a", "3"), ("b", "22")]);
        assert_eq!(ext.insert("b".into(), "x".into()), Some("22".into()));
        assert_eq!(ext.remove("a"), Some("3".into()));
        assert_eq!(ext.remove("a"), None);
        assert_eq!(ext.iter().collect::<Vec<_>>(), [("b", "x")]);
    }

    #[test]
    fn keys_sharing_a_bucket_are_still_told_apart() {
        // "a" and "xx#" fall in the same bucket: (1·31 + 97) ≡ (3·31 + 35) mod 64.
        assert_eq!(key_bucket(b"a"), key_bucket(b"xx#"));
        let mut ext = ExtFields::new();
        ext.put("a", "1");
        assert_eq!(ext.get("xx#"), None);
        ext.put("xx#", "2");
        ext.put("a", "3");
        ext.put_display("xx#", 4);
        assert_eq!(ext.iter().collect::<Vec<_>>(), [("a", "3"), ("xx#", "4")]);
        assert_eq!(ext.remove("a"), Some("3".into()));
        assert_eq!(ext.get("a"), None);
        ext.put("a", "5");
        assert_eq!(ext.iter().collect::<Vec<_>>(), [("xx#", "4"), ("a", "5")]);
        ext.clear();
        assert!(ext.is_empty());
        assert_eq!(ext.get("xx#"), None);
        let dup = ExtFields::from([("a", "1"), ("xx#", "2"), ("a", "3")]);
        assert_eq!(dup.iter().collect::<Vec<_>>(), [("xx#", "2"), ("a", "3")]);
    }

    #[test]
    fn equality_ignores_order() {
        let a = ExtFields::from([("x", "1"), ("y", "2")]);
        let b = ExtFields::from([("y", "2"), ("x", "1")]);
        assert_eq!(a, b);
        assert_ne!(a, ExtFields::from([("x", "1")]));
        assert_ne!(a, ExtFields::from([("x", "1"), ("y", "3")]));
    }

    #[test]
    fn collecting_keeps_the_last_of_duplicate_keys() {
        let small = ExtFields::from([("k", "1"), ("j", "2"), ("k", "3")]);
        assert_eq!(small.iter().collect::<Vec<_>>(), [("j", "2"), ("k", "3")]);
        let many: ExtFields = (0..100)
            .map(|i| (format!("k{}", i % 10), i.to_string()))
            .collect();
        assert_eq!(many.len(), 10);
        for i in 90..100 {
            assert_eq!(many.get(&format!("k{}", i % 10)), Some(&*i.to_string()));
        }
    }

    #[test]
    fn replacing_one_key_forever_stays_bounded() {
        let mut ext = ExtFields::new();
        ext.put("other", "v");
        for i in 0..10_000 {
            ext.put_display("n", i);
        }
        assert_eq!(ext.get("n"), Some("9999"));
        assert_eq!(ext.get("other"), Some("v"));
        assert!(ext.text.len() < 4 * GARBAGE_SLACK, "{}", ext.text.len());
    }

    #[test]
    fn json_round_trip_and_lenient_scalars() {
        let ext: ExtFields =
            serde_json::from_str(r#"{"a":"x","n":7,"b":true,"z":null,"a":"y"}"#).unwrap();
        assert_eq!(
            ext,
            ExtFields::from([("a", "y"), ("n", "7"), ("b", "true")])
        );
        let text = serde_json::to_string(&ext).unwrap();
        let back: ExtFields = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ext);
        assert!(serde_json::from_str::<ExtFields>(r#"{"a":[1]}"#).is_err());
    }

    proptest::proptest! {
        /// Any sequence of puts, removes and clears leaves the fields a model map would hold,
        /// keys sharing a bucket included.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((0u8..4, 0usize..6, 0u32..100), 0..80)) {
            const KEYS: [&str; 6] = ["a", "xx#", "b", "topic", "queueId", ""];
            let mut ext = ExtFields::new();
            let mut model: Vec<(&str, String)> = vec![];
            for (op, k, v) in ops {
                let key = KEYS[k];
                match op {
                    0 => {
                        ext.put(key, &v.to_string());
                        match model.iter_mut().find(|(mk, _)| *mk == key) {
                            Some(entry) => entry.1 = v.to_string(),
                            None => model.push((key, v.to_string())),
                        }
                    }
                    1 if v % 2 == 0 => {
                        ext.put_display(key, v);
                        match model.iter_mut().find(|(mk, _)| *mk == key) {
                            Some(entry) => entry.1 = v.to_string(),
                            None => model.push((key, v.to_string())),
                        }
                    }
                    1 => {
                        ext.put_int(key, v);
                        match model.iter_mut().find(|(mk, _)| *mk == key) {
                            Some(entry) => entry.1 = v.to_string(),
                            None => model.push((key, v.to_string())),
                        }
                    }
                    2 => {
                        let expected = model.iter().position(|(mk, _)| *mk == key).map(|i| model.remove(i).1);
                        proptest::prop_assert_eq!(ext.remove(key), expected);
                    }
                    _ => {
                        if v % 10 == 0 {
                            ext.clear();
                            model.clear();
                        }
                    }
                }
                for key in KEYS {
                    let expected = model.iter().find(|(mk, _)| *mk == key).map(|(_, v)| v.as_str());
                    proptest::prop_assert_eq!(ext.get(key), expected);
                }
                proptest::prop_assert_eq!(ext.len(), model.len());
            }
        }
    }

    #[test]
    fn msgpack_round_trip() {
        let ext = ExtFields::from([("topic", "T"), ("queueId", "3")]);
        let bytes = rmp_serde::to_vec(&ext).unwrap();
        let back: ExtFields = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, ext);
    }
}
