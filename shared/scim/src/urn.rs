//! Every SCIM URN, in one place (RFC 7643 §8.7, RFC 7644 §3 and §8.2).

/// The core User schema (RFC 7643 §4.1).
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema (RFC 7643 §4.2).
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The Enterprise User extension (RFC 7643 §4.3).
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The attributes common to all resources (`id`, `externalId`, `meta`; RFC 7643 §3.1).
pub const COMMON: &str = "urn:ietf:params:scim:schemas:common:2.0";
/// The ServiceProviderConfig schema (RFC 7643 §5).
pub const SERVICE_PROVIDER_CONFIG: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// The ResourceType schema (RFC 7643 §6).
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// The Schema schema (RFC 7643 §7).
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
/// A query response (RFC 7644 §3.4.2).
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// A POST `/.search` request (RFC 7644 §3.4.3).
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// A PATCH request (RFC 7644 §3.5.2).
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// A bulk request (RFC 7644 §3.7).
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// A bulk response (RFC 7644 §3.7).
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
/// An error response (RFC 7644 §3.12).
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urns_are_distinct_and_well_formed() {
        let all = [
            USER,
            GROUP,
            ENTERPRISE_USER,
            COMMON,
            SERVICE_PROVIDER_CONFIG,
            RESOURCE_TYPE,
            SCHEMA,
            LIST_RESPONSE,
            SEARCH_REQUEST,
            PATCH_OP,
            BULK_REQUEST,
            BULK_RESPONSE,
            ERROR,
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(a.starts_with("urn:ietf:params:scim:"), "{a}");
            for b in &all[i + 1..] {
                assert!(!a.eq_ignore_ascii_case(b), "{a} appears twice");
            }
        }
    }
}
