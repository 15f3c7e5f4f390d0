//! [`Json<T>`]: any serde type as one Redis value.
//!
//! Lists (queues, append logs) and pub/sub channels carry one value per
//! item, encoded with the [`FieldValue`] codec. Plain values (`String`,
//! integers, unit enums) encode as themselves; for structs, maps and
//! vectors wrap the type in `Json`, which stores compact JSON (serde_json),
//! the same encoding as a `#[redis(json)]` field.
//!
//! ```
//! use redis_runtime::{FieldValue, Json};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct JobUpdate { job_id: String, status: String }
//!
//! let update = Json(JobUpdate { job_id: "j1".into(), status: "running".into() });
//! let mut stored = Vec::new();
//! update.encode_value(&mut stored).expect("encodes");
//! assert_eq!(stored, br#"{"job_id":"j1","status":"running"}"#);
//! assert_eq!(Json::<JobUpdate>::decode_value(&stored).expect("decodes"), update);
//! assert!(Json::<JobUpdate>::decode_value(b"{not json").is_err());
//! ```

use crate::codec::{FieldEncoding, FieldValue};

/// A serde value stored as compact JSON in one Redis value; see the
/// [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The wrapped value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Json<T> {
    fn from(value: T) -> Self {
        Json(value)
    }
}

impl<T> FieldValue for Json<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    const ENCODING: FieldEncoding = FieldEncoding::Json;

    fn encode_value(&self, out: &mut Vec<u8>) -> Result<(), String> {
        serde_json::to_writer(out, &self.0).map_err(|e| format!("JSON encoding failed: {e}"))
    }

    fn decode_value(raw: &[u8]) -> Result<Self, String> {
        // serde_json's message names line and column, never the input.
        serde_json::from_slice(raw)
            .map(Json)
            .map_err(|e| format!("bad JSON: {e}"))
    }
}
