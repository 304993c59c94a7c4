//! Back-fill (not yet implemented).
