//! Why a definition (a target, a source) was refused.

/// A refused definition: the field it is about (`auth.bearer`, `mapping`, `pull.base_url`)
/// and the sentence shown to the operator, which names the field in the operator's words
/// and never quotes a secret. `Display` is the sentence.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ValidationError {
    /// The definition's field, as a dotted path of its JSON (`""`: the definition as a whole).
    pub field: String,
    pub reason: String,
}

/// A [`ValidationError`] about `field`.
pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        reason: reason.into(),
    }
}

impl ValidationError {
    /// The same check applied to another field (a URL check written for `base_url`,
    /// applied to `url`): the field and its name in the sentence change.
    pub fn for_field(self, field: &str) -> ValidationError {
        ValidationError {
            reason: self.reason.replacen(&self.field, field, 1),
            field: field.to_string(),
        }
    }

    /// The same error one level down (`base_url` in `pull` becomes `pull.base_url`).
    pub fn within(self, parent: &str) -> ValidationError {
        ValidationError {
            field: format!("{parent}.{}", self.field),
            reason: format!("{parent}.{}", self.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_and_nested_errors_keep_their_sentence() {
        let e = invalid("base_url", "base_url: must be https");
        assert_eq!(e.to_string(), "base_url: must be https");
        let url = e.clone().for_field("url");
        assert_eq!(
            (url.field.as_str(), url.to_string().as_str()),
            ("url", "url: must be https")
        );
        let pulled = e.within("pull");
        assert_eq!(pulled.field, "pull.base_url");
        assert_eq!(pulled.to_string(), "pull.base_url: must be https");
    }
}
