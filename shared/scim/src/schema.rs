//! SCIM schemas as data (RFC 7643 §2, §7, §8.7).
//!
//! The core User and Group schemas and the enterprise extension ship as JSON in
//! `shared/schemas/`; operators can add their own extension schemas at start-up
//! ([`SchemaRegistry::add_extension`]). Everything that needs to know about an attribute
//! (filters, PATCH, projection, validation, `/Schemas`) asks the registry, so a custom
//! schema behaves exactly like a built-in one.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::urn::{
    BULK_REQUEST, BULK_RESPONSE, ENTERPRISE_USER as ENTERPRISE_USER_SCHEMA, ERROR as ERROR_SCHEMA,
    GROUP as GROUP_SCHEMA, LIST_RESPONSE, PATCH_OP, SEARCH_REQUEST, USER as USER_SCHEMA,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Mutability {
    ReadOnly,
    #[default]
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Returned {
    Always,
    Never,
    #[default]
    Default,
    Request,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Uniqueness {
    #[default]
    None,
    Server,
    Global,
}

/// One attribute definition (RFC 7643 §7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: AttrType,
    #[serde(default)]
    pub multi_valued: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub case_exact: bool,
    #[serde(default)]
    pub mutability: Mutability,
    #[serde(default)]
    pub returned: Returned,
    #[serde(default)]
    pub uniqueness: Uniqueness,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canonical_values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_attributes: Vec<Attribute>,
}

impl Attribute {
    /// Sub-attribute by name, case-insensitively (RFC 7643 §2.1: attribute names are
    /// case-insensitive).
    pub fn sub(&self, name: &str) -> Option<&Attribute> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    pub fn is_complex(&self) -> bool {
        self.ty == AttrType::Complex
    }

    fn simple(name: &str, ty: AttrType) -> Self {
        Attribute {
            name: name.to_string(),
            ty,
            multi_valued: false,
            description: String::new(),
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: vec![],
            reference_types: vec![],
            sub_attributes: vec![],
        }
    }
}

/// A schema (RFC 7643 §7): an id (URN) and its attributes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub attributes: Vec<Attribute>,
}

impl Schema {
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaExtension {
    pub schema: String,
    pub required: bool,
}

/// A resource type (RFC 7643 §6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceType {
    pub id: String,
    pub name: String,
    pub endpoint: String,
    #[serde(default)]
    pub description: String,
    pub schema: String,
    #[serde(default)]
    pub schema_extensions: Vec<SchemaExtension>,
}

/// The kinds of resources the hub keeps. Matched exhaustively wherever the two differ
/// (uniqueness keys, membership).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }
    pub fn core_schema(self) -> &'static str {
        match self {
            ResourceKind::User => USER_SCHEMA,
            ResourceKind::Group => GROUP_SCHEMA,
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("User") || s.eq_ignore_ascii_case("Users") {
            Some(ResourceKind::User)
        } else if s.eq_ignore_ascii_case("Group") || s.eq_ignore_ascii_case("Groups") {
            Some(ResourceKind::Group)
        } else {
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema document is not valid: {0}")]
    Invalid(String),
    #[error("schema {0} is already registered")]
    Duplicate(String),
    #[error("unknown resource type {0}")]
    UnknownResourceType(String),
}

/// All schemas and resource types the server knows. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct SchemaRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    schemas: Vec<Schema>,
    by_id: HashMap<String, usize>,
    resource_types: Vec<ResourceType>,
    common: Schema,
}

/// Attributes every resource has (RFC 7643 §3.1), which no schema document lists.
fn common_schema() -> Schema {
    let mut id = Attribute::simple("id", AttrType::String);
    id.case_exact = true;
    id.mutability = Mutability::ReadOnly;
    id.returned = Returned::Always;
    id.uniqueness = Uniqueness::Server;
    let mut external_id = Attribute::simple("externalId", AttrType::String);
    external_id.case_exact = true;
    let mut meta = Attribute::simple("meta", AttrType::Complex);
    meta.mutability = Mutability::ReadOnly;
    let ro = |name: &str, ty| {
        let mut a = Attribute::simple(name, ty);
        a.mutability = Mutability::ReadOnly;
        a.case_exact = true;
        a
    };
    meta.sub_attributes = vec![
        ro("resourceType", AttrType::String),
        ro("created", AttrType::DateTime),
        ro("lastModified", AttrType::DateTime),
        ro("location", AttrType::Reference),
        ro("version", AttrType::String),
    ];
    let mut schemas = Attribute::simple("schemas", AttrType::Reference);
    schemas.multi_valued = true;
    schemas.case_exact = true;
    schemas.returned = Returned::Always;
    Schema {
        id: crate::urn::COMMON.into(),
        name: "Common".into(),
        description: "Attributes common to all resources (RFC 7643 §3.1)".into(),
        attributes: vec![id, external_id, meta, schemas],
    }
}

impl SchemaRegistry {
    /// Core User, Group and the enterprise User extension.
    pub fn builtin() -> Self {
        let parse = |s: &str| -> Schema {
            serde_json::from_str(s).unwrap_or_else(|e| panic!("built-in schema is invalid: {e}"))
        };
        let schemas = vec![
            parse(include_str!("../schemas/user.json")),
            parse(include_str!("../schemas/group.json")),
            parse(include_str!("../schemas/enterprise_user.json")),
        ];
        let resource_types = vec![
            ResourceType {
                id: "User".into(),
                name: "User".into(),
                endpoint: "/Users".into(),
                description: "User Account".into(),
                schema: USER_SCHEMA.into(),
                schema_extensions: vec![SchemaExtension {
                    schema: ENTERPRISE_USER_SCHEMA.into(),
                    required: false,
                }],
            },
            ResourceType {
                id: "Group".into(),
                name: "Group".into(),
                endpoint: "/Groups".into(),
                description: "Group".into(),
                schema: GROUP_SCHEMA.into(),
                schema_extensions: vec![],
            },
        ];
        Self::from_parts(schemas, resource_types)
    }

    fn from_parts(schemas: Vec<Schema>, resource_types: Vec<ResourceType>) -> Self {
        let by_id = schemas
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.to_ascii_lowercase(), i))
            .collect();
        SchemaRegistry {
            inner: Arc::new(Inner {
                schemas,
                by_id,
                resource_types,
                common: common_schema(),
            }),
        }
    }

    /// Adds a custom extension schema (a JSON document in the RFC 7643 §7 form) to a
    /// resource type. Used at start-up from `PROVISYNC_SCHEMA_DIR`.
    pub fn add_extension(
        &self,
        resource_type: ResourceKind,
        schema_json: &str,
        required: bool,
    ) -> Result<Self, SchemaError> {
        let schema: Schema =
            serde_json::from_str(schema_json).map_err(|e| SchemaError::Invalid(e.to_string()))?;
        if !schema.id.starts_with("urn:") {
            return Err(SchemaError::Invalid(format!(
                "schema id {} is not a URN",
                schema.id
            )));
        }
        if self.schema(&schema.id).is_some() {
            return Err(SchemaError::Duplicate(schema.id));
        }
        let mut schemas = self.inner.schemas.clone();
        let mut resource_types = self.inner.resource_types.clone();
        let rt = resource_types
            .iter_mut()
            .find(|rt| rt.id == resource_type.as_str())
            .ok_or_else(|| SchemaError::UnknownResourceType(resource_type.as_str().into()))?;
        rt.schema_extensions.push(SchemaExtension {
            schema: schema.id.clone(),
            required,
        });
        schemas.push(schema);
        Ok(Self::from_parts(schemas, resource_types))
    }

    pub fn schemas(&self) -> &[Schema] {
        &self.inner.schemas
    }

    pub fn schema(&self, id: &str) -> Option<&Schema> {
        self.inner
            .by_id
            .get(&id.to_ascii_lowercase())
            .map(|&i| &self.inner.schemas[i])
    }

    pub fn resource_types(&self) -> &[ResourceType] {
        &self.inner.resource_types
    }

    pub fn resource_type(&self, kind: ResourceKind) -> &ResourceType {
        self.inner
            .resource_types
            .iter()
            .find(|rt| rt.id == kind.as_str())
            .unwrap_or_else(|| unreachable!("resource types are built in"))
    }

    /// The resolved view of one resource type: its core schema, extensions and the common
    /// attributes.
    pub fn view(&self, kind: ResourceKind) -> ResourceSchema<'_> {
        let rt = self.resource_type(kind);
        let core = self
            .schema(&rt.schema)
            .unwrap_or_else(|| unreachable!("core schemas are built in"));
        let extensions = rt
            .schema_extensions
            .iter()
            .filter_map(|e| self.schema(&e.schema).map(|s| (s, e.required)))
            .collect();
        ResourceSchema {
            kind,
            resource_type: rt,
            core,
            extensions,
            common: &self.inner.common,
        }
    }
}

/// A parsed attribute path: `[urn ":"] attr ["." subAttr]` (RFC 7644 §3.10).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// The schema URN the path was qualified with, as written.
    pub urn: Option<String>,
    pub attr: String,
    pub sub_attr: Option<String>,
}

impl AttrPath {
    pub fn new(attr: impl Into<String>) -> Self {
        AttrPath {
            urn: None,
            attr: attr.into(),
            sub_attr: None,
        }
    }

    /// Parses `name`, `name.sub`, `urn:...:name` or `urn:...:name.sub`. Returns `None` for
    /// anything that is not an attribute path (RFC 7644 §3.10 / RFC 7643 §2.1 ATTRNAME).
    pub fn parse(s: &str) -> Option<Self> {
        let (urn, rest) =
            if s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) && s.len() > 4 {
                let idx = s.rfind(':')?;
                (Some(s[..idx].to_string()), &s[idx + 1..])
            } else {
                (None, s)
            };
        let (attr, sub) = match rest.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (rest, None),
        };
        if !is_attr_name(attr) || sub.is_some_and(|s| !is_attr_name(s)) {
            return None;
        }
        Some(AttrPath {
            urn,
            attr: attr.to_string(),
            sub_attr: sub.map(str::to_string),
        })
    }
}

impl std::fmt::Display for AttrPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// ATTRNAME = ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA; `$ref` is allowed
/// as the one reserved name the RFC uses itself.
pub fn is_attr_name(s: &str) -> bool {
    if s == "$ref" {
        return true;
    }
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Where a resolved attribute lives in the JSON of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrLocation<'a> {
    /// Top level of the resource (core schema or common attributes).
    Core,
    /// Inside the object keyed by this extension schema URN.
    Extension(&'a str),
}

/// The result of resolving an [`AttrPath`] against a resource type.
#[derive(Clone, Copy, Debug)]
pub struct ResolvedAttr<'a> {
    pub location: AttrLocation<'a>,
    pub attr: &'a Attribute,
    pub sub: Option<&'a Attribute>,
}

impl<'a> ResolvedAttr<'a> {
    /// The definition that governs the value the path points at.
    pub fn leaf(&self) -> &'a Attribute {
        self.sub.unwrap_or(self.attr)
    }
}

/// A resource type with its schemas resolved.
#[derive(Clone, Debug)]
pub struct ResourceSchema<'a> {
    pub kind: ResourceKind,
    pub resource_type: &'a ResourceType,
    pub core: &'a Schema,
    pub extensions: Vec<(&'a Schema, bool)>,
    pub common: &'a Schema,
}

impl<'a> ResourceSchema<'a> {
    /// Finds the definition a path names. Names are case-insensitive; a URN prefix picks
    /// the schema (the core schema's own URN is allowed too); without one, the common
    /// attributes and the core schema are searched.
    pub fn resolve(&self, path: &AttrPath) -> Option<ResolvedAttr<'a>> {
        let (location, attr) = match &path.urn {
            None => (
                AttrLocation::Core,
                self.common
                    .attribute(&path.attr)
                    .or_else(|| self.core.attribute(&path.attr))?,
            ),
            Some(urn) if urn.eq_ignore_ascii_case(&self.core.id) => {
                (AttrLocation::Core, self.core.attribute(&path.attr)?)
            }
            Some(urn) => {
                let (schema, _) = self
                    .extensions
                    .iter()
                    .find(|(s, _)| s.id.eq_ignore_ascii_case(urn))?;
                (
                    AttrLocation::Extension(schema.id.as_str()),
                    schema.attribute(&path.attr)?,
                )
            }
        };
        let sub = match &path.sub_attr {
            None => None,
            Some(name) => Some(attr.sub(name)?),
        };
        Some(ResolvedAttr {
            location,
            attr,
            sub,
        })
    }

    /// The extension schema with this URN, if the resource type has it.
    pub fn extension(&self, urn: &str) -> Option<&'a Schema> {
        self.extensions
            .iter()
            .find(|(s, _)| s.id.eq_ignore_ascii_case(urn))
            .map(|(s, _)| *s)
    }

    /// Every schema URN a resource of this type may list in `schemas`.
    pub fn schema_ids(&self) -> impl Iterator<Item = &'a str> + '_ {
        std::iter::once(self.core.id.as_str())
            .chain(self.extensions.iter().map(|(s, _)| s.id.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_schemas_load() {
        let reg = SchemaRegistry::builtin();
        assert_eq!(reg.schemas().len(), 3);
        let user = reg.view(ResourceKind::User);
        let r = user.resolve(&AttrPath::parse("USERNAME").unwrap()).unwrap();
        assert_eq!(r.attr.name, "userName");
        assert!(!r.attr.case_exact);
        assert_eq!(r.attr.uniqueness, Uniqueness::Server);
        let r = user
            .resolve(
                &AttrPath::parse(
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                )
                .unwrap(),
            )
            .unwrap();
        assert_eq!(r.location, AttrLocation::Extension(ENTERPRISE_USER_SCHEMA));
        assert_eq!(r.leaf().name, "value");
        let r = user
            .resolve(
                &AttrPath::parse("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName")
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(r.location, AttrLocation::Core);
        assert_eq!(r.leaf().name, "givenName");
        assert!(
            user.resolve(&AttrPath::parse("meta.lastModified").unwrap())
                .is_some()
        );
        assert!(user.resolve(&AttrPath::parse("nope").unwrap()).is_none());
        assert!(
            user.resolve(&AttrPath::parse("name.nope").unwrap())
                .is_none()
        );
    }

    #[test]
    fn attr_path_parse_and_print() {
        for s in [
            "userName",
            "name.givenName",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
            "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName",
            "members.$ref",
        ] {
            assert_eq!(AttrPath::parse(s).unwrap().to_string(), s);
        }
        assert!(AttrPath::parse("1abc").is_none());
        assert!(AttrPath::parse("a.b.c").is_none());
        assert!(AttrPath::parse("").is_none());
        assert!(AttrPath::parse("urné").is_none());
        assert!(AttrPath::parse("é").is_none());
    }

    #[test]
    fn custom_extension() {
        let reg = SchemaRegistry::builtin();
        let reg = reg
            .add_extension(
                ResourceKind::User,
                r#"{"id":"urn:example:params:scim:schemas:extension:acme:2.0:User","name":"Acme","attributes":[{"name":"badge","type":"integer"}]}"#,
                false,
            )
            .unwrap();
        let user = reg.view(ResourceKind::User);
        let r = user
            .resolve(
                &AttrPath::parse("urn:example:params:scim:schemas:extension:acme:2.0:User:badge")
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(r.attr.ty, AttrType::Integer);
    }
}
