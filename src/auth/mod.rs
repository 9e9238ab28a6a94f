//! Authentication at the edge: the key ring ([`keys`]), the token service with its cache of
//! verified tokens ([`tokens`]), and the in-memory revocation set kept in step with the store
//! ([`revocation_sync`]).

pub mod keys;
pub mod revocation_sync;
pub mod tokens;
