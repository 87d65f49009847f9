//! Curation primitives.
