//! Load [ferrule](https://github.com/ferrule-plugins/ferrule) plugins into a
//! Rust program: the same plugin binaries a Python host loads, with the same
//! checks, errors and results.
//!
//! ```no_run
//! use ferrule_host::{Arg, LoadOptions, Plugin, Value};
//!
//! let calc = Plugin::load("build/libcalc.so", LoadOptions::default())?;
//! assert_eq!(calc.call("mul", &mut [Arg::from(6), Arg::from(7)])?, Value::I64(42));
//! calc.close()?;
//! # Ok::<(), ferrule_host::Error>(())
//! ```
//!
//! A plugin is a `cdylib` (or a C/C++ shared library) exporting only
//! `ferrule_entry_v1`; it never links this crate. Loading follows the Python
//! host's rules: a path, or a bare name looked up in `FERRULE_PATH` only;
//! the file and its directory writable only by their owner; `dlopen` with
//! `RTLD_NOW | RTLD_LOCAL`; the descriptor checked field by field before any
//! function runs; and the library never unloaded. Every failure is an
//! [`Error`] whose [`ErrorKind`] is the Python host's exception class and
//! whose message is the Python host's.
//!
//! Plugin logs go to the [`log`] facade, under the target
//! `ferrule.plugin.<plugin id>`. Functions not flagged thread-safe are
//! serialised per plugin.
//!
//! [`Plugin::call`] is the dynamic path, for tools: arguments checked
//! against the signature at each call, with the Python host's messages.
//! [`Plugin::typed`] checks Rust types against the signature once and
//! returns a handle whose calls are plain calls:
//!
//! ```no_run
//! # use ferrule_host::{LoadOptions, Plugin};
//! # let calc = Plugin::load("build/libcalc.so", LoadOptions::default())?;
//! let mul = calc.typed::<(i64, i64), i64>("mul")?;
//! assert_eq!(mul.call((6, 7))?, 42);
//! # Ok::<(), ferrule_host::Error>(())
//! ```
//!
//! A host function is a closure, [`Arg::HostFn`]; its error is the call's.
//!
//! Interfaces: [`Plugin::create`] makes an [`Instance`] of a plugin's
//! implementation, checked against the host's declaration (the `SPEC` of a
//! module `ferrule generate --rust-host` or `ferrule_sdk::interface!`
//! writes); the declaration's `Client::new(instance)` calls it with Rust
//! types. A [`PluginHost`] serves [`Service`]s the program implements, and
//! other loaded plugins' implementations, to the plugins it loads.

#![deny(clippy::undocumented_unsafe_blocks, missing_docs)]

mod descriptor;
mod error;
mod host;
mod instance;
mod library;
mod plugin;
mod services;
mod typed;
mod types;
mod value;

pub use descriptor::{Descriptor, FunctionInfo, OfferInfo, ENTRY_SYMBOL};
pub use error::{Error, ErrorKind, Result};
pub use instance::{Instance, InterfaceSpec};
pub use plugin::{LoadOptions, Plugin};
pub use services::{PluginHost, Service};
pub use typed::{AbiScalar, Params, Returns, Typed};
pub use types::{parse_signature, Param, Scalar, Signature, Type, SCALARS};
pub use value::{Arg, Buffer, BufferMut, Element, HostFn, Value};
