//! Entry points for the fuzz targets in `fuzz/` — not an API. The HTTP edge's codecs
//! (a hidden module of `dwell-http`); the fuzzers call them exactly as the handlers do.
//! Everything else the targets drive (the store, the executor) is public already.

pub use crate::executor::InstantiateError;
pub use crate::http::codec::{Prefer, prefer, to_guest, to_json, to_json_lossless, wait_applied};
