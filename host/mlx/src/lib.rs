//! MLX binding (see build.rs).
