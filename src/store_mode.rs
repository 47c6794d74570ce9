//! memcached's storage commands (its `NREAD_*` codes): one definition that the
//! protocols parse into and the store executes, so neither imports the other.

/// The storage commands; a `Cas` carries the unique the client read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

impl StoreMode {
    /// The command's name, as `watch mutations` prints it.
    pub fn name(self) -> &'static str {
        match self {
            StoreMode::Set => "set",
            StoreMode::Add => "add",
            StoreMode::Replace => "replace",
            StoreMode::Append => "append",
            StoreMode::Prepend => "prepend",
            StoreMode::Cas => "cas",
        }
    }
}
