//! The `plugin!` macro and its helpers.

/// Declare a ferrule plugin: its metadata and its functions.
///
/// ```
/// use ferrule_sdk::{HostFn, HostFnError};
///
/// fn my_init(config: &str) -> Result<(), String> {
///     ferrule_sdk::info!("starting with {config:?}");
///     Ok(())
/// }
///
/// fn my_shutdown() {}
///
/// ferrule_sdk::plugin! {
///     id: "org.ferrule.examples.greeter",       // reverse-DNS id
///     name: "Greeter",                          // human-readable name
///     version: env!("CARGO_PKG_VERSION"),       // any &'static str expression
///     description: "Greets people.",            // optional
///     license: "MIT",                           // optional, SPDX
///     init: my_init,          // optional; fn(config: &str) -> Result<(), E>, E: Display
///     shutdown: my_shutdown,  // optional; fn()
///     functions: {
///         /// Add two integers.
///         #[quick]                // short, never blocks: FERRULE_FN_QUICK
///         fn add(a: i64, b: i64) -> i64 { a + b }
///         /// Greet someone by name.
///         fn greet(name: &str) -> String { format!("Hello, {name}!") }
///         fn divide(a: f64, b: f64) -> Result<f64, String> {
///             if b == 0.0 { Err("division by zero".into()) } else { Ok(a / b) }
///         }
///         /// Sum a caller's array in place of a copy: `(data: buf[f64]) -> f64`.
///         fn total(data: &[f64]) -> f64 { data.iter().sum() }
///         /// Scale a caller's array in place: `(data: mutbuf[f32], k: f32)`.
///         fn scale(data: &mut [f32], k: f32) { data.iter_mut().for_each(|x| *x *= k) }
///         /// Call back into the host: `(f: fn(i64) -> i64, x: i64) -> i64`.
///         fn apply(f: HostFn<'_, fn(i64) -> i64>, x: i64) -> Result<i64, HostFnError> {
///             f.call(x)
///         }
///     }
/// }
/// ```
///
/// After `functions`, an optional `interfaces: [...]` section lists
/// implementations of host-defined interfaces (ABI 1.2), each made by the
/// `export` function of code that `ferrule generate --rust` wrote:
///
/// ```text
///     functions: { ... },
///     interfaces: [
///         api::counter::export::<MyCounter>("my-counter", "A running total."),
///         api::shapes::export::<MyShapes>("my-shapes", ""),
///     ],
/// ```
///
/// They fill the descriptor's `interfaces` array in this order.
///
/// The fields must come in this order. Each function is emitted unchanged as
/// an ordinary Rust function (with its attributes and visibility), so it can
/// be called and tested from Rust. Its `///` doc comment becomes the
/// function's `doc` in the descriptor (lines joined with `\n`, trimmed; NULL
/// if there is none).
///
/// Parameter types and their ABI names:
/// `bool`, `i8`, `i16`, `i32`, `i64`, `u8`, `u16`, `u32`, `u64`, `f32`, `f64`;
/// `&str` and `String` (`str`); `&[u8]` and `Vec<u8>` (`bytes`); `&[T]` and
/// `Vec<T>` (`buf[T]`) for `T` in `i8`..`i64`, `u16`..`u64`, `f32`, `f64`;
/// `&mut [T]` (`mutbuf[T]`) for those and `u8`;
/// [`HostFn<'_, fn(A, ..) -> R>`](crate::HostFn) (`fn(A, ..) -> R`).
/// Parameters are plain `name: Type` (no patterns, no `mut`).
///
/// Typed buffers are the caller's own memory, not a copy, borrowed for the
/// call. An empty buffer is an empty slice whatever its pointer; a NULL or
/// misaligned pointer with elements fails the call (`FERRULE_ERROR`), and so
/// does a `&mut [T]` whose memory overlaps another argument's, so a `&mut`
/// slice never aliases.
///
/// Every function is registered with `FERRULE_FN_THREAD_SAFE`. The
/// attribute `#[quick]` (written among the function's other attributes,
/// consumed by the macro and not emitted) adds `FERRULE_FN_QUICK`: the
/// function is short and never blocks, so the host may keep its own locks
/// held across the call; a Python host then keeps the GIL, which saves its
/// release and re-acquire on tiny calls but stops other Python threads
/// meanwhile. Use it only for functions of a few microseconds at most that
/// do no I/O, take no locks that may wait and call no host functions; leave
/// it off for long computations, which can then run in parallel with other
/// Python threads.
///
/// Return types: none (`()`), the scalars
/// above, `String`, `&'static str`, `Vec<u8>`, `&'static [u8]`, and
/// `Result<T, E>` of any of those with `E: Display`.
///
/// The signature in the descriptor is built from the parameter names and
/// types: `(a: i64, b: i64) -> i64`, `(name: str) -> str`, `(msg: str)`
/// for no return value, `()` for neither.
///
/// The macro generates a private `extern "C"` call shim per function, private
/// init and shutdown shims, and one exported symbol,
/// `#[no_mangle] pub extern "C" fn ferrule_entry_v1() -> *const Plugin`,
/// which builds the descriptor once and returns it (NULL, without
/// unwinding, if that fails, e.g. because a string contains a NUL). Use
/// `plugin!` once per library.
///
/// `init` gets the host's config string (invalid UTF-8 fails init); `Err(e)`
/// fails init with `e.to_string()`. Whether or not an `init` is given, the
/// instance state is a private box that shutdown frees after running the
/// user's `shutdown`. Panics in functions and init become `FERRULE_PANIC`
/// with the message `panicked at FILE:LINE:COL: MESSAGE`; a panic in
/// shutdown is logged at error level.
#[macro_export]
macro_rules! plugin {
    (
        id: $id:expr,
        name: $name:expr,
        version: $version:expr,
        $(description: $description:expr,)?
        $(license: $license:expr,)?
        $(init: $init:expr,)?
        $(shutdown: $shutdown:expr,)?
        functions: {
            $(
                $(#[$($attr:tt)*])*
                $vis:vis fn $fname:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)? $body:block
            )*
        }
        $(, interfaces: [ $($iface:expr),* $(,)? ])?
        $(,)?
    ) => {
        // Expanded in the plugin's crate, so this is its panic strategy:
        // with "abort", catch_unwind in the shims cannot catch anything.
        #[cfg(panic = "abort")]
        ::core::compile_error!($crate::__ferrule_panic_abort_message!());

        $(
            $crate::__ferrule_item! {
                []
                $(#[$($attr)*])*
                $vis fn $fname ( $($arg : $ty),* ) $(-> $ret)? $body
            }
        )*

        /// The ferrule ABI v1 entry point, generated by `ferrule_sdk::plugin!`:
        /// returns this library's static plugin descriptor (NULL if it could
        /// not be built). Callable from any thread, any number of times.
        #[unsafe(no_mangle)]
        pub extern "C" fn ferrule_entry_v1() -> *const $crate::abi::Plugin {
            static __FERRULE_DESCRIPTOR: $crate::__private::DescriptorCell =
                $crate::__private::DescriptorCell::new();

            // The SDK's per-thread state, declared here so that the shims
            // below reach it without a call into the SDK.
            ::std::thread_local! {
                static __FERRULE_STATE: $crate::__private::ThreadState =
                    const { $crate::__private::ThreadState::new() };
            }

            unsafe extern "C" fn __ferrule_init(
                host: *const $crate::abi::Host,
                config: *const ::core::ffi::c_char,
                config_len: usize,
                state: *mut *mut ::core::ffi::c_void,
            ) -> i32 {
                // SAFETY: the host passes pointers as ferrule_init_fn says.
                unsafe {
                    $crate::__private::run_init(
                        &__FERRULE_STATE,
                        host,
                        config,
                        config_len,
                        state,
                        $crate::__ferrule_or!([$($init)?] $crate::__private::no_init),
                    )
                }
            }

            unsafe extern "C" fn __ferrule_shutdown(
                host: *const $crate::abi::Host,
                state: *mut ::core::ffi::c_void,
            ) {
                // SAFETY: the host passes the state init returned, once.
                unsafe {
                    $crate::__private::run_shutdown(
                        &__FERRULE_STATE,
                        host,
                        state,
                        $crate::__ferrule_or!([$($shutdown)?] $crate::__private::no_shutdown),
                    )
                }
            }

            $crate::__private::entry(&__FERRULE_DESCRIPTOR, &__FERRULE_STATE, || $crate::__private::PluginSpec {
                id: $id,
                name: $name,
                version: $version,
                description: $crate::__ferrule_opt!($($description)?),
                license: $crate::__ferrule_opt!($($license)?),
                init: __ferrule_init,
                shutdown: __ferrule_shutdown,
                functions: ::std::vec![$(
                    $crate::__private::FunctionSpec {
                        name: ::core::stringify!($fname),
                        params: ::std::vec![$(
                            (::core::stringify!($arg), <$ty as $crate::__private::convert::FromArg>::abi_type())
                        ),*],
                        ret: $crate::__ferrule_ret_type!($($ret)?),
                        docs: ::std::vec![$( $crate::__ferrule_doc!($($attr)*) ),*],
                        quick: false $(|| $crate::__ferrule_is_quick!($($attr)*))*,
                        call: {
                            unsafe extern "C" fn __ferrule_call(
                                host: *const $crate::abi::Host,
                                _state: *mut ::core::ffi::c_void,
                                args: *const $crate::abi::Value,
                                ret: *mut $crate::abi::Value,
                            ) -> i32 {
                                const __FERRULE_N: usize = <[&str]>::len(&[$(::core::stringify!($arg)),*]);
                                // Built at compile time: the shim skips what
                                // the signature does not need (e.g. the
                                // overlap check without a mutable buffer).
                                const __FERRULE_SPEC: $crate::__private::CallSpec<__FERRULE_N> =
                                    $crate::__private::CallSpec::new(
                                        [$(
                                            (::core::stringify!($arg), <$ty as $crate::__private::convert::FromArg>::BORROW)
                                        ),*],
                                        !$crate::__ferrule_ret_type!($($ret)?).is_empty(),
                                    );
                                // SAFETY: the host passes one slot per
                                // parameter, typed as the signature says.
                                unsafe {
                                    $crate::__private::run_call(&__FERRULE_STATE, &__FERRULE_SPEC, host, args, ret, |args| {
                                        #[allow(unused_mut, unused_variables)]
                                        let mut slots = args.iter();
                                        $(
                                            let $arg = $crate::__private::decode_arg::<$ty>(
                                                slots.next(),
                                                ::core::stringify!($arg),
                                            )?;
                                        )*
                                        $crate::__private::encode_ret($fname($($arg),*))
                                    })
                                }
                            }
                            __ferrule_call
                        },
                    }
                ),*],
                interfaces: ::std::vec![$($($iface),*)?],
            })
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ferrule_or {
    ([$given:expr] $default:expr) => {
        $given
    };
    ([] $default:expr) => {
        $default
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ferrule_opt {
    ($given:expr) => {
        ::core::option::Option::Some($given)
    };
    () => {
        ::core::option::Option::None
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ferrule_ret_type {
    ($ret:ty) => {
        <$ret as $crate::__private::convert::IntoRet>::TYPE
    };
    () => {
        ""
    };
}

/// Emits one function of `plugin!` with its attributes minus `#[quick]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __ferrule_item {
    ([$($kept:tt)*] #[quick] $($rest:tt)*) => {
        $crate::__ferrule_item! { [$($kept)*] $($rest)* }
    };
    ([$($kept:tt)*] #[$($attr:tt)*] $($rest:tt)*) => {
        $crate::__ferrule_item! { [$($kept)* #[$($attr)*]] $($rest)* }
    };
    ([$($kept:tt)*] $($item:tt)*) => {
        $($kept)* $($item)*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ferrule_is_quick {
    (quick) => {
        true
    };
    ($($other:tt)*) => {
        false
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ferrule_doc {
    (doc = $doc:expr) => {
        ::core::option::Option::Some($doc)
    };
    ($($other:tt)*) => {
        ::core::option::Option::None
    };
}

/// The compile error of a plugin built with `panic = "abort"` (one text for
/// the SDK crate's check and `plugin!`'s).
#[doc(hidden)]
#[macro_export]
macro_rules! __ferrule_panic_abort_message {
    () => {
        "ferrule-sdk: this plugin is built with panic = \"abort\" (a Cargo profile's `panic = \"abort\"`, \
         or -C panic=abort in RUSTFLAGS or `cargo rustc`), expected panic = \"unwind\": with abort, a panic \
         in the plugin kills the host process without a message. Remove the panic setting (unwind is the \
         default) so that ferrule can turn a panic into PluginPanicError."
    };
}
