//! Regular expressions of the JSON Schemas (`docs/schema/`), so that a schema refuses what
//! the decoder refuses wherever JSON Schema can say it. The decoder's checks are the rule
//! (`wire::validate`); these say the same for other languages' validators. JSON Schema
//! counts lengths in characters, the decoder in UTF-8 bytes: for text that is not ASCII the
//! decoder is the stricter.

/// An id: 1 to 64 of `A-Z a-z 0-9 . _ - ~`, not starting with `.` or `~`.
pub const ID: &str = r"^[A-Za-z0-9_-][A-Za-z0-9._~-]{0,63}$";
/// A device's own id (a signer, a roster entry): an id without `~`, which marks a helper.
pub const DEVICE_ID: &str = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$";
/// Free text and URIs: no control characters but tab and newline.
pub const TEXT: &str = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$";
/// A key id: 16 lower-case hex digits.
pub const KEY_ID: &str = r"^[0-9a-f]{16}$";
/// 32 bytes, base64url without padding.
pub const B64_32: &str = r"^[A-Za-z0-9_-]{43}$";
/// A 12-byte nonce, base64url without padding.
pub const B64_12: &str = r"^[A-Za-z0-9_-]{16}$";
/// A 64-byte Ed25519 signature, base64url without padding.
pub const B64_64: &str = r"^[A-Za-z0-9_-]{86}$";
/// Ciphertext with its 16-byte tag, base64url without padding.
pub const CIPHERTEXT: &str = r"^[A-Za-z0-9_-]{22,}$";
/// A pairing seal: a 12-byte nonce, the ciphertext and its tag.
pub const PAIR_SEALED: &str = r"^[A-Za-z0-9_-]{38,}$";
/// A pairing exchange id: `x` and 12 lower-case hex digits.
pub const EXCHANGE: &str = r"^x[0-9a-f]{12}$";
/// The one algorithm of sealed envelopes.
pub const ALG: &str = r"^A256GCM$";

/// Media times: at most 2^53 - 1 ns.
pub const MAX_MEDIA_NS: u64 = (1 << 53) - 1;

/// The most loads and seeks a handoff result may count (a target gives up long before).
pub const MAX_PREROLLS: u32 = 1000;
/// Wall-clock instants: at most the year 2500.
pub const MAX_UNIX_NS: u64 = 16_725_225_600 * 1_000_000_000;
