//! The machinery that code expanded in a plugin's crate calls: `plugin!` and
//! the logging macros (this module's root), and the Rust code that
//! `ferrule generate --rust` writes ([`iface`]), and the declaration model
//! behind `interface!` ([`declare`]). It is public only because
//! that code lives in another crate; it is hidden, is not an API, and may
//! change in any release. Plugin authors use the crate root and `abi`.
//!
//! Every item is listed here by name, so that nothing becomes reachable by
//! accident; the definitions live in the crate's private modules.

pub use crate::runtime::{
    decode_arg, encode_ret, entry, log_fmt, no_init, no_shutdown, run_call, run_init, run_shutdown, CallSpec,
    DescriptorCell, FunctionSpec, PluginSpec, StateKey, ThreadState,
};

/// How plugin function parameters and results cross the ABI: the traits
/// that `plugin!` expands to.
pub mod convert {
    pub use crate::convert::{ArgBorrow, FromArg, IntoRet};
}

/// The traits behind a [`HostFn`](crate::HostFn) signature `fn(A, ..) -> R`,
/// named in the bounds of `HostFn::call`.
pub mod hostfn {
    pub use crate::hostfn::{HostFnArg, HostFnRet, HostFnSignature};
}

/// What generated interface code calls: structs, thunks, exports, and the
/// argument and result encoding of clients.
pub mod iface {
    pub use crate::convert::ArgBorrow;
    pub use crate::host::CallResult;
    pub use crate::iface::{
        arg, buf, bytes, call, destroy, mutbuf, out_arg, ret, run_create, run_exclusive, run_shared, scalar, struct_arg,
        struct_bytes, struct_result, struct_ret, Export, Field, MethodSpec, Provided, Scalar, Spec, StrArg, Struct, Vtable,
    };
}

/// What `interface!` expands to besides the [`iface`] machinery: the
/// declaration model and the compile-time layout text and fingerprint.
pub mod declare {
    pub use crate::declare::{
        check_types, fingerprint, layout_bytes, layout_len, layout_str, reserved_method, reserved_type, signature_bytes,
        signature_len, str_eq, unraw, valid_id, DeclaredHandle, DeclaredStruct, Interface, Method, Struct, Ty,
    };
}
