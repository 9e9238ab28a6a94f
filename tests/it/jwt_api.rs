//! The JWT API through the real binary.
