//! Authentication at the edge: the key ring ([`keys`]) and the tenants and applications each key
//! speaks for ([`key_scope`]), the token service with its cache of
//! verified tokens ([`tokens`]), the in-memory revocation set kept in step with the store
//! ([`revocation_sync`]), and the trusted issuers whose JWKS keys are fetched and kept
//! ([`issuers`]).

pub mod aes_pmac;
pub mod cached;
pub mod issuers;
pub mod key_scope;
pub mod keys;
pub mod revocation_sync;
pub mod token_cache;
pub mod tokens;
