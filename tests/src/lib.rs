//! Cross-crate scenario tests live in `tests/`; this library is empty.

/// The README's examples, run as doc tests (here, in a package that is
/// never published, so no published crate reads a file outside itself).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
