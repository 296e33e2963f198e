//! Admin.
pub struct Admin;
