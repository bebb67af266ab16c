//! One error type, whose kinds are the Python host's exception classes: a
//! plugin fails the same way, with the same message, in either host.

use std::fmt;

/// What went wrong, as the Python host's exception class names it
/// (`ErrorKind::BadMagic` is `ferrule.BadMagicError`). Kinds are only added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No file at the path, or a bare name not found in `FERRULE_PATH`.
    LibraryNotFound,
    /// The file is not a shared library (a directory, an executable, text...).
    NotALibrary,
    /// A shared library for another machine or word size.
    WrongArchitecture,
    /// A library the plugin links against cannot be found or lacks a symbol.
    MissingDependency,
    /// The dynamic loader refused the library for another reason.
    Library,
    /// The file or its directory could be changed by others than its owner.
    UnsafeFile,
    /// The library does not export `ferrule_entry_v1`, or it returned NULL.
    NoEntryPoint,
    /// The descriptor does not start with `FERRULE_MAGIC`.
    BadMagic,
    /// The plugin was built for another ABI major version.
    AbiVersion,
    /// A descriptor struct is smaller than the ABI version needs.
    DescriptorTooSmall,
    /// A descriptor string is missing, not UTF-8, or not of its form.
    Metadata,
    /// A function's signature does not parse.
    Signature,
    /// The descriptor is unusable in another way (a NULL table or pointer).
    Descriptor,
    /// The plugin's init failed.
    PluginInit,
    /// A plugin function returned a failure status.
    PluginCall,
    /// A Rust panic was caught at the plugin's boundary.
    PluginPanic,
    /// The plugin was closed.
    PluginClosed,
    /// An argument of the wrong type (the Python host's `TypeError`).
    Type,
    /// An argument out of its type's range (the Python host's `ValueError`).
    Value,
    /// No function of that name (the Python host's `AttributeError`).
    NoSuchFunction,
    /// A plugin's implementation of an interface revision was generated from
    /// another layout than the host's declaration.
    InterfaceMismatch,
    /// The plugin offers no implementation of that interface revision, or
    /// none of that name (the Python host's `LookupError`).
    NoImplementation,
}

impl ErrorKind {
    /// Every kind, in declaration order (new kinds are appended): what a
    /// binding that maps kinds to its own codes tests its table against.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::LibraryNotFound, ErrorKind::NotALibrary, ErrorKind::WrongArchitecture, ErrorKind::MissingDependency,
        ErrorKind::Library, ErrorKind::UnsafeFile, ErrorKind::NoEntryPoint, ErrorKind::BadMagic, ErrorKind::AbiVersion,
        ErrorKind::DescriptorTooSmall, ErrorKind::Metadata, ErrorKind::Signature, ErrorKind::Descriptor,
        ErrorKind::PluginInit, ErrorKind::PluginCall, ErrorKind::PluginPanic, ErrorKind::PluginClosed, ErrorKind::Type,
        ErrorKind::Value, ErrorKind::NoSuchFunction, ErrorKind::InterfaceMismatch, ErrorKind::NoImplementation,
    ];

    /// The Python host's name for this kind: `"BadMagicError"`, `"TypeError"`...
    pub fn python_name(self) -> &'static str {
        match self {
            ErrorKind::LibraryNotFound => "LibraryNotFoundError",
            ErrorKind::NotALibrary => "NotALibraryError",
            ErrorKind::WrongArchitecture => "WrongArchitectureError",
            ErrorKind::MissingDependency => "MissingDependencyError",
            ErrorKind::Library => "LibraryError",
            ErrorKind::UnsafeFile => "UnsafeFileError",
            ErrorKind::NoEntryPoint => "NoEntryPointError",
            ErrorKind::BadMagic => "BadMagicError",
            ErrorKind::AbiVersion => "AbiVersionError",
            ErrorKind::DescriptorTooSmall => "DescriptorTooSmallError",
            ErrorKind::Metadata => "MetadataError",
            ErrorKind::Signature => "SignatureError",
            ErrorKind::Descriptor => "DescriptorError",
            ErrorKind::PluginInit => "PluginInitError",
            ErrorKind::PluginCall => "PluginCallError",
            ErrorKind::PluginPanic => "PluginPanicError",
            ErrorKind::PluginClosed => "PluginClosedError",
            ErrorKind::Type => "TypeError",
            ErrorKind::Value => "ValueError",
            ErrorKind::NoSuchFunction => "AttributeError",
            ErrorKind::InterfaceMismatch => "InterfaceMismatchError",
            ErrorKind::NoImplementation => "LookupError",
        }
    }
}

/// A failure of loading or calling a plugin. Its message says what was
/// found, what was expected and what to do, as the Python host's does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    plugin_message: Option<String>,
}

impl Error {
    /// An error of this kind and message: what a host function returns to
    /// fail the call it was passed to.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), plugin_message: None }
    }

    pub(crate) fn from_plugin(kind: ErrorKind, message: String, plugin_message: String) -> Error {
        Error { kind, message, plugin_message: Some(plugin_message) }
    }

    /// Which failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The whole message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The plugin's own failure message, for a failed init or call.
    pub fn plugin_message(&self) -> Option<&str> {
        self.plugin_message.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// A client call's failure to decode a result (the SDK's words).
impl From<ferrule_sdk::CallError> for Error {
    fn from(e: ferrule_sdk::CallError) -> Error {
        let kind = if e.is_panic() { ErrorKind::PluginPanic } else { ErrorKind::PluginCall };
        Error::new(kind, e.into_message())
    }
}

/// `Result<T, ferrule_host::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::ErrorKind;

    #[test]
    fn all_lists_every_kind_once() {
        // No wildcard: a new kind does not compile until it is handled here, and so listed in ALL.
        let position = |k: ErrorKind| match k {
            ErrorKind::LibraryNotFound => 0,
            ErrorKind::NotALibrary => 1,
            ErrorKind::WrongArchitecture => 2,
            ErrorKind::MissingDependency => 3,
            ErrorKind::Library => 4,
            ErrorKind::UnsafeFile => 5,
            ErrorKind::NoEntryPoint => 6,
            ErrorKind::BadMagic => 7,
            ErrorKind::AbiVersion => 8,
            ErrorKind::DescriptorTooSmall => 9,
            ErrorKind::Metadata => 10,
            ErrorKind::Signature => 11,
            ErrorKind::Descriptor => 12,
            ErrorKind::PluginInit => 13,
            ErrorKind::PluginCall => 14,
            ErrorKind::PluginPanic => 15,
            ErrorKind::PluginClosed => 16,
            ErrorKind::Type => 17,
            ErrorKind::Value => 18,
            ErrorKind::NoSuchFunction => 19,
            ErrorKind::InterfaceMismatch => 20,
            ErrorKind::NoImplementation => 21,
        };
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(position(*k), i, "{k:?}");
        }
        assert_eq!(ErrorKind::ALL.len(), 22);
    }
}
