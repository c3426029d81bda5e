use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest identifier accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier is empty.
    #[error("is empty")]
    Empty,
    /// The identifier is longer than [`MAX_ID_LEN`] bytes.
    #[error("is {0} bytes long, more than the {MAX_ID_LEN} allowed")]
    TooLong(usize),
    /// The identifier contains a character outside `[A-Za-z0-9._:-]`.
    #[error("contains a character outside [A-Za-z0-9._:-]")]
    BadChar,
}

fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(s.len()));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(IdError::BadChar);
    }
    Ok(())
}

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier (1 to 128 bytes of `[A-Za-z0-9._:-]`).
            ///
            /// # Errors
            /// Returns an [`IdError`] naming what is wrong with it.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_id(&s)?;
                Ok(Self(s))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

id_newtype!(
    /// One device stream: the Kafka key of its frames, so all its samples stay in one
    /// partition and in order.
    StreamId
);
id_newtype!(
    /// The device (serial number or gateway-assigned id) that produced a stream.
    DeviceId
);
id_newtype!(
    /// A pseudonymous patient id assigned by the health system's gateway. It is never
    /// a medical record number; it still never appears in metric labels or info logs.
    PatientId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_validate() {
        assert!(StreamId::new("bed-12.ecg:0").is_ok());
        assert_eq!(StreamId::new(""), Err(IdError::Empty));
        assert_eq!(PatientId::new("a b"), Err(IdError::BadChar));
        assert_eq!(DeviceId::new("x".repeat(129)), Err(IdError::TooLong(129)));
        let json = serde_json::to_string(&PatientId::new("p-1").unwrap()).unwrap();
        assert_eq!(json, "\"p-1\"");
        assert!(serde_json::from_str::<PatientId>("\"p 1\"").is_err());
    }
}
