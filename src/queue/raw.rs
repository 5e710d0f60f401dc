//! Datums the queue gates carry through untouched: a message (`jsonb`), a batch of them
//! (`jsonb[]`) and a batch of ids (`bigint[]`). pgrx's `JsonB` prints each message as text and
//! parses it into serde values on the way in, and prints and parses it again on the way out;
//! the gates only hand messages from their caller to SQL and back, so they pass the datum as it
//! is.
//!
//! As an argument the datum is the caller's, valid for the call: it is not copied. Read from an
//! SPI result (`FromDatum`, which pgrx's `SpiHeapTupleData::get` calls in the memory context
//! outside SPI) it is copied there, since SPI frees its results when `Spi::connect` returns.

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::nullable::Nullable;
use pgrx::pg_sys;
use pgrx::{FromDatum, IntoDatum};

/// An argument's datum as the caller passed it.
struct Passthrough(pg_sys::Datum);

impl FromDatum for Passthrough {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        (!is_null).then_some(Passthrough(datum))
    }
}

macro_rules! raw_varlena {
    ($(#[$doc:meta])* $name:ident, $oid:expr, $sql:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name(pg_sys::Datum);

        impl FromDatum for $name {
            unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
                if is_null || datum.is_null() {
                    None
                } else {
                    // A detoasted copy in the current memory context.
                    Some($name(pg_sys::Datum::from(unsafe { pg_sys::pg_detoast_datum_copy(datum.cast_mut_ptr()) })))
                }
            }
        }

        impl IntoDatum for $name {
            fn into_datum(self) -> Option<pg_sys::Datum> {
                Some(self.0)
            }
            fn type_oid() -> pg_sys::Oid {
                $oid
            }
        }

        unsafe impl<'fcx> ArgAbi<'fcx> for $name {
            unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
                let index = arg.index();
                unsafe { arg.unbox_arg_using_from_datum::<Passthrough>() }
                    .map(|p| $name(p.0))
                    .unwrap_or_else(|| panic!("argument {index} must not be null"))
            }

            unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
                unsafe { arg.unbox_arg_using_from_datum::<Passthrough>() }.map(|p| $name(p.0)).into()
            }
        }

        unsafe impl BoxRet for $name {
            unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
                unsafe { fcinfo.return_raw_datum(self.0) }
            }
        }

        pgrx::impl_sql_translatable!($name, $sql);
    };
}

raw_varlena!(
    /// A `jsonb` value, passed through.
    RawJsonb,
    pg_sys::JSONBOID,
    "jsonb"
);
raw_varlena!(
    /// A `jsonb[]` value, passed through.
    RawJsonbArray,
    pg_sys::JSONBARRAYOID,
    "jsonb[]"
);
raw_varlena!(
    /// A `bigint[]` value, passed through.
    RawBigintArray,
    pg_sys::INT8ARRAYOID,
    "bigint[]"
);

impl RawJsonb {
    /// Whether this is `'{}'` (the empty object: its root container header alone).
    pub fn is_empty_object(self) -> bool {
        unsafe {
            let value = pg_sys::pg_detoast_datum_packed(self.0.cast_mut_ptr());
            pgrx::varlena::varsize_any_exhdr(value) == 4
                && (pgrx::varlena::vardata_any(value) as *const u32).read_unaligned() == pg_sys::JB_FOBJECT
        }
    }
}

/// What the fast paths need to know of an array argument: its element count, and whether it is
/// one-dimensional and free of NULLs.
pub struct ArrayShape {
    pub len: usize,
    pub flat: bool,
    pub has_nulls: bool,
}

impl RawJsonbArray {
    pub fn shape(self) -> ArrayShape {
        unsafe {
            let array = pg_sys::pg_detoast_datum(self.0.cast_mut_ptr()) as *mut pg_sys::ArrayType;
            let raw = pgrx::array::RawArray::from_ptr(std::ptr::NonNull::new(array).expect("an array datum is not null"));
            ArrayShape { len: raw.len(), flat: raw.dims().len() <= 1, has_nulls: raw.any_nulls() }
        }
    }
}
