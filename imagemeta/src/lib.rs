//! Embedded image metadata: read, filter, splice.
