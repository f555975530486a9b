//! The crate's one error type. Every kernel validates its arguments and returns
//! `FerroError` instead of panicking; the Python bindings turn `Shape`/`Value` into
//! `ValueError`, `Dtype` into `TypeError` and `Memory` into `MemoryError` (in
//! `python/mod.rs`, in one place).

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FerroError {
    /// A shape that does not fit: the message names the argument, expected and received.
    #[error("{0}")]
    Shape(String),
    /// A dtype that is not float32/float64 or does not match the other operands.
    #[error("{0}")]
    Dtype(String),
    /// Any other bad argument value (an unknown op name, a class index out of range, a
    /// size that overflows...).
    #[error("{0}")]
    Value(String),
    /// A caller-sized allocation the system refused (Python's MemoryError): see `alloc.rs`.
    #[error("{0}")]
    Memory(String),
}

pub type Result<T> = std::result::Result<T, FerroError>;

/// `Err(FerroError::Shape(format!(...)))` in one line.
#[macro_export]
macro_rules! shape_err {
    ($($arg:tt)*) => { Err($crate::error::FerroError::Shape(format!($($arg)*))) };
}

/// `Err(FerroError::Value(format!(...)))` in one line.
#[macro_export]
macro_rules! value_err {
    ($($arg:tt)*) => { Err($crate::error::FerroError::Value(format!($($arg)*))) };
}
