//! Native training core.
