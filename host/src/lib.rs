//! The brain library.
