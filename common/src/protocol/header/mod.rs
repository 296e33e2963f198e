//! Typed custom headers and their mapping to `extFields` (PROTOCOL.md §1.5, §2).
//!
//! Every header is a plain struct whose fields carry RocketMQ's Java field names on the wire.
//! Values travel as strings; numbers parse like Java's `Integer.parseInt`/`Long.parseLong`
//! (surrounding whitespace is trimmed first), booleans like `Boolean.parseBoolean` (anything
//! but `"true"`, case-insensitive, is false).
//!
//! Required fields (PROTOCOL.md's "R") are plain types and decode to
//! [`HeaderError::Missing`] when absent; optional fields are `Option<T>`. Keys a header does
//! not name (`bname`, `lo`, `ns`, `nsd`, `oway`, …) are ignored on decode, as every RocketMQ
//! peer ignores them.
//!
//! # Layout
//! - [`namesrv`]: NameServer requests and responses (§2.2).
//! - [`broker`]: producer, consumer, admin and server→client headers (§2.3–§2.6, §5.3).

pub mod broker;
pub mod namesrv;

pub use broker::*;
pub use namesrv::*;

use thiserror::Error;

use super::command::ExtFields;

/// Error decoding a typed header from `extFields`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// A required field is absent.
    #[error("missing required header field `{field}`")]
    Missing {
        /// The wire name of the field.
        field: &'static str,
    },
    /// A field is present but its value does not parse as the field's type.
    #[error("header field `{field}` has invalid value `{value}`")]
    Invalid {
        /// The wire name of the field.
        field: &'static str,
        /// The offending value (truncated to 64 characters).
        value: String,
    },
}

/// A typed custom header that converts to and from `extFields`.
pub trait CommandHeader: Sized {
    /// Writes every non-null field into `ext` under its wire name.
    fn encode_ext(&self, ext: &mut ExtFields);

    /// Reads the header from `ext`.
    ///
    /// # Errors
    /// [`HeaderError::Missing`] for an absent required field, [`HeaderError::Invalid`] for a
    /// value that does not parse.
    fn decode_ext(ext: &ExtFields) -> Result<Self, HeaderError>;
}

/// The empty header, for requests and responses without custom fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmptyHeader;

impl CommandHeader for EmptyHeader {
    fn encode_ext(&self, _ext: &mut ExtFields) {}

    fn decode_ext(_ext: &ExtFields) -> Result<Self, HeaderError> {
        Ok(EmptyHeader)
    }
}

/// A scalar that travels as one `extFields` string (`String`, `i32`, `i64`, `bool`).
pub trait HeaderScalar: Sized {
    /// Writes the wire text (Java's `toString()`) under `key`, without an intermediate
    /// `String`.
    fn put_into(&self, key: &str, ext: &mut ExtFields);

    /// Parses the wire text leniently like Java.
    ///
    /// # Errors
    /// [`HeaderError::Invalid`] naming `field` when the text does not parse.
    fn parse_value(field: &'static str, text: &str) -> Result<Self, HeaderError>;
}

/// One header field: a required scalar (`T`) or an optional one (`Option<T>`).
pub trait HeaderField: Sized {
    /// Writes the field under `key` (nothing for `None`).
    fn put(&self, key: &'static str, ext: &mut ExtFields);

    /// Reads the field from `key`.
    ///
    /// # Errors
    /// [`HeaderError::Missing`] for an absent required field, [`HeaderError::Invalid`] for a
    /// value that does not parse.
    fn take(key: &'static str, ext: &ExtFields) -> Result<Self, HeaderError> {
        Self::from_text(key, ext.get(key))
    }

    /// Reads the field from the text found under `key` (`None`: the key is absent), for
    /// decoders that look every key up in one pass.
    ///
    /// # Errors
    /// As [`HeaderField::take`].
    fn from_text(key: &'static str, text: Option<&str>) -> Result<Self, HeaderError>;
}

/// Builds [`HeaderError::Invalid`] with the value cut to 64 characters.
fn invalid(field: &'static str, text: &str) -> HeaderError {
    HeaderError::Invalid {
        field,
        value: text.chars().take(64).collect(),
    }
}

impl HeaderScalar for String {
    fn put_into(&self, key: &str, ext: &mut ExtFields) {
        ext.put(key, self);
    }

    fn parse_value(_field: &'static str, text: &str) -> Result<Self, HeaderError> {
        Ok(text.to_owned())
    }
}

impl HeaderScalar for bool {
    fn put_into(&self, key: &str, ext: &mut ExtFields) {
        ext.put(key, if *self { "true" } else { "false" });
    }

    /// `Boolean.parseBoolean`: true iff the text is `"true"` ignoring ASCII case; never fails.
    fn parse_value(_field: &'static str, text: &str) -> Result<Self, HeaderError> {
        Ok(text.eq_ignore_ascii_case("true"))
    }
}

macro_rules! int_scalar {
    ($($ty:ty),*) => {$(
        impl HeaderScalar for $ty {
            fn put_into(&self, key: &str, ext: &mut ExtFields) {
                ext.put_int(key, *self);
            }

            fn parse_value(field: &'static str, text: &str) -> Result<Self, HeaderError> {
                text.trim().parse::<$ty>().map_err(|_| invalid(field, text))
            }
        }
    )*};
}

int_scalar!(i32, i64);

macro_rules! field_impls {
    ($($ty:ty),*) => {$(
        impl HeaderField for $ty {
            fn put(&self, key: &'static str, ext: &mut ExtFields) {
                self.put_into(key, ext);
            }

            fn from_text(key: &'static str, text: Option<&str>) -> Result<Self, HeaderError> {
                match text {
                    Some(text) => <$ty as HeaderScalar>::parse_value(key, text),
                    None => Err(HeaderError::Missing { field: key }),
                }
            }
        }

        impl HeaderField for Option<$ty> {
            fn put(&self, key: &'static str, ext: &mut ExtFields) {
                if let Some(value) = self {
                    value.put_into(key, ext);
                }
            }

            fn from_text(key: &'static str, text: Option<&str>) -> Result<Self, HeaderError> {
                text.map(|text| <$ty as HeaderScalar>::parse_value(key, text)).transpose()
            }
        }
    )*};
}

field_impls!(String, bool, i32, i64);

/// Declares a header struct whose fields map to the given `extFields` keys and implements
/// [`CommandHeader`] for it.
///
/// Field types are `String`, `i32`, `i64`, `bool` (required) or `Option` of those (optional).
///
/// ```
/// tern_common::command_header! {
///     /// Example header.
///     pub struct ExampleHeader {
///         /// The topic.
///         pub topic: String = "topic",
///         /// The queue, if any.
///         pub queue_id: Option<i32> = "queueId",
///     }
/// }
/// ```
#[macro_export]
macro_rules! command_header {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty = $key:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* #[doc = concat!("\n\nWire key: `", $key, "`.")] pub $field: $ty, )*
        }

        impl $crate::protocol::header::CommandHeader for $name {
            fn encode_ext(&self, ext: &mut $crate::protocol::ExtFields) {
                $( $crate::protocol::header::HeaderField::put(&self.$field, $key, ext); )*
                let _ = ext;
            }

            fn decode_ext(
                ext: &$crate::protocol::ExtFields,
            ) -> Result<Self, $crate::protocol::header::HeaderError> {
                let _ = ext;
                Ok($name {
                    $( $field: $crate::protocol::header::HeaderField::take($key, ext)?, )*
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(pairs: &[(&str, &str)]) -> ExtFields {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn numbers_are_trimmed_and_booleans_follow_java() {
        assert_eq!(i32::take("q", &ext(&[("q", " 7 ")])), Ok(7));
        assert_eq!(bool::take("b", &ext(&[("b", "TRUE")])), Ok(true));
        assert_eq!(bool::take("b", &ext(&[("b", "yes")])), Ok(false));
        assert_eq!(<Option<i64> as HeaderField>::take("x", &ext(&[])), Ok(None));
    }

    #[test]
    fn bad_number_is_invalid_and_absent_required_is_missing() {
        assert!(matches!(
            i64::take("n", &ext(&[("n", "12a")])),
            Err(HeaderError::Invalid { field: "n", .. })
        ));
        assert_eq!(
            String::take("s", &ext(&[])),
            Err(HeaderError::Missing { field: "s" })
        );
        let long = "9".repeat(100);
        let Err(HeaderError::Invalid { value, .. }) = i32::take("n", &ext(&[("n", &long)])) else {
            panic!("expected invalid");
        };
        assert_eq!(value.len(), 64);
    }
}
