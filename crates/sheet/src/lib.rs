//! The config's paper backup and first-boot seed (docs/recovery-sheet.md).
//!
//! - [`chunk`] (pure): the config as numbered QR payloads with one XOR parity code, and back.
//! - [`pdf`]: the printable sheet (vector QR codes, base-14 fonts).
//! - [`refs`] (pure): secrets the config points at (files, environment) instead of holding.
//! - [`scan`]: QR codes from PNG/JPEG scans (rqrr) or from caretaker's own PDF.
//! - [`seed`]: the cloud-init NoCloud seed (user-data, meta-data, an ISO through xorriso).

pub mod chunk;
pub mod pdf;
pub mod refs;
pub mod scan;
pub mod seed;
