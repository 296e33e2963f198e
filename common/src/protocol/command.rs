//! [`RemotingCommand`]: one request or response of RocketMQ's remoting protocol
//! (PROTOCOL.md §1.2), independent of how its header is serialized.

use bytes::Bytes;

pub use super::ext_fields::ExtFields;
use super::header::{CommandHeader, HeaderError};

/// Flag bit 0: the command is a response.
pub const FLAG_RESPONSE: i32 = 0x1;
/// Flag bit 1: the request is oneway; the receiver must not answer it.
pub const FLAG_ONEWAY: i32 = 0x2;

/// The version Tern reports in the `version` field: `V5_3_3` (ordinal 479), so that Java
/// clients treat Tern as a current broker (PROTOCOL.md §1.6).
pub const TERN_VERSION: i32 = 479;

/// How a command's header bytes are encoded: the high byte of the header-length word
/// (PROTOCOL.md §1.1, ARCHITECTURE.md "Tern's MessagePack header").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    /// 0: compact UTF-8 JSON, the default of every RocketMQ client.
    #[default]
    Json,
    /// 1: RocketMQ's binary header (`RocketMQSerializable`).
    RocketMq,
    /// 2: Tern's MessagePack header (named fields, written with `rmp-serde`).
    MsgPack,
}

impl SerializeType {
    /// The wire byte of this serialize type.
    pub fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
            SerializeType::MsgPack => 2,
        }
    }

    /// The serialize type for a wire byte, or `None` for an unknown one.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(SerializeType::Json),
            1 => Some(SerializeType::RocketMq),
            2 => Some(SerializeType::MsgPack),
            _ => None,
        }
    }
}

/// The sender's language (RocketMQ `LanguageCode`); JSON carries the name, binary the byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[allow(missing_docs)]
pub enum LanguageCode {
    #[default]
    Java,
    Cpp,
    Dotnet,
    Python,
    Delphi,
    Erlang,
    Ruby,
    Other,
    Http,
    Go,
    Php,
    Oms,
    Rust,
    NodeJs,
}

impl LanguageCode {
    const ALL: [(LanguageCode, u8, &'static str); 14] = [
        (LanguageCode::Java, 0, "JAVA"),
        (LanguageCode::Cpp, 1, "CPP"),
        (LanguageCode::Dotnet, 2, "DOTNET"),
        (LanguageCode::Python, 3, "PYTHON"),
        (LanguageCode::Delphi, 4, "DELPHI"),
        (LanguageCode::Erlang, 5, "ERLANG"),
        (LanguageCode::Ruby, 6, "RUBY"),
        (LanguageCode::Other, 7, "OTHER"),
        (LanguageCode::Http, 8, "HTTP"),
        (LanguageCode::Go, 9, "GO"),
        (LanguageCode::Php, 10, "PHP"),
        (LanguageCode::Oms, 11, "OMS"),
        (LanguageCode::Rust, 12, "RUST"),
        (LanguageCode::NodeJs, 13, "NODE_JS"),
    ];

    /// The binary-header byte.
    pub fn code(self) -> u8 {
        Self::ALL
            .iter()
            .find(|(l, _, _)| *l == self)
            .map_or(7, |e| e.1)
    }

    /// The JSON name (`"JAVA"`, `"GO"`, …).
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(l, _, _)| *l == self)
            .map_or("OTHER", |e| e.2)
    }

    /// The language for a binary byte; unknown bytes map to [`LanguageCode::Other`].
    pub fn from_code(code: u8) -> Self {
        Self::ALL
            .iter()
            .find(|e| e.1 == code)
            .map_or(LanguageCode::Other, |e| e.0)
    }

    /// The language for a JSON name (case-insensitive); unknown names map to
    /// [`LanguageCode::Other`], as lenient as Java's broker.
    pub fn from_name(name: &str) -> Self {
        Self::ALL
            .iter()
            .find(|e| e.2.eq_ignore_ascii_case(name))
            .map_or(LanguageCode::Other, |e| e.0)
    }
}

/// One remoting command (request or response), PROTOCOL.md §1.2.
///
/// `code` is a request code on requests and a response code on responses; both stay raw
/// `i32` here so that unknown codes survive decoding and can be answered with
/// `REQUEST_CODE_NOT_SUPPORTED`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RemotingCommand {
    /// Request code (requests) or response code (responses).
    pub code: i32,
    /// Sender's language.
    pub language: LanguageCode,
    /// Sender's `MQVersion` ordinal.
    pub version: i32,
    /// Request id; a response carries its request's opaque.
    pub opaque: i32,
    /// Bit 0 = response, bit 1 = oneway.
    pub flag: i32,
    /// Free text; the error text on responses.
    pub remark: Option<String>,
    /// Custom-header fields.
    pub ext_fields: ExtFields,
    /// Body bytes (may be empty); never copied by the codec.
    pub body: Bytes,
    /// How the header was (or will be) serialized.
    pub serialize_type: SerializeType,
}

impl RemotingCommand {
    /// A new request with `code` and the fields of `header`; opaque 0 (the sender assigns it).
    pub fn request(code: impl Into<i32>, header: &impl CommandHeader) -> Self {
        let mut ext_fields = ExtFields::new();
        header.encode_ext(&mut ext_fields);
        RemotingCommand {
            code: code.into(),
            language: LanguageCode::Rust,
            version: TERN_VERSION,
            ext_fields,
            ..Default::default()
        }
    }

    /// A new request with `code` and no header fields.
    pub fn request_empty(code: impl Into<i32>) -> Self {
        RemotingCommand {
            code: code.into(),
            language: LanguageCode::Rust,
            version: TERN_VERSION,
            ..Default::default()
        }
    }

    /// The response to `request`: same opaque and serialize type, response flag set,
    /// language `JAVA` and version [`TERN_VERSION`] (what strict clients require, §12).
    pub fn response_to(request: &RemotingCommand, code: impl Into<i32>) -> Self {
        RemotingCommand {
            code: code.into(),
            language: LanguageCode::Java,
            version: TERN_VERSION,
            opaque: request.opaque,
            flag: FLAG_RESPONSE,
            serialize_type: request.serialize_type,
            ..Default::default()
        }
    }

    /// Sets the remark (builder style).
    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds the fields of `header` to the ext fields (builder style).
    pub fn with_header(mut self, header: &impl CommandHeader) -> Self {
        header.encode_ext(&mut self.ext_fields);
        self
    }

    /// Sets the serialize type (builder style).
    pub fn with_serialize_type(mut self, serialize_type: SerializeType) -> Self {
        self.serialize_type = serialize_type;
        self
    }

    /// Marks this request oneway (builder style).
    pub fn oneway(mut self) -> Self {
        self.flag |= FLAG_ONEWAY;
        self
    }

    /// True if this command is a response.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// True if this request is oneway (must not be answered).
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// Decodes the typed header `H` from the ext fields.
    ///
    /// # Errors
    /// [`HeaderError`] when a required field is missing or a value does not parse.
    pub fn decode_header<H: CommandHeader>(&self) -> Result<H, HeaderError> {
        H::decode_ext(&self.ext_fields)
    }

    /// One ext field, if present.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key)
    }
}
