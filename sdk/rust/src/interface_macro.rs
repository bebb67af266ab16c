//! `interface!`: host-defined interfaces declared in Rust, expanding to what
//! `ferrule generate --rust` writes for the same declaration in Python.

/// Declare host-defined interfaces, their structs and their handles in Rust:
/// the Rust counterpart of a `ferrule.idl` module, for a project with no
/// Python. Put the declarations in a small crate that the host and every
/// plugin depend on.
///
/// ```
/// ferrule_sdk::interface! {
///     /// Counts over a text.
///     pub struct Stats { words: u32, lines: u32, chars: u32, longest_word: u32 }
///
///     /// One stage of the pipeline: rewrites text.
///     #[interface(id = "org.ferrule.example.pipeline.transform", revision = 1)]
///     pub mod transform: trait Transform {
///         /// Set an option; fails for an option the stage does not know.
///         fn configure(option: str, value: str);
///         /// The rewritten text.
///         fn apply(text: str) -> str;
///     }
///
///     /// Reports on a text without changing it.
///     #[interface(id = "org.ferrule.example.pipeline.analyzer", revision = 1, thread_safe = true)]
///     pub mod analyzer: trait Analyzer {
///         fn stats(text: str) -> struct Stats;
///         fn histogram(text: bytes, counts: mutbuf[u32]);
///     }
/// }
///
/// fn main() {
///     // The same canonical layout and fingerprint as the Python declaration.
///     assert_eq!(transform::FINGERPRINT, 0x9bde_d004_a1d9_927f);
///     assert!(analyzer::LAYOUT.contains("method 0 stats(str) -> struct Stats\n"));
/// }
/// ```
///
/// Each interface becomes what `ferrule generate --rust` writes for it (see
/// the crate README): a module (named by you: `macro_rules!` cannot turn
/// `Transform` into `transform`) with `ID`, `REVISION`, `FINGERPRINT`,
/// `LAYOUT`, `SPEC`, the trait, `Vtable`, `export::<T>(name, doc)` and
/// `Client`. `LAYOUT` is the canonical layout text, byte for byte as
/// `ferrule.idl` writes it, and `FINGERPRINT` its hash, both computed at
/// compile time; so a plugin built from this declaration and one built from
/// the equivalent Python declaration are interchangeable.
///
/// # Items
///
/// - `#[interface(id = "...", revision = N)]` (optionally `, thread_safe =
///   true`) on `VIS mod MODULE: trait TRAIT { METHODS }`; each method is
///   `fn name(param: TYPE, ...) -> TYPE;` or without `-> TYPE` for none.
///   Doc comments may go on the interface and on each method.
/// - `VIS struct NAME { field: TYPE, ... }` (fields: numbers, `bool`, `struct
///   S`, `handle H`): a `#[repr(C)]` struct with natural alignment, checked at
///   compile time against the layout the declaration gives.
/// - `VIS handle NAME;`: an opaque 64-bit handle, a `#[repr(transparent)]`
///   newtype over `u64`.
///
/// Types are spelled as the layout text spells them, which is the IDL's
/// spelling: `bool`, `i8` `i16` `i32` `i64` `u8` `u16` `u32` `u64` `f32`
/// `f64`, `str`, `bytes`, `buf[T]`, `mutbuf[T]` (T a number), `fn(A, ..) ->
/// R` (a host function; A and R numbers, `bool`, `str` or `bytes`), `struct
/// NAME` and `handle NAME`. Results: any of them but buffers and `fn`.
///
/// | declared | parameter | result |
/// | --- | --- | --- |
/// | numbers, `bool` | themselves | themselves |
/// | `str` | `&str` | `String` |
/// | `bytes` | `&[u8]` | `Vec<u8>` |
/// | `buf[T]` / `mutbuf[T]` | `&[T]` / `&mut [T]` | |
/// | `struct S`, `handle H` | `S`, `H` | `S`, `H` |
/// | `fn(str) -> i64` | `HostFn<'_, fn(String) -> i64>` | |
///
/// Structs and handles must be declared with this macro (in the same
/// invocation or another) and be in scope where the interface is declared.
/// Invoke it at module level, not in a function body: the interface modules
/// reach those names through `super::`.
/// What `ferrule.idl` refuses is refused at compile time: an id that is not
/// reverse-DNS, revision 0, no methods or more than 256, a method named like
/// an attribute of every Python instance (`aio`, `close`, `closed`,
/// `implementation`) or a generated item (`create`, `query`, `query_in`,
/// `object`, `of`, `new`, `into_inner`), a parameter named `out`, two
/// different types of one name.
///
/// In a Rust host (`ferrule-host`), the same declarations serve: wrap an
/// instance in the client, `api::counter::Client::new(plugin.create(&api::counter::SPEC,
/// None)?)`, and provide a service with
/// `ferrule_host::Service::new(api::store::provided(MyStore::default()))`. (`ferrule
/// generate --rust-host` writes these two as `create` and `service`; this
/// crate has no dependencies, so the macro cannot name `ferrule_host`.)
///
/// Not expressible here: names are written twice (module and trait) because
/// `macro_rules!` cannot change the case of an identifier; only doc comments
/// are accepted as attributes on interfaces, methods and fields; invoke it at
/// module level. A method named `new` or `into_inner` and a type named `C`
/// are refused too: they would clash with the client's items.
#[macro_export]
macro_rules! interface {
    () => {};
    (
        $(#[doc = $doc:literal])*
        #[interface($($opt:tt)*)]
        $(#[doc = $doc2:literal])*
        $vis:vis mod $module:ident : trait $Trait:ident {
            $(
                $(#[doc = $mdoc:literal])*
                fn $m:ident (
                    $($p:ident : $pk:ident $($pn:ident)? $([$pe:ident])? $(( $($fa:ident),* ) $(-> $fr:ident)?)?),*
                    $(,)?
                ) $(-> $($r:ident)+)? ;
            )*
        }
        $($rest:tt)*
    ) => {
        $crate::__ferrule_interface! {
            @options [$($opt)*]
            [$($doc)* $($doc2)*] [$vis] $module $Trait
            [$(
                $m [$($mdoc)*]
                [$([$p ($pk $($pn)? $([$pe])? $(($($fa),*) $(-> $fr)?)?)])*]
                ($($($r)+)?)
            )*]
        }
        $crate::interface! { $($rest)* }
    };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident { $($(#[doc = $fdoc:literal])* $f:ident : $fk:ident $($fname:ident)?),+ $(,)? }
        $($rest:tt)*
    ) => {
        $crate::__ferrule_interface! { @struct [$(#[$meta])*] [$vis] $name [$([$f ($fk $($fname)?) [$($fdoc)*]])+] }
        $crate::interface! { $($rest)* }
    };
    (
        $(#[$meta:meta])*
        $vis:vis handle $name:ident ;
        $($rest:tt)*
    ) => {
        $crate::__ferrule_interface! { @handle [$(#[$meta])*] [$vis] $name }
        $crate::interface! { $($rest)* }
    };
    // What did not match above: say which item and what was expected.
    (
        $(#[$($attr:tt)*])*
        $vis:vis mod $module:ident : trait $Trait:ident { $($body:tt)* }
        $($rest:tt)*
    ) => {
        $crate::__ferrule_interface! { @diagnose $Trait [$(#[$($attr)*])*] [$($body)*] }
        $crate::interface! { $($rest)* }
    };
    ($(#[$meta:meta])* $vis:vis struct $name:ident $($rest:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "ferrule_sdk::interface!: cannot read struct `", ::core::stringify!($name),
            "`: write `struct ", ::core::stringify!($name),
            " { field: TYPE, ... }` with at least one field, each a number, bool, `struct NAME` or `handle NAME`"
        ));
    };
    ($($other:tt)+) => {
        ::core::compile_error!(::core::concat!(
            "ferrule_sdk::interface!: cannot read `", ::core::stringify!($($other)+),
            "`: expected `#[interface(id = \"...\", revision = N)] pub mod NAME: trait NAME { ... }`, ",
            "`pub struct NAME { field: TYPE, ... }` or `pub handle NAME;`"
        ));
    };
}

/// The rules behind [`interface!`](crate::interface); not an API.
#[doc(hidden)]
#[macro_export]
macro_rules! __ferrule_interface {
    // ---- the interface attribute -----------------------------------------
    (@options [id = $id:literal, revision = $rev:literal $(,)?] $($rest:tt)*) => {
        $crate::__ferrule_interface! { @mode exclusive $id $rev $($rest)* }
    };
    (@options [id = $id:literal, revision = $rev:literal, thread_safe = false $(,)?] $($rest:tt)*) => {
        $crate::__ferrule_interface! { @mode exclusive $id $rev $($rest)* }
    };
    (@options [id = $id:literal, revision = $rev:literal, thread_safe = true $(,)?] $($rest:tt)*) => {
        $crate::__ferrule_interface! { @mode shared $id $rev $($rest)* }
    };
    (@options [$($bad:tt)*] $docs:tt $vis:tt $module:ident $($rest:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "ferrule_sdk::interface!: cannot read `#[interface(", ::core::stringify!($($bad)*), ")]` on mod ",
            ::core::stringify!($module), ": write `#[interface(id = \"org.example.name\", revision = 1)]`, ",
            "optionally with `, thread_safe = true`"
        ));
    };
    (@mode exclusive $($rest:tt)*) => {
        $crate::__ferrule_interface! {
            @iface exclusive [] false
            ["Not thread-safe: the host serialises the calls into each instance, so" "methods take `&mut self`."]
            ["Not thread-safe: methods take `&mut self`."]
            $($rest)*
        }
    };
    (@mode shared $($rest:tt)*) => {
        $crate::__ferrule_interface! {
            @iface shared [Sync +] true
            ["Thread-safe: the host may call one instance from several threads at" "once, so methods take `&self`."]
            []
            $($rest)*
        }
    };

    // ---- one interface ---------------------------------------------------
    (
        @iface $mode:ident [$($sync:tt)*] $ts:literal [$contract1:literal $contract2:literal] [$($client_doc:literal)?]
        $id:literal $rev:literal [$($doc:literal)*] [$vis:vis] $module:ident $Trait:ident
        [$( $m:ident [$($mdoc:literal)*] [$([$p:ident $t:tt])*] $r:tt )*]
    ) => {
        $(#[doc = $doc])*
        #[doc = ""]
        #[doc = ::core::concat!("`", $id, "` revision ", ::core::stringify!($rev), ".")]
        // A plugin uses part of it (the trait or the client), as of generated code.
        #[allow(dead_code)]
        $vis mod $module {
            // The structs and handles the methods name are the invoking module's.
            #[allow(unused_imports)]
            use super::*;

            /// The interface id.
            pub const ID: &str = $id;
            /// The revision of the interface these bindings implement and call.
            pub const REVISION: u32 = $rev;
            /// The fingerprint of [`LAYOUT`]; the host refuses an implementation or
            /// query whose fingerprint differs from its declaration's.
            pub const FINGERPRINT: u64 = $crate::__private::declare::fingerprint(LAYOUT);
            /// The canonical layout text of this revision.
            pub const LAYOUT: &str = $crate::__private::declare::layout_str(&LAYOUT_BYTES);
            /// Everything above, the thread contract and the methods' call-layer signatures.
            pub const SPEC: $crate::__private::iface::Spec = $crate::__private::iface::Spec {
                name: ::core::stringify!($Trait),
                id: ID,
                revision: REVISION,
                fingerprint: FINGERPRINT,
                layout: LAYOUT,
                thread_safe: $ts,
                methods: &[$(($crate::__private::declare::unraw(::core::stringify!($m)), {
                    const M: $crate::__private::declare::Method = $crate::__ferrule_interface!(@method $m [$([$p $t])*] $r);
                    const N: usize = $crate::__private::declare::signature_len(&M);
                    const TEXT: [u8; N] = $crate::__private::declare::signature_bytes::<N>(&M);
                    $crate::__private::declare::layout_str(&TEXT)
                })),*],
            };

            // The declaration, from which LAYOUT is written at compile time.
            const DECL: $crate::__private::declare::Interface = $crate::__private::declare::Interface {
                id: ID,
                revision: REVISION,
                thread_safe: $ts,
                methods: &[$($crate::__ferrule_interface!(@method $m [$([$p $t])*] $r)),*],
            };
            const LAYOUT_LEN: usize = $crate::__private::declare::layout_len(&DECL);
            const LAYOUT_BYTES: [u8; LAYOUT_LEN] = $crate::__private::declare::layout_bytes::<LAYOUT_LEN>(&DECL);

            // What ferrule.idl refuses, refused at compile time.
            const _: () = {
                ::core::assert!($crate::__private::declare::valid_id(ID), ::core::concat!(
                    "interface ", ::core::stringify!($Trait), ": id ", ::core::stringify!($id),
                    " is not reverse-DNS (like \"org.example.text.transform\")"));
                ::core::assert!(REVISION >= 1, ::core::concat!(
                    "interface ", ::core::stringify!($Trait), ": the revision counts from 1, got 0"));
                ::core::assert!(!DECL.methods.is_empty(), ::core::concat!(
                    "interface ", ::core::stringify!($Trait), " declares no methods"));
                ::core::assert!(DECL.methods.len() <= 256, ::core::concat!(
                    "interface ", ::core::stringify!($Trait), " declares more than 256 methods"));
                ::core::assert!(!$crate::__private::declare::reserved_type(::core::stringify!($Trait)), ::core::concat!(
                    "interface trait ", ::core::stringify!($Trait), " is named like an item of its module ",
                    "(Client, Vtable, Spec, ID, REVISION, FINGERPRINT, LAYOUT, SPEC, C): rename it"));
                ::core::assert!(!$crate::__private::declare::check_types(&DECL, ::core::stringify!($Trait)), ::core::concat!(
                    "interface ", ::core::stringify!($Trait), ": a struct or handle it uses has the interface's name: rename one"));
                $(
                    ::core::assert!(!$crate::__private::declare::reserved_method(::core::stringify!($m)), ::core::concat!(
                        "interface ", ::core::stringify!($Trait), " method `", ::core::stringify!($m), "`: the name is an ",
                        "attribute of every Python instance (aio, close, closed, implementation) or of the ",
                        "generated bindings (create, query, query_in, object, of, new, into_inner): rename the method"));
                    $(
                        ::core::assert!(!$crate::__private::declare::str_eq(::core::stringify!($p), "out"), ::core::concat!(
                            "interface ", ::core::stringify!($Trait), " method `", ::core::stringify!($m),
                            "`: `out` is reserved for struct results, rename the parameter"));
                    )*
                )*
            };

            $(#[doc = $doc])*
            #[doc = ""]
            #[doc = ::core::concat!(
                "Implement it for a type and list `", ::core::stringify!($module),
                "::export::<Type>(\"name\", \"doc\")` in")]
            /// `plugin!`'s `interfaces: [...]`. The host makes instances with `create` and drops
            /// them when it destroys them (put cleanup in `Drop`).
            #[doc = $contract1]
            #[doc = $contract2]
            ///
            /// `Err(e)` fails a call (or the creation) with `e.to_string()` as the message; a panic
            /// fails it with `FERRULE_PANIC`.
            pub trait $Trait: ::core::marker::Sized + ::core::marker::Send + $($sync)* 'static {
                /// The error of `create` and of every method; its `to_string()` is the message.
                type Error: ::core::fmt::Display;

                /// Make an instance (the host asked for one).
                fn create() -> ::core::result::Result<Self, Self::Error>;

                $($crate::__ferrule_interface! { @trait_fn $mode [$($mdoc)*] $m [$([$p $t])*] $r })*
            }

            /// The method table (`ferrule_interface.methods`): one thunk per method, in
            /// declaration order.
            #[repr(C)]
            #[derive(Clone, Copy)]
            pub struct Vtable {
                $(
                    #[doc = ::core::concat!("The thunk of `", ::core::stringify!($m), "`.")]
                    pub $m: $crate::abi::CallFn,
                )*
            }

            // SAFETY: #[repr(C)] with CallFn fields only.
            unsafe impl $crate::__private::iface::Vtable for Vtable {}

            impl Vtable {
                /// The thunks that call implementation `T`.
                pub fn of<T: $Trait>() -> Vtable {
                    Vtable {
                        $($m: thunk::$m::<T>,)*
                    }
                }
            }

            #[doc = ::core::concat!(
                "Implementation `T` of ", ::core::stringify!($Trait),
                ", named `name` (unique in the plugin among the")]
            /// implementations of [`ID`]), with a description `doc` (`""` for none): an item of
            /// `plugin!`'s `interfaces: [...]`.
            pub fn export<T: $Trait>(name: &'static str, doc: &'static str) -> $crate::__private::iface::Export {
                $crate::__private::iface::Export::new(
                    &SPEC,
                    name,
                    doc,
                    Vtable::of::<T>(),
                    thunk::create::<T>,
                    $crate::__private::iface::destroy::<T>,
                )
            }

            #[doc = ::core::concat!(
                "`value` as an implementation of ", ::core::stringify!($Trait),
                " that a Rust host provides as a service (ferrule-host's `Service::new`).")]
            pub fn provided<T: $Trait>(value: T) -> $crate::__private::iface::Provided {
                // SAFETY: Vtable::of::<T>() holds the thunks of T, for this interface.
                unsafe { $crate::__private::iface::Provided::new(&SPEC, Vtable::of::<T>(), value) }
            }

            /// The `extern "C"` side of an implementation.
            mod thunk {
                #[allow(unused_imports)]
                use super::*;

                pub(super) unsafe extern "C" fn create<T: $Trait>(
                    host: *const $crate::abi::Host,
                    _plugin_state: *mut ::core::ffi::c_void,
                    this: *mut *mut ::core::ffi::c_void,
                ) -> i32 {
                    // SAFETY: the host calls it as ferrule_interface.create says.
                    unsafe { $crate::__private::iface::run_create(host, this, <T as $Trait>::create) }
                }

                $($crate::__ferrule_interface! { @thunk $mode $Trait $m [$([$p $t])*] $r })*
            }

            #[doc = ::core::concat!(
                "A caller of ", ::core::stringify!($Trait),
                ": in a plugin, an object the host lends (a service of the")]
            /// host, or an instance of another plugin's implementation), called through the
            /// host; dropping it gives it back, before the plugin shuts down. In a Rust host,
            /// an instance that ferrule-host made (`Client::new(plugin.create(&SPEC, None)?)`).
            $(#[doc = $client_doc])*
            #[derive(Debug)]
            pub struct Client<C: $crate::Callee = $crate::Object> {
                object: C,
            }

            impl<C: $crate::Callee> Client<C> {
                /// A client of `callee`, or `Err(callee)` when its implementation has another
                /// layout fingerprint than [`FINGERPRINT`].
                pub fn new(callee: C) -> ::core::result::Result<Client<C>, C> {
                    if callee.fingerprint() == FINGERPRINT {
                        ::core::result::Result::Ok(Client { object: callee })
                    } else {
                        ::core::result::Result::Err(callee)
                    }
                }

                /// The callee behind the client.
                pub fn object(&self) -> &C {
                    &self.object
                }

                /// The callee, given back.
                pub fn into_inner(self) -> C {
                    self.object
                }

                $($crate::__ferrule_interface! { @client_scan [$([$p $t])*] $mode $m [$($mdoc)*] [$([$p $t])*] $r })*
            }

            impl Client {
                /// Ask the host of the current call, init or create for an implementation of
                /// this revision; `None` when it has none (or outside of a call, or when the
                /// host is older than ABI 1.2).
                pub fn query() -> ::core::option::Option<Client> {
                    $crate::host().and_then(Client::query_in)
                }

                /// Like [`Client::query`], with a host kept from earlier (e.g. on another thread).
                pub fn query_in(host: $crate::HostRef) -> ::core::option::Option<Client> {
                    $crate::Object::query(host, ID, REVISION, FINGERPRINT).map(|object| Client { object })
                }
            }
        }
    };

    // ---- the trait's methods -----------------------------------------------
    (@trait_fn exclusive [$($mdoc:literal)*] $m:ident [$([$p:ident $t:tt])*] $r:tt) => {
        $(#[doc = $mdoc])*
        fn $m(&mut self, $($p: $crate::__ferrule_interface!(@param $t)),*)
            -> ::core::result::Result<$crate::__ferrule_interface!(@ret $r), Self::Error>;
    };
    (@trait_fn shared [$($mdoc:literal)*] $m:ident [$([$p:ident $t:tt])*] $r:tt) => {
        $(#[doc = $mdoc])*
        fn $m(&self, $($p: $crate::__ferrule_interface!(@param $t)),*)
            -> ::core::result::Result<$crate::__ferrule_interface!(@ret $r), Self::Error>;
    };

    // ---- the thunks ----------------------------------------------------------
    (@thunk exclusive $($rest:tt)*) => {
        $crate::__ferrule_interface! { @thunk_fn run_exclusive [&mut] $($rest)* }
    };
    (@thunk shared $($rest:tt)*) => {
        $crate::__ferrule_interface! { @thunk_fn run_shared [&] $($rest)* }
    };
    (@thunk_fn $runner:ident [$($this:tt)*] $Trait:ident $m:ident [$([$p:ident $t:tt])*] (struct $rn:ident)) => {
        pub(super) unsafe extern "C" fn $m<T: $Trait>(
            host: *const $crate::abi::Host,
            this: *mut ::core::ffi::c_void,
            args: *const $crate::abi::Value,
            ret: *mut $crate::abi::Value,
        ) -> i32 {
            // The parameters, then the `out: mutbuf[u8]` the struct result is written to.
            const N: usize = <[&str]>::len(&[$(::core::stringify!($p)),*]) + 1;
            const SPEC: $crate::__private::iface::MethodSpec<N> = $crate::__private::iface::MethodSpec::new(
                [
                    $(($crate::__private::declare::unraw(::core::stringify!($p)), $crate::__ferrule_interface!(@borrow $t)),)*
                    ("out", $crate::__private::iface::ArgBorrow::MutBuf { elem_size: 1 }),
                ],
                false,
            );
            // SAFETY: the host calls the method as ferrule_call_fn says, on an
            // instance that create made, with slots as SPEC describes.
            unsafe {
                $crate::__private::iface::$runner(&SPEC, host, this, args, ret, |this: $($this)* T, slots| {
                    let [$($p,)* out] = slots;
                    $(let $p = $crate::__ferrule_interface!(@decode $t $p)?;)*
                    let out = $crate::__private::iface::out_arg::<$rn>(out)?;
                    $crate::__private::iface::struct_ret(this.$m($($p),*), out)
                })
            }
        }
    };
    (@thunk_fn $runner:ident [$($this:tt)*] $Trait:ident $m:ident [$([$p:ident $t:tt])*] $r:tt) => {
        pub(super) unsafe extern "C" fn $m<T: $Trait>(
            host: *const $crate::abi::Host,
            this: *mut ::core::ffi::c_void,
            args: *const $crate::abi::Value,
            ret: *mut $crate::abi::Value,
        ) -> i32 {
            const N: usize = <[&str]>::len(&[$(::core::stringify!($p)),*]);
            const SPEC: $crate::__private::iface::MethodSpec<N> = $crate::__private::iface::MethodSpec::new(
                [$(($crate::__private::declare::unraw(::core::stringify!($p)), $crate::__ferrule_interface!(@borrow $t))),*],
                $crate::__ferrule_interface!(@has_ret $r),
            );
            // SAFETY: the host calls the method as ferrule_call_fn says, on an
            // instance that create made, with slots as SPEC describes.
            unsafe {
                $crate::__private::iface::$runner(&SPEC, host, this, args, ret, |this: $($this)* T, slots| {
                    let [$($p),*] = slots;
                    $(let $p = $crate::__ferrule_interface!(@decode $t $p)?;)*
                    $crate::__private::iface::ret($crate::__ferrule_interface!(@ret_value $r, this.$m($($p),*)))
                })
            }
        }
    };
    (@has_ret ()) => { false };
    (@has_ret $r:tt) => { true };
    (@ret_value (handle $rn:ident), $call:expr) => { $call.map(|handle| handle.0) };
    (@ret_value $r:tt, $call:expr) => { $call };
    (@decode (struct $n:ident) $p:ident) => {
        $crate::__private::iface::struct_arg::<$n>($p, $crate::__private::declare::unraw(::core::stringify!($p)))
    };
    (@decode (handle $n:ident) $p:ident) => {
        $crate::__private::iface::arg::<u64>($p, $crate::__private::declare::unraw(::core::stringify!($p))).map($n)
    };
    (@decode $t:tt $p:ident) => {
        $crate::__private::iface::arg::<$crate::__ferrule_interface!(@param $t)>(
            $p,
            $crate::__private::declare::unraw(::core::stringify!($p)),
        )
    };
    (@borrow (str)) => { $crate::__private::iface::ArgBorrow::Bytes };
    (@borrow (bytes)) => { $crate::__private::iface::ArgBorrow::Bytes };
    (@borrow (struct $n:ident)) => { $crate::__private::iface::ArgBorrow::Bytes };
    (@borrow (buf [$e:ident])) => {
        $crate::__private::iface::ArgBorrow::Buf { elem_size: ::core::mem::size_of::<$crate::__ferrule_interface!(@elem $e)>() }
    };
    (@borrow (mutbuf [$e:ident])) => {
        $crate::__private::iface::ArgBorrow::MutBuf { elem_size: ::core::mem::size_of::<$crate::__ferrule_interface!(@elem $e)>() }
    };
    (@borrow $t:tt) => { $crate::__private::iface::ArgBorrow::None };

    // ---- the client's methods --------------------------------------------------
    // A method that takes a host function has none: only the Python host can pass one.
    (@client_scan [[$p:ident (fn $($x:tt)*)] $($more:tt)*] $($method:tt)*) => {};
    (@client_scan [[$p:ident $t:tt] $($more:tt)*] $($method:tt)*) => {
        $crate::__ferrule_interface! { @client_scan [$($more)*] $($method)* }
    };
    (@client_scan [] exclusive $m:ident [$($mdoc:literal)*] [$([$p:ident $t:tt])*] $r:tt) => {
        $(#[doc = $mdoc])*
        pub fn $m(&mut self, $($p: $crate::__ferrule_interface!(@param $t)),*)
            -> ::core::result::Result<$crate::__ferrule_interface!(@ret $r), C::Error> {
            $crate::__ferrule_interface! { @call (&self.object) $m [$([$p $t])*] $r }
        }
    };
    (@client_scan [] shared $m:ident [$($mdoc:literal)*] [$([$p:ident $t:tt])*] $r:tt) => {
        $(#[doc = $mdoc])*
        pub fn $m(&self, $($p: $crate::__ferrule_interface!(@param $t)),*)
            -> ::core::result::Result<$crate::__ferrule_interface!(@ret $r), C::Error> {
            $crate::__ferrule_interface! { @call (&self.object) $m [$([$p $t])*] $r }
        }
    };
    (@call $object:tt $m:ident [$([$p:ident $t:tt])*] (struct $rn:ident)) => {{
        const INDEX: u32 = $crate::__ferrule_interface!(@index $m);
        $($crate::__ferrule_interface! { @prepare $t $p })*
        let mut out = [0u8; <$rn as $crate::__private::iface::Struct>::SIZE];
        let args: &[$crate::abi::Value] = &[
            $($crate::__ferrule_interface!(@slot $t $p),)*
            $crate::__private::iface::mutbuf(&mut out),
        ];
        // SAFETY: the slots match the method's signature, the out buffer last.
        unsafe { $crate::__private::iface::call::<C, ()>($object, INDEX, args) }?;
        ::core::result::Result::Ok($crate::__private::iface::struct_result(&out)?)
    }};
    (@call $object:tt $m:ident [$([$p:ident $t:tt])*] (handle $rn:ident)) => {{
        const INDEX: u32 = $crate::__ferrule_interface!(@index $m);
        $($crate::__ferrule_interface! { @prepare $t $p })*
        let args: &[$crate::abi::Value] = &[$($crate::__ferrule_interface!(@slot $t $p)),*];
        // SAFETY: the slots match the method's signature.
        unsafe { $crate::__private::iface::call::<C, u64>($object, INDEX, args) }.map($rn)
    }};
    (@call $object:tt $m:ident [$([$p:ident $t:tt])*] $r:tt) => {{
        const INDEX: u32 = $crate::__ferrule_interface!(@index $m);
        $($crate::__ferrule_interface! { @prepare $t $p })*
        let args: &[$crate::abi::Value] = &[$($crate::__ferrule_interface!(@slot $t $p)),*];
        // SAFETY: the slots match the method's signature.
        unsafe { $crate::__private::iface::call($object, INDEX, args) }
    }};
    // The method's index: its place in the Vtable.
    (@index $m:ident) => {
        (::core::mem::offset_of!(Vtable, $m) / ::core::mem::size_of::<$crate::abi::CallFn>()) as u32
    };
    (@prepare (str) $p:ident) => {
        let $p = $crate::__private::iface::StrArg::new($p);
    };
    (@prepare (struct $n:ident) $p:ident) => {
        let $p = {
            let mut bytes = [0u8; <$n as $crate::__private::iface::Struct>::SIZE];
            $crate::__private::iface::Struct::write(&$p, &mut bytes);
            bytes
        };
    };
    (@prepare $t:tt $p:ident) => {};
    (@slot (str) $p:ident) => { $p.value() };
    (@slot (bytes) $p:ident) => { $crate::__private::iface::bytes($p) };
    (@slot (struct $n:ident) $p:ident) => { $crate::__private::iface::bytes(&$p) };
    (@slot (handle $n:ident) $p:ident) => { $crate::__private::iface::scalar($p.0) };
    (@slot (buf [$e:ident]) $p:ident) => { $crate::__private::iface::buf($p) };
    (@slot (mutbuf [$e:ident]) $p:ident) => { $crate::__private::iface::mutbuf($p) };
    (@slot $t:tt $p:ident) => { $crate::__private::iface::scalar($p) };

    // ---- types -------------------------------------------------------------------
    // @param: the Rust type of a parameter; @ret: of a result; @decl: the
    // declaration's Ty; @field: of a struct field.
    (@param (str)) => { &str };
    (@param (bytes)) => { &[u8] };
    (@param (buf [$e:ident])) => { &[$crate::__ferrule_interface!(@elem $e)] };
    (@param (mutbuf [$e:ident])) => { &mut [$crate::__ferrule_interface!(@elem $e)] };
    (@param (struct $n:ident)) => { $n };
    (@param (handle $n:ident)) => { $n };
    (@param (fn ($($a:ident),*) -> $fr:ident)) => {
        $crate::HostFn<'_, fn($($crate::__ferrule_interface!(@hostfn $a)),*) -> $crate::__ferrule_interface!(@hostfn $fr)>
    };
    (@param (fn ($($a:ident),*))) => {
        $crate::HostFn<'_, fn($($crate::__ferrule_interface!(@hostfn $a)),*)>
    };
    (@param ($t:ident)) => { $crate::__ferrule_interface!(@scalar $t) };
    (@param ($($t:tt)*)) => { $crate::__ferrule_interface!(@bad_type $($t)*) };

    (@ret ()) => { () };
    (@ret (str)) => { ::std::string::String };
    (@ret (bytes)) => { ::std::vec::Vec<u8> };
    (@ret (struct $n:ident)) => { $n };
    (@ret (handle $n:ident)) => { $n };
    (@ret ($t:ident)) => { $crate::__ferrule_interface!(@scalar $t) };
    (@ret ($($t:tt)*)) => { $crate::__ferrule_interface!(@bad_result $($t)*) };

    (@field (struct $n:ident)) => { $n };
    (@field (handle $n:ident)) => { $n };
    // (Struct fields are checked by @struct_scan before these run.)
    (@field ($t:ident)) => { $t };

    (@hostfn str) => { ::std::string::String };
    (@hostfn bytes) => { ::std::vec::Vec<u8> };
    (@hostfn $t:ident) => { $crate::__ferrule_interface!(@scalar $t) };

    (@scalar bool) => { bool };
    (@scalar $t:ident) => { $crate::__ferrule_interface!(@number $t) };
    (@number i8) => { i8 };
    (@number i16) => { i16 };
    (@number i32) => { i32 };
    (@number i64) => { i64 };
    (@number u8) => { u8 };
    (@number u16) => { u16 };
    (@number u32) => { u32 };
    (@number u64) => { u64 };
    (@number f32) => { f32 };
    (@number f64) => { f64 };
    (@number $t:ident) => { $crate::__ferrule_interface!(@bad_type $t) };

    (@method $m:ident [$([$p:ident $t:tt])*] $r:tt) => {
        $crate::__private::declare::Method {
            name: ::core::stringify!($m),
            params: &[$((::core::stringify!($p), $crate::__ferrule_interface!(@decl $t))),*],
            result: $crate::__ferrule_interface!(@result_decl $r),
        }
    };
    (@result_decl ()) => { ::core::option::Option::None };
    (@result_decl (buf $($t:tt)*)) => { $crate::__ferrule_interface!(@bad_result buf $($t)*) };
    (@result_decl (mutbuf $($t:tt)*)) => { $crate::__ferrule_interface!(@bad_result mutbuf $($t)*) };
    (@result_decl (fn $($t:tt)*)) => { $crate::__ferrule_interface!(@bad_result fn $($t)*) };
    (@result_decl $t:tt) => { ::core::option::Option::Some($crate::__ferrule_interface!(@decl $t)) };

    (@decl (str)) => { $crate::__private::declare::Ty::Text("str") };
    (@decl (bytes)) => { $crate::__private::declare::Ty::Text("bytes") };
    (@decl (buf [$e:ident])) => {
        $crate::__private::declare::Ty::Buf(::core::stringify!($e)).elem::<$crate::__ferrule_interface!(@elem $e)>()
    };
    (@decl (mutbuf [$e:ident])) => {
        $crate::__private::declare::Ty::MutBuf(::core::stringify!($e)).elem::<$crate::__ferrule_interface!(@elem $e)>()
    };
    (@decl (struct $n:ident)) => {
        $crate::__private::declare::Ty::Struct(&<$n as $crate::__private::declare::DeclaredStruct>::DECL)
    };
    (@decl (handle $n:ident)) => {
        $crate::__private::declare::Ty::Handle(<$n as $crate::__private::declare::DeclaredHandle>::NAME)
    };
    (@decl (fn ($($a:ident),*) -> $fr:ident)) => {
        $crate::__private::declare::Ty::Fn(
            &[$($crate::__ferrule_interface!(@hostfn_decl $a)),*],
            ::core::option::Option::Some(&$crate::__ferrule_interface!(@hostfn_decl $fr)),
        )
    };
    (@decl (fn ($($a:ident),*))) => {
        $crate::__private::declare::Ty::Fn(&[$($crate::__ferrule_interface!(@hostfn_decl $a)),*], ::core::option::Option::None)
    };
    (@decl (bool)) => { $crate::__private::declare::Ty::Fixed("bool", 1) };
    (@decl ($t:ident)) => {
        $crate::__private::declare::Ty::Fixed(
            $crate::__ferrule_interface!(@number_name $t),
            ::core::mem::size_of::<$crate::__ferrule_interface!(@number $t)>(),
        )
    };
    (@decl ($($t:tt)*)) => { $crate::__ferrule_interface!(@bad_type $($t)*) };

    (@field_decl (struct $n:ident)) => { $crate::__ferrule_interface!(@decl (struct $n)) };
    (@field_decl (handle $n:ident)) => { $crate::__ferrule_interface!(@decl (handle $n)) };
    (@field_decl ($t:ident)) => {
        $crate::__private::declare::Ty::Fixed(::core::stringify!($t), ::core::mem::size_of::<$t>())
    };

    (@hostfn_decl str) => { $crate::__private::declare::Ty::Text("str") };
    (@hostfn_decl bytes) => { $crate::__private::declare::Ty::Text("bytes") };
    (@hostfn_decl $t:ident) => { $crate::__ferrule_interface!(@decl ($t)) };

    (@elem i8) => { i8 };
    (@elem i16) => { i16 };
    (@elem i32) => { i32 };
    (@elem i64) => { i64 };
    (@elem u8) => { u8 };
    (@elem u16) => { u16 };
    (@elem u32) => { u32 };
    (@elem u64) => { u64 };
    (@elem f32) => { f32 };
    (@elem f64) => { f64 };
    (@elem $e:ident) => {
        ::core::compile_error!(::core::concat!(
            "ferrule_sdk::interface!: `buf[", ::core::stringify!($e), "]` / `mutbuf[", ::core::stringify!($e),
            "]`: the element type of a buffer is a number (i8, i16, i32, i64, u8, u16, u32, u64, f32, f64)"
        ))
    };
    (@number_name i8) => { "i8" };
    (@number_name i16) => { "i16" };
    (@number_name i32) => { "i32" };
    (@number_name i64) => { "i64" };
    (@number_name u8) => { "u8" };
    (@number_name u16) => { "u16" };
    (@number_name u32) => { "u32" };
    (@number_name u64) => { "u64" };
    (@number_name f32) => { "f32" };
    (@number_name f64) => { "f64" };
    (@number_name $t:ident) => { $crate::__ferrule_interface!(@bad_type $t) };

    (@bad_type $($t:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "ferrule_sdk::interface!: `", ::core::stringify!($($t)*), "` is not an interface type: use bool, ",
            "i8, i16, i32, i64, u8, u16, u32, u64, f32, f64, str, bytes, buf[T] or mutbuf[T] (T a number), ",
            "fn(A, ..) -> R (A and R numbers, bool, str or bytes), `struct NAME` or `handle NAME` ",
            "(declared with interface!)"
        ))
    };
    (@bad_result $($t:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "ferrule_sdk::interface!: a method returns `", ::core::stringify!($($t)*),
            "`: results are numbers, bool, str, bytes, `struct NAME` or `handle NAME`"
        ))
    };

    // ---- structs and handles --------------------------------------------------
    // Every field's type is checked first, so that a bad one is the only error.
    (@struct $meta:tt $vis:tt $name:ident $fields:tt) => {
        $crate::__ferrule_interface! { @struct_scan $fields $meta $vis $name $fields }
    };
    (@struct_scan [[$f:ident (struct $n:ident) $d:tt] $($more:tt)*] $($keep:tt)*) => {
        $crate::__ferrule_interface! { @struct_scan [$($more)*] $($keep)* }
    };
    (@struct_scan [[$f:ident (handle $n:ident) $d:tt] $($more:tt)*] $($keep:tt)*) => {
        $crate::__ferrule_interface! { @struct_scan [$($more)*] $($keep)* }
    };
    (@struct_scan [[$f:ident ($t:ident) $d:tt] $($more:tt)*] $($keep:tt)*) => {
        $crate::__ferrule_interface! { @struct_scan_fixed $t $f [$($more)*] $($keep)* }
    };
    (@struct_scan [[$f:ident ($($t:tt)*) $d:tt] $($more:tt)*] $meta:tt $vis:tt $name:ident $fields:tt) => {
        ::core::compile_error!(::core::concat!(
            "ferrule_sdk::interface!: struct ", ::core::stringify!($name), " field ", ::core::stringify!($f), " is `",
            ::core::stringify!($($t)*), "`: struct fields are numbers, bool, `struct NAME` or `handle NAME`"
        ));
    };
    (@struct_scan [] $($keep:tt)*) => {
        $crate::__ferrule_interface! { @struct_emit $($keep)* }
    };
    (@struct_scan_fixed bool $f:ident $($rest:tt)*) => { $crate::__ferrule_interface! { @struct_scan $($rest)* } };
    (@struct_scan_fixed i8 $f:ident $($rest:tt)*) => { $crate::__ferrule_interface! { @struct_scan $($rest)* } };
    (@struct_scan_fixed i16 $f:ident $($rest:tt)*) => { $crate::__ferrule_interface! { @struct_scan $($rest)* } };
    (@struct_scan_fixed i32 $f:ident $($rest:tt)*) => { $crate::__ferrule_interface! { @struct_scan $($rest)* } };
    (@struct_scan_fixed i64 $f:ident $($rest:tt)*) => { $crate::__ferrule_interface! { @struct_scan $($rest)* } };
    (@struct_scan_fixed u8 $f:ident $($rest:tt)*) => { $crate::__ferrule_interface! { @struct_scan $($rest)* } };
    (@struct_scan_fixed u16 $f:ident $($rest:tt)*) => { $crate::__ferrule_interface! { @struct_scan $($rest)* } };
    (@struct_scan_fixed u32 $f:ident $($rest:tt)*) => { $crate::__ferrule_interface! { @struct_scan $($rest)* } };
    (@struct_scan_fixed u64 $f:ident $($rest:tt)*) => { $crate::__ferrule_interface! { @struct_scan $($rest)* } };
    (@struct_scan_fixed f32 $f:ident $($rest:tt)*) => { $crate::__ferrule_interface! { @struct_scan $($rest)* } };
    (@struct_scan_fixed f64 $f:ident $($rest:tt)*) => { $crate::__ferrule_interface! { @struct_scan $($rest)* } };
    (@struct_scan_fixed $t:ident $f:ident $more:tt $meta:tt $vis:tt $name:ident $fields:tt) => {
        ::core::compile_error!(::core::concat!(
            "ferrule_sdk::interface!: struct ", ::core::stringify!($name), " field ", ::core::stringify!($f), " is `",
            ::core::stringify!($t), "`: struct fields are numbers, bool, `struct NAME` or `handle NAME`"
        ));
    };
    (@struct_emit [$($meta:tt)*] [$vis:vis] $name:ident [$([$f:ident $t:tt [$($fdoc:literal)*]])+]) => {
        $($meta)*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq)]
        $vis struct $name {
            $($(#[doc = $fdoc])* pub $f: $crate::__ferrule_interface!(@field $t),)+
        }

        impl $crate::__private::declare::DeclaredStruct for $name {
            const DECL: $crate::__private::declare::Struct = $crate::__private::declare::Struct {
                name: ::core::stringify!($name),
                fields: &[$((::core::stringify!($f), $crate::__ferrule_interface!(@field_decl $t))),+],
            };
        }

        impl $crate::__private::iface::Struct for $name {
            const NAME: &'static str = ::core::stringify!($name);
            const SIZE: usize = <$name as $crate::__private::declare::DeclaredStruct>::DECL.size();

            fn read(bytes: &[u8]) -> ::core::result::Result<Self, ::std::string::String> {
                ::core::result::Result::Ok($name {
                    $($f: $crate::__private::iface::Field::read_at(bytes, ::core::mem::offset_of!($name, $f))?,)+
                })
            }

            fn write(&self, bytes: &mut [u8]) {
                $($crate::__private::iface::Field::write_at(&self.$f, bytes, ::core::mem::offset_of!($name, $f));)+
            }
        }

        // The layout the declaration gives (natural alignment, as ferrule.idl
        // computes it), checked against Rust's at compile time.
        const _: () = {
            let decl = <$name as $crate::__private::declare::DeclaredStruct>::DECL;
            ::core::assert!(::core::mem::size_of::<$name>() == decl.size(), ::core::concat!(
                "struct ", ::core::stringify!($name), ": Rust's size differs from the declared C layout's"));
            ::core::assert!(::core::mem::align_of::<$name>() == decl.align(), ::core::concat!(
                "struct ", ::core::stringify!($name), ": Rust's alignment differs from the declared C layout's"));
            $(::core::assert!(
                ::core::mem::offset_of!($name, $f) == decl.offset_of(::core::stringify!($f)),
                ::core::concat!("struct ", ::core::stringify!($name), " field ", ::core::stringify!($f),
                                ": Rust's offset differs from the declared C layout's"));)+
        };
    };
    (@handle [$($meta:tt)*] [$vis:vis] $name:ident) => {
        $($meta)*
        #[repr(transparent)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis struct $name(pub u64);

        impl $crate::__private::declare::DeclaredHandle for $name {
            const NAME: &'static str = ::core::stringify!($name);
        }

        impl $crate::__private::iface::Field for $name {
            fn read_at(bytes: &[u8], offset: usize) -> ::core::result::Result<Self, ::std::string::String> {
                <u64 as $crate::__private::iface::Field>::read_at(bytes, offset).map($name)
            }

            fn write_at(&self, bytes: &mut [u8], offset: usize) {
                $crate::__private::iface::Field::write_at(&self.0, bytes, offset);
            }
        }
    };

    // ---- what interface! could not read -------------------------------------------
    // One method at a time, so that the error names the method that is wrong.
    (@diagnose $Trait:ident [$($meta:tt)*] [$($body:tt)*]) => {
        $crate::__ferrule_interface! { @diagnose_attrs $Trait [$($meta)*] }
        $crate::__ferrule_interface! { @diagnose_methods $Trait [$($body)*] }
    };
    (@diagnose_attrs $Trait:ident [$(#[doc = $doc:literal])* #[interface($($opt:tt)*)] $(#[doc = $doc2:literal])*]) => {};
    (@diagnose_attrs $Trait:ident [$($meta:tt)*]) => {
        ::core::compile_error!(::core::concat!(
            "ferrule_sdk::interface!: trait ", ::core::stringify!($Trait), " needs one ",
            "`#[interface(id = \"...\", revision = N)]` and no attributes but doc comments"
        ));
    };
    (@diagnose_methods $Trait:ident []) => {};
    (@diagnose_methods $Trait:ident [$(#[doc = $mdoc:literal])* fn $m:ident ($($params:tt)*) ; $($rest:tt)*]) => {
        $crate::__ferrule_interface! { @diagnose_params $Trait $m [$($params)*] }
        $crate::__ferrule_interface! { @diagnose_methods $Trait [$($rest)*] }
    };
    (@diagnose_methods $Trait:ident [$(#[doc = $mdoc:literal])* fn $m:ident ($($params:tt)*) -> $($rest:tt)*]) => {
        $crate::__ferrule_interface! { @diagnose_params $Trait $m [$($params)*] }
        $crate::__ferrule_interface! { @diagnose_result $Trait $m [] $($rest)* }
    };
    (@diagnose_methods $Trait:ident [$($rest:tt)*]) => {
        ::core::compile_error!(::core::concat!(
            "ferrule_sdk::interface!: in trait ", ::core::stringify!($Trait), ", cannot read `",
            ::core::stringify!($($rest)*), "`: each method is `/// doc` then `fn name(param: TYPE, ...) -> TYPE;` ",
            "(no `-> TYPE` for none, no `self`, no body; only doc comments as attributes)"
        ));
    };
    // The result's tokens, up to the `;`.
    (@diagnose_result $Trait:ident $m:ident [$($r:ident)+] ; $($rest:tt)*) => {
        $crate::__ferrule_interface! { @diagnose_methods $Trait [$($rest)*] }
    };
    (@diagnose_result $Trait:ident $m:ident [$($r:tt)*] ; $($rest:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "ferrule_sdk::interface!: ", ::core::stringify!($Trait), "::", ::core::stringify!($m), " returns `",
            ::core::stringify!($($r)*), "`: a result is a number, bool, str, bytes, `struct NAME` or `handle NAME` ",
            "(leave out `-> ...` for none)"
        ));
        $crate::__ferrule_interface! { @diagnose_methods $Trait [$($rest)*] }
    };
    (@diagnose_result $Trait:ident $m:ident [$($r:tt)*] $next:tt $($rest:tt)*) => {
        $crate::__ferrule_interface! { @diagnose_result $Trait $m [$($r)* $next] $($rest)* }
    };
    (@diagnose_result $Trait:ident $m:ident [$($r:tt)*]) => {
        ::core::compile_error!(::core::concat!(
            "ferrule_sdk::interface!: ", ::core::stringify!($Trait), "::", ::core::stringify!($m),
            " has no `;` after its result"
        ));
    };
    (
        @diagnose_params $Trait:ident $m:ident [
            $($p:ident : $pk:ident $($pn:ident)? $([$pe:ident])? $(( $($fa:ident),* ) $(-> $fr:ident)?)?),* $(,)?
        ]
    ) => {};
    (@diagnose_params $Trait:ident $m:ident [$($params:tt)*]) => {
        ::core::compile_error!(::core::concat!(
            "ferrule_sdk::interface!: cannot read the parameters of ", ::core::stringify!($Trait), "::",
            ::core::stringify!($m), ", `", ::core::stringify!($($params)*), "`: write `name: TYPE, ...` (no `self`) with ",
            "TYPE one of bool, the numbers, str, bytes, buf[T], mutbuf[T], fn(A, ..) -> R, `struct NAME`, `handle NAME`"
        ));
    };
}
